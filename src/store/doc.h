/* src/store/doc.h -- immutable, atomically refcounted documents (doc.c). */
#ifndef CAIRN_STORE_DOC_H
#define CAIRN_STORE_DOC_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A stored JSON document. Every field is fixed at doc_new() and never changes
 * afterwards, so any number of threads may read a doc they hold a reference to
 * without locking. 'json' is const for that reason: nothing may call a jansson
 * setter on it (json_incref/json_decref are atomic in jansson >= 2.11).
 *
 * 'id' is the document's key: for a collection member, the canonical form of
 * its "id" member (an integer id 7 is the key "7"); for a singular resource,
 * the resource name. 'bytes' is the compact serialization of 'json' (member
 * order kept, "id" included), made once so replies are assembled from ready
 * bytes instead of re-encoding per request.
 */
struct doc {
    _Atomic uint32_t refs;
    bool int_id; /* the "id" member is a JSON integer whose decimal form is 'id' */
    uint32_t id_len;
    int64_t int_val; /* that integer when int_id, else 0 */
    uint64_t seq;    /* insertion sequence in its collection; 0 for singular resources */
    uint64_t rev;    /* global revision of the write that made this version */
    const json_t *json;
    size_t len;        /* strlen(bytes) */
    const char *bytes; /* NUL-terminated; lives in the same allocation as the doc */
    char id[];         /* id_len bytes + NUL */
};

/*
 * New reference (refcount 1). Steals 'json' (never fails: OOM aborts). 'id' is
 * copied; 'id_len' must be < 2^31. 'json' must not be modified by anyone after
 * this call.
 */
struct doc *doc_new(json_t *json, const char *id, size_t id_len, uint64_t seq, uint64_t rev);

/*
 * doc_new() for a doc whose compact serialization is known already: 'bytes'
 * (len bytes, copied) must be json_dumps(json, JSON_COMPACT) -- recovery
 * (src/store/load.c) passes the bytes the log or snapshot holds, which is
 * what the doc was served as, and skips a second encoding.
 */
struct doc *doc_new_bytes(json_t *json, const char *id, size_t id_len, uint64_t seq, uint64_t rev,
                          const char *bytes, size_t len);

/* Returns 'd' with one more reference. 'd' may be NULL. */
struct doc *doc_retain(struct doc *d);

/* Drops one reference; frees the doc and its json on the last one. NULL is a no-op. */
void doc_release(struct doc *d);

/* Number of docs currently allocated in the process (debug and metrics counter). */
uint64_t doc_live(void);

#endif
