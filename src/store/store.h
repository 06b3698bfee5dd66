/* src/store/store.h -- the snapshot store: one current snapshot, serialized writers (store.c). */
#ifndef CAIRN_STORE_STORE_H
#define CAIRN_STORE_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/coll.h"
#include "store/doc.h"
#include "store/snap.h"

/*
 * Readers:  snap = store_acquire(st); ...read with no lock...; snap_release(snap);
 * Writers:  store_write(st, &op, &res); ...; store_res_cleanup(&res);
 *
 * store_write() is the only way state changes. It validates the operation,
 * builds the next snapshot beside the current one (sharing all but O(log n)
 * nodes), hands it to the commit hook (where the write-ahead log goes), and
 * only then publishes it by swapping one pointer. See docs/STORE.md.
 */

#define STORE_NAME_MAX 64      /* bytes in a collection or resource name */
#define STORE_ID_MAX 128       /* bytes in a string id */
#define STORE_MAX_NAMES 1024   /* collections + singular resources */
#define STORE_RANDOM_ID_LEN 21 /* generated string ids: 126 random bits */
#define STORE_IF_MATCH_MAX 8   /* revisions one If-Match may list */

struct store;

enum store_result {
    STORE_OK,        /* 200 */
    STORE_CREATED,   /* 201: POST, PUT or PUT_SINGLE made a new doc */
    STORE_NOT_FOUND, /* 404: no such doc, collection or resource (or creation forbidden) */
    STORE_CONFLICT,  /* 409: id taken; name is the other kind (collection vs resource) */
    STORE_PRECONDITION_FAILED, /* 412: If-Match did not match */
    STORE_INVALID,             /* 400: bad name, id or body; res.msg says which */
    STORE_COMMIT_FAILED,       /* 503: the commit hook failed (res.err); nothing changed */
    STORE_DAMAGED,   /* 500: a stored document cannot be parsed (res.msg); nothing changed */
    STORE_TOO_LARGE, /* 413: a document would serialize to 4 GiB or more; nothing changed */
};

enum store_op_kind {
    STORE_POST,         /* insert into collection 'name'; id from body or generated */
    STORE_PUT,          /* replace or create doc 'id' in 'name' */
    STORE_PATCH,        /* RFC 7396 merge patch of doc 'id' in 'name' */
    STORE_DELETE,       /* remove doc 'id' from 'name' */
    STORE_PUT_SINGLE,   /* replace or create singular resource 'name' */
    STORE_PATCH_SINGLE, /* merge patch of singular resource 'name' */
    STORE_IMPORT,       /* replace the whole store with db.json object 'body' */
};

/*
 * One write. Everything is borrowed and never modified: the store copies what
 * it keeps -- except 'body' when 'take_body' is set. If-Match: when
 * 'if_match_any' or 'n_if_match' > 0 the write happens only if the target
 * exists and (for a list) its revision is one of 'if_match'. The target is
 * the doc (PUT, PATCH, DELETE), the resource (PUT_SINGLE, PATCH_SINGLE), the
 * collection (POST) or the snapshot (IMPORT).
 */
struct store_op {
    enum store_op_kind kind;
    const char *name;   /* collection or resource name; unused by IMPORT */
    const char *id;     /* path id (PUT, PATCH, DELETE), NUL-terminated */
    const json_t *body; /* POST, PUT, PATCH, *_SINGLE: a JSON object; IMPORT: the db.json object */
    /*
     * Steals the caller's reference to 'body' (also on failure): the store
     * may change it and keep its values instead of deep-copying them. The
     * caller must not use 'body' after store_write() returns.
     */
    bool take_body;
    bool no_create;    /* a write may not create a collection or resource: NOT_FOUND instead */
    bool if_match_any; /* If-Match: * */
    size_t n_if_match;
    uint64_t if_match[STORE_IF_MATCH_MAX];
};

/* What the commit hook sees: the validated write and the snapshot it will publish. */
struct store_change {
    const struct store_op *op;
    uint64_t rev;     /* the new global revision */
    const char *name; /* the collection or resource written; NULL for IMPORT */
    /* Borrowed: the resulting doc; for DELETE the removed one; NULL for IMPORT. */
    const struct doc *doc;
    const struct snap *next; /* Borrowed: the snapshot about to be published */
};

/*
 * Called with the writer mutex held, after the next snapshot is built and
 * before it is published. Returns 0 to publish, or a negative errno to
 * abandon the write (nothing changes; store_write returns
 * STORE_COMMIT_FAILED). Must not call back into the store's write path.
 */
typedef int store_commit_fn(void *cls, const struct store_change *ch);

struct store_opts {
    store_commit_fn *commit; /* NULL: publish directly */
    void *commit_cls;
};

/* Outcome of store_write. Clean up with store_res_cleanup() whatever the result. */
struct store_res {
    enum store_result code;
    struct doc *doc; /* New reference: resulting doc on OK/CREATED (NULL for DELETE, IMPORT);
                      * the current doc on PRECONDITION_FAILED when there is one */
    uint64_t rev;    /* the new global revision on success, else the current one */
    int err;         /* COMMIT_FAILED: the hook's negative errno */
    char msg[192];   /* detail for any result but OK/CREATED, "" otherwise */
};

/* New store holding an empty snapshot at revision 0. 'opts' may be NULL; it is copied. */
struct store *store_new(const struct store_opts *opts);

/*
 * Frees the store and its reference to the current snapshot. No thread may be
 * using 'st'; snapshots that readers still hold stay valid.
 */
void store_free(struct store *st);

/* New reference: the current snapshot. Takes the read lock for a pointer copy only. */
struct snap *store_acquire(struct store *st);

/*
 * Applies one write and fills 'res' (which need not be initialised). Returns
 * res->code. Safe from any thread; writers are serialized.
 */
enum store_result store_write(struct store *st, const struct store_op *op, struct store_res *res);

/*
 * Recovery: replaces the current snapshot with 's' (stolen), e.g. one rebuilt
 * from a snapshot file and the log (src/store/load.c). Meant for start-up,
 * before any writer runs; readers holding the old snapshot keep it.
 */
void store_install(struct store *st, struct snap *s);

/*
 * Runs fn(cls, cur) with the writer mutex held: no write starts or publishes
 * meanwhile, so 'cur' is the last published snapshot and the log is at its
 * revision. The durable layer uses it to cut a log segment exactly at a
 * snapshot. 'fn' must not call store_write.
 */
void store_exclusive(struct store *st, void (*fn)(void *cls, const struct snap *cur), void *cls);

/* Drops res->doc. */
void store_res_cleanup(struct store_res *res);

/* "ok", "created", "not found", ... for logs. */
const char *store_result_str(enum store_result r);

/* Collection/resource names: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}. */
bool store_name_valid(const char *s);

/* Path ids: 1..128 bytes of [A-Za-z0-9._~-], not "." or "..". */
bool store_id_valid(const char *s);

/*
 * Writes the id key of a JSON "id" value into 'key' (STORE_ID_MAX + 1 bytes):
 * an integer 0..INT64_MAX as its decimal form, a string as itself when
 * store_id_valid(). Returns 0, or -EINVAL for anything else.
 */
int store_id_key(const json_t *id, char *key);

/*
 * New reference: RFC 7396 JSON Merge Patch of 'patch' applied to a copy of
 * 'target' (NULL: absent). Both are borrowed and left unchanged.
 */
json_t *store_merge_patch(const json_t *target, const json_t *patch);

#endif
