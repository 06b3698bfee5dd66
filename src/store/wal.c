/* src/store/wal.c -- see wal.h. */
#include "store/wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/iofault.h"
#include "store/record.h"
#include "util.h"

void wal_segment_name(char *out, uint64_t first)
{
    snprintf(out, WAL_NAME_MAX, "log.%020" PRIu64, first);
}

bool wal_parse_name(const char *name, uint64_t *first)
{
    if (strncmp(name, "log.", 4) != 0 || strlen(name) != 24)
        return false;
    for (int i = 4; i < 24; i++)
        if (name[i] < '0' || name[i] > '9')
            return false;
    *first = strtoull(name + 4, NULL, 10);
    return true;
}

/* Writes the segment header at offset 0; returns its length or -errno. */
static int write_header(int fd, uint64_t first)
{
    struct buf b;
    struct rec h = {.rev = first,
                    .aux = WAL_FORMAT_VERSION,
                    .kind = REC_LOG_HEADER,
                    .name = "cairn-log",
                    .name_len = 9};
    buf_init(&b, SIZE_MAX);
    rec_encode(&b, &h);
    int rc = io_pwrite_all(fd, b.data, b.len, 0, "log-append");
    int len = (int)b.len;
    buf_cleanup(&b);
    return rc != 0 ? rc : len;
}

static void init_locks(struct wal *w)
{
    static const pthread_mutex_t zero = PTHREAD_MUTEX_INITIALIZER;
    w->fd_lock = zero;
    w->sync_failed = false;
}

int wal_open(struct wal *w, int dirfd, uint64_t first, uint64_t end, uint64_t last_rev,
             uint64_t bytes)
{
    char name[WAL_NAME_MAX];
    int fd;

    wal_segment_name(name, first);
    fd = io_openat(dirfd, name, O_WRONLY, 0600, "log-open");
    if (fd < 0)
        return fd;
    if (end == 0) {
        int n = write_header(fd, first);
        if (n < 0) {
            io_ftruncate(fd, 0, "log-rollback");
            io_close(fd);
            return n;
        }
        end = (uint64_t)n;
        bytes += (uint64_t)n;
        /* records will claim the header synced (wal.h): make it so */
        int rc = io_fsync(fd, "log-create-sync");
        if (rc != 0) {
            io_close(fd);
            return rc;
        }
    }
    init_locks(w);
    w->dirfd = dirfd;
    w->fd = fd;
    w->first = first;
    w->end = end;
    atomic_store(&w->appended, end);
    atomic_store(&w->synced_end, end); /* the caller's promise, or the header just fsynced */
    atomic_store(&w->last_rev, last_rev);
    atomic_store(&w->bytes, bytes);
    return 0;
}

/* Creates segment 'first': header written and fsynced, directory fsynced. fd or -errno. */
static int create_segment(int dirfd, uint64_t first, uint64_t *end)
{
    char name[WAL_NAME_MAX];
    int fd, n, rc;

    wal_segment_name(name, first);
    /* a leftover of a failed rotation holds no record: all appends went elsewhere */
    fd = io_openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0600, "log-create");
    if (fd < 0)
        return fd;
    n = write_header(fd, first);
    rc = n < 0 ? n : io_fsync(fd, "log-create-sync"); /* fsync: a new file */
    if (rc == 0)
        rc = io_fsync_dir(dirfd, "log-create-dirsync");
    if (rc != 0) {
        io_close(fd);
        /*
         * Durably gone, or a power loss could bring back a segment that
         * holds no record after the one the appends went on in (recovery
         * copes with that too: "Holes" in docs/DURABILITY.md).
         */
        if (io_unlinkat(dirfd, name, "log-unlink") == 0)
            io_fsync_dir(dirfd, "log-unlink-dirsync");
        return rc;
    }
    *end = (uint64_t)n;
    return fd;
}

int wal_create(struct wal *w, int dirfd, uint64_t first, uint64_t last_rev, uint64_t bytes)
{
    uint64_t end;
    int fd = create_segment(dirfd, first, &end);
    if (fd < 0)
        return fd;
    init_locks(w);
    w->dirfd = dirfd;
    w->fd = fd;
    w->first = first;
    w->end = end;
    atomic_store(&w->appended, end);
    atomic_store(&w->synced_end, end); /* create_segment fsynced the header */
    atomic_store(&w->last_rev, last_rev);
    atomic_store(&w->bytes, bytes + end);
    return 0;
}

int wal_append(struct wal *w, const void *p, size_t n, uint64_t rev, bool *clean)
{
    int rc = io_pwrite_all(w->fd, p, n, (off_t)w->end, "log-append");

    *clean = true;
    if (rc != 0) {
        /* roll back whatever part made it: the next record goes to the same offset */
        if (io_ftruncate(w->fd, (off_t)w->end, "log-rollback") != 0)
            *clean = false;
        return rc;
    }
    w->end += n;
    atomic_store_explicit(&w->appended, w->end, memory_order_release);
    atomic_fetch_add(&w->bytes, n);
    atomic_store_explicit(&w->last_rev, rev, memory_order_release);
    return 0;
}

/*
 * fdatasync of the current segment under fd_lock, so this sync and another
 * never wait on the same writeback error where only one of them would be
 * told. On success the synced claim advances to what was appended before
 * the sync began, and *rev is the last revision appended by then.
 */
static int sync_segment(struct wal *w, uint64_t *rev)
{
    pthread_mutex_lock(&w->fd_lock);
    /* every record up to this revision was written to this fd (older segments were synced) */
    *rev = atomic_load_explicit(&w->last_rev, memory_order_acquire);
    /* and every byte up to here (appended before last_rev was stored) */
    uint64_t end = atomic_load_explicit(&w->appended, memory_order_acquire);
    int rc = w->sync_failed ? -EIO : io_fdatasync(w->fd, "log-sync");
    if (rc != 0)
        w->sync_failed = true;
    else if (end > atomic_load(&w->synced_end))
        atomic_store(&w->synced_end, end);
    pthread_mutex_unlock(&w->fd_lock);
    return rc;
}

int wal_sync(struct wal *w, uint64_t *synced)
{
    uint64_t rev;
    int rc = sync_segment(w, &rev);
    if (rc == 0)
        *synced = rev;
    return rc;
}

int wal_rotate(struct wal *w, uint64_t first)
{
    uint64_t end;
    int rc, fd, old;

    if (first != atomic_load(&w->last_rev) + 1)
        panic("wal_rotate: segment %" PRIu64 " after revision %" PRIu64, first,
              (uint64_t)atomic_load(&w->last_rev));
    /*
     * The old segment must be durable before anything lands in the new one.
     * The claim advances too: if the new segment cannot be created, the
     * appends go on in this one and their records report this sync.
     */
    uint64_t synced_rev;
    rc = sync_segment(w, &synced_rev);
    if (rc != 0)
        return rc;
    fd = create_segment(w->dirfd, first, &end);
    if (fd < 0)
        return fd;
    pthread_mutex_lock(&w->fd_lock);
    old = w->fd;
    w->fd = fd;
    w->first = first;
    w->end = end;
    atomic_store(&w->appended, end);
    atomic_store(&w->synced_end, end);
    atomic_fetch_add(&w->bytes, end);
    pthread_mutex_unlock(&w->fd_lock);
    io_close(old);
    return 0;
}

uint64_t wal_synced_end(struct wal *w)
{
    return atomic_load(&w->synced_end);
}

bool wal_sync_failed(struct wal *w)
{
    pthread_mutex_lock(&w->fd_lock);
    bool failed = w->sync_failed;
    pthread_mutex_unlock(&w->fd_lock);
    return failed;
}

void wal_close(struct wal *w)
{
    if (w->fd >= 0)
        io_close(w->fd);
    w->fd = -1;
    pthread_mutex_destroy(&w->fd_lock);
}
