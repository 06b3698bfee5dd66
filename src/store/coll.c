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

/* The docs of one version in insertion order (coll_docs). */
struct doc_array {
    size_t n;
    struct doc *docs[];
};

static struct doc_array docs_too_big;

/* One member's cells (coll_column), in a version's list of columns. */
struct column {
    struct column *next;
    size_t name_len;
    struct coll_cell *cells;
    char name[];
};

struct coll {
    _Atomic uint32_t refs;
    /*
     * Built lazily by the first reader that asks (coll_list_bytes) and
     * published with one compare-and-swap; freed with the version. The list
     * is a function of the (immutable) docs, so the version stays immutable
     * as far as any reader can tell.
     */
    _Atomic(struct list_bytes *) list;
    /* Built lazily the same way, for the query engine: coll_docs(), coll_column(). */
    _Atomic(struct doc_array *) docs;
    _Atomic(struct column *) columns;
    uint64_t rev;
    uint64_t next_seq;
    uint64_t n_str_ids; /* members whose "id" is a JSON string */
    int64_t max_int_id; /* high-water mark of integer ids, 0 when none */
    struct idmap by_id; /* the same docs: by id (GET), in insertion order (lists, pages) */
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
    return pmap_count(&c->by_seq);
}

uint64_t coll_revision(const struct coll *c)
{
    return c->rev;
}

struct doc *coll_get(const struct coll *c, const char *id, size_t len)
{
    return idmap_get(&c->by_id, id, len);
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
    idmap_cleanup(&c->by_id);
    pmap_cleanup(&c->by_seq);
    struct list_bytes *lb = atomic_load_explicit(&c->list, memory_order_acquire);
    if (lb != &too_big)
        free(lb);
    struct doc_array *da = atomic_load_explicit(&c->docs, memory_order_acquire);
    if (da != &docs_too_big)
        free(da);
    struct column *col = atomic_load_explicit(&c->columns, memory_order_acquire);
    while (col != NULL) {
        struct column *next = col->next;
        free(col->cells);
        free(col);
        col = next;
    }
    free(c);
    atomic_fetch_sub_explicit(&live_colls, 1, memory_order_relaxed);
}

static struct coll *alloc(const char *name, uint64_t rev)
{
    size_t n = strlen(name);
    struct coll *c = xmalloc(sizeof(*c) + n + 1);

    atomic_init(&c->refs, 1);
    atomic_init(&c->list, NULL);
    atomic_init(&c->docs, NULL);
    atomic_init(&c->columns, NULL);
    c->rev = rev;
    c->next_seq = 1;
    c->n_str_ids = 0;
    c->max_int_id = 0;
    idmap_init(&c->by_id);
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
    struct coll *n = clone_header(c, rev);
    struct doc *old;

    n->by_id = idmap_put(&c->by_id, d, &old);
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
    n->by_seq = pmap_put(&c->by_seq, d, NULL);
    return n;
}

struct coll *coll_without(const struct coll *c, const char *id, size_t len, uint64_t rev)
{
    struct doc *old;
    struct idmap by_id = idmap_del(&c->by_id, id, len, &old);
    struct coll *n;

    if (old == NULL)
        panic("coll_without: no doc '%.*s' in '%s'", (int)len, id, c->name);
    struct pmap_key kseq = {.seq = old->seq};
    n = clone_header(c, rev);
    n->n_str_ids -= !old->int_id;
    n->by_id = by_id;
    n->by_seq = pmap_del(&c->by_seq, &kseq, NULL);
    return n;
}

struct coll *coll_build(const char *name, uint64_t rev, struct doc *const *docs, size_t n,
                        const struct doc **dup)
{
    struct idmap by_id;
    struct coll *c;

    if (idmap_build(docs, n, &by_id, dup) != 0)
        return NULL;
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
    c->by_id = by_id;
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

struct doc *const *coll_docs(const struct coll *cc)
{
    struct coll *c = (struct coll *)cc; /* a cache: see 'list' */
    struct doc_array *da = atomic_load_explicit(&c->docs, memory_order_acquire), *expect = NULL;

    if (da == NULL) {
        size_t n = coll_count(c);
        if (n > COLL_DOCS_CACHE_MAX) {
            da = &docs_too_big;
        } else {
            struct coll_iter it;
            da = xmalloc(sizeof(*da) + n * sizeof(da->docs[0]));
            da->n = n;
            coll_iter_init(&it, c, 0);
            for (size_t k = 0; k < n; k++)
                da->docs[k] = coll_iter_next(&it);
        }
        if (!atomic_compare_exchange_strong_explicit(&c->docs, &expect, da, memory_order_acq_rel,
                                                     memory_order_acquire)) {
            if (da != &docs_too_big)
                free(da);
            da = expect;
        }
    }
    return da == &docs_too_big ? NULL : (struct doc *const *)da->docs;
}

/* What a filter on top-level member 'name' reads from 'd' (coll.h: struct coll_cell). */
static void cell_of(const struct doc *d, const char *name, size_t name_len, struct coll_cell *out)
{
    const struct doc_member *m;
    enum doc_read how = doc_read_member(d, name, name_len, &m);

    memset(out, 0, sizeof(*out));
    if (how == DOC_READ_MISSING) {
        out->kind = COLL_CELL_MISSING;
    } else if (how != DOC_READ_INDEX) {
        out->kind = COLL_CELL_READ_DOC; /* the query engine parses the member or the doc */
    } else {
        out->kind = COLL_CELL_SCALAR;
        out->type = m->type;
        if (m->type == DOC_INT)
            out->v.i = m->v.i;
        else if (m->type == DOC_REAL)
            out->v.d = m->v.d;
        else if (m->type == DOC_STRING) {
            out->v.s = d->bytes + m->v.s.off;
            out->len = m->v.s.len;
        }
    }
}

/*
 * The column named 'name' in the list from 'head' (*found), and how many of
 * the listed columns count toward COLL_MAX_COLUMNS (*kept: those with cells)
 * and how many are markers (*markers: no scalar cell, nothing kept).
 */
static struct column *column_find(struct column *head, const char *name, size_t name_len,
                                  size_t *kept, size_t *markers)
{
    *kept = *markers = 0;
    for (struct column *col = head; col != NULL; col = col->next) {
        if (col->name_len == name_len && memcmp(col->name, name, name_len) == 0)
            return col;
        if (col->cells != NULL)
            (*kept)++;
        else
            (*markers)++;
    }
    return NULL;
}

static void column_free(struct column *col)
{
    free(col->cells);
    free(col);
}

const struct coll_cell *coll_column(const struct coll *cc, const char *name, size_t name_len)
{
    struct coll *c = (struct coll *)cc; /* a cache: see 'list' */
    struct column *head = atomic_load_explicit(&c->columns, memory_order_acquire), *col;
    size_t kept, markers;

    col = column_find(head, name, name_len, &kept, &markers);
    if (col != NULL)
        return col->cells;
    struct doc *const *docs = coll_docs(c);
    size_t n = coll_count(c);
    if (kept >= COLL_MAX_COLUMNS || markers >= COLL_MAX_MARKERS || docs == NULL ||
        n > COLL_COLUMN_MAX_DOCS || n == 0)
        return NULL;
    col = xmalloc(sizeof(*col) + name_len + 1);
    memcpy(col->name, name, name_len);
    col->name[name_len] = '\0';
    col->name_len = name_len;
    col->cells = xmalloc(n * sizeof(*col->cells));
    bool scalar = false;
    for (size_t k = 0; k < n; k++) {
        cell_of(docs[k], name, name_len, &col->cells[k]);
        scalar = scalar || col->cells[k].kind == COLL_CELL_SCALAR;
    }
    if (!scalar) {
        /* no doc holds a scalar there (absent, arrays, objects): a marker, not rebuilt */
        free(col->cells);
        col->cells = NULL;
    }
    /*
     * Pushed on the list unless another reader published the same name (or
     * filled the list) meanwhile: then theirs is used and ours freed, so a
     * name has one column and the caps hold.
     */
    col->next = head;
    while (!atomic_compare_exchange_weak_explicit(&c->columns, &col->next, col,
                                                  memory_order_acq_rel, memory_order_acquire)) {
        struct column *other = column_find(col->next, name, name_len, &kept, &markers);
        if (other != NULL || kept >= COLL_MAX_COLUMNS || markers >= COLL_MAX_MARKERS) {
            column_free(col);
            return other != NULL ? other->cells : NULL;
        }
    }
    return col->cells;
}

uint64_t coll_live(void)
{
    return atomic_load_explicit(&live_colls, memory_order_relaxed);
}
