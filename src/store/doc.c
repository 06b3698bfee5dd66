/* src/store/doc.c -- see doc.h. */
#include "store/doc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Relaxed: a statistic, not a synchronisation point. */
static _Atomic uint64_t live_docs;

/* True when 'json' has an integer "id" whose decimal form is exactly id[0..id_len). */
static bool is_int_id(const json_t *json, const char *id, size_t id_len, int64_t *val)
{
    const json_t *jid = json_is_object(json) ? json_object_get(json, "id") : NULL;
    char tmp[24];
    int n;

    if (!json_is_integer(jid))
        return false;
    n = snprintf(tmp, sizeof(tmp), "%" PRId64, (int64_t)json_integer_value(jid));
    if (n < 0 || (size_t)n != id_len || memcmp(tmp, id, id_len) != 0)
        return false;
    *val = (int64_t)json_integer_value(jid);
    return true;
}

struct doc *doc_new(json_t *json, const char *id, size_t id_len, uint64_t seq, uint64_t rev)
{
    char *text;
    struct doc *d;

    if (json == NULL)
        panic("doc_new: bad arguments");
    /*
     * Member order is kept (no JSON_SORT_KEYS): a client reads back what it
     * wrote. The bytes are copied into the doc's own allocation so that a doc
     * costs one malloc for header, key and text together.
     */
    text = json_dumps(json, JSON_COMPACT);
    if (text == NULL)
        panic("doc_new: json_dumps failed (out of memory?)");
    d = doc_new_bytes(json, id, id_len, seq, rev, text, strlen(text));
    free(text);
    return d;
}

struct doc *doc_new_bytes(json_t *json, const char *id, size_t id_len, uint64_t seq, uint64_t rev,
                          const char *text, size_t len)
{
    struct doc *d;

    if (json == NULL || id_len >= (size_t)INT32_MAX)
        panic("doc_new: bad arguments");
    d = xmalloc(sizeof(*d) + id_len + 1 + len + 1);
    atomic_init(&d->refs, 1);
    d->int_val = 0;
    d->int_id = is_int_id(json, id, id_len, &d->int_val);
    d->id_len = (uint32_t)id_len;
    d->seq = seq;
    d->rev = rev;
    d->json = json;
    d->len = len;
    memcpy(d->id, id, id_len);
    d->id[id_len] = '\0';
    memcpy(d->id + id_len + 1, text, len);
    d->id[id_len + 1 + len] = '\0';
    d->bytes = d->id + id_len + 1;
    atomic_fetch_add_explicit(&live_docs, 1, memory_order_relaxed);
    return d;
}

struct doc *doc_retain(struct doc *d)
{
    if (d != NULL) {
        uint32_t old = atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
        if (old == 0 || old == UINT32_MAX)
            panic("doc_retain: refcount %" PRIu32 " on doc %p", old, (void *)d);
    }
    return d;
}

void doc_release(struct doc *d)
{
    uint32_t old;

    if (d == NULL)
        return;
    /* acq_rel: every use of the doc by other holders happens before the free. */
    old = atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel);
    if (old == 0)
        panic("doc_release: refcount underflow on doc %p", (void *)d);
    if (old != 1)
        return;
    json_decref((json_t *)d->json); /* cast: the doc owned the only mutable handle */
    free(d);
    atomic_fetch_sub_explicit(&live_docs, 1, memory_order_relaxed);
}

uint64_t doc_live(void)
{
    return atomic_load_explicit(&live_docs, memory_order_relaxed);
}
