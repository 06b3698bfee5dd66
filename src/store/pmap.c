/* src/store/pmap.c -- see pmap.h. */
#include "store/pmap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/*
 * A node is immutable once built except for 'refs'. It owns one reference to
 * each child and to 'doc'. 'size' is the number of docs in the subtree.
 * 'key' is the doc's key in the map's order, or enough of it to decide most
 * comparisons without loading the doc (a likely cache miss per level on a
 * big tree): PMAP_BY_SEQ the seq itself; PMAP_BY_ID the id's first 8 bytes,
 * big-endian and zero-padded (see cmp_node). 40 bytes: a 48-byte chunk.
 */
struct pmap_node {
    _Atomic uint32_t refs;
    uint32_t size;
    struct pmap_node *l;
    struct pmap_node *r;
    struct doc *doc;
    uint64_t key;
};

/* Relaxed: statistics, not synchronisation. */
static _Atomic uint64_t live_nodes;
static _Atomic uint64_t nodes_made;

#define DELTA 3
#define GAMMA 2

static size_t size(const struct pmap_node *n)
{
    return n != NULL ? n->size : 0;
}

/* Weight as in Hirai & Yamamoto: size + 1, so that empty trees weigh 1. */
static size_t weight(const struct pmap_node *n)
{
    return size(n) + 1;
}

static struct pmap_node *ref(const struct pmap_node *cn)
{
    struct pmap_node *n = (struct pmap_node *)cn; /* refs is the one mutable field */
    if (n != NULL) {
        uint32_t old = atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
        if (old == 0 || old == UINT32_MAX)
            panic("pmap: refcount %" PRIu32 " on node %p", old, (void *)n);
    }
    return n;
}

/*
 * Frees the subtree's nodes that no other version holds. Recursion depth is
 * bounded by the height; the right spine is walked in a loop.
 */
static void unref(struct pmap_node *n)
{
    while (n != NULL) {
        uint32_t old = atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel);
        struct pmap_node *r;

        if (old == 0)
            panic("pmap: refcount underflow on node %p", (void *)n);
        if (old != 1)
            return;
        unref(n->l);
        doc_release(n->doc);
        r = n->r;
        free(n);
        atomic_fetch_sub_explicit(&live_nodes, 1, memory_order_relaxed);
        n = r;
    }
}

/* The first 8 bytes of an id, big-endian, zero-padded: bytewise order on the prefix. */
static uint64_t id_prefix(const char *id, size_t len)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++)
        v = v << 8 | (i < len ? (unsigned char)id[i] : 0);
    return v;
}

static uint64_t node_key(enum pmap_order order, const struct doc *d)
{
    return order == PMAP_BY_SEQ ? d->seq : id_prefix(d->id, d->id_len);
}

/* New node. Steals 'l', 'd' and 'r'. */
static struct pmap_node *mk(enum pmap_order order, struct pmap_node *l, struct doc *d,
                            struct pmap_node *r)
{
    struct pmap_node *n = xmalloc(sizeof(*n));
    size_t sz = size(l) + size(r) + 1;

    if (sz > UINT32_MAX)
        panic("pmap: more than %" PRIu32 " docs in one map", UINT32_MAX);
    atomic_init(&n->refs, 1);
    n->size = (uint32_t)sz;
    n->l = l;
    n->r = r;
    n->doc = d;
    n->key = node_key(order, d);
    atomic_fetch_add_explicit(&live_nodes, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&nodes_made, 1, memory_order_relaxed);
    return n;
}

/* Unpacks 'n' (owned) into new references to its parts, dropping 'n' itself. */
static void split3(struct pmap_node *n, struct pmap_node **l, struct doc **d, struct pmap_node **r)
{
    *l = ref(n->l);
    *d = doc_retain(n->doc);
    *r = ref(n->r);
    unref(n);
}

static int cmp_key(enum pmap_order order, const struct pmap_key *k, const struct doc *d)
{
    if (order == PMAP_BY_SEQ)
        return k->seq < d->seq ? -1 : k->seq > d->seq;
    size_t n = k->len < d->id_len ? k->len : d->id_len;
    int c = memcmp(k->id, d->id, n);
    if (c != 0)
        return c;
    return k->len < d->id_len ? -1 : k->len > d->id_len;
}

static struct pmap_key key_of(const struct doc *d)
{
    struct pmap_key k = {.id = d->id, .len = d->id_len, .seq = d->seq};
    return k;
}

/* A lookup key with its node-key form, made once per descent. */
struct probe {
    const struct pmap_key *k;
    uint64_t word; /* node_key's form of 'k' */
    bool exact;    /* equal words mean equal keys: an id of < 8 bytes without NUL */
};

static void probe_init(struct probe *p, enum pmap_order order, const struct pmap_key *k)
{
    p->k = k;
    if (order == PMAP_BY_SEQ) {
        p->word = k->seq;
        p->exact = true;
    } else {
        p->word = id_prefix(k->id, k->len);
        /*
         * Zero padding: when neither id has a NUL byte, the prefixes order the
         * ids as bytewise-then-shorter-first does, and a prefix holding fewer
         * than 8 bytes is the whole id (the other id's zero byte at the same
         * place ends it too). Ids are never NUL; a probe with one (or of 8
         * bytes or more) falls back to the doc on a tie.
         */
        p->exact = k->len < 8 && memchr(k->id, 0, k->len) == NULL;
    }
}

/* cmp_key against node 'n', loading n->doc only when the node's key word ties. */
static int cmp_node(enum pmap_order order, const struct probe *p, const struct pmap_node *n)
{
    if (p->word != n->key)
        return p->word < n->key ? -1 : 1;
    if (p->exact)
        return 0;
    return cmp_key(order, p->k, n->doc);
}

/*
 * Rebuilds a node from 'l', 'd', 'r' (all stolen), restoring the weight
 * balance after one insertion or deletion below it: one single or double
 * rotation suffices (Adams; Hirai & Yamamoto).
 */
static struct pmap_node *balance(enum pmap_order o, struct pmap_node *l, struct doc *d,
                                 struct pmap_node *r)
{
    struct pmap_node *a, *b, *c, *bl, *br;
    struct doc *y, *z;

    if (DELTA * weight(l) < weight(r)) {
        split3(r, &b, &y, &c); /* r = (b y c) */
        if (weight(b) < GAMMA * weight(c))
            return mk(o, mk(o, l, d, b), y, c);
        split3(b, &bl, &z, &br); /* b = (bl z br) */
        return mk(o, mk(o, l, d, bl), z, mk(o, br, y, c));
    }
    if (DELTA * weight(r) < weight(l)) {
        split3(l, &a, &y, &b); /* l = (a y b) */
        if (weight(b) < GAMMA * weight(a))
            return mk(o, a, y, mk(o, b, d, r));
        split3(b, &bl, &z, &br);
        return mk(o, mk(o, a, y, bl), z, mk(o, br, d, r));
    }
    return mk(o, l, d, r);
}

/* New reference: 't' (borrowed) with 'd' put in. */
static struct pmap_node *put(enum pmap_order order, const struct pmap_node *t,
                             const struct probe *k, struct doc *d, bool *replaced)
{
    int c;

    if (t == NULL)
        return mk(order, NULL, doc_retain(d), NULL);
    c = cmp_node(order, k, t);
    if (c == 0) {
        *replaced = true;
        return mk(order, ref(t->l), doc_retain(d), ref(t->r));
    }
    if (c < 0)
        return balance(order, put(order, t->l, k, d, replaced), doc_retain(t->doc), ref(t->r));
    return balance(order, ref(t->l), doc_retain(t->doc), put(order, t->r, k, d, replaced));
}

/* New reference: 't' (borrowed, non-empty) without its minimum; *min borrowed from 't'. */
static struct pmap_node *del_min(enum pmap_order o, const struct pmap_node *t, struct doc **min)
{
    if (t->l == NULL) {
        *min = t->doc;
        return ref(t->r);
    }
    return balance(o, del_min(o, t->l, min), doc_retain(t->doc), ref(t->r));
}

static struct pmap_node *del_max(enum pmap_order o, const struct pmap_node *t, struct doc **max)
{
    if (t->r == NULL) {
        *max = t->doc;
        return ref(t->l);
    }
    return balance(o, ref(t->l), doc_retain(t->doc), del_max(o, t->r, max));
}

/* New reference: the join of 'l' and 'r' (borrowed, each within balance of the other). */
static struct pmap_node *glue(enum pmap_order o, const struct pmap_node *l,
                              const struct pmap_node *r)
{
    struct doc *m;
    struct pmap_node *rest;

    if (l == NULL)
        return ref(r);
    if (r == NULL)
        return ref(l);
    /* Take from the heavier side so the result stays balanced. */
    if (size(l) > size(r)) {
        rest = del_max(o, l, &m);
        return balance(o, rest, doc_retain(m), ref(r));
    }
    rest = del_min(o, r, &m);
    return balance(o, ref(l), doc_retain(m), rest);
}

/* New reference: 't' (borrowed) without key 'k', which must be present. */
static struct pmap_node *del(enum pmap_order order, const struct pmap_node *t,
                             const struct probe *k)
{
    int c = cmp_node(order, k, t);

    if (c == 0)
        return glue(order, t->l, t->r);
    if (c < 0)
        return balance(order, del(order, t->l, k), doc_retain(t->doc), ref(t->r));
    return balance(order, ref(t->l), doc_retain(t->doc), del(order, t->r, k));
}

int pmap_cmp(enum pmap_order order, const struct doc *a, const struct doc *b)
{
    struct pmap_key k = key_of(a);
    return cmp_key(order, &k, b);
}

/* New reference: the perfectly balanced tree of docs[0..n). */
static struct pmap_node *from_sorted(enum pmap_order o, struct doc *const *docs, size_t n)
{
    size_t mid = n / 2;

    if (n == 0)
        return NULL;
    return mk(o, from_sorted(o, docs, mid), doc_retain(docs[mid]),
              from_sorted(o, docs + mid + 1, n - mid - 1));
}

struct pmap pmap_from_sorted(enum pmap_order order, struct doc *const *docs, size_t n)
{
    struct pmap m = {.order = order};

    for (size_t i = 1; i < n; i++)
        if (pmap_cmp(order, docs[i - 1], docs[i]) >= 0)
            panic("pmap_from_sorted: docs %zu and %zu out of order", i - 1, i);
    /* Sizes of siblings differ by at most one, well inside the weight balance. */
    m.root = from_sorted(order, docs, n);
    return m;
}

void pmap_init(struct pmap *m, enum pmap_order order)
{
    m->root = NULL;
    m->order = order;
}

void pmap_cleanup(struct pmap *m)
{
    unref(m->root);
    m->root = NULL;
}

struct pmap pmap_copy(const struct pmap *m)
{
    struct pmap c = {.root = ref(m->root), .order = m->order};
    return c;
}

struct pmap pmap_put(const struct pmap *m, struct doc *doc, bool *replaced)
{
    struct pmap_key k = key_of(doc);
    struct pmap out = {.order = m->order};
    struct probe p;
    bool rep = false;

    probe_init(&p, m->order, &k);
    out.root = put(m->order, m->root, &p, doc, &rep);
    if (replaced != NULL)
        *replaced = rep;
    return out;
}

struct pmap pmap_del(const struct pmap *m, const struct pmap_key *k, bool *found)
{
    struct pmap out = {.order = m->order};
    bool present = pmap_get(m, k) != NULL;
    struct probe p;

    /* Looking first keeps del() simple and makes a miss cost no allocation. */
    probe_init(&p, m->order, k);
    out.root = present ? del(m->order, m->root, &p) : ref(m->root);
    if (found != NULL)
        *found = present;
    return out;
}

struct doc *pmap_get(const struct pmap *m, const struct pmap_key *k)
{
    const struct pmap_node *n = m->root;
    struct probe p;

    probe_init(&p, m->order, k);
    while (n != NULL) {
        int c = cmp_node(m->order, &p, n);
        if (c == 0)
            return n->doc;
        n = c < 0 ? n->l : n->r;
    }
    return NULL;
}

size_t pmap_count(const struct pmap *m)
{
    return size(m->root);
}

struct doc *pmap_at(const struct pmap *m, size_t k)
{
    const struct pmap_node *n = m->root;

    while (n != NULL) {
        size_t ls = size(n->l);
        if (k == ls)
            return n->doc;
        if (k < ls) {
            n = n->l;
        } else {
            k -= ls + 1;
            n = n->r;
        }
    }
    return NULL;
}

size_t pmap_rank(const struct pmap *m, const struct pmap_key *k)
{
    const struct pmap_node *n = m->root;
    size_t rank = 0;
    struct probe p;

    probe_init(&p, m->order, k);
    while (n != NULL) {
        int c = cmp_node(m->order, &p, n);
        if (c == 0)
            return rank + size(n->l);
        if (c < 0) {
            n = n->l;
        } else {
            rank += size(n->l) + 1;
            n = n->r;
        }
    }
    return rank;
}

static void push(struct pmap_iter *it, const struct pmap_node *n)
{
    if (it->top >= PMAP_MAX_HEIGHT)
        panic("pmap: tree deeper than %d", PMAP_MAX_HEIGHT);
    it->stack[it->top++] = n;
}

/*
 * The stack holds the nodes whose doc and right subtree are still to come,
 * nearest first; seeking to 'start' pushes exactly the nodes on the path
 * where the walk went left or stopped.
 */
void pmap_iter_init(struct pmap_iter *it, const struct pmap *m, size_t start)
{
    const struct pmap_node *n = m->root;

    it->top = 0;
    while (n != NULL) {
        size_t ls = size(n->l);
        if (start <= ls) {
            push(it, n);
            if (start == ls)
                break;
            n = n->l;
        } else {
            start -= ls + 1;
            n = n->r;
        }
    }
}

struct doc *pmap_iter_next(struct pmap_iter *it)
{
    const struct pmap_node *n;

    if (it->top == 0)
        return NULL;
    n = it->stack[--it->top];
    for (const struct pmap_node *c = n->r; c != NULL; c = c->l)
        push(it, c);
    return n->doc;
}

static int height(const struct pmap_node *n)
{
    if (n == NULL)
        return 0;
    int hl = height(n->l), hr = height(n->r);
    return 1 + (hl > hr ? hl : hr);
}

int pmap_height(const struct pmap *m)
{
    return height(m->root);
}

/* Checks the subtree; 'lo'/'hi' are exclusive bounds (NULL: unbounded). */
static int check(enum pmap_order order, const struct pmap_node *n, const struct doc *lo,
                 const struct doc *hi)
{
    struct pmap_key k;

    if (n == NULL)
        return 0;
    if (n->doc == NULL || n->size != size(n->l) + size(n->r) + 1 ||
        n->key != node_key(order, n->doc))
        return -EINVAL;
    if (DELTA * weight(n->l) < weight(n->r) || DELTA * weight(n->r) < weight(n->l))
        return -EINVAL;
    k = key_of(n->doc);
    if ((lo != NULL && cmp_key(order, &k, lo) <= 0) || (hi != NULL && cmp_key(order, &k, hi) >= 0))
        return -EINVAL;
    if (check(order, n->l, lo, n->doc) != 0 || check(order, n->r, n->doc, hi) != 0)
        return -EINVAL;
    return 0;
}

int pmap_check(const struct pmap *m)
{
    return check(m->order, m->root, NULL, NULL);
}

uint64_t pmap_live_nodes(void)
{
    return atomic_load_explicit(&live_nodes, memory_order_relaxed);
}

uint64_t pmap_nodes_made(void)
{
    return atomic_load_explicit(&nodes_made, memory_order_relaxed);
}
