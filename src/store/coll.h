/* src/store/coll.h -- immutable versions of a collection (coll.c). */
#ifndef CAIRN_STORE_COLL_H
#define CAIRN_STORE_COLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/doc.h"
#include "store/idmap.h"
#include "store/pmap.h"

/*
 * One version of a named collection: its docs by id and by insertion
 * sequence (an idmap and a pmap sharing the same docs), plus what POST needs to pick
 * the next id. A version is never modified after coll_new()/coll_with()/
 * coll_without() return it; every reader function is safe from any thread
 * holding the snapshot (or a reference) that contains it.
 */
struct coll;

/* --- Readers. Borrowed results are valid while the caller holds 'c' (or its snapshot). --- */

const char *coll_name(const struct coll *c);
size_t coll_count(const struct coll *c);
/* Global revision of the last write to this collection (its creation counts). */
uint64_t coll_revision(const struct coll *c);

/* Borrowed: the doc whose id key is id[0..len), or NULL. A hash trie: ~5 nodes at 1M docs. */
struct doc *coll_get(const struct coll *c, const char *id, size_t len);

/* Borrowed: the k-th doc (0-based) in insertion order, or NULL. O(log n). */
struct doc *coll_at(const struct coll *c, size_t k);

/* Position of 'd' (a member) in insertion order. O(log n). */
size_t coll_index_of(const struct coll *c, const struct doc *d);

/* In insertion order, starting at position 'start'; O(log n) to start, O(1) amortised per doc. */
struct coll_iter {
    struct pmap_iter it;
};
void coll_iter_init(struct coll_iter *it, const struct coll *c, size_t start);
/* Borrowed: the next doc, or NULL at the end. */
struct doc *coll_iter_next(struct coll_iter *it);

/* True when every id is a JSON integer (or there are none): POST then picks integers. */
bool coll_ids_all_int(const struct coll *c);
/* Highest integer id ever stored here, 0 if none (ids freed by DELETE are not reused). */
int64_t coll_max_int_id(const struct coll *c);
/* Sequence number the next new doc gets (starts at 1). */
uint64_t coll_next_seq(const struct coll *c);

/* Lists longer than this (bytes) are not kept by coll_list_bytes(). */
#define COLL_LIST_CACHE_MAX ((size_t)4 << 20)

/*
 * Borrowed: the whole collection as one JSON array, "[doc,doc,...]" in
 * insertion order (*len bytes, not NUL-terminated), built on the first call
 * by any thread and kept with this version until it is freed. Valid while
 * the caller holds a reference to 'c'. NULL when the list would be longer
 * than COLL_LIST_CACHE_MAX: build it per request instead.
 */
const char *coll_list_bytes(const struct coll *c, size_t *len);

/* Collections with more docs than this get no coll_docs() array (8 bytes a doc). */
#define COLL_DOCS_CACHE_MAX ((size_t)1 << 19)

/*
 * Borrowed: the docs in insertion order (coll_count() of them), built on the
 * first call and kept with this version like coll_list_bytes(); NULL over
 * COLL_DOCS_CACHE_MAX docs.
 */
struct doc *const *coll_docs(const struct coll *c);

/*
 * What a query filter on the top-level member 'name' reads from each doc,
 * in insertion order (cell k is coll_docs()[k]'s): the scalar itself, that the
 * doc has no such member, or that the doc must be read (no member index, an
 * array or object, a string with escapes, or a name that may be escaped):
 * doc_read_member() decides, for the cells and for the query engine's
 * doc_path() alike. 16 bytes a doc, contiguous: a filter over a collection
 * scans this instead of every doc's allocation.
 */
enum coll_cell_kind { COLL_CELL_MISSING, COLL_CELL_SCALAR, COLL_CELL_READ_DOC };
struct coll_cell {
    uint8_t kind; /* enum coll_cell_kind */
    uint8_t type; /* enum doc_type, for COLL_CELL_SCALAR */
    uint32_t len; /* DOC_STRING: bytes at v.s */
    union {
        int64_t i;
        double d;
        const char *s; /* in the doc's bytes: valid while the version is */
    } v;
};
/*
 * Columns kept per version, markers (a name no doc holds a scalar under: nothing
 * kept, so that it is not scanned again), and the largest collection that gets
 * a column (4 MiB of cells).
 */
#define COLL_MAX_COLUMNS 4
#define COLL_MAX_MARKERS 16
#define COLL_COLUMN_MAX_DOCS ((size_t)1 << 18)

/*
 * Borrowed: the cells of member 'name' (name_len bytes) for every doc, built
 * on the first call and kept with this version; the same pointer for every
 * caller once published. NULL when no doc holds a scalar under 'name', when
 * the collection is empty or over COLL_COLUMN_MAX_DOCS, or when it already
 * has COLL_MAX_COLUMNS columns (or COLL_MAX_MARKERS markers): read the docs.
 */
const struct coll_cell *coll_column(const struct coll *c, const char *name, size_t name_len);

/* Returns 'c' with one more reference (the count and the caches are the mutable fields). */
struct coll *coll_retain(const struct coll *c);
/* Drops a reference; the last one releases the maps (and docs only they hold). */
void coll_release(struct coll *c);

/* --- Writer side (store.c): each returns a new version and leaves 'c' untouched. --- */

/* New reference: an empty collection 'name' (copied) created at revision 'rev'. */
struct coll *coll_new(const char *name, uint64_t rev);

/*
 * New reference: 'c' with 'd' added, or replacing the doc with the same id
 * (which must have the same seq), at revision 'rev'. 'd' is borrowed and
 * retained. A new doc's seq must be coll_next_seq(c).
 */
struct coll *coll_with(const struct coll *c, struct doc *d, uint64_t rev);

/*
 * New reference: collection 'name' holding docs[0..n) (borrowed; retained),
 * given in insertion order with strictly increasing seqs, at revision 'rev'.
 * O(n log n) for sorting by id hash. Returns NULL when two docs share
 * an id; *dup (if not NULL) then points at one of them (borrowed).
 */
struct coll *coll_build(const char *name, uint64_t rev, struct doc *const *docs, size_t n,
                        const struct doc **dup);

/*
 * Recovery (src/store/load.c): coll_build() with the counters a snapshot or
 * log replay carries. 'next_seq' and 'max_int_id' are raised to what the docs
 * need if lower, so ids freed by DELETE are not handed out again after a restart.
 */
struct coll *coll_restore(const char *name, uint64_t rev, uint64_t next_seq, int64_t max_int_id,
                          struct doc *const *docs, size_t n, const struct doc **dup);

/* New reference: 'c' without the doc keyed id[0..len) (which must exist), at revision 'rev'. */
struct coll *coll_without(const struct coll *c, const char *id, size_t len, uint64_t rev);

/* Number of collection versions currently allocated (debug counter). */
uint64_t coll_live(void);

#endif
