/* src/store/doc.h -- immutable, atomically refcounted documents (doc.c). */
#ifndef CAIRN_STORE_DOC_H
#define CAIRN_STORE_DOC_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A member's JSON type, as the member index records it. */
enum doc_type {
    DOC_NULL,
    DOC_FALSE,
    DOC_TRUE,
    DOC_INT,
    DOC_REAL,
    DOC_STRING,
    DOC_ARRAY,
    DOC_OBJECT,
};

/* doc_member.flags */
#define DOC_ESCAPED 1      /* a string whose text has escapes: its raw bytes are not its value */
#define DOC_NAME_ESCAPED 2 /* the name has escapes: doc_member never finds this member */

/*
 * One top-level member of a doc, in the doc's member index (16 bytes). The
 * name is bytes[name_off .. name_off + name_len) -- its raw text, which is
 * not the name when DOC_NAME_ESCAPED is set. For strings v.s is the text between
 * the quotes; for arrays and objects it is the whole value's text, which
 * json_loadb(JSON_DECODE_ANY) parses on its own.
 */
struct doc_member {
    uint32_t name_off;
    uint16_t name_len;
    uint8_t type;  /* enum doc_type */
    uint8_t flags; /* DOC_ESCAPED, DOC_NAME_ESCAPED */
    union {
        int64_t i; /* DOC_INT */
        double d;  /* DOC_REAL */
        struct {
            uint32_t off, len;
        } s; /* DOC_STRING, DOC_ARRAY, DOC_OBJECT */
    } v;
};

/*
 * A stored JSON document: its compact bytes and an index of its top-level
 * members, nothing else (no jansson tree: a parsed ~100-byte doc costs about
 * 1.1 KB, the bytes and index about 200). Every field is fixed at doc_new()
 * and never changes afterwards, so any number of threads may read a doc they
 * hold a reference to without locking.
 *
 * 'id' is the document's key: for a collection member, the canonical form of
 * its "id" member (an integer id 7 is the key "7"); for a singular resource,
 * the resource name. 'bytes' is the compact serialization (json_dumps with
 * JSON_COMPACT: member order kept, "id" included), made once so replies are
 * assembled from ready bytes instead of re-encoding per request. One
 * allocation holds the header, the key, the bytes and the member index.
 */
struct doc {
    _Atomic uint32_t refs;
    uint32_t id_len;
    uint32_t len;       /* strlen(bytes) */
    uint16_t nmembers;  /* entries in the member index (when 'indexed') */
    bool int_id : 1;    /* the "id" member is a JSON integer whose decimal form is 'id' */
    bool indexed : 1;   /* false: the query engine parses the bytes instead (see doc.c) */
    bool esc_names : 1; /* indexed, and some member's name has escapes (DOC_NAME_ESCAPED):
                           a name doc_member misses may be one of those */
    int64_t int_val;    /* that integer when int_id, else 0 */
    uint64_t seq;       /* insertion sequence in its collection; 0 for singular resources */
    uint64_t rev;       /* global revision of the write that made this version */
    const char *bytes;  /* NUL-terminated; lives in the same allocation as the doc */
    char id[];          /* id_len bytes + NUL, then the bytes, then the member index */
};

/*
 * A doc from borrowed 'json' (an object), which is serialized, not kept:
 * returns 0 and sets *out (new reference, refcount 1), or -EFBIG when the
 * serialization is 4 GiB or more (a doc's lengths are 32 bits). OOM aborts.
 * 'id' is copied; 'id_len' must be < 2^31.
 */
int doc_from_json(const json_t *json, const char *id, size_t id_len, uint64_t seq, uint64_t rev,
                  struct doc **out);

/* doc_from_json for a doc known to be smaller than 4 GiB: aborts otherwise. */
struct doc *doc_new(const json_t *json, const char *id, size_t id_len, uint64_t seq, uint64_t rev);

/* Tests: doc_from_json's limit on the serialization's bytes (0: the real one, 4 GiB - 2). */
void doc_test_max_len(size_t max);

/*
 * A doc from its compact serialization (copied), for recovery
 * (src/store/load.c): the bytes the log or snapshot holds are what the doc
 * was served as. They are scanned, not parsed. Returns 0 and sets *out (new
 * reference), or -EINVAL when the bytes are not one JSON object.
 */
int doc_new_bytes(const char *id, size_t id_len, uint64_t seq, uint64_t rev, const char *bytes,
                  size_t len, struct doc **out);

/* The member index ('nmembers' entries); NULL when the doc is not indexed. */
const struct doc_member *doc_members(const struct doc *d);

/*
 * The top-level member 'name' (name_len bytes), or NULL. Only for an indexed
 * doc; members with an escaped name are never found (when d->esc_names, a
 * miss may be such a member: parse the doc to know).
 */
const struct doc_member *doc_member(const struct doc *d, const char *name, size_t name_len);

/*
 * How a reader gets the value of top-level member 'name' of 'd' -- the one
 * decision the query engine's doc_path() and the collection's columns
 * (coll_column) share: from the index (*m: a number, true/false/null, a
 * string without escapes), by parsing the member's own text (*m: an array,
 * an object, an escaped string), by parsing the whole doc (no index, or a
 * miss on a doc with an escaped name: it may be that one), or it is missing.
 */
enum doc_read { DOC_READ_MISSING, DOC_READ_INDEX, DOC_READ_MEMBER, DOC_READ_WHOLE };
enum doc_read doc_read_member(const struct doc *d, const char *name, size_t name_len,
                              const struct doc_member **m);

/*
 * New reference: the doc parsed (json_loadb of its bytes), or NULL if that
 * fails -- it cannot for bytes that jansson made, but recovery only scans.
 */
json_t *doc_parse(const struct doc *d);

/* doc_parse calls made by the calling thread so far (tests count the query engine's parses). */
uint64_t doc_parse_count(void);

/*
 * The key that the doc's "id" member gives (store_id_key's form: an integer
 * >= 0 in decimal, or a valid string id) into 'key' (STORE_ID_MAX + 1 bytes),
 * *is_int telling which. -EINVAL when there is no usable "id".
 */
int doc_id_key(const struct doc *d, char *key, bool *is_int);

/* Returns 'd' with one more reference. 'd' may be NULL. */
struct doc *doc_retain(struct doc *d);

/* Drops one reference; frees the doc on the last one. NULL is a no-op. */
void doc_release(struct doc *d);

/* Number of docs currently allocated in the process (debug and metrics counter). */
uint64_t doc_live(void);

#endif
