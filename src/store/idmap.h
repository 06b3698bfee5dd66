/* src/store/idmap.h -- persistent hash trie of docs by id (idmap.c). */
#ifndef CAIRN_STORE_IDMAP_H
#define CAIRN_STORE_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/doc.h"

/*
 * An idmap is one immutable version of a map from a doc's id (doc->id,
 * id_len bytes, compared bytewise) to the doc: what GET by id reads. It keeps
 * no order; the by-insertion-order pmap (pmap.h) is what lists and pages.
 *
 * The trie branches 32 ways on successive 5-bit pieces of a 64-bit hash of the
 * id, highest bits first (a hash array mapped trie), so a lookup at 1,000,000
 * docs loads about 5 nodes where a balanced binary tree loads about 20; the top
 * levels stay in the caches. The hash is SipHash-1-3 under a key drawn from
 * getrandom(2) once per process: ids an adversary picks to share a path cannot
 * be found without the key. Depth is bounded all the same: ids whose hashes
 * agree in all 60 bits the trie uses share one node at depth 12 that is
 * searched linearly.
 *
 * Updates copy the (at most 13) nodes on the path to the change and share
 * everything else (path copying); nodes and docs are atomically refcounted, so
 * any number of threads may read a version without locks while it is held,
 * as with pmap. The shape is canonical: which nodes exist and their sizes
 * depend only on the set of ids (a subtree with one doc is always that doc,
 * inline in its parent; only the order within a depth-12 node depends on
 * history), so deleting what was put gives back the same nodes and bytes.
 *
 * struct idmap is a small value: copy versions with idmap_copy(), never '='.
 */

struct idmap_node;

struct idmap {
    struct idmap_node *root; /* owned reference; NULL when empty */
    size_t count;
};

/* Makes 'm' the empty map. */
void idmap_init(struct idmap *m);

/* Drops 'm's reference to its version; 'm' becomes empty. */
void idmap_cleanup(struct idmap *m);

/* New reference: another handle on the same version as 'm' (O(1)). */
struct idmap idmap_copy(const struct idmap *m);

/* Number of docs, O(1). */
size_t idmap_count(const struct idmap *m);

/* Borrowed: the doc whose id is id[0..len), or NULL. */
struct doc *idmap_get(const struct idmap *m, const char *id, size_t len);

/*
 * New reference: the version of 'm' with 'd' in it, replacing the doc with
 * the same id if any: *old (if not NULL) is that doc, borrowed from 'm', or
 * NULL. 'm' is unchanged; 'd' is borrowed and the new version retains it.
 */
struct idmap idmap_put(const struct idmap *m, struct doc *d, struct doc **old);

/*
 * New reference: the version of 'm' without the doc whose id is id[0..len):
 * *old (if not NULL) is that doc, borrowed from 'm', or NULL when there is
 * none, and the result is then a copy of 'm'.
 */
struct idmap idmap_del(const struct idmap *m, const char *id, size_t len, struct doc **old);

/*
 * Builds a version holding docs[0..n) (borrowed; each retained), in any
 * order: 0 and *out (new reference), or -EEXIST when two docs share an id,
 * with *dup (if not NULL) pointing at one of them and *out left empty.
 * O(n log n) for sorting by hash; each node allocated once.
 */
int idmap_build(struct doc *const *docs, size_t n, struct idmap *out, const struct doc **dup);

/*
 * Checks the whole version: every doc where its hash leads, no id twice,
 * the count, and the canonical shape. 0 or -EINVAL. O(n), for tests.
 */
int idmap_check(const struct idmap *m);

/*
 * Deepest level holding a doc (0 when empty or all docs are in the root), and
 * in *mean (if not NULL) the docs' mean level. O(n), for tests.
 */
int idmap_depth(const struct idmap *m, double *mean);

/* Nodes currently allocated / ever allocated, and the bytes the live ones take (counters). */
uint64_t idmap_live_nodes(void);
uint64_t idmap_nodes_made(void);
uint64_t idmap_live_bytes(void);

/* SipHash-c-d of p[0..n) under key[0..16): exposed for its test vectors. */
uint64_t idmap_siphash(const uint8_t key[16], int c_rounds, int d_rounds, const void *p, size_t n);

/*
 * Tests: keep only the hash bits in 'mask' (~0 restores the real hash), so
 * that chosen ids collide. A map made under one mask is wrong under another
 * (the tests use that to see idmap_check() fail); cairnd never calls it.
 */
void idmap_test_hash_mask(uint64_t mask);

#endif
