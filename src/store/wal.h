/* src/store/wal.h -- write-ahead log segments: naming, creation, append, sync, rotation (wal.c). */
#ifndef CAIRN_STORE_WAL_H
#define CAIRN_STORE_WAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The log is a series of segment files "log.<first revision, 20 digits>" in
 * the data dir. Each starts with a REC_LOG_HEADER record and then holds one
 * record per write, in revision order, with no gaps. A snapshot at revision
 * R starts a new segment "log.<R+1>" before it is written, so once it is
 * durable every older segment is covered by it and can go.
 *
 * Appends happen under the store's writer mutex (the commit hook), so only
 * one thread appends, and the segment changes only under it too. Syncs come
 * from the committer thread; 'fd_lock' keeps a sync and a rotation from
 * crossing.
 */

#define WAL_NAME_MAX 40

/*
 * Segment format versions (the header's aux). Version 2 records carry in
 * their aux the segment offset known to be on stable storage when they were
 * appended (the "synced claim", docs/DURABILITY.md "Holes"); version 1
 * records carry 0 and get the strict rule (any damage before a valid record
 * is damage). Both are read; new segments are written as version 2.
 */
#define WAL_FORMAT_V1 1
#define WAL_FORMAT_VERSION 2

struct wal {
    int dirfd;
    int fd;                    /* the current segment, open for writing; -1 when closed */
    uint64_t first;            /* its first revision */
    uint64_t end;              /* its length: every byte before is a whole record */
    _Atomic uint64_t appended; /* = end, for the syncing thread */
    /*
     * Bytes of the current segment known to be on stable storage: the
     * 'appended' of the last fdatasync that succeeded, the committer's or a
     * rotation's (the header's end for a new segment). Every record appended
     * carries it (wal_synced_end).
     */
    _Atomic uint64_t synced_end;
    _Atomic uint64_t last_rev; /* revision of the last record appended */
    _Atomic uint64_t bytes;    /* bytes in all live segments (what a snapshot would free) */
    pthread_mutex_t fd_lock;
    /*
     * Set under fd_lock by the first fdatasync that fails, from either the
     * committer or a rotation. Linux reports a writeback error to one of the
     * syncs waiting on it only, so the flag, not the next call's result, is
     * what keeps a later sync from "succeeding" over dropped pages.
     */
    bool sync_failed;
};

/* "log.00000000000000000043" */
void wal_segment_name(char *out, uint64_t first);
/* Parses a segment name; false for anything else. */
bool wal_parse_name(const char *name, uint64_t *first);

/*
 * Makes 'w' append to segment 'first' (an existing file whose valid part is
 * 'end' bytes long and already on stable storage; 0 means a header is
 * written and fsynced first). 'last_rev' is the revision of its last record
 * (or the one before 'first'), 'bytes' the size of all live segments.
 * Returns 0 or a negative errno.
 */
int wal_open(struct wal *w, int dirfd, uint64_t first, uint64_t end, uint64_t last_rev,
             uint64_t bytes);

/* Creates segment 'first' with its header, fsyncs it and the directory. Returns 0 or -errno. */
int wal_create(struct wal *w, int dirfd, uint64_t first, uint64_t last_rev, uint64_t bytes);

/*
 * Appends one encoded record of revision 'rev' (writer mutex held). On
 * failure the partial append is cut off again (ftruncate to the last good
 * length) and the error returned; *clean is false when even that failed and
 * the segment may end in garbage.
 */
int wal_append(struct wal *w, const void *p, size_t n, uint64_t rev, bool *clean);

/*
 * fdatasync of the current segment. On success *synced is a revision that is
 * now on stable storage: every record up to it. Returns 0 or -errno.
 */
int wal_sync(struct wal *w, uint64_t *synced);

/*
 * Writer mutex held: syncs the current segment and starts segment 'first'
 * (which must be last_rev + 1). On failure the current segment stays.
 */
int wal_rotate(struct wal *w, uint64_t first);

/* The synced claim for the next record (writer mutex held): see 'synced_end'. */
uint64_t wal_synced_end(struct wal *w);

/* True once an fdatasync of the log failed: every later sync fails too (fail-stop). */
bool wal_sync_failed(struct wal *w);

void wal_close(struct wal *w);

#endif
