/* src/store/load.h -- rebuilds a snapshot from a snapshot file's records and the log's (load.c). */
#ifndef CAIRN_STORE_LOAD_H
#define CAIRN_STORE_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/record.h"
#include "store/snap.h"

/*
 * Recovery does not replay the log through store_write: 1,000,000 writes at
 * ~10 us each would take 10 s. The loader keeps a mutable mirror instead --
 * per collection a vector in insertion order and a hash of keys, per
 * resource its latest version -- in which a record costs a hash lookup and
 * remembers only where the doc's bytes are. Docs are parsed once, at the end,
 * and only those still alive; the collections are then built in bulk
 * (coll_restore). The result is the snapshot store_write would have reached
 * by applying the same writes one by one: same docs and bytes, same doc, collection and
 * snapshot revisions, same insertion order, same id counters. tests/unit/test_wal.c
 * checks that against the store.
 *
 * Record bytes are borrowed: the caller keeps the files mapped until
 * loader_finish() returns. Every error message names 'file' and the offset.
 */
struct loader;

/*
 * 'lenient' (cairnd --recover-truncate): a record that does not apply (a
 * DELETE of a doc that is not there, a gap in revisions) is skipped and
 * reported through 'warn' instead of stopping recovery.
 */
struct loader *loader_new(bool lenient, void (*warn)(void *cls, const char *msg), void *warn_cls);
void loader_free(struct loader *l);

/* The revision reached so far: the snapshot's, then each applied log record's. */
uint64_t loader_rev(const struct loader *l);

/*
 * Feeds one record of a snapshot file (REC_SNAP_*) or of the log (REC_POST ..
 * REC_IMPORT; REC_LOG_HEADER is ignored). 'file' must stay valid until
 * loader_finish. Returns 0, or -1 with "file: offset N: reason" in 'err'.
 */
int loader_feed(struct loader *l, const struct rec *r, const char *file, uint64_t off, char *err,
                size_t errlen);

/*
 * Parses the surviving docs and builds the snapshot. New reference, or NULL
 * with the reason (naming file and offset of the bad record) in 'err'.
 */
struct snap *loader_finish(struct loader *l, char *err, size_t errlen);

/* Docs currently alive in the mirror (for progress messages and tests). */
size_t loader_docs(const struct loader *l);

#endif
