/* src/store/durable.h -- the data dir: lock, recovery, write-ahead log, group commit, snapshots. */
#ifndef CAIRN_STORE_DURABLE_H
#define CAIRN_STORE_DURABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/*
 * The durable store (docs/DURABILITY.md):
 *
 *   durable_open()   locks the data dir, loads the newest snapshot, replays
 *                    the log after it, and returns a store whose commit hook
 *                    appends every write to the log before it is published;
 *   durable_wait()   (sync = always) calls back, from the one committer
 *                    thread, once a revision is on stable storage: the
 *                    committer takes every waiting write, does one fdatasync
 *                    for all of them, then calls them all back;
 *   durable_snapshot() writes the current snapshot in a background thread;
 *                    the log triggers it by itself past compact_bytes;
 *   durable_close()  finishes every waiter, snapshots, unlocks.
 *
 * After an I/O error that may have lost acknowledged-to-be data (EIO from a
 * write or an fsync) the store turns read-only until restart: the commit
 * hook refuses every write, waiters get -EIO, durable_degraded() says why.
 * A full disk (ENOSPC, EDQUOT) only fails the one write: it is rolled back.
 */

enum durable_sync {
    DURABLE_SYNC_ALWAYS,   /* reply after fdatasync (group commit) */
    DURABLE_SYNC_PERIODIC, /* fdatasync every interval_ms; reply at once */
    DURABLE_SYNC_NONE,     /* never fdatasync the log (snapshots still are) */
};

struct durable_opts {
    const char *dir;
    enum durable_sync sync;
    uint64_t interval_ms;
    uint64_t compact_bytes;
    bool recover_truncate;  /* accept losing damaged records instead of refusing to start */
    uint64_t max_pending;   /* writes waiting for the committer at most (0: no bound) */
    bool no_close_snapshot; /* tests: durable_close() only syncs the log */
};

struct durable;

/*
 * Opens (creating it 0700 if missing) and recovers the data dir. Returns 0
 * and the handle, or an exit status after logging why: EX_DATAERR (65) for
 * a damaged log or snapshot (the message names the file and offset),
 * EX_TEMPFAIL (75) when another process holds the data dir, EX_CANTCREAT
 * (73) or EX_IOERR (74) for other failures.
 */
int durable_open(const struct durable_opts *o, struct durable **out);

/* Borrowed: the store. Valid until durable_close. */
struct store *durable_store(struct durable *d);

/* The largest log record a write may make (bytes); a bigger one is refused with -EFBIG. */
size_t durable_record_max(const struct durable *d);

/*
 * Brackets one write: durable_begin() before store_write (false: closing,
 * refuse the write with 503), then exactly one of durable_end() or
 * durable_wait(). durable_close() waits for every bracket to end, so no
 * waiter is ever queued after the committer stopped.
 */
bool durable_begin(struct durable *d);
void durable_end(struct durable *d);

/*
 * Counts the write as refused (store_writes_busy) and returns true when
 * 'max_pending' writes already wait for the committer (queued for their
 * fsync, or between durable_begin and durable_wait): the caller answers 503
 * + Retry-After before store_write, so it changes nothing. Checked without a
 * lock: the bound may be passed by the number of worker threads. The
 * store_writes_pending gauge shows the count it bounds.
 */
bool durable_refuse_busy(struct durable *d);

/* True when a writer must wait for its revision (sync = always). */
bool durable_must_wait(const struct durable *d);

/* True when 'rev' is on stable storage already. */
bool durable_is_durable(const struct durable *d, uint64_t rev);

/*
 * Ends a durable_begin() bracket. Calls fn(cls, 0) once 'rev' is on stable
 * storage, or fn(cls, -errno) when the fsync failed (the store is then
 * read-only). Always calls back from the committer thread, exactly once,
 * never from inside this call. Only with sync = always.
 */
void durable_wait(struct durable *d, uint64_t rev, void (*fn)(void *cls, int err), void *cls);

/*
 * Requests a snapshot of the current revision. fn(cls, err, rev, bytes,
 * usec) is called from the snapshot thread when it is durable (err 0; rev is
 * the snapshot's revision) or failed (-errno; the previous snapshot stays).
 */
typedef void durable_snap_fn(void *cls, int err, uint64_t rev, uint64_t bytes, uint64_t usec);
void durable_snapshot(struct durable *d, durable_snap_fn *fn, void *cls);

/* fdatasync of the log now, whatever the policy. 0 or -errno. */
int durable_sync_now(struct durable *d);

/*
 * True when writes are refused: read-only after an I/O error, or closing.
 * 'why' (may be NULL) gets the reason.
 */
bool durable_read_only(struct durable *d, char *why, size_t whylen);

/*
 * Process-wide, for /readyz: true while the store is read-only after an I/O
 * error, with the reason.
 */
bool durable_degraded(char *why, size_t whylen);

/*
 * Stops writes (refused from now on, as "shutting down"), finishes every
 * waiter, writes a final snapshot when the log holds anything after the last
 * one (and the store is healthy), closes the log and unlocks the data dir.
 * The store stays allocated and readable. Idempotent.
 */
void durable_stop(struct durable *d);

/* durable_stop(), then frees the store and 'd'. */
void durable_close(struct durable *d);

#endif
