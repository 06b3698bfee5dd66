/* tests/unit/test_pmap.c -- the persistent map against a plain reference array. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/doc.h"
#include "store/pmap.h"
#include "util.h"

#include "check.h"
#include "testdocs.h"

/* A doc keyed 'id' (any length) with seq 'seq'. */
static struct doc *doc_new_bytes_or_die(const char *id, uint64_t seq)
{
    struct doc *d;
    if (doc_new_bytes(id, strlen(id), seq, 1, "{}", 2, &d) != 0)
        abort();
    return d;
}

static struct pmap_key key_id(const char *id)
{
    struct pmap_key k = {.id = id, .len = strlen(id)};
    return k;
}

static struct pmap_key key_seq(uint64_t seq)
{
    struct pmap_key k = {.seq = seq};
    return k;
}

/* ceil(log2(n + 1)), without libm. */
static int log2n(size_t n)
{
    int k = 0;
    while (k < 63 && ((size_t)1 << k) < n + 1)
        k++;
    return k;
}

/*
 * Height bound from the weight invariant: each child weighs at most 3/4 of
 * its parent, so the height h satisfies (4/3)^(h-1) <= n + 1.
 */
static int max_height(size_t n)
{
    int h = 0;
    for (double w = 4.0 / 3.0; w <= (double)n + 1; w *= 4.0 / 3.0)
        h++;
    return h + 1;
}

/*
 * The reference model: keys 0..K-1, their rank in the map's order, and for
 * each rank whether it is present and with which revision.
 */
#define K 2000

struct model {
    enum pmap_order order;
    size_t rank_of[K]; /* key -> position in the map's order */
    size_t key_at[K];  /* position -> key */
    uint64_t rev[K];   /* by position; 0 = absent */
    size_t count;
};

static enum pmap_order sort_order;

static int cmp_keys(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    char sx[32], sy[32];

    if (sort_order == PMAP_BY_SEQ)
        return x < y ? -1 : x > y;
    snprintf(sx, sizeof(sx), "%zu", x);
    snprintf(sy, sizeof(sy), "%zu", y);
    size_t lx = strlen(sx), ly = strlen(sy), n = lx < ly ? lx : ly;
    int c = memcmp(sx, sy, n);
    return c != 0 ? c : (lx < ly ? -1 : lx > ly);
}

static void model_init(struct model *md, enum pmap_order order)
{
    md->order = order;
    for (size_t i = 0; i < K; i++)
        md->key_at[i] = i;
    sort_order = order;
    qsort(md->key_at, K, sizeof(md->key_at[0]), cmp_keys);
    for (size_t i = 0; i < K; i++) {
        md->rank_of[md->key_at[i]] = i;
        md->rev[i] = 0;
    }
    md->count = 0;
}

static struct pmap_key model_key(const struct model *md, size_t key, char *buf, size_t cap)
{
    if (md->order == PMAP_BY_SEQ)
        return key_seq(key);
    snprintf(buf, cap, "%zu", key);
    return key_id(buf);
}

/* Every doc, in order, against the model; plus select, rank and seeks. */
static void check_against(const struct pmap *m, const struct model *md)
{
    struct pmap_iter it;
    struct doc *d;
    size_t pos = 0, nth = 0;

    CHECK(pmap_count(m) == md->count);
    CHECK(pmap_check(m) == 0);
    pmap_iter_init(&it, m, 0);
    while ((d = pmap_iter_next(&it)) != NULL) {
        while (pos < K && md->rev[pos] == 0)
            pos++;
        CHECK(pos < K);
        if (pos >= K)
            break;
        CHECK(d->seq == md->key_at[pos]);
        CHECK(d->rev == md->rev[pos]);
        CHECK(pmap_at(m, nth) == d);
        char buf[32];
        struct pmap_key k = model_key(md, md->key_at[pos], buf, sizeof(buf));
        CHECK(pmap_rank(m, &k) == nth);
        CHECK(pmap_get(m, &k) == d);
        pos++;
        nth++;
    }
    CHECK(nth == md->count);
    CHECK(pmap_at(m, md->count) == NULL);

    /* Seeking to a random position yields the same tail as walking there. */
    size_t start = md->count ? rnd_below(md->count + 1) : 0;
    pmap_iter_init(&it, m, start);
    for (size_t i = start; i < md->count; i++)
        CHECK(pmap_iter_next(&it) == pmap_at(m, i));
    CHECK(pmap_iter_next(&it) == NULL);
}

/* Random puts and deletes, checked after every operation (point) and every 250 (whole map). */
static void random_ops(enum pmap_order order, uint64_t seed)
{
    static struct model md;
    struct pmap m;
    uint64_t rev = 0;

    rng_state = seed;
    model_init(&md, order);
    pmap_init(&m, order);
    for (int op = 0; op < 20000; op++) {
        size_t key = rnd_below(K);
        size_t pos = md.rank_of[key];
        char buf[32];
        struct pmap_key k = model_key(&md, key, buf, sizeof(buf));
        struct pmap next;

        if (rnd_below(3) != 0) {
            struct doc *d = mkdoc(key, ++rev);
            bool replaced = true;
            next = pmap_put(&m, d, &replaced);
            doc_release(d);
            CHECK(replaced == (md.rev[pos] != 0));
            if (md.rev[pos] == 0)
                md.count++;
            md.rev[pos] = rev;
        } else {
            bool found = true;
            next = pmap_del(&m, &k, &found);
            CHECK(found == (md.rev[pos] != 0));
            if (md.rev[pos] != 0)
                md.count--;
            md.rev[pos] = 0;
        }
        pmap_cleanup(&m);
        m = next;
        struct doc *got = pmap_get(&m, &k);
        CHECK(md.rev[pos] == 0 ? got == NULL : got != NULL && got->rev == md.rev[pos]);
        CHECK(pmap_count(&m) == md.count);
        if (op % 250 == 0)
            check_against(&m, &md);
    }
    check_against(&m, &md);
    pmap_cleanup(&m);
}

static void test_random_by_id(void)
{
    random_ops(PMAP_BY_ID, 42);
}

static void test_random_by_seq(void)
{
    random_ops(PMAP_BY_SEQ, 7);
}

static void test_empty(void)
{
    struct pmap m;
    struct pmap_iter it;
    struct pmap_key k = key_id("x");
    bool found = true;

    pmap_init(&m, PMAP_BY_ID);
    CHECK(pmap_count(&m) == 0);
    CHECK(pmap_get(&m, &k) == NULL);
    CHECK(pmap_at(&m, 0) == NULL);
    CHECK(pmap_rank(&m, &k) == 0);
    CHECK(pmap_height(&m) == 0);
    pmap_iter_init(&it, &m, 0);
    CHECK(pmap_iter_next(&it) == NULL);
    pmap_iter_init(&it, &m, 5);
    CHECK(pmap_iter_next(&it) == NULL);
    uint64_t made = pmap_nodes_made();
    struct pmap d = pmap_del(&m, &k, &found);
    CHECK(!found);
    CHECK(d.root == NULL);
    CHECK(pmap_nodes_made() == made);
    pmap_cleanup(&d);
    pmap_cleanup(&m);
    pmap_cleanup(&m); /* cleanup leaves an empty map; again is harmless */
}

/* Builds a map of 'n' docs inserted in the given key pattern. */
static struct pmap build(enum pmap_order order, size_t n, int pattern)
{
    struct pmap m;

    pmap_init(&m, order);
    for (size_t i = 0; i < n; i++) {
        size_t key = pattern == 0 ? i : pattern == 1 ? n - 1 - i : (size_t)rnd();
        struct doc *d = mkdoc(key, 1);
        struct pmap next = pmap_put(&m, d, NULL);
        doc_release(d);
        pmap_cleanup(&m);
        m = next;
    }
    return m;
}

static void test_balance(void)
{
    static const size_t sizes[] = {1, 2, 3, 10, 100, 1000, 100000};
    rng_state = 99;
    for (size_t s = 0; s < ARRAY_LEN(sizes); s++) {
        for (int pattern = 0; pattern < 3; pattern++) {
            for (int o = 0; o < 2; o++) {
                enum pmap_order order = o ? PMAP_BY_SEQ : PMAP_BY_ID;
                struct pmap m = build(order, sizes[s], pattern);
                int h = pmap_height(&m);
                CHECK(pmap_count(&m) == sizes[s] || pattern == 2);
                CHECK(h <= max_height(pmap_count(&m)));
                CHECK(pmap_check(&m) == 0);
                if (sizes[s] == 100000 && pattern == 0 && o == 1)
                    printf("# height %d for %zu sequential keys (bound %d, ceil(log2 n) = %d)\n", h,
                           sizes[s], max_height(sizes[s]), log2n(sizes[s]));
                pmap_cleanup(&m);
            }
        }
    }
    /* Deleting down from a large tree keeps it balanced too. */
    struct pmap m = build(PMAP_BY_SEQ, 20000, 0);
    for (size_t i = 0; i < 19990; i++) {
        struct pmap_key k = key_seq(i % 2 ? i : 19999 - i);
        bool found = false;
        struct pmap next = pmap_del(&m, &k, &found);
        pmap_cleanup(&m);
        m = next;
        if (i % 1000 == 0) {
            CHECK(pmap_check(&m) == 0);
            CHECK(pmap_height(&m) <= max_height(pmap_count(&m)));
        }
    }
    CHECK(pmap_check(&m) == 0);
    pmap_cleanup(&m);
}

/* A saved version is unchanged, element by element, after 1000 later writes. */
static void test_sharing(void)
{
    struct pmap m, saved;
    size_t n = 5000;
    uint64_t *revs = xcalloc(n, sizeof(*revs));
    struct doc **ptrs = xcalloc(n, sizeof(*ptrs));

    rng_state = 1234;
    m = build(PMAP_BY_SEQ, n, 0);
    saved = pmap_copy(&m);
    for (size_t i = 0; i < n; i++) {
        ptrs[i] = pmap_at(&saved, i);
        revs[i] = ptrs[i]->rev;
    }
    uint64_t live_before = pmap_live_nodes();
    for (int w = 0; w < 1000; w++) {
        size_t key = rnd_below(n + 500);
        struct pmap next;
        if (w % 3 == 2) {
            struct pmap_key k = key_seq(key);
            next = pmap_del(&m, &k, NULL);
        } else {
            struct doc *d = mkdoc(key, 2 + (uint64_t)w);
            next = pmap_put(&m, d, NULL);
            doc_release(d);
        }
        pmap_cleanup(&m);
        m = next;
    }
    CHECK(pmap_count(&saved) == n);
    CHECK(pmap_check(&saved) == 0);
    struct pmap_iter it;
    pmap_iter_init(&it, &saved, 0);
    for (size_t i = 0; i < n; i++) {
        struct doc *d = pmap_iter_next(&it);
        CHECK(d == ptrs[i]);
        CHECK(d != NULL && d->seq == i && d->rev == revs[i] && d->rev == 1);
    }
    CHECK(pmap_iter_next(&it) == NULL);
    /* Sharing: two versions 1000 writes apart hold far fewer than 2n nodes. */
    printf("# two versions of %zu docs, 1000 writes apart: %" PRIu64 " live nodes\n", n,
           pmap_live_nodes());
    CHECK(pmap_live_nodes() < live_before + 1000 * (uint64_t)(4 * log2n(n) + 8));
    CHECK(pmap_live_nodes() < 2 * n);

    /* Releasing the newer version leaves the old one intact, and vice versa. */
    pmap_cleanup(&m);
    CHECK(pmap_count(&saved) == n && pmap_check(&saved) == 0);
    CHECK(pmap_live_nodes() == n);
    pmap_cleanup(&saved);
    free(revs);
    free(ptrs);
}

/* Many versions alive at once, each still exactly what it was. */
static void test_many_versions(void)
{
    enum { V = 300 };
    struct pmap vers[V];
    struct pmap cur;

    rng_state = 555;
    pmap_init(&cur, PMAP_BY_ID);
    for (int v = 0; v < V; v++) {
        struct doc *d = mkdoc((size_t)v, (uint64_t)v + 1);
        struct pmap next = pmap_put(&cur, d, NULL);
        doc_release(d);
        pmap_cleanup(&cur);
        cur = next;
        if (v % 4 == 3) {
            char id[32];
            snprintf(id, sizeof(id), "%d", v - 2);
            struct pmap_key k = key_id(id);
            next = pmap_del(&cur, &k, NULL);
            pmap_cleanup(&cur);
            cur = next;
        }
        vers[v] = pmap_copy(&cur);
    }
    pmap_cleanup(&cur);
    for (int v = 0; v < V; v++) {
        size_t expect = 0;
        for (int i = 0; i <= v; i++) {
            char id[32];
            snprintf(id, sizeof(id), "%d", i);
            struct pmap_key k = key_id(id);
            /* key i was deleted at step i + 2 when (i + 2) % 4 == 3 */
            bool present = !((i + 2) % 4 == 3 && i + 2 <= v);
            struct doc *d = pmap_get(&vers[v], &k);
            CHECK(present ? d != NULL && d->rev == (uint64_t)i + 1 : d == NULL);
            expect += present;
        }
        CHECK(pmap_count(&vers[v]) == expect);
    }
    for (int v = 0; v < V; v++)
        pmap_cleanup(&vers[v]);
}

/* At 100k docs, one put or delete allocates O(log n) nodes. */
static void test_write_cost(void)
{
    size_t n = 100000;
    int bound = 4 * log2n(n) + 8;
    uint64_t worst_put = 0, worst_del = 0, total_put = 0, total_del = 0;
    int rounds = 2000;

    for (int pattern = 0; pattern < 3; pattern += 2) {
        rng_state = 77;
        struct pmap m = build(PMAP_BY_SEQ, n, pattern == 0 ? 0 : 2);
        for (int i = 0; i < rounds; i++) {
            size_t key = pattern == 0 ? n + (size_t)i : (size_t)rnd();
            struct doc *d = mkdoc(key, 2);
            uint64_t before = pmap_nodes_made();
            struct pmap next = pmap_put(&m, d, NULL);
            uint64_t cost = pmap_nodes_made() - before;
            doc_release(d);
            worst_put = cost > worst_put ? cost : worst_put;
            total_put += cost;
            pmap_cleanup(&m);
            m = next;

            struct pmap_key k =
                key_seq(pattern == 0 ? (size_t)i : pmap_at(&m, rnd_below(pmap_count(&m)))->seq);
            before = pmap_nodes_made();
            next = pmap_del(&m, &k, NULL);
            cost = pmap_nodes_made() - before;
            worst_del = cost > worst_del ? cost : worst_del;
            total_del += cost;
            pmap_cleanup(&m);
            m = next;
        }
        pmap_cleanup(&m);
    }
    printf("# nodes allocated per write at %zu docs: put mean %.1f worst %" PRIu64
           ", delete mean %.1f worst %" PRIu64 " (bound %d)\n",
           n, (double)total_put / (2 * rounds), worst_put, (double)total_del / (2 * rounds),
           worst_del, bound);
    CHECK(worst_put <= (uint64_t)bound);
    CHECK(worst_del <= (uint64_t)bound);
}

/* Replacing keeps the position, the count, and does not disturb neighbours. */
static void test_replace(void)
{
    struct pmap m = build(PMAP_BY_ID, 100, 0);
    struct doc *d = mkdoc(42, 9);
    struct pmap_key k = key_id("42");
    size_t rank = pmap_rank(&m, &k);
    bool replaced = false;
    struct pmap next = pmap_put(&m, d, &replaced);

    CHECK(replaced);
    CHECK(pmap_count(&next) == 100);
    CHECK(pmap_get(&next, &k) == d);
    CHECK(pmap_get(&m, &k) != d && pmap_get(&m, &k)->rev == 1);
    CHECK(pmap_rank(&next, &k) == rank);
    CHECK(pmap_at(&next, rank) == d);
    doc_release(d);
    pmap_cleanup(&next);
    pmap_cleanup(&m);
}

/* Bulk building: balanced, 1 node per doc, and an ordinary version afterwards. */
static void test_from_sorted(void)
{
    static const size_t sizes[] = {0, 1, 2, 3, 7, 8, 1000, 65537};

    for (size_t s = 0; s < ARRAY_LEN(sizes); s++) {
        size_t n = sizes[s];
        struct doc **docs = xcalloc(n ? n : 1, sizeof(*docs));
        for (size_t i = 0; i < n; i++)
            docs[i] = mkdoc(i * 2, 1);
        uint64_t made = pmap_nodes_made();
        struct pmap m = pmap_from_sorted(PMAP_BY_SEQ, docs, n);
        CHECK(pmap_nodes_made() - made == n);
        CHECK(pmap_count(&m) == n && pmap_check(&m) == 0);
        CHECK(pmap_height(&m) <= log2n(n));
        for (size_t i = 0; i < n; i++)
            CHECK(pmap_at(&m, i) == docs[i]);
        /* It takes puts and deletes like any other version. */
        struct doc *d = mkdoc(1, 2);
        struct pmap m2 = pmap_put(&m, d, NULL);
        struct pmap_key k = key_seq(0);
        struct pmap m3 = pmap_del(&m2, &k, NULL);
        CHECK(pmap_check(&m2) == 0 && pmap_check(&m3) == 0);
        CHECK(pmap_count(&m3) == (n ? n : 1));
        CHECK(pmap_get(&m3, &(struct pmap_key){.seq = 1}) == d);
        CHECK(pmap_count(&m) == n);
        doc_release(d);
        pmap_cleanup(&m3);
        pmap_cleanup(&m2);
        pmap_cleanup(&m);
        for (size_t i = 0; i < n; i++)
            doc_release(docs[i]);
        free(docs);
    }
    /* By id, the docs must come in bytewise order: "10" < "2". */
    struct doc *a = mkdoc(10, 1), *b = mkdoc(2, 1);
    struct doc *v[] = {a, b};
    struct pmap m = pmap_from_sorted(PMAP_BY_ID, v, 2);
    CHECK(pmap_cmp(PMAP_BY_ID, a, b) < 0 && pmap_cmp(PMAP_BY_SEQ, a, b) > 0);
    CHECK(pmap_at(&m, 0) == a && pmap_check(&m) == 0);
    pmap_cleanup(&m);
    doc_release(a);
    doc_release(b);
}

/* Runs last: every version above was released, so nothing may be left. */
/* Bytewise, then shorter first: the by-id order, for qsort over id strings. */
static int cmp_idstr(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t lx = strlen(x), ly = strlen(y), n = lx < ly ? lx : ly;
    int c = memcmp(x, y, n);
    return c != 0 ? c : (lx < ly ? -1 : lx > ly);
}

/*
 * Nodes keep the first 8 bytes of an id and decide most comparisons alone;
 * ids that share those bytes, end inside them or run past them must still
 * be found, ranked and ordered exactly as by the doc's whole id.
 */
static void test_node_key_prefix(void)
{
    enum { N = 600 };
    static char ids[N][16];
    char *sorted[N];
    struct doc *docs[N];
    struct pmap m, t;
    size_t n = 0;

    /* lengths 1..13 over "abc", many sharing their first 7, 8 or 9 bytes */
    while (n < N) {
        size_t len = 1 + rnd() % 13;
        for (size_t i = 0; i < len; i++)
            ids[n][i] = (i < 6 || rnd() % 4 == 0) ? 'a' : "abc"[rnd() % 3];
        ids[n][len] = '\0';
        bool dup = false;
        for (size_t j = 0; j < n && !dup; j++)
            dup = strcmp(ids[j], ids[n]) == 0;
        if (!dup)
            n++;
    }
    pmap_init(&m, PMAP_BY_ID);
    for (size_t i = 0; i < N; i++) {
        docs[i] = doc_new_bytes_or_die(ids[i], i + 1);
        t = pmap_put(&m, docs[i], NULL);
        pmap_cleanup(&m);
        m = t;
        sorted[i] = ids[i];
    }
    CHECK(pmap_check(&m) == 0 && pmap_count(&m) == N);
    qsort(sorted, N, sizeof(*sorted), cmp_idstr);
    struct pmap_iter it;
    pmap_iter_init(&it, &m, 0);
    for (size_t i = 0; i < N; i++) {
        struct doc *d = pmap_iter_next(&it);
        CHECK(d != NULL && strcmp(d->id, sorted[i]) == 0);
        struct pmap_key k = key_id(sorted[i]);
        CHECK(pmap_get(&m, &k) == d && pmap_rank(&m, &k) == i);
    }
    /* absent probes: one byte more or less, a NUL inside the first 8 bytes */
    static const char *const absent[] = {"", "c", "aaaaaab", "aaaaaaaac", "aaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < ARRAY_LEN(absent); i++) {
        bool known = false;
        for (size_t j = 0; j < N; j++)
            known |= strcmp(ids[j], absent[i]) == 0;
        struct pmap_key k = key_id(absent[i]);
        CHECK(known || pmap_get(&m, &k) == NULL);
    }
    for (size_t j = 0; j < N; j++) {
        size_t len = strlen(ids[j]);
        if (len >= 8)
            continue;
        char withnul[16];
        memcpy(withnul, ids[j], len);
        withnul[len] = '\0';
        struct pmap_key k = {.id = withnul, .len = len + 1}; /* the id and a NUL byte */
        CHECK(pmap_get(&m, &k) == NULL);
    }
    /* delete half, in random order of position, and check again */
    for (size_t i = 0; i < N; i += 2) {
        struct pmap_key k = key_id(ids[i]);
        bool found = false;
        t = pmap_del(&m, &k, &found);
        CHECK(found);
        pmap_cleanup(&m);
        m = t;
    }
    CHECK(pmap_check(&m) == 0 && pmap_count(&m) == N / 2);
    for (size_t i = 0; i < N; i++) {
        struct pmap_key k = key_id(ids[i]);
        CHECK((pmap_get(&m, &k) != NULL) == (i % 2 == 1));
    }
    pmap_cleanup(&m);
    for (size_t i = 0; i < N; i++)
        doc_release(docs[i]);
}

static void test_nothing_leaks(void)
{
    CHECK(pmap_live_nodes() == 0);
    CHECK(doc_live() == 0);
}

static const struct test_case all_cases[] = {
    {"empty map", test_empty},
    {"random puts/deletes by id against a reference", test_random_by_id},
    {"random puts/deletes by seq against a reference", test_random_by_seq},
    {"replace keeps position", test_replace},
    {"height stays within the weight-balance bound", test_balance},
    {"an old version is unchanged after 1000 writes", test_sharing},
    {"300 live versions each keep their contents", test_many_versions},
    {"a write allocates O(log n) nodes at 100k", test_write_cost},
    {"bulk build from sorted docs", test_from_sorted},
    {"node keys: ids around the 8-byte prefix", test_node_key_prefix},
    {"releasing every version frees every node and doc", test_nothing_leaks},
    {NULL, NULL},
};

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* results interleave sanely with sanitizer reports */
    return run_cases(all_cases);
}
