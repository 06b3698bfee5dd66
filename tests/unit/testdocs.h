/* tests/unit/testdocs.h -- for the map tests: a fixed-seed generator, docs keyed by number. */
#ifndef CAIRN_TEST_TESTDOCS_H
#define CAIRN_TEST_TESTDOCS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/doc.h"

/* xorshift64*: fixed seeds make every run identical. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static inline uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

static inline size_t rnd_below(size_t n)
{
    return (size_t)(rnd() % n);
}

/* Docs keyed "<i>" (unpadded, so "10" < "2" bytewise; "1" a prefix of "10") with seq i. */
static inline struct doc *mkdoc(size_t i, uint64_t rev)
{
    char id[32];
    int n = snprintf(id, sizeof(id), "%zu", i);
    struct doc *d;
    if (doc_new_bytes(id, (size_t)n, i, rev, "{}", 2, &d) != 0)
        abort();
    return d;
}

#endif
