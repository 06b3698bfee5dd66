/*
 * src/mod_collections.c -- the collections API: json-server 0.17 routes over
 * the snapshot store (src/store/). Every read takes one snapshot reference,
 * drops the store's lock at once and builds its reply from that snapshot
 * alone; documents go out as the bytes serialized when they were written,
 * borrowed (not copied) until libmicrohttpd has sent them.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "modules.h"
#include "query.h"
#include "store/durable.h"
#include "store/store.h"
#include "util.h"

static struct durable *durable; /* the data dir, the log and the committer (store/durable.h) */
static struct store *store;
static const char *import_path;
static bool recover_truncate;

void collections_set_import(const char *path)
{
    import_path = path;
}

void collections_set_recover_truncate(bool on)
{
    recover_truncate = on;
}

/* ---- helpers ---- */

static void release_doc(void *cls)
{
    doc_release(cls);
}

static void release_coll(void *cls)
{
    coll_release(cls);
}

/* Sends 'd' as the body: its stored bytes, borrowed with a reference of our own. */
static void reply_doc(struct reply *reply, struct doc *d)
{
    reply_body_borrow(reply, d->bytes, d->len, release_doc, doc_retain(d));
    reply_header_u64(reply, "ETag", d->rev, true);
}

/*
 * Deepest nesting of arrays and objects in JSON text, counted from the bytes
 * before parsing, so a 100000-deep body never reaches a recursive decoder.
 */
static size_t json_depth(const char *p, size_t n)
{
    size_t depth = 0, max = 0;
    int in_string = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                max = depth;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return max;
}

/* Parses the request body as a JSON object. New reference, or NULL with the 400 detail set. */
static json_t *parse_body(struct request *req, struct reply *reply)
{
    json_error_t err;
    if (req->body == NULL || req->body_len == 0) {
        reply_fail(reply, RES_BAD_REQUEST, "a JSON object body is required");
        return NULL;
    }
    size_t depth = json_depth(req->body, req->body_len);
    if (depth > (size_t)req->cfg->max_json_depth) {
        reply_fail(reply, RES_BAD_REQUEST, "the body nests deeper than %lld levels",
                   (long long)req->cfg->max_json_depth);
        return NULL;
    }
    /* duplicate keys are accepted, the last one wins (RFC 8259 allows it; JSONTestSuite y_) */
    json_t *v = json_loadb(req->body, req->body_len, 0, &err);
    if (v == NULL) {
        /* err.text quotes the input; give the position and a fixed message instead */
        reply_fail(reply, RES_BAD_REQUEST, "malformed JSON at line %d, column %d (byte %d)",
                   err.line, err.column, err.position);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        reply_fail(reply, RES_BAD_REQUEST, "the body must be a JSON object");
        return NULL;
    }
    return v;
}

/* If-Match -> op. Returns RES_OK, or RES_PRECONDITION_FAILED when no tag can ever match. */
static enum result parse_if_match(const char *h, struct store_op *op, struct reply *reply)
{
    if (h == NULL)
        return RES_OK;
    const char *p = h;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strcmp(p, "*") == 0) {
        op->if_match_any = true;
        return RES_OK;
    }
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        /* strong comparison (RFC 9110 13.1.1): W/ tags never match */
        int weak = strncmp(p, "W/", 2) == 0;
        if (weak)
            p += 2;
        uint64_t v = 0;
        int digits = 0, ok = *p == '"';
        if (ok)
            p++;
        while (ok && *p >= '0' && *p <= '9' && digits < 20) {
            v = v * 10 + (uint64_t)(*p++ - '0');
            digits++;
        }
        ok = ok && digits > 0 && *p == '"';
        if (ok)
            p++;
        if (ok && !weak) {
            if (op->n_if_match == STORE_IF_MATCH_MAX)
                return reply_fail(reply, RES_BAD_REQUEST, "If-Match lists more than %d entity tags",
                                  STORE_IF_MATCH_MAX);
            op->if_match[op->n_if_match++] = v;
        }
        while (*p != '\0' && *p != ',')
            p++;
    }
    if (op->n_if_match == 0)
        return reply_fail(reply, RES_PRECONDITION_FAILED, "If-Match lists no current entity tag");
    return RES_OK;
}

/* If-None-Match against a revision: true when the client's copy is current (weak compare). */
static bool none_match_hit(const char *h, uint64_t rev)
{
    if (h == NULL)
        return false;
    char tag[32];
    snprintf(tag, sizeof(tag), "\"%" PRIu64 "\"", rev);
    size_t tlen = strlen(tag);
    const char *p = h;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (strncmp(p, tag, tlen) == 0 && (p[tlen] == '\0' || p[tlen] == ',' || p[tlen] == ' '))
            return true;
        while (*p != '\0' && *p != ',')
            p++;
    }
    return false;
}

static enum result get_doc(struct request *req, struct reply *reply, struct doc *d)
{
    if (none_match_hit(req->if_none_match, d->rev)) {
        /*
         * libmicrohttpd sends no content with a 304 but announces the
         * buffer's length: give it the 200's body so Content-Length is the
         * 200's (RFC 9110 8.6), not 0.
         */
        reply_doc(reply, d);
        reply->status = 304;
        return RES_OK;
    }
    reply_doc(reply, d);
    return RES_OK;
}

/* Maps a store outcome to the reply; the one place store results become HTTP. */
static enum result write_reply(struct request *req, struct reply *reply, struct store_res *res,
                               const char *name)
{
    switch (res->code) {
    case STORE_OK:
    case STORE_CREATED:
        reply_header_u64(reply, "X-Revision", res->rev, false);
        if (res->doc == NULL) { /* DELETE */
            reply_body_copy(reply, "{}", 2);
            return RES_OK;
        }
        reply_doc(reply, res->doc);
        if (res->code == STORE_CREATED) {
            reply->status = 201;
            if (req->params[1] == NULL && req->method == METHOD_POST)
                reply_header(reply, "Location", "%s/%s/%s", req->cfg->api_prefix, name,
                             res->doc->id);
            else if (req->params[1] != NULL)
                reply_header(reply, "Location", "%s/%s/%s", req->cfg->api_prefix, name,
                             req->params[1]);
        }
        return RES_OK;
    case STORE_NOT_FOUND:
        return reply_fail(reply, RES_NOT_FOUND, "%s", res->msg);
    case STORE_CONFLICT:
        return reply_fail(reply, RES_CONFLICT, "%s", res->msg);
    case STORE_PRECONDITION_FAILED:
        if (res->doc != NULL)
            reply_header_u64(reply, "ETag", res->doc->rev, true);
        return reply_fail(reply, RES_PRECONDITION_FAILED, "%s", res->msg);
    case STORE_INVALID:
        return reply_fail(reply, RES_BAD_REQUEST, "%s", res->msg);
    case STORE_TOO_LARGE:
        return reply_fail(reply, RES_TOO_LARGE, "%s", res->msg);
    case STORE_DAMAGED: /* logged with the request id, as every 5xx is */
        return reply_fail(reply, RES_INTERNAL, "%s", res->msg);
    case STORE_COMMIT_FAILED:
        if (res->err == -ENOSPC || res->err == -EDQUOT)
            return reply_fail(reply, RES_INSUFFICIENT_STORAGE,
                              "the disk is full: the write was not made, nothing changed");
        if (res->err == -EROFS) {
            char why[200];
            durable_read_only(durable, why, sizeof(why));
            return reply_fail(reply, RES_UNAVAILABLE, "%s; nothing changed", why);
        }
        if (res->err == -ESHUTDOWN)
            return reply_fail(reply, RES_UNAVAILABLE, "shutting down; nothing changed");
        if (res->err == -EFBIG)
            return reply_fail(reply, RES_TOO_LARGE,
                              "the write's log record would be larger than the log's record "
                              "limit (%zu bytes); nothing changed",
                              durable_record_max(durable));
        return reply_fail(reply, RES_UNAVAILABLE,
                          "the write could not be logged: %s; nothing changed",
                          strerror(-res->err));
    }
    panic("collections: unknown store result %d", (int)res->code);
}

/* A write whose reply waits for its fsync (sync = always). */
struct pending {
    struct request *req;
    enum result rc;
    struct reply reply; /* ready to send */
};

/* The committer thread: the write is on stable storage (err 0), or the fsync failed. */
static void on_durable(void *cls, int err)
{
    struct pending *p = cls;
    if (err != 0) {
        char why[200];
        durable_read_only(durable, why, sizeof(why));
        reply_cleanup(&p->reply);
        reply_init(&p->reply);
        p->rc = reply_fail(&p->reply, RES_UNAVAILABLE,
                           "the write may not be on stable storage (%s) and may or may not be "
                           "there after a restart; %s",
                           strerror(-err), why);
    }
    http_finish(p->req, p->rc, &p->reply);
    reply_cleanup(&p->reply);
    free(p);
}

static enum result do_write(struct request *req, struct reply *reply, enum store_op_kind kind,
                            bool with_body)
{
    struct store_op op;
    struct store_res res;
    memset(&op, 0, sizeof(op));
    op.kind = kind;
    op.name = req->params[0];
    op.id = req->params[1];
    op.no_create = !req->cfg->auto_create;
    if (!store_name_valid(op.name))
        return reply_fail(reply, RES_BAD_REQUEST,
                          "invalid name '%s': 1 to %d characters of A-Z a-z 0-9 _ . -, "
                          "starting with a letter or digit",
                          op.name, STORE_NAME_MAX);
    if (op.id != NULL && !store_id_valid(op.id))
        return reply_fail(reply, RES_BAD_REQUEST, "invalid id '%s'", op.id);
    enum result rc = parse_if_match(req->if_match, &op, reply);
    if (rc != RES_OK)
        return rc;
    json_t *body = NULL;
    if (with_body) {
        body = parse_body(req, reply);
        if (body == NULL)
            return RES_BAD_REQUEST;
        op.body = body;
    }
    char why[200] = "shutting down";
    /* read-only first: a store that cannot write has no reason to say "retry later" */
    bool ro = durable_read_only(durable, why, sizeof(why));
    if (!ro && durable_refuse_busy(durable)) {
        json_decref(body);
        reply_header(reply, "Retry-After", "1");
        return reply_fail(reply, RES_UNAVAILABLE,
                          "too many writes are waiting for the disk (store.max_pending_writes); "
                          "nothing changed, retry later");
    }
    if (ro || !durable_begin(durable)) {
        json_decref(body);
        return reply_fail(reply, RES_UNAVAILABLE, "writes are refused: %s", why);
    }
    op.take_body = body != NULL; /* the store keeps the parsed body: no deep copy */
    store_write(store, &op, &res);
    rc = write_reply(req, reply, &res, op.name);
    bool written = res.code == STORE_OK || res.code == STORE_CREATED;
    uint64_t rev = res.rev;
    store_res_cleanup(&res);
    if (written && durable_must_wait(durable) && !durable_is_durable(durable, rev)) {
        /* sync = always: the reply waits for the committer's fsync, the worker does not */
        struct pending *p = xmalloc(sizeof(*p));
        p->req = req;
        p->rc = rc;
        p->reply = *reply;
        reply_init(reply);
        http_defer(req);
        durable_wait(durable, rev, on_durable, p);
        return RES_PENDING;
    }
    durable_end(durable);
    return rc;
}

/* ---- lists ---- */

static enum result list(struct request *req, struct reply *reply, const struct snap *snap,
                        const struct coll *c)
{
    struct query_param params[REQUEST_MAX_QUERY];
    struct query *q = NULL;
    struct query_error qerr;
    struct buf b;
    size_t n = coll_count(c), total, from, to;
    const struct doc **docs = NULL;

    for (size_t i = 0; i < req->nquery; i++) {
        params[i].name = req->query[i].name;
        params[i].value = req->query[i].value;
    }
    if (query_parse(params, req->nquery, &q, &qerr) != 0)
        return reply_fail(reply, RES_BAD_REQUEST, "%s", qerr.message);

    size_t cached_len;
    const char *cached = NULL;
    if (!query_has_filter(q) && !query_has_sort(q) && !query_has_slice(q))
        cached = coll_list_bytes(c, &cached_len);
    if (cached != NULL) {
        /* the whole list, serialized once per collection version: sent borrowed, no copy */
        reply_body_borrow(reply, cached, cached_len, release_coll, coll_retain(c));
        reply_header(reply, "X-Total-Count", "%zu", n);
        reply_header_u64(reply, "X-Revision", snap_revision(snap), false);
        query_free(q);
        return RES_OK;
    }

    buf_init(&b, SIZE_MAX);
    buf_append(&b, "[", 1);
    if (!query_has_filter(q) && !query_has_sort(q)) {
        /* the common case: a slice in insertion order, straight from the tree */
        total = n;
        query_slice(q, total, &from, &to);
        struct coll_iter it;
        coll_iter_init(&it, c, from);
        for (size_t k = from; k < to; k++) {
            struct doc *d = coll_iter_next(&it);
            if (k > from)
                buf_append(&b, ",", 1);
            buf_append(&b, d->bytes, d->len);
        }
    } else {
        /* the version's doc array (kept with it) when it has one; the pipeline compacts a copy */
        struct doc *const *all = coll_docs(c);
        docs = xmalloc((n ? n : 1) * sizeof(*docs));
        if (all != NULL) {
            memcpy(docs, all, n * sizeof(*docs));
        } else {
            struct coll_iter it;
            coll_iter_init(&it, c, 0);
            for (size_t k = 0; k < n; k++)
                docs[k] = coll_iter_next(&it);
        }
        total = query_apply_coll(q, c, docs, n, &from, &to);
        for (size_t k = from; k < to; k++) {
            if (k > from)
                buf_append(&b, ",", 1);
            buf_append(&b, docs[k]->bytes, docs[k]->len);
        }
        free(docs);
    }
    buf_append(&b, "]", 1);

    reply_header(reply, "X-Total-Count", "%zu", total);
    reply_header_u64(reply, "X-Revision", snap_revision(snap), false);
    char *link = query_link(q, req->path, params, req->nquery, total);
    if (link != NULL) {
        reply_header(reply, "Link", "%s", link);
        free(link);
    }
    query_free(q);
    reply_body_buf(reply, &b);
    return RES_OK;
}

/* ---- handlers ---- */

static enum result get_root(struct request *req, struct reply *reply)
{
    struct snap *snap = store_acquire(store);
    struct buf b;
    (void)req;
    buf_init(&b, SIZE_MAX);
    buf_printf(&b, "{\"revision\":%" PRIu64 ",\"collections\":{", snap_revision(snap));
    for (size_t i = 0; i < snap_ncolls(snap); i++) {
        const struct coll *c = snap_coll_at(snap, i);
        const char *name = coll_name(c);
        buf_puts(&b, i ? "," : "");
        buf_json_string(&b, name, strlen(name));
        buf_printf(&b, ":{\"count\":%zu,\"revision\":%" PRIu64 "}", coll_count(c),
                   coll_revision(c));
    }
    buf_puts(&b, "},\"resources\":{");
    for (size_t i = 0; i < snap_nsingles(snap); i++) {
        const struct doc *d = snap_single_at(snap, i);
        buf_puts(&b, i ? "," : "");
        buf_json_string(&b, d->id, d->id_len);
        buf_printf(&b, ":{\"revision\":%" PRIu64 "}", d->rev);
    }
    buf_puts(&b, "}}");
    reply_header_u64(reply, "X-Revision", snap_revision(snap), false);
    snap_release(snap);
    reply_body_buf(reply, &b);
    return RES_OK;
}

static enum result get_export(struct request *req, struct reply *reply)
{
    struct snap *snap = store_acquire(store);
    struct buf b;
    (void)req;
    buf_init(&b, SIZE_MAX);
    if (snap_export(snap, &b) != 0)
        panic("collections: export of an unbounded buffer failed");
    reply_header_u64(reply, "X-Revision", snap_revision(snap), false);
    snap_release(snap);
    reply_body_buf(reply, &b);
    return RES_OK;
}

static enum result get_name(struct request *req, struct reply *reply)
{
    const char *name = req->params[0];
    if (!store_name_valid(name))
        return reply_fail(reply, RES_NOT_FOUND, "no collection or resource '%s'", name);
    struct snap *snap = store_acquire(store);
    enum result rc;
    const struct coll *c = snap_coll(snap, name);
    struct doc *single = c ? NULL : snap_single(snap, name);
    if (c != NULL)
        rc = list(req, reply, snap, c);
    else if (single != NULL)
        rc = get_doc(req, reply, single);
    else
        rc = reply_fail(reply, RES_NOT_FOUND, "no collection or resource '%s'", name);
    snap_release(snap);
    return rc;
}

static enum result get_item(struct request *req, struct reply *reply)
{
    const char *name = req->params[0], *id = req->params[1];
    if (!store_name_valid(name) || !store_id_valid(id))
        return reply_fail(reply, RES_NOT_FOUND, "no document '%s' in '%s'", id, name);
    struct snap *snap = store_acquire(store);
    const struct coll *c = snap_coll(snap, name);
    struct doc *d = c ? coll_get(c, id, strlen(id)) : NULL;
    enum result rc = d ? get_doc(req, reply, d)
                       : reply_fail(reply, RES_NOT_FOUND, "no document '%s' in '%s'", id, name);
    snap_release(snap);
    return rc;
}

static enum result post_coll(struct request *req, struct reply *reply)
{
    return do_write(req, reply, STORE_POST, true);
}

static enum result put_single(struct request *req, struct reply *reply)
{
    return do_write(req, reply, STORE_PUT_SINGLE, true);
}

static enum result patch_single(struct request *req, struct reply *reply)
{
    return do_write(req, reply, STORE_PATCH_SINGLE, true);
}

static enum result put_item(struct request *req, struct reply *reply)
{
    return do_write(req, reply, STORE_PUT, true);
}

static enum result patch_item(struct request *req, struct reply *reply)
{
    return do_write(req, reply, STORE_PATCH, true);
}

static enum result delete_item(struct request *req, struct reply *reply)
{
    return do_write(req, reply, STORE_DELETE, false);
}

/* ---- POST /v1/_admin/snapshot ---- */

static void on_snapshot(void *cls, int err, uint64_t rev, uint64_t bytes, uint64_t usec)
{
    struct request *req = cls;
    struct reply reply;
    enum result rc = RES_OK;
    reply_init(&reply);
    if (err == 0) {
        char body[160];
        int n =
            snprintf(body, sizeof(body),
                     "{\"revision\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"duration_ms\":%" PRIu64 "}",
                     rev, bytes, usec / 1000);
        reply_body_copy(&reply, body, (size_t)n);
    } else if (err == -ENOSPC || err == -EDQUOT) {
        rc = reply_fail(&reply, RES_INSUFFICIENT_STORAGE,
                        "the disk is full: the snapshot failed and the previous one is kept");
    } else {
        rc = reply_fail(&reply, RES_UNAVAILABLE, "the snapshot failed: %s", strerror(-err));
    }
    http_finish(req, rc, &reply);
    reply_cleanup(&reply);
}

static enum result post_snapshot(struct request *req, struct reply *reply)
{
    char why[200];
    if (durable_read_only(durable, why, sizeof(why)))
        return reply_fail(reply, RES_UNAVAILABLE, "no snapshot: %s", why);
    http_defer(req);
    durable_snapshot(durable, on_snapshot, req);
    return RES_PENDING;
}

/* ---- start-up: seed file and --import ---- */

/*
 * Reads all of 'path' into 'b' (unbounded: the operator's own file). 0, or an
 * errno value with nothing kept.
 */
static int read_whole(const char *path, struct buf *b)
{
    char chunk[65536];
    int rc = 0;
    FILE *f = fopen(path, "rb");

    if (f == NULL)
        return errno;
    buf_init(b, SIZE_MAX);
    for (;;) {
        size_t n = fread(chunk, 1, sizeof(chunk), f);
        if (n > 0)
            buf_append(b, chunk, n);
        if (n < sizeof(chunk))
            break;
    }
    if (ferror(f))
        rc = errno != 0 ? errno : EIO;
    fclose(f);
    if (rc != 0)
        buf_cleanup(b);
    return rc;
}

/*
 * Imports a db.json. The file is read in one go and parsed from memory:
 * json_load_file() reads with one locked getc() per byte, a third of the time
 * of a 100 MB import. The parsed tree is given to the store (no deep copy),
 * and the heap that the parse and the import freed goes back to the kernel.
 */
static int load_file(const char *path, bool only_if_empty)
{
    json_error_t err;
    struct buf text;
    int e = read_whole(path, &text);
    if (e != 0) {
        log_err("%s: cannot load db.json: %s", path, strerror(e));
        return e == ENOENT || e == EACCES || e == ENOTDIR ? EX_NOINPUT : EX_IOERR;
    }
    json_t *db = json_loadb(text.data != NULL ? text.data : "", text.len, 0, &err);
    buf_cleanup(&text);
    if (db == NULL) {
        log_err("%s:%d:%d: cannot load db.json: %s", path, err.line, err.column, err.text);
        return EX_DATAERR;
    }
    struct snap *cur = store_acquire(store);
    bool empty = snap_ncolls(cur) == 0 && snap_nsingles(cur) == 0;
    snap_release(cur);
    if (only_if_empty && !empty) {
        json_decref(db);
        return 0;
    }
    struct store_op op;
    struct store_res res;
    memset(&op, 0, sizeof(op));
    op.kind = STORE_IMPORT;
    op.body = db;
    op.take_body = true;
    store_write(store, &op, &res);
    malloc_trim(0);
    int rc = 0;
    if (res.code != STORE_OK && res.code != STORE_CREATED) {
        log_err("%s: cannot import: %s", path, res.msg);
        rc = EX_DATAERR;
    } else {
        log_notice("imported %s at revision %" PRIu64, path, res.rev);
    }
    store_res_cleanup(&res);
    return rc;
}

static int collections_init(const struct config *cfg)
{
    struct durable_opts o = {
        .dir = cfg->data_dir,
        .sync = cfg->sync == SYNC_ALWAYS     ? DURABLE_SYNC_ALWAYS
                : cfg->sync == SYNC_PERIODIC ? DURABLE_SYNC_PERIODIC
                                             : DURABLE_SYNC_NONE,
        .interval_ms = (uint64_t)cfg->sync_interval_ms,
        .compact_bytes = (uint64_t)cfg->compact_bytes,
        .recover_truncate = recover_truncate,
        .max_pending = (uint64_t)cfg->max_pending_writes,
    };
    int rc = durable_open(&o, &durable);
    if (rc != 0)
        return rc;
    store = durable_store(durable);
    malloc_trim(0); /* recovery's parse buffers and freed records */
    if (import_path != NULL)
        rc = load_file(import_path, false);
    else if (cfg->seed_file[0] != '\0')
        rc = load_file(cfg->seed_file, true);
    if (rc == 0 && (import_path != NULL || cfg->seed_file[0] != '\0') &&
        durable_sync_now(durable) != 0) {
        log_err("cannot make the imported data durable");
        rc = EX_IOERR;
    }
    if (rc != 0) {
        durable_close(durable);
        durable = NULL;
        store = NULL;
    }
    return rc;
}

static void collections_fini(void)
{
    /*
     * Finishes every write waiting for its fsync, then a last snapshot. The
     * store is not freed: a request on a kept-alive connection may still
     * come in before http_stop(); it reads the last state or is refused
     * with 503. It stays reachable from 'durable' until exit.
     */
    durable_stop(durable);
}

static const struct route routes[] = {
    {METHOD_GET, "/", get_root, ROUTE_API},
    {METHOD_GET, "/_export", get_export, ROUTE_API},
    {METHOD_POST, "/_admin/snapshot", post_snapshot, ROUTE_API},
    {METHOD_GET, "/{collection}", get_name, ROUTE_API},
    {METHOD_POST, "/{collection}", post_coll, ROUTE_API | ROUTE_BODY},
    {METHOD_PUT, "/{collection}", put_single, ROUTE_API | ROUTE_BODY},
    {METHOD_PATCH, "/{collection}", patch_single, ROUTE_API | ROUTE_BODY},
    {METHOD_GET, "/{collection}/{id}", get_item, ROUTE_API},
    {METHOD_PUT, "/{collection}/{id}", put_item, ROUTE_API | ROUTE_BODY},
    {METHOD_PATCH, "/{collection}/{id}", patch_item, ROUTE_API | ROUTE_BODY},
    {METHOD_DELETE, "/{collection}/{id}", delete_item, ROUTE_API},
    {0, NULL, NULL, 0},
};

const struct module mod_collections = {
    .name = "collections",
    .init = collections_init,
    .fini = collections_fini,
    .routes = routes,
};
