/* src/store/iofault.h -- the I/O calls of the durable store, with fault injection in test builds.
 */
#ifndef CAIRN_STORE_IOFAULT_H
#define CAIRN_STORE_IOFAULT_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Every call that changes a file or directory of the data dir goes through
 * these. They return what the system call returns, except that errors come
 * back as a negative errno. 'what' names the call site ("log-append",
 * "snap-rename", ...) for fault injection and messages.
 *
 * In a normal build they are the bare system calls. In a FAULTS build
 * (-DCAIRN_FAULTS) the environment can turn on a power-loss simulation
 * (docs/DURABILITY.md, "Testing"):
 *
 *   CAIRN_CRASH_AFTER_IO=N   at the Nth I/O call, before doing it, simulate a
 *                            power loss: every file is cut back to what was
 *                            last fsynced, every create/rename/unlink since the
 *                            directory's last fsync is undone, then _exit(86)
 *   CAIRN_CRASH_AT=LABEL[:K] the same at the Kth call whose label starts with LABEL
 *   CAIRN_CRASH_KEEP=random  keep a random prefix of the unsynced bytes of each
 *                            file instead of none (a partial write-back), and
 *                            keep some unsynced directory changes (an unlink
 *                            with probability 3/4, a create or rename 1/4):
 *                            they need not persist in order;
 *                            CAIRN_CRASH_SEED seeds it
 *   CAIRN_CRASH_KEEP=pages   the same, and of the unsynced bytes kept, each
 *                            4 KiB page independently reached the disk or
 *                            reads as zeros or stale bytes: holes with valid
 *                            pages after them, not only a shorter suffix
 *   CAIRN_CRASH_DIR_UNSYNCED=1 the entries of the log segments already in the
 *                            directory are not durable yet (the run before
 *                            was killed before its directory fsync): the
 *                            crash removes them unless a directory fsync
 *                            came first
 *   CAIRN_IO_FAIL=LABEL:K:ERR  the Kth call whose label starts with LABEL fails
 *                            with errno ERR (a number or ENOSPC/EIO/EROFS)
 *                            without doing anything; "K+" fails it and every
 *                            later one
 *   CAIRN_IO_DELAY=LABEL:USEC  a slow disk: every fsync/fdatasync whose label
 *                            starts with LABEL sleeps USEC (no lock held)
 * The simulation serializes all calls of this layer on one mutex, except
 * that a sync runs (its delay and the real call) without it: it makes
 * durable what the file held when it began, and writes go on meanwhile.
 */

#define IOFAULT_CRASH_STATUS 86

/* Reads the environment (FAULTS builds). 'dirfd' is the data directory the tracking covers. */
void io_init(int dirfd);

int io_openat(int dirfd, const char *name, int flags, mode_t mode, const char *what);
ssize_t io_pwrite(int fd, const void *p, size_t n, off_t off, const char *what);
int io_fdatasync(int fd, const char *what);
int io_fsync(int fd, const char *what);
/* fsync of the directory: makes creates, renames and unlinks in it durable. */
int io_fsync_dir(int dirfd, const char *what);
int io_renameat(int dirfd, const char *from, const char *to, const char *what);
int io_unlinkat(int dirfd, const char *name, const char *what);
int io_ftruncate(int fd, off_t len, const char *what);
int io_close(int fd);

/* Writes all of p[0..n) at 'off' (retrying short writes). 0 or a negative errno. */
int io_pwrite_all(int fd, const void *p, size_t n, off_t off, const char *what);

#endif
