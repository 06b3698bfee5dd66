/* src/store/snap.h -- immutable, refcounted snapshots of the whole store (snap.c). */
#ifndef CAIRN_STORE_SNAP_H
#define CAIRN_STORE_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/coll.h"
#include "store/doc.h"
#include "util.h"

/*
 * A snapshot is the whole store at one global revision: the collections and
 * the singular resources (top-level names whose value is one JSON object, as
 * json-server's "profile": {...}), each in name order. A name is either a
 * collection or a singular resource, never both.
 *
 * A snapshot is never modified after it is built. Readers hold a reference
 * (store_acquire) and use it with no lock; everything reachable from it,
 * down to each doc's json_t, stays valid and unchanged until they release it.
 *
 * Cost of a write: the name tables are sorted arrays copied on write, so each
 * write copies (and retains) one pointer per name: O(names), bounded by
 * STORE_MAX_NAMES, next to the O(log n) nodes the changed collection copies.
 */
struct snap;

/* Returns 's' with one more reference. */
struct snap *snap_retain(const struct snap *s);
/* Drops a reference; the last one releases the collections and docs only it holds. */
void snap_release(struct snap *s);

/* The global revision of the last write in this snapshot (0 for a new empty store). */
uint64_t snap_revision(const struct snap *s);

/* Borrowed: the collection 'name', or NULL (also when 'name' is a singular resource). O(log names).
 */
const struct coll *snap_coll(const struct snap *s, const char *name);
/* Borrowed: the singular resource 'name', or NULL. O(log names). */
struct doc *snap_single(const struct snap *s, const char *name);

/* The collections in name order: i < snap_ncolls(). Borrowed. */
size_t snap_ncolls(const struct snap *s);
const struct coll *snap_coll_at(const struct snap *s, size_t i);
/* The singular resources in name order (doc->id is the name). Borrowed. */
size_t snap_nsingles(const struct snap *s);
struct doc *snap_single_at(const struct snap *s, size_t i);

/*
 * Appends the whole snapshot to 'b' as one json-server db.json object: names
 * in byte order, collections as arrays of their docs in insertion order.
 * Assembled from each doc's stored bytes, nothing is re-encoded. Returns 0,
 * or -E2BIG when 'b's limit is reached ('b' then holds a partial object).
 */
int snap_export(const struct snap *s, struct buf *b);

/* --- Writer side (store.c): each returns a new snapshot and leaves 's' untouched. --- */

/* New reference: an empty snapshot at revision 'rev'. */
struct snap *snap_new(uint64_t rev);

/* New reference: 's' at 'rev' with collection 'c' (retained) added or replacing its namesake. */
struct snap *snap_with_coll(const struct snap *s, const struct coll *c, uint64_t rev);

/* New reference: 's' at 'rev' with resource 'd' (retained; named d->id) added or replaced. */
struct snap *snap_with_single(const struct snap *s, struct doc *d, uint64_t rev);

/* Number of snapshots currently allocated (debug counter). */
uint64_t snap_live(void);

#endif
