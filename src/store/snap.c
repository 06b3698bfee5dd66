/* src/store/snap.c -- see snap.h. */
#include "store/snap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct snap {
    _Atomic uint32_t refs;
    uint64_t rev;
    size_t ncolls;
    size_t nsingles;
    struct coll **colls;  /* sorted by name; both arrays live in the snap's allocation */
    struct doc **singles; /* sorted by doc->id (the resource name) */
};

static _Atomic uint64_t live_snaps;

/* An empty snapshot header with room for the given numbers of names. */
static struct snap *alloc(uint64_t rev, size_t ncolls, size_t nsingles)
{
    struct snap *s = xmalloc(sizeof(*s) + (ncolls + nsingles) * sizeof(void *));

    atomic_init(&s->refs, 1);
    s->rev = rev;
    s->ncolls = ncolls;
    s->nsingles = nsingles;
    s->colls = (struct coll **)(s + 1);
    s->singles = (struct doc **)(s->colls + ncolls);
    atomic_fetch_add_explicit(&live_snaps, 1, memory_order_relaxed);
    return s;
}

struct snap *snap_new(uint64_t rev)
{
    return alloc(rev, 0, 0);
}

struct snap *snap_retain(const struct snap *cs)
{
    struct snap *s = (struct snap *)cs; /* refs is the one mutable field */
    if (s != NULL) {
        uint32_t old = atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
        if (old == 0 || old == UINT32_MAX)
            panic("snap_retain: refcount %" PRIu32 " on %p", old, (void *)s);
    }
    return s;
}

void snap_release(struct snap *s)
{
    uint32_t old;

    if (s == NULL)
        return;
    old = atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel);
    if (old == 0)
        panic("snap_release: refcount underflow on %p", (void *)s);
    if (old != 1)
        return;
    for (size_t i = 0; i < s->ncolls; i++)
        coll_release(s->colls[i]);
    for (size_t i = 0; i < s->nsingles; i++)
        doc_release(s->singles[i]);
    free(s);
    atomic_fetch_sub_explicit(&live_snaps, 1, memory_order_relaxed);
}

uint64_t snap_revision(const struct snap *s)
{
    return s->rev;
}

/* Index of 'name' in the sorted colls (*found) or where it would go. */
static size_t find_coll(const struct snap *s, const char *name, bool *found)
{
    size_t lo = 0, hi = s->ncolls;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, coll_name(s->colls[mid]));
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *found = false;
    return lo;
}

static size_t find_single(const struct snap *s, const char *name, bool *found)
{
    size_t lo = 0, hi = s->nsingles;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, s->singles[mid]->id);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *found = false;
    return lo;
}

const struct coll *snap_coll(const struct snap *s, const char *name)
{
    bool found;
    size_t i = find_coll(s, name, &found);
    return found ? s->colls[i] : NULL;
}

struct doc *snap_single(const struct snap *s, const char *name)
{
    bool found;
    size_t i = find_single(s, name, &found);
    return found ? s->singles[i] : NULL;
}

size_t snap_ncolls(const struct snap *s)
{
    return s->ncolls;
}

const struct coll *snap_coll_at(const struct snap *s, size_t i)
{
    return i < s->ncolls ? s->colls[i] : NULL;
}

size_t snap_nsingles(const struct snap *s)
{
    return s->nsingles;
}

struct doc *snap_single_at(const struct snap *s, size_t i)
{
    return i < s->nsingles ? s->singles[i] : NULL;
}

struct snap *snap_with_coll(const struct snap *s, const struct coll *c, uint64_t rev)
{
    bool found;
    size_t pos = find_coll(s, coll_name(c), &found);
    struct snap *n = alloc(rev, s->ncolls + !found, s->nsingles);
    size_t j = 0;

    if (snap_single(s, coll_name(c)) != NULL)
        panic("snap_with_coll: '%s' is a singular resource", coll_name(c));
    for (size_t i = 0; i < s->ncolls; i++) {
        if (i == pos)
            n->colls[j++] = coll_retain(c);
        if (i != pos || !found)
            n->colls[j++] = coll_retain(s->colls[i]);
    }
    if (pos == s->ncolls)
        n->colls[j++] = coll_retain(c);
    for (size_t i = 0; i < s->nsingles; i++)
        n->singles[i] = doc_retain(s->singles[i]);
    return n;
}

struct snap *snap_with_single(const struct snap *s, struct doc *d, uint64_t rev)
{
    bool found;
    size_t pos = find_single(s, d->id, &found);
    struct snap *n = alloc(rev, s->ncolls, s->nsingles + !found);
    size_t j = 0;

    if (snap_coll(s, d->id) != NULL)
        panic("snap_with_single: '%s' is a collection", d->id);
    for (size_t i = 0; i < s->ncolls; i++)
        n->colls[i] = coll_retain(s->colls[i]);
    for (size_t i = 0; i < s->nsingles; i++) {
        if (i == pos)
            n->singles[j++] = doc_retain(d);
        if (i != pos || !found)
            n->singles[j++] = doc_retain(s->singles[i]);
    }
    if (pos == s->nsingles)
        n->singles[j++] = doc_retain(d);
    return n;
}

static int export_coll(const struct coll *c, struct buf *b)
{
    struct coll_iter it;
    struct doc *d;
    int rc = buf_append(b, "[", 1);

    coll_iter_init(&it, c, 0);
    for (bool first = true; rc == 0 && (d = coll_iter_next(&it)) != NULL; first = false) {
        if (!first)
            rc = buf_append(b, ",", 1);
        if (rc == 0)
            rc = buf_append(b, d->bytes, d->len);
    }
    if (rc == 0)
        rc = buf_append(b, "]", 1);
    return rc;
}

int snap_export(const struct snap *s, struct buf *b)
{
    size_t i = 0, j = 0;
    int rc = buf_append(b, "{", 1);

    /* Merge the two sorted tables so the object's keys come out in one name order. */
    while (rc == 0 && (i < s->ncolls || j < s->nsingles)) {
        bool take_coll = j == s->nsingles ||
                         (i < s->ncolls && strcmp(coll_name(s->colls[i]), s->singles[j]->id) < 0);
        const char *name = take_coll ? coll_name(s->colls[i]) : s->singles[j]->id;

        if (i + j > 0)
            rc = buf_append(b, ",", 1);
        if (rc == 0)
            rc = buf_json_string(b, name, strlen(name));
        if (rc == 0)
            rc = buf_append(b, ":", 1);
        if (rc == 0 && take_coll)
            rc = export_coll(s->colls[i], b);
        else if (rc == 0)
            rc = buf_append(b, s->singles[j]->bytes, s->singles[j]->len);
        if (take_coll)
            i++;
        else
            j++;
    }
    if (rc == 0)
        rc = buf_append(b, "}", 1);
    return rc;
}

uint64_t snap_live(void)
{
    return atomic_load_explicit(&live_snaps, memory_order_relaxed);
}
