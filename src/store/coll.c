/* src/store/coll.c -- see coll.h. */
#include "store/coll.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* The serialized whole list of one version: "[doc,doc,...]". */
struct list_bytes {
    size_t len;
    char data[];
};

/* Marks a version whose list is over COLL_LIST_CACHE_MAX: never built. */
static struct list_bytes too_big;

struct coll {
    _Atomic uint32_t refs;
    /*
     * Built lazily by the first reader that asks (coll_list_bytes) and
     * published with one compare-and-swap; freed with the version. The list
     * is a function of the (immutable) docs, so the version stays immutable
     * as far as any reader can tell.
     */
    _Atomic(struct list_bytes *) list;
    uint64_t rev;
    uint64_t next_seq;
    uint64_t n_str_ids; /* members whose "id" is a JSON string */
    int64_t max_int_id; /* high-water mark of integer ids, 0 when none */
    struct pmap by_id;  /* the same docs in two orders */
    struct pmap by_seq;
    char name[];
};

static _Atomic uint64_t live_colls;

const char *coll_name(const struct coll *c)
{
    return c->name;
}

size_t coll_count(const struct coll *c)
{
    return pmap_count(&c->by_id);
}

uint64_t coll_revision(const struct coll *c)
{
    return c->rev;
}

struct doc *coll_get(const struct coll *c, const char *id, size_t len)
{
    struct pmap_key k = {.id = id, .len = len};
    return pmap_get(&c->by_id, &k);
}

struct doc *coll_at(const struct coll *c, size_t k)
{
    return pmap_at(&c->by_seq, k);
}

size_t coll_index_of(const struct coll *c, const struct doc *d)
{
    struct pmap_key k = {.seq = d->seq};
    return pmap_rank(&c->by_seq, &k);
}

void coll_iter_init(struct coll_iter *it, const struct coll *c, size_t start)
{
    pmap_iter_init(&it->it, &c->by_seq, start);
}

struct doc *coll_iter_next(struct coll_iter *it)
{
    return pmap_iter_next(&it->it);
}

bool coll_ids_all_int(const struct coll *c)
{
    return c->n_str_ids == 0;
}

int64_t coll_max_int_id(const struct coll *c)
{
    return c->max_int_id;
}

uint64_t coll_next_seq(const struct coll *c)
{
    return c->next_seq;
}

struct coll *coll_retain(const struct coll *cc)
{
    struct coll *c = (struct coll *)cc; /* refs is the one mutable field */
    if (c != NULL) {
        uint32_t old = atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
        if (old == 0 || old == UINT32_MAX)
            panic("coll_retain: refcount %" PRIu32 " on %p", old, (void *)c);
    }
    return c;
}

void coll_release(struct coll *c)
{
    uint32_t old;

    if (c == NULL)
        return;
    old = atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);
    if (old == 0)
        panic("coll_release: refcount underflow on %p", (void *)c);
    if (old != 1)
        return;
    pmap_cleanup(&c->by_id);
    pmap_cleanup(&c->by_seq);
    struct list_bytes *lb = atomic_load_explicit(&c->list, memory_order_acquire);
    if (lb != &too_big)
        free(lb);
    free(c);
    atomic_fetch_sub_explicit(&live_colls, 1, memory_order_relaxed);
}

static struct coll *alloc(const char *name, uint64_t rev)
{
    size_t n = strlen(name);
    struct coll *c = xmalloc(sizeof(*c) + n + 1);

    atomic_init(&c->refs, 1);
    atomic_init(&c->list, NULL);
    c->rev = rev;
    c->next_seq = 1;
    c->n_str_ids = 0;
    c->max_int_id = 0;
    pmap_init(&c->by_id, PMAP_BY_ID);
    pmap_init(&c->by_seq, PMAP_BY_SEQ);
    memcpy(c->name, name, n + 1);
    atomic_fetch_add_explicit(&live_colls, 1, memory_order_relaxed);
    return c;
}

struct coll *coll_new(const char *name, uint64_t rev)
{
    return alloc(name, rev);
}

/* A new version header with the same name and counters as 'c'; maps left empty. */
static struct coll *clone_header(const struct coll *c, uint64_t rev)
{
    struct coll *n = alloc(c->name, rev);

    n->next_seq = c->next_seq;
    n->n_str_ids = c->n_str_ids;
    n->max_int_id = c->max_int_id;
    return n;
}

struct coll *coll_with(const struct coll *c, struct doc *d, uint64_t rev)
{
    struct doc *old = coll_get(c, d->id, d->id_len);
    struct coll *n = clone_header(c, rev);

    if (old != NULL) {
        if (old->seq != d->seq)
            panic("coll_with: replacing '%s' with seq %" PRIu64 " != %" PRIu64, d->id, d->seq,
                  old->seq);
        n->n_str_ids -= !old->int_id;
    } else if (d->seq != c->next_seq) {
        panic("coll_with: new doc '%s' has seq %" PRIu64 ", expected %" PRIu64, d->id, d->seq,
              c->next_seq);
    } else {
        n->next_seq = d->seq + 1;
    }
    n->n_str_ids += !d->int_id;
    if (d->int_id && d->int_val > n->max_int_id)
        n->max_int_id = d->int_val;
    n->by_id = pmap_put(&c->by_id, d, NULL);
    n->by_seq = pmap_put(&c->by_seq, d, NULL);
    return n;
}

struct coll *coll_without(const struct coll *c, const char *id, size_t len, uint64_t rev)
{
    struct doc *old = coll_get(c, id, len);
    struct coll *n;
    struct pmap_key kid = {.id = id, .len = len};
    struct pmap_key kseq = {.seq = 0};

    if (old == NULL)
        panic("coll_without: no doc '%.*s' in '%s'", (int)len, id, c->name);
    kseq.seq = old->seq;
    n = clone_header(c, rev);
    n->n_str_ids -= !old->int_id;
    n->by_id = pmap_del(&c->by_id, &kid, NULL);
    n->by_seq = pmap_del(&c->by_seq, &kseq, NULL);
    return n;
}

static int cmp_by_id(const void *a, const void *b)
{
    return pmap_cmp(PMAP_BY_ID, *(struct doc *const *)a, *(struct doc *const *)b);
}

struct coll *coll_build(const char *name, uint64_t rev, struct doc *const *docs, size_t n,
                        const struct doc **dup)
{
    struct doc **sorted = xmalloc((n ? n : 1) * sizeof(*sorted));
    struct coll *c = NULL;

    memcpy(sorted, docs, n * sizeof(*sorted));
    /* Auto-assigned ids arrive in id order already: skip the sort then. */
    size_t ordered = 1;
    while (ordered < n && pmap_cmp(PMAP_BY_ID, sorted[ordered - 1], sorted[ordered]) < 0)
        ordered++;
    if (ordered < n)
        qsort(sorted, n, sizeof(*sorted), cmp_by_id);
    for (size_t i = 1; i < n; i++) {
        if (pmap_cmp(PMAP_BY_ID, sorted[i - 1], sorted[i]) == 0) {
            if (dup != NULL)
                *dup = sorted[i];
            goto out;
        }
    }
    c = alloc(name, rev);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && docs[i]->seq <= docs[i - 1]->seq)
            panic("coll_build: seq %" PRIu64 " after %" PRIu64, docs[i]->seq, docs[i - 1]->seq);
        c->n_str_ids += !docs[i]->int_id;
        if (docs[i]->int_id && docs[i]->int_val > c->max_int_id)
            c->max_int_id = docs[i]->int_val;
    }
    if (n > 0)
        c->next_seq = docs[n - 1]->seq + 1;
    c->by_seq = pmap_from_sorted(PMAP_BY_SEQ, docs, n);
    c->by_id = pmap_from_sorted(PMAP_BY_ID, sorted, n);
out:
    free(sorted);
    return c;
}

struct coll *coll_restore(const char *name, uint64_t rev, uint64_t next_seq, int64_t max_int_id,
                          struct doc *const *docs, size_t n, const struct doc **dup)
{
    struct coll *c = coll_build(name, rev, docs, n, dup);

    if (c != NULL) {
        if (next_seq > c->next_seq)
            c->next_seq = next_seq;
        if (max_int_id > c->max_int_id)
            c->max_int_id = max_int_id;
    }
    return c;
}

const char *coll_list_bytes(const struct coll *cc, size_t *len)
{
    struct coll *c = (struct coll *)cc; /* the cache is the other mutable field */
    struct list_bytes *lb = atomic_load_explicit(&c->list, memory_order_acquire), *expect = NULL;
    struct coll_iter it;
    struct doc *d;
    size_t total = 2, n = 0, at = 1;

    if (lb == NULL) {
        coll_iter_init(&it, c, 0);
        while ((d = coll_iter_next(&it)) != NULL && total <= COLL_LIST_CACHE_MAX)
            total += d->len + (n++ > 0);
        if (total > COLL_LIST_CACHE_MAX) {
            lb = &too_big;
        } else {
            lb = xmalloc(sizeof(*lb) + total);
            lb->data[0] = '[';
            coll_iter_init(&it, c, 0);
            for (size_t k = 0; (d = coll_iter_next(&it)) != NULL; k++) {
                if (k > 0)
                    lb->data[at++] = ',';
                memcpy(lb->data + at, d->bytes, d->len);
                at += d->len;
            }
            lb->data[at++] = ']';
            lb->len = at;
        }
        /* release: the bytes are written before another reader can see the pointer */
        if (!atomic_compare_exchange_strong_explicit(&c->list, &expect, lb, memory_order_acq_rel,
                                                     memory_order_acquire)) {
            if (lb != &too_big)
                free(lb);
            lb = expect; /* another reader built it first: use theirs */
        }
    }
    if (lb == &too_big)
        return NULL;
    *len = lb->len;
    return lb->data;
}

uint64_t coll_live(void)
{
    return atomic_load_explicit(&live_colls, memory_order_relaxed);
}
