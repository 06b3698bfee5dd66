/* src/store/idmap.c -- see idmap.h. */
#include "store/idmap.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util.h"

/*
 * A node below COLLIDE_DEPTH holds one slot per set bit of 'bitmap', in bit
 * order: bit i set means some id's hash has piece i at this depth. A slot is
 * a doc, or a child node tagged with SLOT_NODE in its low bit (docs and
 * nodes come from malloc, so that bit is free). A node at COLLIDE_DEPTH holds
 * 'bitmap' docs whose hashes agree in every bit the trie uses.
 *
 * Canonical shape: a node other than the root holds at least two docs in its
 * subtree, and a node other than the root that has one slot has a child node
 * there (one doc alone is kept inline in the parent). A node is immutable once
 * built except for 'refs'; it owns one reference to each child and each doc.
 */
struct idmap_node {
    _Atomic uint32_t refs;
    uint32_t bitmap;
    uintptr_t slot[];
};

#define BITS 5
#define COLLIDE_DEPTH 12 /* 12 pieces of 5 bits: the hash's top 60 bits */
#define SLOT_NODE ((uintptr_t)1)

/* Relaxed: statistics, not synchronisation. */
static _Atomic uint64_t live_nodes;
static _Atomic uint64_t nodes_made;
static _Atomic uint64_t live_bytes;

/* ---- the hash ---- */

static uint64_t rotl(uint64_t x, int b)
{
    return x << b | x >> (64 - b);
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

#define SIPROUND(v0, v1, v2, v3)                                                                  \
    do {                                                                                          \
        v0 += v1;                                                                                 \
        v1 = rotl(v1, 13);                                                                        \
        v1 ^= v0;                                                                                 \
        v0 = rotl(v0, 32);                                                                        \
        v2 += v3;                                                                                 \
        v3 = rotl(v3, 16);                                                                        \
        v3 ^= v2;                                                                                 \
        v0 += v3;                                                                                 \
        v3 = rotl(v3, 21);                                                                        \
        v3 ^= v0;                                                                                 \
        v2 += v1;                                                                                 \
        v1 = rotl(v1, 17);                                                                        \
        v1 ^= v2;                                                                                 \
        v2 = rotl(v2, 32);                                                                        \
    } while (0)

/* SipHash (Aumasson and Bernstein, 2012) with c compression and d finalization rounds. */
uint64_t idmap_siphash(const uint8_t key[16], int c_rounds, int d_rounds, const void *data,
                       size_t n)
{
    const uint8_t *p = data;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575u, v1 = k1 ^ 0x646f72616e646f6du;
    uint64_t v2 = k0 ^ 0x6c7967656e657261u, v3 = k1 ^ 0x7465646279746573u;
    uint64_t m;
    size_t full = n & ~(size_t)7;

    for (size_t i = 0; i < full; i += 8) {
        m = load_le64(p + i);
        v3 ^= m;
        for (int r = 0; r < c_rounds; r++)
            SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    m = (uint64_t)n << 56;
    for (size_t i = full; i < n; i++)
        m |= (uint64_t)p[i] << (8 * (i - full));
    v3 ^= m;
    for (int r = 0; r < c_rounds; r++)
        SIPROUND(v0, v1, v2, v3);
    v0 ^= m;
    v2 ^= 0xff;
    for (int r = 0; r < d_rounds; r++)
        SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint8_t hash_key[16];
static pthread_once_t hash_key_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t hash_mask = ~(uint64_t)0; /* tests only; relaxed */

static void hash_key_init(void)
{
    size_t got = 0;
    while (got < sizeof(hash_key)) {
        ssize_t n = getrandom(hash_key + got, sizeof(hash_key) - got, 0);
        if (n < 0 && errno != EINTR)
            panic("idmap: getrandom: %s", strerror(errno));
        if (n > 0)
            got += (size_t)n;
    }
}

/*
 * The key is drawn by the first idmap_put() or idmap_build(), the only ways
 * docs enter a map, so that a lookup (which hashes only when the map holds
 * docs) makes no pthread_once call: the key is published with the version.
 */
static uint64_t hash_id(const char *id, size_t len)
{
    return idmap_siphash(hash_key, 1, 3, id, len) &
           atomic_load_explicit(&hash_mask, memory_order_relaxed);
}

void idmap_test_hash_mask(uint64_t mask)
{
    atomic_store_explicit(&hash_mask, mask, memory_order_relaxed);
}

/* The hash's piece that picks the slot at 'depth' (< COLLIDE_DEPTH): top bits first. */
static unsigned piece(uint64_t h, int depth)
{
    return (unsigned)(h >> (64 - BITS * (depth + 1))) & ((1u << BITS) - 1);
}

/* ---- nodes and slots ---- */

/*
 * Bits set in 'x'. Written out because Debian builds for baseline x86-64,
 * where __builtin_popcount is a call into libgcc (a lookup does ~5).
 */
static unsigned popcount32(uint32_t x)
{
    x = x - (x >> 1 & 0x55555555u);
    x = (x & 0x33333333u) + (x >> 2 & 0x33333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0fu;
    return (x * 0x01010101u) >> 24;
}

static bool is_node(uintptr_t v)
{
    return (v & SLOT_NODE) != 0;
}

static struct idmap_node *as_node(uintptr_t v)
{
    return (struct idmap_node *)(v & ~SLOT_NODE);
}

static struct doc *as_doc(uintptr_t v)
{
    return (struct doc *)v;
}

static uintptr_t node_slot(struct idmap_node *n)
{
    return (uintptr_t)n | SLOT_NODE;
}

static unsigned nslots(const struct idmap_node *n, int depth)
{
    return depth == COLLIDE_DEPTH ? n->bitmap : popcount32(n->bitmap);
}

static size_t node_bytes(unsigned slots)
{
    return sizeof(struct idmap_node) + slots * sizeof(uintptr_t);
}

/* A node with room for 'slots' slots (not filled) and 'bitmap'. */
static struct idmap_node *mk(uint32_t bitmap, unsigned slots)
{
    struct idmap_node *n = xmalloc(node_bytes(slots));

    atomic_init(&n->refs, 1);
    n->bitmap = bitmap;
    atomic_fetch_add_explicit(&live_nodes, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&nodes_made, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&live_bytes, node_bytes(slots), memory_order_relaxed);
    return n;
}

static struct idmap_node *ref(struct idmap_node *n)
{
    uint32_t old = atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
    if (old == 0 || old == UINT32_MAX)
        panic("idmap: refcount %" PRIu32 " on node %p", old, (void *)n);
    return n;
}

static void unref(struct idmap_node *n, int depth);

/* One more reference to whatever slot value 'v' is. */
static uintptr_t slot_retain(uintptr_t v)
{
    if (is_node(v))
        ref(as_node(v));
    else
        doc_retain(as_doc(v));
    return v;
}

static void slot_release(uintptr_t v, int depth)
{
    if (is_node(v))
        unref(as_node(v), depth);
    else
        doc_release(as_doc(v));
}

/* Frees the nodes (and docs) of the subtree at 'depth' that nothing else holds. */
static void unref(struct idmap_node *n, int depth)
{
    uint32_t old = atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel);
    unsigned k;

    if (old == 0)
        panic("idmap: refcount underflow on node %p", (void *)n);
    if (old != 1)
        return;
    k = nslots(n, depth);
    for (unsigned i = 0; i < k; i++)
        slot_release(n->slot[i], depth + 1);
    free(n);
    atomic_fetch_sub_explicit(&live_nodes, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&live_bytes, node_bytes(k), memory_order_relaxed);
}

/* A copy of 'n' (at 'depth') with slot 'pos' set to 'v' (owned); the other slots retained. */
static struct idmap_node *copy_set(const struct idmap_node *n, int depth, unsigned pos,
                                   uintptr_t v)
{
    unsigned k = nslots(n, depth);
    struct idmap_node *c = mk(n->bitmap, k);

    for (unsigned i = 0; i < k; i++)
        c->slot[i] = i == pos ? v : slot_retain(n->slot[i]);
    return c;
}

/* A copy of 'n' with 'v' (owned) inserted at 'pos' and 'bitmap' as its new bitmap. */
static struct idmap_node *copy_insert(const struct idmap_node *n, int depth, unsigned pos,
                                      uint32_t bitmap, uintptr_t v)
{
    unsigned k = nslots(n, depth);
    struct idmap_node *c = mk(bitmap, k + 1);

    for (unsigned i = 0; i < pos; i++)
        c->slot[i] = slot_retain(n->slot[i]);
    c->slot[pos] = v;
    for (unsigned i = pos; i < k; i++)
        c->slot[i + 1] = slot_retain(n->slot[i]);
    return c;
}

/* A copy of 'n' without slot 'pos', with 'bitmap' as its new bitmap. */
static struct idmap_node *copy_remove(const struct idmap_node *n, int depth, unsigned pos,
                                      uint32_t bitmap)
{
    unsigned k = nslots(n, depth);
    struct idmap_node *c = mk(bitmap, k - 1);

    for (unsigned i = 0, j = 0; i < k; i++)
        if (i != pos)
            c->slot[j++] = slot_retain(n->slot[i]);
    return c;
}

static bool same_id(const struct doc *d, const char *id, size_t len)
{
    return d->id_len == len && memcmp(d->id, id, len) == 0;
}

/* ---- readers ---- */

void idmap_init(struct idmap *m)
{
    m->root = NULL;
    m->count = 0;
}

void idmap_cleanup(struct idmap *m)
{
    if (m->root != NULL)
        unref(m->root, 0);
    idmap_init(m);
}

struct idmap idmap_copy(const struct idmap *m)
{
    struct idmap c = {.root = m->root != NULL ? ref(m->root) : NULL, .count = m->count};
    return c;
}

size_t idmap_count(const struct idmap *m)
{
    return m->count;
}

/* idmap_get() on a map with docs, with the id's hash 'h' at hand. */
static struct doc *get(const struct idmap *m, const char *id, size_t len, uint64_t h)
{
    const struct idmap_node *n = m->root;

    for (int depth = 0;; depth++) {
        if (depth == COLLIDE_DEPTH) {
            for (unsigned i = 0; i < n->bitmap; i++)
                if (same_id(as_doc(n->slot[i]), id, len))
                    return as_doc(n->slot[i]);
            return NULL;
        }
        uint32_t bit = 1u << piece(h, depth);
        if ((n->bitmap & bit) == 0)
            return NULL;
        uintptr_t v = n->slot[popcount32(n->bitmap & (bit - 1))];
        if (!is_node(v))
            return same_id(as_doc(v), id, len) ? as_doc(v) : NULL;
        n = as_node(v);
    }
}

struct doc *idmap_get(const struct idmap *m, const char *id, size_t len)
{
    return m->root != NULL ? get(m, id, len, hash_id(id, len)) : NULL;
}

/* ---- writers ---- */

/* New node at 'depth' holding docs 'a' and 'b' (different ids; both retained here). */
static struct idmap_node *pair(struct doc *a, uint64_t ha, struct doc *b, uint64_t hb, int depth)
{
    struct idmap_node *n;

    if (depth == COLLIDE_DEPTH) {
        n = mk(2, 2);
        n->slot[0] = (uintptr_t)doc_retain(a);
        n->slot[1] = (uintptr_t)doc_retain(b);
        return n;
    }
    unsigned pa = piece(ha, depth), pb = piece(hb, depth);
    if (pa == pb) {
        n = mk(1u << pa, 1);
        n->slot[0] = node_slot(pair(a, ha, b, hb, depth + 1));
        return n;
    }
    n = mk(1u << pa | 1u << pb, 2);
    n->slot[pa < pb ? 0 : 1] = (uintptr_t)doc_retain(a);
    n->slot[pa < pb ? 1 : 0] = (uintptr_t)doc_retain(b);
    return n;
}

static struct idmap_node *put(const struct idmap_node *n, int depth, struct doc *d, uint64_t h,
                              struct doc **old)
{
    if (depth == COLLIDE_DEPTH) {
        for (unsigned i = 0; i < n->bitmap; i++) {
            if (same_id(as_doc(n->slot[i]), d->id, d->id_len)) {
                *old = as_doc(n->slot[i]);
                return copy_set(n, depth, i, (uintptr_t)doc_retain(d));
            }
        }
        return copy_insert(n, depth, n->bitmap, n->bitmap + 1, (uintptr_t)doc_retain(d));
    }
    uint32_t bit = 1u << piece(h, depth);
    unsigned pos = popcount32(n->bitmap & (bit - 1));
    if ((n->bitmap & bit) == 0)
        return copy_insert(n, depth, pos, n->bitmap | bit, (uintptr_t)doc_retain(d));
    uintptr_t v = n->slot[pos];
    if (is_node(v))
        return copy_set(n, depth, pos, node_slot(put(as_node(v), depth + 1, d, h, old)));
    struct doc *here = as_doc(v);
    if (same_id(here, d->id, d->id_len)) {
        *old = here;
        return copy_set(n, depth, pos, (uintptr_t)doc_retain(d));
    }
    struct idmap_node *sub = pair(here, hash_id(here->id, here->id_len), d, h, depth + 1);
    return copy_set(n, depth, pos, node_slot(sub));
}

struct idmap idmap_put(const struct idmap *m, struct doc *d, struct doc **old)
{
    struct idmap r = {.count = m->count};
    struct doc *was = NULL;
    uint64_t h;

    pthread_once(&hash_key_once, hash_key_init); /* docs enter a map only here and in build */
    h = hash_id(d->id, d->id_len);
    if (m->root == NULL) {
        r.root = mk(1u << piece(h, 0), 1);
        r.root->slot[0] = (uintptr_t)doc_retain(d);
    } else {
        r.root = put(m->root, 0, d, h, &was);
    }
    r.count += was == NULL;
    if (old != NULL)
        *old = was;
    return r;
}

/*
 * What is left of the subtree 'n' at 'depth' without the doc keyed id[0..len),
 * which it holds, as an owned slot value: a node, a lone doc (to go inline in
 * the parent), or 0 when nothing is left (only the root can hold one doc).
 */
static uintptr_t del(const struct idmap_node *n, int depth, const char *id, size_t len, uint64_t h)
{
    if (depth == COLLIDE_DEPTH) {
        unsigned at = 0;
        while (!same_id(as_doc(n->slot[at]), id, len))
            at++;
        if (n->bitmap == 2)
            return slot_retain(n->slot[1 - at]);
        return node_slot(copy_remove(n, depth, at, n->bitmap - 1));
    }
    uint32_t bit = 1u << piece(h, depth);
    unsigned pos = popcount32(n->bitmap & (bit - 1));
    unsigned k = nslots(n, depth);
    uintptr_t v = n->slot[pos];

    if (is_node(v)) {
        uintptr_t r = del(as_node(v), depth + 1, id, len, h);
        if (!is_node(r) && k == 1 && depth > 0)
            return r; /* this node would hold one doc: the parent takes it inline */
        return node_slot(copy_set(n, depth, pos, r));
    }
    if (k == 1) {
        if (depth > 0) /* canonical shape: one doc alone is inline in the parent */
            panic("idmap: a node at depth %d holds one doc", depth);
        return 0;
    }
    if (k == 2 && depth > 0 && !is_node(n->slot[1 - pos]))
        return slot_retain(n->slot[1 - pos]);
    return node_slot(copy_remove(n, depth, pos, n->bitmap & ~bit));
}

struct idmap idmap_del(const struct idmap *m, const char *id, size_t len, struct doc **old)
{
    struct idmap r;
    uint64_t h = m->root != NULL ? hash_id(id, len) : 0;
    struct doc *hit = m->root != NULL ? get(m, id, len, h) : NULL;

    if (old != NULL)
        *old = hit;
    if (hit == NULL)
        return idmap_copy(m);
    uintptr_t v = del(m->root, 0, id, len, h);
    r.root = v != 0 ? as_node(v) : NULL; /* the root stays a node (see del) */
    r.count = m->count - 1;
    return r;
}

/* ---- bulk build ---- */

struct hashed {
    uint64_t h;
    struct doc *d;
};

static int cmp_hashed(const void *pa, const void *pb)
{
    const struct hashed *a = pa, *b = pb;
    if (a->h != b->h)
        return a->h < b->h ? -1 : 1;
    size_t n = a->d->id_len < b->d->id_len ? a->d->id_len : b->d->id_len;
    int c = memcmp(a->d->id, b->d->id, n);
    if (c != 0)
        return c;
    return a->d->id_len < b->d->id_len ? -1 : a->d->id_len > b->d->id_len;
}

/*
 * The node at 'depth' for items[0..n), sorted by hash, which agree in every
 * piece above 'depth' (n >= 2 below the root): sorting by hash, highest bits
 * first, puts each slot's items next to each other.
 */
static struct idmap_node *build(const struct hashed *items, size_t n, int depth)
{
    struct idmap_node *node;

    if (depth == COLLIDE_DEPTH) {
        if (n > UINT32_MAX)
            panic("idmap: %zu ids share one hash", n);
        node = mk((uint32_t)n, (unsigned)n);
        for (size_t i = 0; i < n; i++)
            node->slot[i] = (uintptr_t)doc_retain(items[i].d);
        return node;
    }
    uint32_t bitmap = 0;
    for (size_t i = 0; i < n; i++)
        bitmap |= 1u << piece(items[i].h, depth);
    node = mk(bitmap, popcount32(bitmap));
    for (size_t i = 0, k = 0; i < n; k++) {
        size_t j = i + 1;
        unsigned p = piece(items[i].h, depth);
        while (j < n && piece(items[j].h, depth) == p)
            j++;
        node->slot[k] = j - i == 1 ? (uintptr_t)doc_retain(items[i].d)
                                   : node_slot(build(items + i, j - i, depth + 1));
        i = j;
    }
    return node;
}

int idmap_build(struct doc *const *docs, size_t n, struct idmap *out, const struct doc **dup)
{
    struct hashed *items;

    idmap_init(out);
    if (n == 0)
        return 0;
    pthread_once(&hash_key_once, hash_key_init);
    items = xmalloc(n * sizeof(*items));
    for (size_t i = 0; i < n; i++) {
        items[i].h = hash_id(docs[i]->id, docs[i]->id_len);
        items[i].d = docs[i];
    }
    qsort(items, n, sizeof(*items), cmp_hashed);
    for (size_t i = 1; i < n; i++) {
        if (cmp_hashed(&items[i - 1], &items[i]) == 0) {
            if (dup != NULL)
                *dup = items[i].d;
            free(items);
            return -EEXIST;
        }
    }
    out->root = build(items, n, 0);
    out->count = n;
    free(items);
    return 0;
}

/* ---- checks and counters ---- */

/*
 * What check() finds: docs, the deepest doc's level, the sum of every doc's level.
 */
struct shape {
    size_t docs;
    int deepest;
    uint64_t levels;
};

static void saw_doc(struct shape *s, int depth)
{
    s->docs++;
    s->levels += (uint64_t)depth;
    if (s->deepest < depth)
        s->deepest = depth;
}

/*
 * Checks the subtree at 'depth', whose ids' hashes all start with 'prefix'
 * (the pieces above 'depth'), and adds its docs to *s. -EINVAL on the first fault.
 */
static int check(const struct idmap_node *n, int depth, uint64_t prefix, struct shape *s)
{
    unsigned k = nslots(n, depth);
    size_t before = s->docs;

    if (atomic_load(&n->refs) == 0 || k == 0)
        return -EINVAL;
    if (depth == COLLIDE_DEPTH) {
        for (unsigned i = 0; i < k; i++) {
            const struct doc *d = as_doc(n->slot[i]);
            if (is_node(n->slot[i]) || hash_id(d->id, d->id_len) >> 4 != prefix)
                return -EINVAL;
            for (unsigned j = 0; j < i; j++)
                if (same_id(as_doc(n->slot[j]), d->id, d->id_len))
                    return -EINVAL;
        }
        for (unsigned i = 0; i < k; i++)
            saw_doc(s, depth);
        return k >= 2 ? 0 : -EINVAL;
    }
    for (unsigned i = 0, p = 0; p < 32; p++) {
        if ((n->bitmap & 1u << p) == 0)
            continue;
        uint64_t child_prefix = prefix << BITS | p;
        uintptr_t v = n->slot[i++];
        if (is_node(v)) {
            if (check(as_node(v), depth + 1, child_prefix, s) != 0)
                return -EINVAL;
        } else {
            const struct doc *d = as_doc(v);
            if (hash_id(d->id, d->id_len) >> (64 - BITS * (depth + 1)) != child_prefix)
                return -EINVAL;
            saw_doc(s, depth);
        }
    }
    if (depth > 0 && s->docs - before < 2)
        return -EINVAL; /* one doc alone belongs inline in the parent */
    if (depth > 0 && k == 1 && !is_node(n->slot[0]))
        return -EINVAL;
    return 0;
}

int idmap_check(const struct idmap *m)
{
    struct shape s = {0};

    if (m->root == NULL)
        return m->count == 0 ? 0 : -EINVAL;
    if (check(m->root, 0, 0, &s) != 0)
        return -EINVAL;
    return s.docs == m->count ? 0 : -EINVAL;
}

int idmap_depth(const struct idmap *m, double *mean)
{
    struct shape s = {0};

    if (m->root != NULL && check(m->root, 0, 0, &s) != 0)
        return -1;
    if (mean != NULL)
        *mean = s.docs > 0 ? (double)s.levels / (double)s.docs : 0;
    return s.deepest;
}

uint64_t idmap_live_nodes(void)
{
    return atomic_load_explicit(&live_nodes, memory_order_relaxed);
}

uint64_t idmap_nodes_made(void)
{
    return atomic_load_explicit(&nodes_made, memory_order_relaxed);
}

uint64_t idmap_live_bytes(void)
{
    return atomic_load_explicit(&live_bytes, memory_order_relaxed);
}
