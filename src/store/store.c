/* src/store/store.c -- see store.h and docs/STORE.md. */
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util.h"

struct store {
    /* 'lock' guards 'cur' only -- the pointer, never what it points to: snapshots are immutable. */
    pthread_rwlock_t lock;
    struct snap *cur;
    /*
     * Serializes writers from reading 'cur' to publishing its successor. A
     * writer holding it may read 'cur' without 'lock': only writers change it.
     */
    pthread_mutex_t write_lock;
    store_commit_fn *commit;
    void *commit_cls;
};

/* ---- names and ids ---- */

static bool is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool store_name_valid(const char *s)
{
    size_t n;

    if (s == NULL || !is_alnum((unsigned char)s[0]))
        return false;
    for (n = 1; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= STORE_NAME_MAX || !(is_alnum(c) || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

/* RFC 3986 unreserved characters: an id is a path segment that needs no escaping. */
static bool id_valid_n(const char *s, size_t n)
{
    if (n == 0 || n > STORE_ID_MAX)
        return false;
    /* "." and ".." would be eaten by URL path normalization on the way in. */
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(is_alnum(c) || c == '.' || c == '_' || c == '~' || c == '-'))
            return false;
    }
    return true;
}

bool store_id_valid(const char *s)
{
    return s != NULL && id_valid_n(s, strnlen(s, STORE_ID_MAX + 1));
}

int store_id_key(const json_t *id, char *key)
{
    if (json_is_integer(id)) {
        json_int_t v = json_integer_value(id);
        if (v < 0)
            return -EINVAL;
        snprintf(key, STORE_ID_MAX + 1, "%" PRId64, (int64_t)v);
        return 0;
    }
    if (json_is_string(id) && id_valid_n(json_string_value(id), json_string_length(id))) {
        memcpy(key, json_string_value(id), json_string_length(id) + 1);
        return 0;
    }
    return -EINVAL;
}

/* True when path id 's' is the canonical decimal form of an int64 >= 0 ("7", not "07" or "+7"). */
static bool path_is_int(const char *s, int64_t *v)
{
    size_t n = strlen(s);

    if (n == 0 || n > 19 || (n > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return parse_i64(s, 0, INT64_MAX, v) == 0;
}

/* The body's "id", or NULL when absent or null (json-server treats a null id as none). */
static const json_t *body_id(const json_t *body)
{
    const json_t *id = json_object_get(body, "id");
    return json_is_null(id) ? NULL : id;
}

/*
 * jansson reports out of memory as NULL or -1; cairnd aborts on OOM (util.h),
 * and a silently dropped member would corrupt a document.
 */
static json_t *copy(const json_t *j)
{
    json_t *c = json_deep_copy(j);
    if (c == NULL)
        panic("json_deep_copy: out of memory");
    return c;
}

static void set_new(json_t *obj, const char *key, json_t *value)
{
    if (value == NULL || json_object_set_new(obj, key, value) != 0)
        panic("json_object_set_new: out of memory");
}

/* 21 characters of [A-Za-z0-9_-] from getrandom(2), the kernel CSPRNG. */
static void random_id(char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    unsigned char raw[STORE_RANDOM_ID_LEN];
    size_t got = 0;

    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            panic("getrandom: %s", strerror(errno));
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        out[i] = abc[raw[i] & 63];
    out[sizeof(raw)] = '\0';
}

/*
 * Picks a POST id for a doc without one, as json-server 0.17 does: the next
 * integer when every id in 'c' is an integer (1 in an empty collection), else
 * a random string. Integer ids count up from the highest ever stored, so an id
 * freed by DELETE is not handed out again. Writes the key; *as_int says which.
 */
static void next_id(const struct coll *c, char *key, bool *as_int, int64_t *v)
{
    if (coll_ids_all_int(c) && coll_max_int_id(c) < INT64_MAX) {
        *v = coll_max_int_id(c) + 1;
        *as_int = true;
        snprintf(key, STORE_ID_MAX + 1, "%" PRId64, *v);
        return;
    }
    *as_int = false;
    *v = 0;
    do {
        random_id(key);
    } while (coll_get(c, key, strlen(key)) != NULL); /* 2^-126 per try; cheap to be sure */
}

/* Sets obj's "id" (in place if present, else appended) to the integer 'v' or the string 'key'. */
static void set_id(json_t *obj, const char *key, bool as_int, int64_t v)
{
    set_new(obj, "id", as_int ? json_integer(v) : json_string(key));
}

/* ---- RFC 7396 JSON Merge Patch ---- */

/*
 * New reference: 'patch' applied to 'target' (stolen; NULL means absent).
 * 'target' must be private to the caller: it is changed in place. 'patch' is
 * borrowed and copied from. Recursion depth is that of 'patch', bounded by
 * the parser's depth limit.
 */
static json_t *merge_patch(json_t *target, const json_t *patch)
{
    const char *key;
    json_t *value;

    if (!json_is_object(patch)) {
        json_decref(target);
        return copy(patch);
    }
    if (!json_is_object(target)) {
        json_decref(target);
        target = json_object();
        if (target == NULL)
            panic("json_object: out of memory");
    }
    /* The cast only feeds the iterator; 'patch' is read, never written. */
    json_object_foreach((json_t *)patch, key, value)
    {
        if (json_is_null(value)) {
            json_object_del(target, key);
        } else {
            json_t *cur = json_object_get(target, key);
            set_new(target, key, merge_patch(json_incref(cur), value));
        }
    }
    return target;
}

json_t *store_merge_patch(const json_t *target, const json_t *patch)
{
    return merge_patch(target != NULL ? copy(target) : NULL, patch);
}

/* ---- results ---- */

const char *store_result_str(enum store_result r)
{
    switch (r) {
    case STORE_OK:
        return "ok";
    case STORE_CREATED:
        return "created";
    case STORE_NOT_FOUND:
        return "not found";
    case STORE_CONFLICT:
        return "conflict";
    case STORE_PRECONDITION_FAILED:
        return "precondition failed";
    case STORE_INVALID:
        return "invalid";
    case STORE_COMMIT_FAILED:
        return "commit failed";
    case STORE_DAMAGED:
        return "damaged";
    case STORE_TOO_LARGE:
        return "too large";
    }
    panic("store_result_str: unknown result %d", (int)r);
}

void store_res_cleanup(struct store_res *res)
{
    doc_release(res->doc);
    res->doc = NULL;
}

static enum store_result fail(struct store_res *res, enum store_result code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum store_result fail(struct store_res *res, enum store_result code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(res->msg, sizeof(res->msg), fmt, ap);
    va_end(ap);
    res->code = code;
    return code;
}

/* If-Match: passes when absent; otherwise needs a target, and for a list its revision in it. */
static bool if_match_ok(const struct store_op *op, bool exists, uint64_t rev)
{
    if (!op->if_match_any && op->n_if_match == 0)
        return true;
    if (!exists)
        return false;
    if (op->if_match_any)
        return true;
    for (size_t i = 0; i < op->n_if_match; i++)
        if (op->if_match[i] == rev)
            return true;
    return false;
}

static enum store_result precondition_failed(struct store_res *res, struct doc *cur)
{
    res->doc = doc_retain(cur);
    return fail(res, STORE_PRECONDITION_FAILED, "If-Match does not match the current revision");
}

/* ---- validation that needs no state (no lock) ---- */

static enum store_result validate(const struct store_op *op, struct store_res *res)
{
    char key[STORE_ID_MAX + 1];
    const json_t *jid;

    if (op->n_if_match > STORE_IF_MATCH_MAX)
        return fail(res, STORE_INVALID, "If-Match lists more than %d revisions",
                    STORE_IF_MATCH_MAX);
    if (op->kind != STORE_IMPORT && !store_name_valid(op->name))
        return fail(
            res, STORE_INVALID,
            "invalid name: 1-%d characters of [A-Za-z0-9_.-], starting with a letter or digit",
            STORE_NAME_MAX);
    if ((op->kind == STORE_PUT || op->kind == STORE_PATCH || op->kind == STORE_DELETE) &&
        !store_id_valid(op->id))
        return fail(res, STORE_INVALID, "invalid id: 1-%d characters of [A-Za-z0-9._~-]",
                    STORE_ID_MAX);
    if (op->kind != STORE_DELETE && !json_is_object(op->body))
        return fail(res, STORE_INVALID,
                    op->kind == STORE_IMPORT ? "db.json must be a JSON object"
                                             : "body must be a JSON object");
    switch (op->kind) {
    case STORE_POST:
        jid = body_id(op->body);
        if (jid != NULL && store_id_key(jid, key) != 0)
            return fail(res, STORE_INVALID,
                        "\"id\" must be an integer >= 0 or a string of 1-%d characters of "
                        "[A-Za-z0-9._~-]",
                        STORE_ID_MAX);
        break;
    case STORE_PUT:
        jid = body_id(op->body);
        if (jid != NULL && (store_id_key(jid, key) != 0 || strcmp(key, op->id) != 0))
            return fail(res, STORE_INVALID, "\"id\" in the body differs from the id in the path");
        break;
    case STORE_PATCH:
    case STORE_DELETE:
    case STORE_PUT_SINGLE:
    case STORE_PATCH_SINGLE:
    case STORE_IMPORT:
        break;
    default:
        return fail(res, STORE_INVALID, "unknown operation %d", (int)op->kind);
    }
    return STORE_OK;
}

/* ---- building the next snapshot; do_* run with st->write_lock held ---- */

/* What a do_* function hands back on success. */
struct built {
    struct snap *next;   /* New reference */
    struct doc *doc;     /* New reference: the resulting doc (the removed one for DELETE) */
    bool doc_is_removed; /* DELETE: res->doc stays NULL */
};

static enum store_result too_many_names(const struct snap *cur, struct store_res *res)
{
    if (snap_ncolls(cur) + snap_nsingles(cur) < STORE_MAX_NAMES)
        return STORE_OK;
    return fail(res, STORE_INVALID, "too many collections and resources (limit %d)",
                STORE_MAX_NAMES);
}

/*
 * Finds the collection a collection-level write addresses, or makes an empty
 * one when the write may create it (*fresh then owns it). Returns STORE_OK, or
 * the failure already recorded in 'res'.
 */
static enum store_result find_coll(const struct snap *cur, const struct store_op *op, uint64_t rev,
                                   bool may_create, struct store_res *res, const struct coll **c,
                                   struct coll **fresh)
{
    *fresh = NULL;
    *c = snap_coll(cur, op->name);
    if (*c != NULL)
        return STORE_OK;
    if (snap_single(cur, op->name) != NULL)
        return fail(res, STORE_CONFLICT, "'%s' is a singular resource, not a collection", op->name);
    if (!may_create || op->no_create)
        return fail(res, STORE_NOT_FOUND, "no collection '%s'", op->name);
    if (too_many_names(cur, res) != STORE_OK)
        return res->code;
    *c = *fresh = coll_new(op->name, rev);
    return STORE_OK;
}

/* Adds 'd' (borrowed) to 'c' and 'c' to 'cur', giving 'out' its new references. */
static void finish_coll(const struct snap *cur, const struct coll *c, struct doc *d, uint64_t rev,
                        struct built *out)
{
    struct coll *nc = coll_with(c, d, rev);

    out->next = snap_with_coll(cur, nc, rev);
    out->doc = doc_retain(d);
    coll_release(nc);
}

/* New reference: the doc of 'j', or NULL with STORE_TOO_LARGE in 'res' (4 GiB or more). */
static struct doc *make_doc(const json_t *j, const char *id, size_t id_len, uint64_t seq,
                            uint64_t rev, struct store_res *res)
{
    struct doc *d;

    if (doc_from_json(j, id, id_len, seq, rev, &d) != 0)
        fail(res, STORE_TOO_LARGE, "the document would serialize to 4 GiB or more");
    return d;
}

static enum store_result do_post(const struct snap *cur, const struct store_op *op, json_t **body,
                                 uint64_t rev, struct store_res *res, struct built *out)
{
    const struct coll *c;
    struct coll *fresh;
    const json_t *jid;
    char key[STORE_ID_MAX + 1];
    enum store_result rc;
    struct doc *d;

    rc = find_coll(cur, op, rev, true, res, &c, &fresh);
    if (rc != STORE_OK)
        goto out;
    /* POST's If-Match target is the collection. */
    if (!if_match_ok(op, fresh == NULL, coll_revision(c))) {
        rc = fail(res, STORE_PRECONDITION_FAILED,
                  "If-Match does not match the collection's revision");
        goto out;
    }
    jid = body_id(*body);
    if (jid != NULL) {
        store_id_key(jid, key); /* validated before the lock */
        if (coll_get(c, key, strlen(key)) != NULL) {
            rc = fail(res, STORE_CONFLICT, "id '%s' already exists in '%s'", key, op->name);
            goto out;
        }
    } else {
        bool as_int;
        int64_t v;
        next_id(c, key, &as_int, &v);
        set_id(*body, key, as_int, v);
    }
    d = make_doc(*body, key, strlen(key), coll_next_seq(c), rev, res);
    if (d == NULL) {
        rc = res->code;
        goto out;
    }
    finish_coll(cur, c, d, rev, out);
    doc_release(d);
    rc = STORE_CREATED;
out:
    coll_release(fresh);
    return rc;
}

static enum store_result do_put(const struct snap *cur, const struct store_op *op, json_t **body,
                                uint64_t rev, struct store_res *res, struct built *out)
{
    const struct coll *c;
    struct coll *fresh;
    struct doc *old, *d;
    const json_t *jid;
    enum store_result rc;
    int64_t v = 0;
    bool as_int;

    rc = find_coll(cur, op, rev, true, res, &c, &fresh);
    if (rc != STORE_OK)
        goto out;
    old = coll_get(c, op->id, strlen(op->id));
    if (!if_match_ok(op, old != NULL, old != NULL ? old->rev : 0)) {
        rc = precondition_failed(res, old);
        goto out;
    }
    /*
     * The body's "id" (already checked equal to the path id) keeps its JSON
     * type. Without one, the doc keeps its type, and a new doc is an integer
     * when the path is one and the collection's ids are integers.
     */
    jid = body_id(*body);
    if (jid == NULL) {
        bool path_int = path_is_int(op->id, &v);
        as_int = old != NULL ? old->int_id : path_int && coll_ids_all_int(c);
        if (as_int && old != NULL)
            v = old->int_val;
        set_id(*body, op->id, as_int, v);
    }
    d = make_doc(*body, op->id, strlen(op->id), old != NULL ? old->seq : coll_next_seq(c), rev,
                 res);
    if (d == NULL) {
        rc = res->code;
        goto out;
    }
    finish_coll(cur, c, d, rev, out);
    doc_release(d);
    rc = old != NULL ? STORE_OK : STORE_CREATED;
out:
    coll_release(fresh);
    return rc;
}

/*
 * New reference: 'patch' merged into 'old' (parsed from its bytes: docs keep
 * no tree). With 'keep_id', NULL (and INVALID in 'res') when the patch
 * changes or removes "id".
 */
static json_t *patched(const struct doc *old, const json_t *patch, bool keep_id,
                       struct store_res *res)
{
    json_t *j = doc_parse(old), *old_id;

    if (j == NULL) {
        /* the server's fault, not the client's: bytes recovery scanned but jansson refuses */
        fail(res, STORE_DAMAGED, "the stored document '%s' cannot be parsed", old->id);
        return NULL;
    }
    old_id = json_incref(json_object_get(j, "id"));
    j = merge_patch(j, patch);
    if (keep_id && !json_equal(json_object_get(j, "id"), old_id)) {
        json_decref(j);
        json_decref(old_id);
        fail(res, STORE_INVALID, "a merge patch may not change or remove \"id\"");
        return NULL;
    }
    json_decref(old_id);
    return j;
}

static enum store_result do_patch(const struct snap *cur, const struct store_op *op, uint64_t rev,
                                  struct store_res *res, struct built *out)
{
    const struct coll *c;
    struct coll *fresh;
    struct doc *old, *d;
    json_t *j;
    enum store_result rc;

    rc = find_coll(cur, op, rev, false, res, &c, &fresh);
    if (rc != STORE_OK)
        return rc;
    old = coll_get(c, op->id, strlen(op->id));
    if (old == NULL)
        return fail(res, STORE_NOT_FOUND, "no id '%s' in '%s'", op->id, op->name);
    if (!if_match_ok(op, true, old->rev))
        return precondition_failed(res, old);
    j = patched(old, op->body, true, res);
    if (j == NULL)
        return res->code;
    d = make_doc(j, old->id, old->id_len, old->seq, rev, res);
    json_decref(j);
    if (d == NULL)
        return res->code;
    finish_coll(cur, c, d, rev, out);
    doc_release(d);
    return STORE_OK;
}

static enum store_result do_delete(const struct snap *cur, const struct store_op *op, uint64_t rev,
                                   struct store_res *res, struct built *out)
{
    const struct coll *c;
    struct coll *fresh, *nc;
    struct doc *old;
    enum store_result rc;

    rc = find_coll(cur, op, rev, false, res, &c, &fresh);
    if (rc != STORE_OK)
        return rc;
    old = coll_get(c, op->id, strlen(op->id));
    if (old == NULL)
        return fail(res, STORE_NOT_FOUND, "no id '%s' in '%s'", op->id, op->name);
    if (!if_match_ok(op, true, old->rev))
        return precondition_failed(res, old);
    nc = coll_without(c, old->id, old->id_len, rev);
    out->next = snap_with_coll(cur, nc, rev);
    out->doc = doc_retain(old);
    out->doc_is_removed = true;
    coll_release(nc);
    return STORE_OK;
}

static enum store_result do_put_single(const struct snap *cur, const struct store_op *op,
                                       json_t **body, uint64_t rev, struct store_res *res,
                                       struct built *out)
{
    struct doc *old, *d;

    if (snap_coll(cur, op->name) != NULL)
        return fail(res, STORE_CONFLICT, "'%s' is a collection, not a singular resource", op->name);
    old = snap_single(cur, op->name);
    if (old == NULL && op->no_create)
        return fail(res, STORE_NOT_FOUND, "no resource '%s'", op->name);
    if (!if_match_ok(op, old != NULL, old != NULL ? old->rev : 0))
        return precondition_failed(res, old);
    if (old == NULL && too_many_names(cur, res) != STORE_OK)
        return res->code;
    d = make_doc(*body, op->name, strlen(op->name), 0, rev, res);
    if (d == NULL)
        return res->code;
    out->next = snap_with_single(cur, d, rev);
    out->doc = d;
    return old != NULL ? STORE_OK : STORE_CREATED;
}

static enum store_result do_patch_single(const struct snap *cur, const struct store_op *op,
                                         uint64_t rev, struct store_res *res, struct built *out)
{
    struct doc *old, *d;
    json_t *j;

    if (snap_coll(cur, op->name) != NULL)
        return fail(res, STORE_CONFLICT, "'%s' is a collection, not a singular resource", op->name);
    old = snap_single(cur, op->name);
    if (old == NULL)
        return fail(res, STORE_NOT_FOUND, "no resource '%s'", op->name);
    if (!if_match_ok(op, true, old->rev))
        return precondition_failed(res, old);
    j = patched(old, op->body, false, res);
    if (j == NULL)
        return res->code;
    d = make_doc(j, old->id, old->id_len, 0, rev, res);
    json_decref(j);
    if (d == NULL)
        return res->code;
    out->next = snap_with_single(cur, d, rev);
    out->doc = d;
    return STORE_OK;
}

/*
 * New reference: collection 'name' built from db.json array 'arr', or NULL
 * with INVALID in 'res'. Explicit ids are read first so that generated
 * integer ids start above all of them and never collide; a generated random
 * string colliding with an explicit one (p < 2^-100) is reported as a repeat.
 * Built in bulk: 2 nodes per doc instead of two O(log n) path copies.
 */
static struct coll *import_coll(const char *name, const json_t *arr, bool owned, uint64_t rev,
                                struct store_res *res)
{
    size_t n = json_array_size(arr), i, made = 0;
    struct doc **docs = xmalloc((n ? n : 1) * sizeof(*docs));
    struct coll *c = NULL;
    const struct doc *dup = NULL;
    char key[STORE_ID_MAX + 1];
    int64_t max_int = 0;
    bool all_int = true;
    const json_t *el;

    json_array_foreach(arr, i, el)
    {
        const json_t *jid = json_is_object(el) ? body_id(el) : NULL;
        if (!json_is_object(el)) {
            fail(res, STORE_INVALID, "db.json: %s[%zu] is not an object", name, i);
            goto out;
        }
        if (jid != NULL && store_id_key(jid, key) != 0) {
            fail(res, STORE_INVALID, "db.json: %s[%zu] has an invalid \"id\"", name, i);
            goto out;
        }
        if (json_is_integer(jid) && json_integer_value(jid) > max_int)
            max_int = json_integer_value(jid);
        all_int = all_int && (jid == NULL || json_is_integer(jid));
    }
    json_array_foreach(arr, i, el)
    {
        /*
         * The element is only serialized; one without an "id" gets one, in
         * place when the body is ours (take_body), else in a copy.
         */
        const json_t *jid = body_id(el);
        json_t *given = NULL;

        if (jid != NULL) {
            store_id_key(jid, key);
        } else if (all_int && max_int < INT64_MAX) {
            max_int++;
            snprintf(key, sizeof(key), "%" PRId64, max_int);
            given = owned ? json_incref((json_t *)el) : copy(el);
            set_id(given, key, true, max_int);
        } else {
            random_id(key);
            given = owned ? json_incref((json_t *)el) : copy(el);
            set_id(given, key, false, 0);
        }
        if (doc_from_json(given != NULL ? given : el, key, strlen(key), (uint64_t)i + 1, rev,
                          &docs[made]) != 0) {
            json_decref(given);
            fail(res, STORE_TOO_LARGE, "db.json: %s[%zu] serializes to 4 GiB or more", name, i);
            goto out;
        }
        made++;
        json_decref(given);
    }
    c = coll_build(name, rev, docs, made, &dup);
    if (c == NULL)
        fail(res, STORE_INVALID, "db.json: %s repeats id '%s'", name, dup->id);
out:
    for (i = 0; i < made; i++)
        doc_release(docs[i]);
    free(docs);
    return c;
}

static enum store_result do_import(const struct snap *cur, const struct store_op *op, uint64_t rev,
                                   struct store_res *res, struct built *out)
{
    struct snap *next;
    const char *name;
    const json_t *value;

    /* IMPORT's If-Match target is the whole store. */
    if (!if_match_ok(op, true, snap_revision(cur)))
        return fail(res, STORE_PRECONDITION_FAILED, "If-Match does not match the store's revision");
    if (json_object_size(op->body) > STORE_MAX_NAMES)
        return fail(res, STORE_INVALID, "db.json: more than %d names", STORE_MAX_NAMES);
    next = snap_new(rev);
    json_object_foreach((json_t *)op->body, name, value)
    {
        struct snap *n;
        if (!store_name_valid(name)) {
            fail(res, STORE_INVALID,
                 "db.json: invalid name (1-%d characters of [A-Za-z0-9_.-], "
                 "starting with a letter or digit)",
                 STORE_NAME_MAX);
            goto out_fail;
        }
        if (json_is_array(value)) {
            struct coll *c = import_coll(name, value, op->take_body, rev, res);
            if (c == NULL)
                goto out_fail;
            n = snap_with_coll(next, c, rev);
            coll_release(c);
        } else if (json_is_object(value)) {
            struct doc *d;
            if (doc_from_json(value, name, strlen(name), 0, rev, &d) != 0) {
                fail(res, STORE_TOO_LARGE, "db.json: '%s' serializes to 4 GiB or more", name);
                goto out_fail;
            }
            n = snap_with_single(next, d, rev);
            doc_release(d);
        } else {
            fail(res, STORE_INVALID, "db.json: '%s' is neither an array nor an object", name);
            goto out_fail;
        }
        snap_release(next);
        next = n;
    }
    out->next = next;
    return STORE_OK;
out_fail:
    snap_release(next);
    return res->code;
}

/* ---- the store ---- */

struct store *store_new(const struct store_opts *opts)
{
    struct store *st = xcalloc(1, sizeof(*st));
    pthread_rwlockattr_t attr;

    /* Writers must not starve behind a steady stream of readers (glibc prefers readers). */
    if (pthread_rwlockattr_init(&attr) != 0 ||
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP) != 0 ||
        pthread_rwlock_init(&st->lock, &attr) != 0 ||
        pthread_mutex_init(&st->write_lock, NULL) != 0)
        panic("store_new: lock initialisation failed");
    pthread_rwlockattr_destroy(&attr);
    st->cur = snap_new(0);
    if (opts != NULL) {
        st->commit = opts->commit;
        st->commit_cls = opts->commit_cls;
    }
    return st;
}

void store_free(struct store *st)
{
    if (st == NULL)
        return;
    snap_release(st->cur);
    pthread_rwlock_destroy(&st->lock);
    pthread_mutex_destroy(&st->write_lock);
    free(st);
}

struct snap *store_acquire(struct store *st)
{
    struct snap *s;

    pthread_rwlock_rdlock(&st->lock);
    s = snap_retain(st->cur);
    pthread_rwlock_unlock(&st->lock);
    return s;
}

void store_install(struct store *st, struct snap *s)
{
    struct snap *old;

    pthread_mutex_lock(&st->write_lock);
    pthread_rwlock_wrlock(&st->lock);
    old = st->cur;
    st->cur = s;
    pthread_rwlock_unlock(&st->lock);
    pthread_mutex_unlock(&st->write_lock);
    snap_release(old);
}

void store_exclusive(struct store *st, void (*fn)(void *cls, const struct snap *cur), void *cls)
{
    pthread_mutex_lock(&st->write_lock);
    fn(cls, st->cur);
    pthread_mutex_unlock(&st->write_lock);
}

/*
 * The write path, in order:
 *   1. validate what needs no state (names, ids, body shape), no lock held;
 *   2. copy the body (POST, PUT, PUT_SINGLE: it becomes the stored json_t),
 *      unless the caller gave it away (op->take_body);
 *   3. lock write_lock; build the next snapshot beside st->cur (do_*);
 *   4. commit hook: the write-ahead log appends and syncs here; on failure the
 *      next snapshot is dropped and nothing has changed;
 *   5. publish: swap st->cur under the write lock of st->lock;
 *   6. unlock write_lock; release the previous snapshot outside both locks
 *      (freeing what no reader still holds can take a while).
 * Every successful write takes revision cur + 1, so revisions are dense and
 * the log sees them in order.
 */
enum store_result store_write(struct store *st, const struct store_op *op, struct store_res *res)
{
    struct built b = {0};
    struct snap *cur, *old = NULL;
    json_t *body = NULL;
    /* The caller's reference when it gave 'body' away; dropped on return. */
    json_t *given = op->take_body ? (json_t *)op->body : NULL;
    uint64_t rev;
    enum store_result rc;

    memset(res, 0, sizeof(*res));
    rc = validate(op, res);
    if (rc != STORE_OK)
        goto out_rev;
    if (op->kind == STORE_POST || op->kind == STORE_PUT || op->kind == STORE_PUT_SINGLE)
        body = given != NULL ? json_incref(given) : copy(op->body);

    pthread_mutex_lock(&st->write_lock);
    cur = st->cur;
    rev = snap_revision(cur) + 1;
    switch (op->kind) {
    case STORE_POST:
        rc = do_post(cur, op, &body, rev, res, &b);
        break;
    case STORE_PUT:
        rc = do_put(cur, op, &body, rev, res, &b);
        break;
    case STORE_PATCH:
        rc = do_patch(cur, op, rev, res, &b);
        break;
    case STORE_DELETE:
        rc = do_delete(cur, op, rev, res, &b);
        break;
    case STORE_PUT_SINGLE:
        rc = do_put_single(cur, op, &body, rev, res, &b);
        break;
    case STORE_PATCH_SINGLE:
        rc = do_patch_single(cur, op, rev, res, &b);
        break;
    case STORE_IMPORT:
        rc = do_import(cur, op, rev, res, &b);
        break;
    default:
        panic("store_write: unvalidated operation %d", (int)op->kind);
    }
    if (rc != STORE_OK && rc != STORE_CREATED)
        goto out_unlock;

    if (st->commit != NULL) {
        struct store_change ch = {
            .op = op,
            .rev = rev,
            .name = op->kind == STORE_IMPORT ? NULL : op->name,
            .doc = b.doc,
            .next = b.next,
        };
        int err = st->commit(st->commit_cls, &ch);
        if (err != 0) {
            char ebuf[128];
            res->err = err < 0 ? err : -err;
            rc = fail(res, STORE_COMMIT_FAILED, "commit failed: %s",
                      strerror_r(-res->err, ebuf, sizeof(ebuf)));
            goto out_unlock;
        }
    }

    pthread_rwlock_wrlock(&st->lock);
    old = st->cur;
    st->cur = b.next;
    pthread_rwlock_unlock(&st->lock);
    b.next = NULL;
    res->code = rc;
    res->msg[0] = '\0';
    if (!b.doc_is_removed) {
        res->doc = b.doc;
        b.doc = NULL;
    }

out_unlock:
    res->rev = snap_revision(st->cur);
    pthread_mutex_unlock(&st->write_lock);
    snap_release(old);
    snap_release(b.next);
    doc_release(b.doc);
    json_decref(body);
    json_decref(given);
    return rc;

out_rev:
    /* Rejected before the lock: report the revision it left unchanged. */
    {
        struct snap *s = store_acquire(st);
        res->rev = snap_revision(s);
        snap_release(s);
    }
    json_decref(given);
    return rc;
}
