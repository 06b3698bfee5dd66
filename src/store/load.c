/* src/store/load.c -- see load.h. */
#include "store/load.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/coll.h"
#include "store/doc.h"
#include "store/store.h"
#include "util.h"

/* ---- a small arena for keys and names: one malloc per 64 KiB, freed at once ---- */

struct chunk {
    struct chunk *next;
    size_t used, cap;
    char data[];
};

struct arena {
    struct chunk *head;
};

static char *arena_dup(struct arena *a, const char *p, size_t n)
{
    if (a->head == NULL || a->head->cap - a->head->used < n + 1) {
        size_t cap = n + 1 > 65536 ? n + 1 : 65536;
        struct chunk *c = xmalloc(sizeof(*c) + cap);
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    char *out = a->head->data + a->head->used;
    memcpy(out, p, n);
    out[n] = '\0';
    a->head->used += n + 1;
    return out;
}

static void arena_free(struct arena *a)
{
    while (a->head != NULL) {
        struct chunk *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

/* ---- open-addressing hash of byte strings to indexes ---- */

#define SLOT_EMPTY 0u
#define SLOT_TOMB UINT32_MAX

struct slot {
    uint32_t hash;
    uint32_t idx; /* index + 1; SLOT_EMPTY or SLOT_TOMB */
};

struct table {
    struct slot *s;
    size_t cap;  /* a power of two, or 0 */
    size_t used; /* live + tombstones */
};

static uint32_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, folded */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32));
}

/* The key of index 'idx' in whatever the table indexes. */
typedef const char *key_fn(const void *ctx, uint32_t idx, size_t *len);

/* Slot holding 'k', or NULL; *ins gets where to insert it. */
static struct slot *table_find(const struct table *t, uint32_t h, const char *k, size_t n,
                               key_fn *key, const void *ctx, struct slot **ins)
{
    *ins = NULL;
    if (t->cap == 0)
        return NULL;
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        struct slot *s = &t->s[i];
        if (s->idx == SLOT_EMPTY) {
            if (*ins == NULL)
                *ins = s;
            return NULL;
        }
        if (s->idx == SLOT_TOMB) {
            if (*ins == NULL)
                *ins = s;
            continue;
        }
        if (s->hash == h) {
            size_t len;
            const char *sk = key(ctx, s->idx - 1, &len);
            if (len == n && memcmp(sk, k, n) == 0)
                return s;
        }
    }
}

static void table_grow(struct table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 16;
    struct slot *s = xcalloc(cap, sizeof(*s));
    size_t live = 0;

    for (size_t i = 0; i < t->cap; i++) {
        struct slot *o = &t->s[i];
        if (o->idx == SLOT_EMPTY || o->idx == SLOT_TOMB)
            continue;
        size_t j = o->hash & (cap - 1);
        while (s[j].idx != SLOT_EMPTY)
            j = (j + 1) & (cap - 1);
        s[j] = *o;
        live++;
    }
    free(t->s);
    t->s = s;
    t->cap = cap;
    t->used = live;
}

/* Inserts 'idx' for a key known to be absent. */
static void table_insert(struct table *t, uint32_t h, const char *k, size_t n, key_fn *key,
                         const void *ctx, uint32_t idx)
{
    struct slot *ins;
    if ((t->used + 1) * 4 > t->cap * 3)
        table_grow(t);
    table_find(t, h, k, n, key, ctx, &ins);
    if (ins->idx == SLOT_EMPTY)
        t->used++;
    ins->hash = h;
    ins->idx = idx + 1;
}

/* ---- the mirror ---- */

struct entry {
    const char *key; /* arena; for a resource, its name */
    uint32_t key_len;
    bool live;
    bool int_id;
    const char *bytes; /* borrowed doc bytes, or NULL when 'json' holds the doc */
    size_t len;
    json_t *json; /* owned: docs that came out of an IMPORT record */
    uint64_t seq, rev;
    const char *file;
    uint64_t off;
};

struct lcoll {
    const char *name; /* arena */
    uint64_t rev, next_seq;
    int64_t max_int;
    struct entry *v; /* in insertion (seq) order; deleted ones stay, not live */
    size_t n, cap, live;
    struct table idx;
};

/* A name: a collection (colls[i]) or a singular resource (singles[i]). */
struct name {
    const char *name;
    bool is_coll;
    uint32_t i;
};

struct loader {
    bool lenient;
    void (*warn)(void *cls, const char *msg);
    void *warn_cls;
    uint64_t rev;
    bool snap_started;
    struct lcoll *snap_coll; /* the collection a snapshot's DOC records go to */
    struct name *names;
    size_t nnames, capnames;
    struct table name_idx;
    struct lcoll **colls;
    size_t ncolls, capcolls;
    struct entry *singles;
    size_t nsingles, capsingles;
    struct arena arena;
    /* the name of the last log record found (index + 1, 0: none): most records repeat it */
    size_t last_name, last_len;
};

static const char *entry_key(const void *ctx, uint32_t idx, size_t *len)
{
    const struct lcoll *c = ctx;
    *len = c->v[idx].key_len;
    return c->v[idx].key;
}

static const char *name_key(const void *ctx, uint32_t idx, size_t *len)
{
    const struct loader *l = ctx;
    *len = strlen(l->names[idx].name);
    return l->names[idx].name;
}

struct loader *loader_new(bool lenient, void (*warn)(void *cls, const char *msg), void *warn_cls)
{
    struct loader *l = xcalloc(1, sizeof(*l));
    l->lenient = lenient;
    l->warn = warn;
    l->warn_cls = warn_cls;
    return l;
}

static void entry_cleanup(struct entry *e)
{
    json_decref(e->json);
    e->json = NULL;
}

/* Drops every name (an IMPORT replaces the whole store). Arena memory stays until free. */
static void clear(struct loader *l)
{
    for (size_t i = 0; i < l->ncolls; i++) {
        struct lcoll *c = l->colls[i];
        for (size_t k = 0; k < c->n; k++)
            entry_cleanup(&c->v[k]);
        free(c->v);
        free(c->idx.s);
        free(c);
    }
    for (size_t i = 0; i < l->nsingles; i++)
        entry_cleanup(&l->singles[i]);
    l->ncolls = l->nsingles = l->nnames = 0;
    l->last_name = 0;
    free(l->name_idx.s);
    memset(&l->name_idx, 0, sizeof(l->name_idx));
    l->snap_coll = NULL;
}

void loader_free(struct loader *l)
{
    if (l == NULL)
        return;
    clear(l);
    free(l->colls);
    free(l->singles);
    free(l->names);
    arena_free(&l->arena);
    free(l);
}

uint64_t loader_rev(const struct loader *l)
{
    return l->rev;
}

size_t loader_docs(const struct loader *l)
{
    size_t n = l->nsingles;
    for (size_t i = 0; i < l->ncolls; i++)
        n += l->colls[i]->live;
    return n;
}

static int fail(char *err, size_t errlen, const char *file, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(char *err, size_t errlen, const char *file, uint64_t off, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(err, errlen, "%s: offset %" PRIu64 ": ", file, off);
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static struct name *find_name(struct loader *l, const char *name, size_t n)
{
    struct slot *ins;
    struct slot *s = table_find(&l->name_idx, hash_bytes(name, n), name, n, name_key, l, &ins);
    return s ? &l->names[s->idx - 1] : NULL;
}

static struct name *add_name(struct loader *l, const char *name, size_t n, bool is_coll, uint32_t i)
{
    if (l->nnames == l->capnames) {
        l->capnames = l->capnames ? l->capnames * 2 : 16;
        l->names = xrealloc(l->names, l->capnames * sizeof(*l->names));
    }
    struct name *nm = &l->names[l->nnames];
    nm->name = arena_dup(&l->arena, name, n);
    nm->is_coll = is_coll;
    nm->i = i;
    table_insert(&l->name_idx, hash_bytes(name, n), name, n, name_key, l, (uint32_t)l->nnames);
    l->nnames++;
    return nm;
}

static struct lcoll *new_coll(struct loader *l, const char *name, size_t n, uint64_t rev)
{
    struct lcoll *c = xcalloc(1, sizeof(*c));
    if (l->ncolls == l->capcolls) {
        l->capcolls = l->capcolls ? l->capcolls * 2 : 16;
        l->colls = xrealloc(l->colls, l->capcolls * sizeof(*l->colls));
    }
    c->rev = rev;
    c->next_seq = 1;
    c->name = add_name(l, name, n, true, (uint32_t)l->ncolls)->name;
    l->colls[l->ncolls++] = c;
    return c;
}

static struct entry *coll_find(struct lcoll *c, const char *key, size_t n)
{
    struct slot *ins;
    struct slot *s = table_find(&c->idx, hash_bytes(key, n), key, n, entry_key, c, &ins);
    return s ? &c->v[s->idx - 1] : NULL;
}

static void coll_forget(struct lcoll *c, const char *key, size_t n)
{
    struct slot *ins;
    struct slot *s = table_find(&c->idx, hash_bytes(key, n), key, n, entry_key, c, &ins);
    if (s != NULL)
        s->idx = SLOT_TOMB;
}

/* Appends a new live entry with key copied; returns it. */
static struct entry *coll_append(struct loader *l, struct lcoll *c, const char *key, size_t n)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
    }
    struct entry *e = &c->v[c->n];
    memset(e, 0, sizeof(*e));
    e->key = arena_dup(&l->arena, key, n);
    e->key_len = (uint32_t)n;
    e->live = true;
    table_insert(&c->idx, hash_bytes(key, n), key, n, entry_key, c, (uint32_t)c->n);
    c->n++;
    c->live++;
    return e;
}

static struct entry *add_single(struct loader *l, const char *name, size_t n)
{
    if (l->nsingles == l->capsingles) {
        l->capsingles = l->capsingles ? l->capsingles * 2 : 8;
        l->singles = xrealloc(l->singles, l->capsingles * sizeof(*l->singles));
    }
    struct entry *e = &l->singles[l->nsingles];
    memset(e, 0, sizeof(*e));
    e->key = add_name(l, name, n, false, (uint32_t)l->nsingles)->name;
    e->key_len = (uint32_t)n;
    e->live = true;
    l->nsingles++;
    return e;
}

/* An integer id's value from its key (the decimal form: validated before it was stored). */
static int64_t key_int(const char *key, size_t n)
{
    int64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (key[i] - '0');
    return v;
}

static bool name_ok(const char *p, size_t n)
{
    char tmp[STORE_NAME_MAX + 1];
    if (n == 0 || n > STORE_NAME_MAX)
        return false;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    return store_name_valid(tmp);
}

/* The canonical decimal form of an int64 >= 0 ("7", not "07", "+7" or "-0"). */
static bool int_key_ok(const char *p, size_t n)
{
    static const char max[] = "9223372036854775807";
    if (n == 0 || n > sizeof(max) - 1 || (n > 1 && p[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return n < sizeof(max) - 1 || memcmp(p, max, n) <= 0;
}

static bool key_ok(const char *p, size_t n, bool int_id)
{
    char tmp[STORE_ID_MAX + 1];
    if (int_id)
        return int_key_ok(p, n); /* digits only: a valid id too, without a copy and strtoll */
    if (n == 0 || n > STORE_ID_MAX)
        return false;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    return store_id_valid(tmp);
}

/* A record that does not apply: an error, or with 'lenient' a warning and 1 (skip it). */
static int inapplicable(struct loader *l, const char *file, uint64_t off, char *err, size_t errlen,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int inapplicable(struct loader *l, const char *file, uint64_t off, char *err, size_t errlen,
                        const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    fail(err, errlen, file, off, "%s", why);
    if (!l->lenient)
        return -1;
    if (l->warn != NULL) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s; skipped (--recover-truncate)", err);
        l->warn(l->warn_cls, msg);
    }
    return 1;
}

static int apply_import(struct loader *l, const struct rec *r, const char *file, uint64_t off,
                        char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *db = json_loadb(r->data, r->data_len, 0, &jerr);
    const char *name;
    json_t *value;

    if (!json_is_object(db)) {
        json_decref(db);
        return inapplicable(l, file, off, err, errlen, "IMPORT record holds no db.json object");
    }
    clear(l);
    json_object_foreach(db, name, value)
    {
        size_t n = strlen(name);
        if (!name_ok(name, n))
            goto bad;
        if (json_is_array(value)) {
            struct lcoll *c = new_coll(l, name, n, r->rev);
            size_t i;
            json_t *el;
            json_array_foreach(value, i, el)
            {
                char key[STORE_ID_MAX + 1];
                const json_t *jid = json_object_get(el, "id");
                if (!json_is_object(el) || store_id_key(jid, key) != 0 ||
                    coll_find(c, key, strlen(key)) != NULL)
                    goto bad;
                struct entry *e = coll_append(l, c, key, strlen(key));
                e->json = json_incref(el);
                e->int_id = json_is_integer(jid);
                e->seq = c->next_seq++;
                e->rev = r->rev;
                e->file = file;
                e->off = off;
                if (e->int_id && json_integer_value(jid) > c->max_int)
                    c->max_int = json_integer_value(jid);
            }
        } else if (json_is_object(value)) {
            struct entry *e = add_single(l, name, n);
            e->json = json_incref(value);
            e->rev = r->rev;
            e->file = file;
            e->off = off;
        } else {
            goto bad;
        }
    }
    json_decref(db);
    return 0;
bad:
    json_decref(db);
    clear(l);
    return fail(err, errlen, file, off, "IMPORT record holds an invalid db.json");
}

static int apply_log(struct loader *l, const struct rec *r, const char *file, uint64_t off,
                     char *err, size_t errlen)
{
    bool doc_kind =
        r->kind == REC_POST || r->kind == REC_PUT || r->kind == REC_PATCH || r->kind == REC_DELETE;
    struct name *nm;

    if (r->kind == REC_IMPORT)
        return apply_import(l, r, file, off, err, errlen);
    if (l->last_name != 0 && l->last_len == r->name_len &&
        memcmp(l->names[l->last_name - 1].name, r->name, r->name_len) == 0) {
        nm = &l->names[l->last_name - 1]; /* checked when it was first seen */
    } else {
        if (!name_ok(r->name, r->name_len))
            return fail(err, errlen, file, off, "record names an invalid collection or resource");
        nm = find_name(l, r->name, r->name_len);
        if (nm != NULL) {
            l->last_name = (size_t)(nm - l->names) + 1;
            l->last_len = r->name_len;
        }
    }
    if (doc_kind) {
        struct lcoll *c;
        struct entry *e;
        if (!key_ok(r->id, r->id_len, (r->flags & REC_F_INT_ID) != 0))
            return fail(err, errlen, file, off, "record holds an invalid id");
        if (nm != NULL && !nm->is_coll)
            return inapplicable(l, file, off, err, errlen,
                                "write to collection '%.*s', which is a singular resource",
                                (int)r->name_len, r->name);
        c = nm != NULL ? l->colls[nm->i] : NULL;
        e = c != NULL ? coll_find(c, r->id, r->id_len) : NULL;
        if (r->kind == REC_DELETE) {
            if (e == NULL)
                return inapplicable(l, file, off, err, errlen,
                                    "DELETE of '%.*s' in '%.*s', which is not there",
                                    (int)r->id_len, r->id, (int)r->name_len, r->name);
            coll_forget(c, r->id, r->id_len);
            entry_cleanup(e);
            e->live = false;
            c->live--;
            c->rev = r->rev;
            return 0;
        }
        if (r->kind == REC_POST && e != NULL)
            return inapplicable(l, file, off, err, errlen, "POST of '%.*s', which exists",
                                (int)r->id_len, r->id);
        if (r->kind == REC_PATCH && e == NULL)
            return inapplicable(l, file, off, err, errlen, "PATCH of '%.*s', which is not there",
                                (int)r->id_len, r->id);
        if (c == NULL)
            c = new_coll(l, r->name, r->name_len, r->rev);
        if (e == NULL) {
            e = coll_append(l, c, r->id, r->id_len);
            e->seq = c->next_seq++;
        } else {
            entry_cleanup(e);
        }
        e->int_id = (r->flags & REC_F_INT_ID) != 0;
        if (e->int_id && key_int(r->id, r->id_len) > c->max_int)
            c->max_int = key_int(r->id, r->id_len);
        e->bytes = r->data;
        e->len = r->data_len;
        e->rev = r->rev;
        e->file = file;
        e->off = off;
        c->rev = r->rev;
        return 0;
    }
    /* PUT_SINGLE, PATCH_SINGLE */
    if (nm != NULL && nm->is_coll)
        return inapplicable(l, file, off, err, errlen,
                            "write to resource '%.*s', which is a collection", (int)r->name_len,
                            r->name);
    struct entry *e = nm != NULL ? &l->singles[nm->i] : NULL;
    if (r->kind == REC_PATCH_SINGLE && e == NULL)
        return inapplicable(l, file, off, err, errlen,
                            "PATCH of resource '%.*s', which is not there", (int)r->name_len,
                            r->name);
    if (e == NULL)
        e = add_single(l, r->name, r->name_len);
    entry_cleanup(e);
    e->bytes = r->data;
    e->len = r->data_len;
    e->rev = r->rev;
    e->file = file;
    e->off = off;
    return 0;
}

static int feed_snap(struct loader *l, const struct rec *r, const char *file, uint64_t off,
                     char *err, size_t errlen)
{
    switch (r->kind) {
    case REC_SNAP_HEADER:
        if (l->snap_started || l->nnames != 0 || l->rev != 0)
            return fail(err, errlen, file, off, "a second snapshot header");
        if (r->aux != REC_FORMAT_VERSION)
            return fail(err, errlen, file, off, "snapshot format version %" PRIu64 " (this is %d)",
                        r->aux, REC_FORMAT_VERSION);
        l->snap_started = true;
        l->rev = r->rev;
        return 0;
    case REC_SNAP_COLL: {
        l->snap_coll = NULL;
        if (!l->snap_started)
            return fail(err, errlen, file, off, "collection before the snapshot header");
        if (!name_ok(r->name, r->name_len) || find_name(l, r->name, r->name_len) != NULL ||
            r->data_len != 8 || r->rev > l->rev || r->aux == 0)
            return fail(err, errlen, file, off, "invalid collection record");
        struct lcoll *c = new_coll(l, r->name, r->name_len, r->rev);
        c->next_seq = r->aux;
        c->max_int = (int64_t)rec_get_u64(r->data);
        l->snap_coll = c;
        return 0;
    }
    case REC_SNAP_DOC: {
        struct lcoll *c = l->snap_coll;
        bool int_id = (r->flags & REC_F_INT_ID) != 0;
        if (c == NULL || strlen(c->name) != r->name_len || memcmp(c->name, r->name, r->name_len))
            return fail(err, errlen, file, off, "document outside its collection");
        if (!key_ok(r->id, r->id_len, int_id) || r->rev > l->rev || r->aux >= c->next_seq ||
            (c->n > 0 && r->aux <= c->v[c->n - 1].seq) || r->aux == 0)
            return fail(err, errlen, file, off, "invalid document record");
        if (coll_find(c, r->id, r->id_len) != NULL)
            return fail(err, errlen, file, off, "id '%.*s' appears twice", (int)r->id_len, r->id);
        struct entry *e = coll_append(l, c, r->id, r->id_len);
        e->int_id = int_id;
        e->seq = r->aux;
        e->rev = r->rev;
        e->bytes = r->data;
        e->len = r->data_len;
        e->file = file;
        e->off = off;
        return 0;
    }
    case REC_SNAP_SINGLE: {
        if (!l->snap_started || !name_ok(r->name, r->name_len) ||
            find_name(l, r->name, r->name_len) != NULL || r->rev > l->rev)
            return fail(err, errlen, file, off, "invalid resource record");
        struct entry *e = add_single(l, r->name, r->name_len);
        e->bytes = r->data;
        e->len = r->data_len;
        e->rev = r->rev;
        e->file = file;
        e->off = off;
        l->snap_coll = NULL;
        return 0;
    }
    case REC_SNAP_END:
        if (!l->snap_started || r->rev != l->rev)
            return fail(err, errlen, file, off, "snapshot end record does not match its header");
        l->snap_coll = NULL;
        return 0;
    default:
        return fail(err, errlen, file, off, "unknown record kind %u", r->kind);
    }
}

int loader_feed(struct loader *l, const struct rec *r, const char *file, uint64_t off, char *err,
                size_t errlen)
{
    if (r->kind >= REC_SNAP_HEADER)
        return feed_snap(l, r, file, off, err, errlen);
    if (r->kind == REC_LOG_HEADER)
        return 0;
    if (r->kind < REC_POST || r->kind > REC_IMPORT)
        return fail(err, errlen, file, off, "unknown record kind %u", r->kind);
    if (r->rev != l->rev + 1) {
        if (!l->lenient || r->rev <= l->rev)
            return fail(err, errlen, file, off,
                        "record has revision %" PRIu64 ", expected %" PRIu64, r->rev, l->rev + 1);
        int rc =
            inapplicable(l, file, off, err, errlen,
                         "revisions %" PRIu64 "..%" PRIu64 " are missing", l->rev + 1, r->rev - 1);
        (void)rc; /* lenient: accept the gap and apply the record */
    }
    int rc = apply_log(l, r, file, off, err, errlen);
    if (rc < 0)
        return -1;
    l->rev = r->rev; /* a skipped record still uses its revision */
    return 0;
}

/* New reference: the doc for entry 'e', or NULL with 'err' set. Thread-safe. */
static struct doc *make_doc(struct entry *e, bool coll_doc, char *err, size_t errlen)
{
    struct doc *d;

    if (e->json != NULL) {
        /* an IMPORT record's element: serialized once more, its tree dropped */
        d = json_is_object(e->json)
                ? doc_new(e->json, e->key, e->key_len, coll_doc ? e->seq : 0, e->rev)
                : NULL;
        json_decref(e->json);
        e->json = NULL;
    } else if (doc_new_bytes(e->key, e->key_len, coll_doc ? e->seq : 0, e->rev, e->bytes, e->len,
                             &d) != 0) {
        /* the logged bytes are what the doc was served as: kept and scanned, not parsed */
        d = NULL;
    }
    if (d == NULL) {
        fail(err, errlen, e->file, e->off, "document is not a JSON object");
        return NULL;
    }
    if (coll_doc) {
        char key[STORE_ID_MAX + 1];
        bool is_int = false;
        if (doc_id_key(d, key, &is_int) != 0 || strlen(key) != e->key_len ||
            memcmp(key, e->key, e->key_len) != 0 || is_int != e->int_id) {
            doc_release(d);
            fail(err, errlen, e->file, e->off, "document's \"id\" does not match its key '%s'",
                 e->key);
            return NULL;
        }
    }
    return d;
}

/*
 * Making every doc (make_doc: a scan of its bytes for the member index and
 * the id check) is the per-doc work of a recovery: it runs on every core.
 * One job per doc; the collections are built after.
 */
struct job {
    struct entry *e;
    bool coll_doc;
};

struct worker {
    pthread_t t;
    struct job *jobs;
    struct doc **out;
    size_t from, to;
    size_t failed_at; /* SIZE_MAX: none */
    char err[512];
};

static void *parse_range(void *arg)
{
    struct worker *w = arg;
    for (size_t i = w->from; i < w->to; i++) {
        w->out[i] = make_doc(w->jobs[i].e, w->jobs[i].coll_doc, w->err, sizeof(w->err));
        if (w->out[i] == NULL) {
            w->failed_at = i;
            break;
        }
    }
    return NULL;
}

/* Fills out[i] for every job; on failure NULL slots remain and the first error is in 'err'. */
static int make_docs(struct job *jobs, struct doc **out, size_t n, char *err, size_t errlen)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t nw = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (size_t)ncpu;
    struct worker w[8] = {0};
    size_t first_bad = SIZE_MAX;

    if (nw > n / 1024 + 1)
        nw = n / 1024 + 1; /* a thread for fewer docs costs more than it saves */
    for (size_t k = 0; k < nw; k++) {
        w[k].jobs = jobs;
        w[k].out = out;
        w[k].from = n * k / nw;
        w[k].to = n * (k + 1) / nw;
        w[k].failed_at = SIZE_MAX;
        if (k > 0 && pthread_create(&w[k].t, NULL, parse_range, &w[k]) != 0)
            panic("loader: cannot start a parser thread");
    }
    parse_range(&w[0]);
    for (size_t k = 0; k < nw; k++) {
        if (k > 0)
            pthread_join(w[k].t, NULL);
        if (w[k].failed_at < first_bad) {
            first_bad = w[k].failed_at;
            snprintf(err, errlen, "%s", w[k].err);
        }
    }
    return first_bad == SIZE_MAX ? 0 : -1;
}

struct snap *loader_finish(struct loader *l, char *err, size_t errlen)
{
    struct snap *s = NULL;
    size_t n = l->nsingles, k = 0;

    for (size_t i = 0; i < l->ncolls; i++)
        n += l->colls[i]->live;
    struct job *jobs = xmalloc((n ? n : 1) * sizeof(*jobs));
    struct doc **out = xcalloc(n ? n : 1, sizeof(*out));
    for (size_t i = 0; i < l->ncolls; i++)
        for (size_t j = 0; j < l->colls[i]->n; j++)
            if (l->colls[i]->v[j].live)
                jobs[k++] = (struct job){&l->colls[i]->v[j], true};
    for (size_t i = 0; i < l->nsingles; i++)
        jobs[k++] = (struct job){&l->singles[i], false};

    if (make_docs(jobs, out, n, err, errlen) != 0)
        goto out;
    s = snap_new(l->rev);
    k = 0;
    for (size_t i = 0; i < l->ncolls; i++) {
        struct lcoll *c = l->colls[i];
        const struct doc *dup = NULL;
        struct coll *built =
            coll_restore(c->name, c->rev, c->next_seq, c->max_int, out + k, c->live, &dup);
        k += c->live;
        if (built == NULL) {
            snprintf(err, errlen, "collection '%s' holds id '%s' twice", c->name, dup->id);
            snap_release(s);
            s = NULL;
            goto out;
        }
        struct snap *next = snap_with_coll(s, built, l->rev);
        coll_release(built);
        snap_release(s);
        s = next;
    }
    for (size_t i = 0; i < l->nsingles; i++, k++) {
        struct snap *next = snap_with_single(s, out[k], l->rev);
        snap_release(s);
        s = next;
    }
out:
    for (size_t i = 0; i < n; i++)
        doc_release(out[i]);
    free(out);
    free(jobs);
    return s;
}
