/* tests/unit/test_idmap.c -- the hash trie by id against a plain reference array. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/doc.h"
#include "store/idmap.h"
#include "util.h"

#include "check.h"
#include "testdocs.h"

/* What an out-parameter holds before the call that must set it. */
static char not_set;
#define NOT_SET ((struct doc *)&not_set)

static struct doc *get_i(const struct idmap *m, size_t i)
{
    char id[32];
    int n = snprintf(id, sizeof(id), "%zu", i);
    return idmap_get(m, id, (size_t)n);
}

/* Every key below 'keys' maps to exactly ref[i] (NULL: absent), and the count agrees. */
static bool agrees(const struct idmap *m, struct doc *const *ref, size_t keys)
{
    size_t live = 0;
    for (size_t i = 0; i < keys; i++) {
        if (get_i(m, i) != ref[i])
            return false;
        live += ref[i] != NULL;
    }
    return idmap_count(m) == live && idmap_check(m) == 0;
}

static void test_siphash_vectors(void)
{
    /* SipHash-2-4, the paper's appendix: key 00..0f, message 00..0e. */
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    CHECK(idmap_siphash(key, 2, 4, msg, 15) == 0xa129ca6149be45e5u);
    CHECK(idmap_siphash(key, 2, 4, msg, 0) == 0x726fdb47dd0e0e31u);
    /* SipHash-1-3 with a zero key, as CPython 3.11 hashes bytes under PYTHONHASHSEED=0. */
    uint8_t zero[16] = {0};
    CHECK(idmap_siphash(zero, 1, 3, "a", 1) == 4644417185603328019u);
    CHECK(idmap_siphash(zero, 1, 3, "abcdefgh", 8) == 4574395652268504554u);
    CHECK(idmap_siphash(zero, 1, 3, "12345", 5) == 2347366186950309369u);
    CHECK(idmap_siphash(zero, 1, 3, "hello world, this is longer", 27) == 14963448555708311481u);
}

static void test_empty(void)
{
    struct idmap m, c;
    struct doc *old = NOT_SET;

    idmap_init(&m);
    CHECK(idmap_count(&m) == 0);
    CHECK(idmap_get(&m, "1", 1) == NULL);
    CHECK(idmap_check(&m) == 0);
    c = idmap_del(&m, "1", 1, &old);
    CHECK(old == NULL && c.root == NULL && idmap_count(&c) == 0);
    CHECK(idmap_build(NULL, 0, &c, NULL) == 0 && c.root == NULL);
    idmap_cleanup(&c);
    idmap_cleanup(&m);
}

/*
 * Random puts (new ids and replacements) and deletes (present and absent) on
 * 'keys' ids under hash 'mask', each checked against the reference; every
 * 50th version is kept and must still hold what it held when made.
 */
static void random_ops(uint64_t mask, size_t keys, size_t ops)
{
    enum { KEEP = 40 };
    struct doc **ref = xcalloc(keys, sizeof(*ref));
    struct doc **kept_ref[KEEP];
    struct idmap kept[KEEP], m;
    size_t nkept = 0;

    idmap_test_hash_mask(mask);
    idmap_init(&m);
    for (size_t op = 0; op < ops; op++) {
        size_t i = rnd_below(keys);
        struct idmap next;
        if (rnd_below(3) != 0) {
            struct doc *d = mkdoc(i, op + 1);
            struct doc *old = NOT_SET;
            next = idmap_put(&m, d, &old);
            CHECK(old == ref[i]);
            doc_release(ref[i]);
            ref[i] = d; /* the reference's own reference */
        } else {
            char id[32];
            int n = snprintf(id, sizeof(id), "%zu", i);
            struct doc *old = NOT_SET;
            next = idmap_del(&m, id, (size_t)n, &old);
            CHECK(old == ref[i]);
            doc_release(ref[i]);
            ref[i] = NULL;
        }
        idmap_cleanup(&m);
        m = next;
        if (op % 16 == 0 || op + 1 == ops)
            CHECK(agrees(&m, ref, keys));
        if (op % 50 == 0 && nkept < KEEP) {
            kept[nkept] = idmap_copy(&m);
            kept_ref[nkept] = xmalloc(keys * sizeof(**kept_ref));
            for (size_t k = 0; k < keys; k++)
                kept_ref[nkept][k] = doc_retain(ref[k]);
            nkept++;
        }
    }
    for (size_t v = 0; v < nkept; v++) {
        CHECK(agrees(&kept[v], kept_ref[v], keys));
        idmap_cleanup(&kept[v]);
        for (size_t k = 0; k < keys; k++)
            doc_release(kept_ref[v][k]);
        free(kept_ref[v]);
    }
    /* Delete everything left: the empty map again. */
    for (size_t i = 0; i < keys; i++) {
        if (ref[i] == NULL)
            continue;
        struct idmap next = idmap_del(&m, ref[i]->id, ref[i]->id_len, NULL);
        idmap_cleanup(&m);
        m = next;
        doc_release(ref[i]);
        ref[i] = NULL;
    }
    CHECK(m.root == NULL && idmap_count(&m) == 0 && idmap_check(&m) == 0);
    idmap_cleanup(&m);
    free(ref);
    idmap_test_hash_mask(~(uint64_t)0);
}

static void test_random_full_hash(void)
{
    random_ops(~(uint64_t)0, 3000, 20000);
}

/* 8 bits of hash: 256 paths, so most ids share a path down to the collision level. */
static void test_random_short_hash(void)
{
    random_ops(0xff00000000000000u, 600, 8000);
}

/* No hash at all: every id in one node at the collision level, under a chain of 12. */
static void test_random_no_hash(void)
{
    random_ops(0, 80, 2000);
    idmap_test_hash_mask(0);
    struct idmap m, next;
    struct doc *a = mkdoc(1, 1), *b = mkdoc(2, 1);
    idmap_init(&m);
    next = idmap_put(&m, a, NULL);
    idmap_cleanup(&m);
    m = idmap_put(&next, b, NULL);
    CHECK(idmap_depth(&m, NULL) == 12 && idmap_depth(&next, NULL) == 0);
    CHECK(idmap_get(&m, "1", 1) == a && idmap_get(&m, "2", 1) == b);
    CHECK(idmap_get(&m, "3", 1) == NULL);
    idmap_cleanup(&next);
    idmap_cleanup(&m);
    doc_release(a);
    doc_release(b);
    idmap_test_hash_mask(~(uint64_t)0);
}

/* Bytes the nodes of one version take (nothing else live). */
static uint64_t bytes_of_build(struct doc *const *docs, size_t n)
{
    uint64_t before = idmap_live_bytes();
    struct idmap m;
    CHECK(idmap_build(docs, n, &m, NULL) == 0);
    uint64_t bytes = idmap_live_bytes() - before;
    idmap_cleanup(&m);
    return bytes;
}

/*
 * The shape depends only on the ids: built at once, made by puts in another
 * order, or made with extra ids that are then deleted, a version takes the
 * same bytes in the same number of nodes.
 */
static void canonical(uint64_t mask, size_t n)
{
    struct doc **docs = xmalloc(2 * n * sizeof(*docs));
    struct idmap m, next;

    idmap_test_hash_mask(mask);
    for (size_t i = 0; i < 2 * n; i++)
        docs[i] = mkdoc(i, 1);
    uint64_t want = bytes_of_build(docs, n);
    uint64_t before = idmap_live_bytes(), nodes_before = idmap_live_nodes();
    idmap_init(&m);
    for (size_t k = 0; k < 2 * n; k++) { /* docs n..2n first, then 0..n backwards */
        size_t i = k < n ? n + k : 2 * n - 1 - k;
        next = idmap_put(&m, docs[i], NULL);
        idmap_cleanup(&m);
        m = next;
    }
    for (size_t i = n; i < 2 * n; i++) {
        next = idmap_del(&m, docs[i]->id, docs[i]->id_len, NULL);
        idmap_cleanup(&m);
        m = next;
        CHECK(idmap_check(&m) == 0);
    }
    CHECK(idmap_count(&m) == n);
    CHECK(idmap_live_bytes() - before == want);
    struct idmap built;
    uint64_t nodes_one = idmap_live_nodes() - nodes_before;
    CHECK(idmap_build(docs, n, &built, NULL) == 0);
    CHECK(idmap_live_nodes() - nodes_before == 2 * nodes_one);
    for (size_t i = 0; i < 2 * n; i++)
        CHECK(idmap_get(&built, docs[i]->id, docs[i]->id_len) == (i < n ? docs[i] : NULL));
    idmap_cleanup(&built);
    idmap_cleanup(&m);
    for (size_t i = 0; i < 2 * n; i++)
        doc_release(docs[i]);
    free(docs);
    idmap_test_hash_mask(~(uint64_t)0);
}

static void test_canonical_shape(void)
{
    canonical(~(uint64_t)0, 5000);
    canonical(0xfff0000000000000u, 1000);
    canonical(0, 50);
}

static void test_build(void)
{
    enum { N = 20000 };
    struct doc **docs = xmalloc(N * sizeof(*docs));
    struct idmap m;
    const struct doc *dup = NULL;

    for (size_t i = 0; i < N; i++)
        docs[i] = mkdoc(i, 1);
    CHECK(idmap_build(docs, N, &m, &dup) == 0 && dup == NULL);
    CHECK(idmap_count(&m) == N && idmap_check(&m) == 0);
    for (size_t i = 0; i < N; i++)
        CHECK(get_i(&m, i) == docs[i]);
    CHECK(get_i(&m, N) == NULL);
    CHECK(idmap_get(&m, "", 0) == NULL && idmap_get(&m, "01", 2) == NULL);
    /* idmap_check() sees docs that are not where their hash leads (here: under another hash). */
    idmap_test_hash_mask(0xff00000000000000u);
    CHECK(idmap_check(&m) == -EINVAL);
    idmap_test_hash_mask(~(uint64_t)0);
    CHECK(idmap_check(&m) == 0);
    idmap_cleanup(&m);

    /* A second doc with id "777" anywhere, under each hash: -EEXIST, nothing built. */
    uint64_t masks[] = {~(uint64_t)0, 0xff00000000000000u, 0};
    for (size_t k = 0; k < ARRAY_LEN(masks); k++) {
        size_t n = masks[k] == 0 ? 1000 : N;
        uint64_t nodes = idmap_live_nodes();
        struct doc *twin = mkdoc(777, 2);
        struct doc *keep = docs[n / 2];
        idmap_test_hash_mask(masks[k]);
        docs[n / 2] = twin;
        dup = NULL;
        CHECK(idmap_build(docs, n, &m, &dup) == -EEXIST);
        CHECK(m.root == NULL && idmap_count(&m) == 0 && idmap_live_nodes() == nodes);
        CHECK(dup != NULL && dup->id_len == 3 && memcmp(dup->id, "777", 3) == 0);
        docs[n / 2] = keep;
        doc_release(twin);
        CHECK(idmap_build(docs, n, &m, NULL) == 0 && idmap_check(&m) == 0);
        CHECK(get_i(&m, 777) == docs[777] && get_i(&m, n - 1) == docs[n - 1]);
        idmap_cleanup(&m);
        idmap_test_hash_mask(~(uint64_t)0);
    }
    for (size_t i = 0; i < N; i++)
        doc_release(docs[i]);
    free(docs);
}

/*
 * At 200,000 ids a lookup goes through about log32(200,000) = 3.5 levels (the
 * deepest doc is a matter of chance: two ids share 40 bits in ~2% of keys),
 * and nodes take ~12 bytes a doc.
 */
static void test_depth_and_size(void)
{
    enum { N = 200000 };
    struct doc **docs = xmalloc(N * sizeof(*docs));
    struct idmap m, next;
    uint64_t before = idmap_live_bytes();

    for (size_t i = 0; i < N; i++)
        docs[i] = mkdoc(i, 1);
    CHECK(idmap_build(docs, N, &m, NULL) == 0);
    double mean;
    int depth = idmap_depth(&m, &mean);
    double per_doc = (double)(idmap_live_bytes() - before) / N;
    printf("# %d docs: mean level %.2f, deepest %d; %.1f node bytes a doc\n", N, mean, depth,
           per_doc);
    CHECK(mean > 3 && mean < 4.5 && depth <= 12);
    CHECK(per_doc < 24);
    /* A write copies one path: at most 13 nodes. */
    uint64_t made = idmap_nodes_made();
    struct doc *d = mkdoc(N, 2);
    next = idmap_put(&m, d, NULL);
    CHECK(idmap_nodes_made() - made <= 13);
    doc_release(d);
    idmap_cleanup(&next);
    idmap_cleanup(&m);
    for (size_t i = 0; i < N; i++)
        doc_release(docs[i]);
    free(docs);
}

/* Readers look ids up in versions a writer publishes and drops: the refcounts under threads. */
struct shared {
    pthread_mutex_t lock;
    struct idmap current;
    bool done;
    size_t keys;
};

static void *reader(void *arg)
{
    struct shared *s = arg;
    size_t hits = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        bool done = s->done;
        struct idmap v = idmap_copy(&s->current);
        pthread_mutex_unlock(&s->lock);
        for (size_t i = 0; i < s->keys; i++) {
            struct doc *d = get_i(&v, i);
            if (d != NULL) {
                char id[32];
                int n = snprintf(id, sizeof(id), "%zu", i);
                if (d->id_len != (size_t)n || memcmp(d->id, id, (size_t)n) != 0)
                    abort();
                hits++;
            }
        }
        idmap_cleanup(&v);
        if (done)
            break;
    }
    return (void *)hits;
}

static void test_threads(void)
{
    enum { READERS = 4, WRITES = 3000 };
    struct shared s = {.lock = PTHREAD_MUTEX_INITIALIZER, .keys = 500};
    pthread_t t[READERS];
    size_t hits = 0;

    idmap_init(&s.current);
    for (int i = 0; i < READERS; i++)
        CHECK(pthread_create(&t[i], NULL, reader, &s) == 0);
    for (size_t w = 0; w < WRITES; w++) {
        size_t i = rnd_below(s.keys);
        struct idmap next;
        pthread_mutex_lock(&s.lock);
        struct idmap cur = idmap_copy(&s.current);
        pthread_mutex_unlock(&s.lock);
        if (rnd_below(4) == 0) {
            char id[32];
            int n = snprintf(id, sizeof(id), "%zu", i);
            next = idmap_del(&cur, id, (size_t)n, NULL);
        } else {
            struct doc *d = mkdoc(i, w + 1);
            next = idmap_put(&cur, d, NULL);
            doc_release(d);
        }
        idmap_cleanup(&cur);
        pthread_mutex_lock(&s.lock);
        cur = s.current;
        s.current = next;
        s.done = w + 1 == WRITES;
        pthread_mutex_unlock(&s.lock);
        idmap_cleanup(&cur); /* often the last reference: frees what no reader holds */
    }
    for (int i = 0; i < READERS; i++) {
        void *r;
        CHECK(pthread_join(t[i], &r) == 0);
        hits += (size_t)r;
    }
    CHECK(hits > 0 && idmap_check(&s.current) == 0);
    idmap_cleanup(&s.current);
}

static void test_nothing_leaks(void)
{
    CHECK(idmap_live_nodes() == 0);
    CHECK(idmap_live_bytes() == 0);
    CHECK(doc_live() == 0);
}

static const struct test_case all_cases[] = {
    {"SipHash-2-4 and SipHash-1-3 test vectors", test_siphash_vectors},
    {"empty map", test_empty},
    {"random puts/deletes against a reference, old versions unchanged", test_random_full_hash},
    {"the same on an 8-bit hash (deep shared paths, collision nodes)", test_random_short_hash},
    {"the same with every hash equal (one collision node)", test_random_no_hash},
    {"shape depends only on the ids (build, puts, puts then deletes)", test_canonical_shape},
    {"bulk build, and duplicate ids refused under each hash", test_build},
    {"depth and node bytes at 200k ids; a write copies one path", test_depth_and_size},
    {"readers on versions a writer publishes and drops", test_threads},
    {"releasing every version frees every node and doc", test_nothing_leaks},
    {NULL, NULL},
};

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* results interleave sanely with sanitizer reports */
    return run_cases(all_cases);
}
