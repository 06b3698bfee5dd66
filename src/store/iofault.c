/* src/store/iofault.c -- see iofault.h. */
#include "store/iofault.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#ifndef CAIRN_FAULTS

void io_init(int dirfd)
{
    (void)dirfd;
}

int io_openat(int dirfd, const char *name, int flags, mode_t mode, const char *what)
{
    (void)what;
    int fd = openat(dirfd, name, flags | O_CLOEXEC, mode);
    return fd < 0 ? -errno : fd;
}

ssize_t io_pwrite(int fd, const void *p, size_t n, off_t off, const char *what)
{
    (void)what;
    ssize_t w = pwrite(fd, p, n, off);
    return w < 0 ? -errno : w;
}

int io_fdatasync(int fd, const char *what)
{
    (void)what;
    return fdatasync(fd) != 0 ? -errno : 0;
}

int io_fsync(int fd, const char *what)
{
    (void)what;
    return fsync(fd) != 0 ? -errno : 0;
}

int io_fsync_dir(int dirfd, const char *what)
{
    (void)what;
    return fsync(dirfd) != 0 ? -errno : 0;
}

int io_renameat(int dirfd, const char *from, const char *to, const char *what)
{
    (void)what;
    return renameat(dirfd, from, dirfd, to) != 0 ? -errno : 0;
}

int io_unlinkat(int dirfd, const char *name, const char *what)
{
    (void)what;
    return unlinkat(dirfd, name, 0) != 0 ? -errno : 0;
}

int io_ftruncate(int fd, off_t len, const char *what)
{
    (void)what;
    return ftruncate(fd, len) != 0 ? -errno : 0;
}

int io_close(int fd)
{
    return close(fd) != 0 ? -errno : 0;
}

#else /* CAIRN_FAULTS: the power-loss simulation */

#include <dirent.h>
#include <pthread.h>

#define MAX_FILES 64
#define MAX_DIROPS 256
#define NAME_MAX_ 96

struct tracked {
    bool used;
    char name[NAME_MAX_]; /* current name in the data dir */
    int fd;               /* -1 when closed */
    off_t size, durable;
};

enum dirop_kind { OP_CREATE, OP_RENAME, OP_UNLINK };

struct dirop {
    enum dirop_kind kind;
    char a[NAME_MAX_], b[NAME_MAX_]; /* CREATE a; RENAME a -> b; UNLINK a (kept as b) */
    char replaced[NAME_MAX_];        /* RENAME over an existing b: it was kept under this name */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static bool active;   /* any fault setting present: calls are counted and serialized */
static bool tracking; /* a crash may come: track what is durable */
static int data_dirfd = -1;
static uint64_t calls, label_calls;
static uint64_t crash_after;
static char crash_label[32];
static uint64_t crash_label_k;
static bool keep_random;
static bool keep_pages; /* CAIRN_CRASH_KEEP=pages */
static uint64_t rng = 88172645463325252ull;
static char fail_label[32];
static uint64_t fail_k, fail_calls;
static bool fail_onward;
static int fail_errno;
static char delay_label[32];
static unsigned delay_usec;
static struct tracked files[MAX_FILES];
static struct dirop ops[MAX_DIROPS];
static size_t nops;
static unsigned trash_seq;

static void add_op(enum dirop_kind kind, const char *a, const char *b, const char *replaced);

/*
 * CAIRN_CRASH_DIR_UNSYNCED: the run before was killed before its directory
 * fsync, so the entries of the log segments already there are not durable
 * yet: a crash before this run's first directory fsync removes them.
 */
static void old_entries_unsynced(int dirfd)
{
    int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct dirent *e;

    if (dir == NULL)
        panic("iofault: cannot list the data directory: %s", strerror(errno));
    while ((e = readdir(dir)) != NULL)
        if (strncmp(e->d_name, "log.", 4) == 0)
            add_op(OP_CREATE, e->d_name, NULL, NULL);
    closedir(dir);
}

static int parse_errno(const char *s)
{
    if (strcmp(s, "ENOSPC") == 0)
        return ENOSPC;
    if (strcmp(s, "EIO") == 0)
        return EIO;
    if (strcmp(s, "EROFS") == 0)
        return EROFS;
    if (strcmp(s, "EDQUOT") == 0)
        return EDQUOT;
    return atoi(s);
}

void io_init(int dirfd)
{
    const char *s;

    pthread_mutex_lock(&mu);
    data_dirfd = dirfd;
    if ((s = getenv("CAIRN_CRASH_AFTER_IO")) != NULL && *s != '\0') {
        crash_after = strtoull(s, NULL, 10);
        tracking = active = crash_after > 0;
    }
    if ((s = getenv("CAIRN_CRASH_AT")) != NULL && *s != '\0') {
        const char *colon = strchr(s, ':');
        size_t n = colon ? (size_t)(colon - s) : strlen(s);
        snprintf(crash_label, sizeof(crash_label), "%.*s", (int)n, s);
        crash_label_k = colon ? strtoull(colon + 1, NULL, 10) : 1;
        tracking = active = true;
    }
    if (tracking && (s = getenv("CAIRN_CRASH_DIR_UNSYNCED")) != NULL && *s != '\0' &&
        strcmp(s, "0") != 0)
        old_entries_unsynced(dirfd);
    if ((s = getenv("CAIRN_CRASH_KEEP")) != NULL && strcmp(s, "random") == 0)
        keep_random = true;
    if (s != NULL && strcmp(s, "pages") == 0)
        keep_random = keep_pages = true;
    if ((s = getenv("CAIRN_CRASH_SEED")) != NULL && *s != '\0')
        rng = strtoull(s, NULL, 10) * 2654435761u + 1;
    if ((s = getenv("CAIRN_IO_DELAY")) != NULL && *s != '\0') {
        const char *colon = strchr(s, ':');
        if (colon != NULL) {
            snprintf(delay_label, sizeof(delay_label), "%.*s",
                     (int)(colon - s < 31 ? colon - s : 31), s);
            delay_usec = (unsigned)strtoul(colon + 1, NULL, 10);
        }
    }
    if ((s = getenv("CAIRN_IO_FAIL")) != NULL && *s != '\0') {
        char tmp[96];
        snprintf(tmp, sizeof(tmp), "%s", s);
        char *k = strchr(tmp, ':');
        char *e = k ? strchr(k + 1, ':') : NULL;
        if (k != NULL && e != NULL) {
            *k++ = '\0';
            *e++ = '\0';
            snprintf(fail_label, sizeof(fail_label), "%.31s", tmp);
            fail_k = strtoull(k, NULL, 10);
            fail_onward = strchr(k, '+') != NULL;
            fail_errno = parse_errno(e);
            active = true;
        }
    }
    pthread_mutex_unlock(&mu);
}

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A slow disk: sleeps before a matching call, outside every lock of this layer. */
static void slow(const char *what)
{
    if (delay_usec != 0 && strncmp(what, delay_label, strlen(delay_label)) == 0)
        usleep(delay_usec);
}

static struct tracked *by_fd(int fd)
{
    for (size_t i = 0; i < MAX_FILES; i++)
        if (files[i].used && files[i].fd == fd)
            return &files[i];
    return NULL;
}

static struct tracked *by_name(const char *name)
{
    for (size_t i = 0; i < MAX_FILES; i++)
        if (files[i].used && strcmp(files[i].name, name) == 0)
            return &files[i];
    return NULL;
}

static struct tracked *track(const char *name)
{
    struct tracked *t = by_name(name);
    if (t != NULL)
        return t;
    for (size_t i = 0; i < MAX_FILES; i++) {
        if (!files[i].used) {
            memset(&files[i], 0, sizeof(files[i]));
            files[i].used = true;
            files[i].fd = -1;
            snprintf(files[i].name, sizeof(files[i].name), "%s", name);
            return &files[i];
        }
    }
    panic("iofault: more than %d files", MAX_FILES);
}

static void add_op(enum dirop_kind kind, const char *a, const char *b, const char *replaced)
{
    if (nops == MAX_DIROPS)
        panic("iofault: more than %d directory operations without a directory fsync", MAX_DIROPS);
    ops[nops].kind = kind;
    snprintf(ops[nops].a, NAME_MAX_, "%s", a);
    snprintf(ops[nops].b, NAME_MAX_, "%s", b ? b : "");
    snprintf(ops[nops].replaced, NAME_MAX_, "%s", replaced ? replaced : "");
    nops++;
}

/*
 * CAIRN_CRASH_KEEP=pages: write-back is per page and in no order, so of the
 * unsynced pages in [durable, keep) each one independently reached the disk
 * or did not: then its unsynced bytes read as zeros (a block never written)
 * or as stale bytes (a block that held something else). Bytes before
 * 'durable' in the same page were synced and stay.
 */
static void drop_pages(int fd, off_t durable, off_t keep)
{
    enum { PAGE = 4096 };
    unsigned char junk[PAGE];

    for (off_t page = durable / PAGE * PAGE; page < keep; page += PAGE) {
        if (next_rand() % 2 == 0)
            continue; /* this page was written back */
        off_t from = page > durable ? page : durable;
        off_t to = page + PAGE < keep ? page + PAGE : keep;
        bool stale = next_rand() % 2 == 0;
        for (off_t k = 0; k < to - from; k++)
            junk[k] = stale ? (unsigned char)(next_rand() >> 24) : 0;
        if (pwrite(fd, junk, (size_t)(to - from), from) != to - from)
            _exit(99);
    }
}

/* The simulated power loss: runs with 'mu' held, never returns. */
static _Noreturn void crash(const char *what)
{
    char msg[256];
    int n;
    long long unsynced = 0;

    for (size_t i = 0; i < MAX_FILES; i++) {
        struct tracked *t = &files[i];
        if (!t->used || t->size <= t->durable)
            continue;
        unsynced += (long long)(t->size - t->durable);
        off_t keep = t->durable;
        if (keep_pages && next_rand() % 2 == 0)
            keep = t->size; /* the new size reached the disk, the pages maybe not */
        else if (keep_random)
            keep += (off_t)(next_rand() % (uint64_t)(t->size - t->durable + 1));
        int fd = openat(data_dirfd, t->name, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (keep_pages)
                drop_pages(fd, t->durable, keep);
            if (ftruncate(fd, keep) != 0)
                _exit(99);
            close(fd);
        }
    }
    while (nops > 0) {
        struct dirop *op = &ops[--nops];
        /*
         * Directory updates need not persist in order. The bias is the bad
         * case for a snapshot: the removal of what it covers persists, the
         * rename that installs it does not.
         */
        if (keep_random && next_rand() % 4 < (op->kind == OP_UNLINK ? 3u : 1u)) {
            if (op->kind == OP_UNLINK)
                unlinkat(data_dirfd, op->b, 0);
            else if (op->kind == OP_RENAME && op->replaced[0] != '\0')
                unlinkat(data_dirfd, op->replaced, 0);
            continue;
        }
        switch (op->kind) {
        case OP_CREATE:
            unlinkat(data_dirfd, op->a, 0);
            break;
        case OP_RENAME:
            renameat(data_dirfd, op->b, data_dirfd, op->a);
            if (op->replaced[0] != '\0')
                renameat(data_dirfd, op->replaced, data_dirfd, op->b);
            break;
        case OP_UNLINK:
            renameat(data_dirfd, op->b, data_dirfd, op->a);
            break;
        }
    }
    n = snprintf(msg, sizeof(msg),
                 "iofault: simulated power loss at I/O call %llu (%s); %lld bytes were not "
                 "synced\n",
                 (unsigned long long)calls, what, unsynced);
    if (write(2, msg, (size_t)n) < 0) {
        /* nothing to do: we are going down either way */
    }
    _exit(IOFAULT_CRASH_STATUS);
}

/*
 * Counts one call; crashes or returns the injected errno (> 0) when a
 * setting says so. Called with 'mu' held.
 */
static int enter(const char *what)
{
    calls++;
    if (crash_after != 0 && calls == crash_after)
        crash(what);
    if (crash_label[0] != '\0' && strncmp(what, crash_label, strlen(crash_label)) == 0 &&
        ++label_calls == crash_label_k)
        crash(what);
    if (fail_label[0] != '\0' && strncmp(what, fail_label, strlen(fail_label)) == 0) {
        fail_calls++;
        if (fail_calls == fail_k || (fail_onward && fail_calls >= fail_k))
            return fail_errno;
    }
    return 0;
}

int io_openat(int dirfd, const char *name, int flags, mode_t mode, const char *what)
{
    if (!active) {
        int fd = openat(dirfd, name, flags | O_CLOEXEC, mode);
        return fd < 0 ? -errno : fd;
    }
    pthread_mutex_lock(&mu);
    int rc = enter(what);
    if (rc != 0) {
        pthread_mutex_unlock(&mu);
        return -rc;
    }
    bool existed = faccessat(dirfd, name, F_OK, 0) == 0;
    int fd = openat(dirfd, name, flags | O_CLOEXEC, mode);
    if (fd < 0) {
        rc = -errno;
        pthread_mutex_unlock(&mu);
        return rc;
    }
    if (tracking && dirfd == data_dirfd && (flags & (O_WRONLY | O_RDWR))) {
        struct stat st;
        struct tracked *t = track(name);
        fstat(fd, &st);
        t->fd = fd;
        if (!existed) {
            t->size = t->durable = 0;
            add_op(OP_CREATE, name, NULL, NULL);
        } else if (t->size == 0 && t->durable == 0) {
            /* first sight of a file from before: all of it is durable */
            t->size = t->durable = st.st_size;
        }
        if (flags & O_TRUNC)
            t->size = 0; /* the old bytes are not durably gone until fsync: keep 'durable' */
    }
    pthread_mutex_unlock(&mu);
    return fd;
}

ssize_t io_pwrite(int fd, const void *p, size_t n, off_t off, const char *what)
{
    if (!active) {
        ssize_t w = pwrite(fd, p, n, off);
        return w < 0 ? -errno : w;
    }
    pthread_mutex_lock(&mu);
    int rc = enter(what);
    if (rc != 0) {
        pthread_mutex_unlock(&mu);
        return -rc;
    }
    ssize_t w = pwrite(fd, p, n, off);
    ssize_t ret = w < 0 ? -errno : w;
    struct tracked *t = tracking ? by_fd(fd) : NULL;
    if (t != NULL && w > 0 && off + w > t->size)
        t->size = off + w;
    pthread_mutex_unlock(&mu);
    return ret;
}

/*
 * A sync covers what was written when it began, no more: bytes written
 * while it runs (the delay of a slow disk, or the real call) may miss it. So
 * the size is taken when it starts, and 'mu' is not held while it runs:
 * writes go on meanwhile, as they do on a real disk.
 */
static int sync_fd(int fd, bool data_only, const char *what)
{
    if (!active) {
        slow(what);
        return (data_only ? fdatasync(fd) : fsync(fd)) != 0 ? -errno : 0;
    }
    pthread_mutex_lock(&mu);
    struct tracked *t = tracking ? by_fd(fd) : NULL;
    off_t started = t != NULL ? t->size : 0;
    pthread_mutex_unlock(&mu);
    slow(what);
    /* a crash here, at the end of a slow sync, loses what was written during it */
    pthread_mutex_lock(&mu);
    int rc = enter(what);
    pthread_mutex_unlock(&mu);
    if (rc != 0)
        return -rc;
    rc = (data_only ? fdatasync(fd) : fsync(fd)) != 0 ? -errno : 0;
    pthread_mutex_lock(&mu);
    t = tracking ? by_fd(fd) : NULL;
    if (t != NULL && rc == 0 && started > t->durable)
        t->durable = started < t->size ? started : t->size;
    pthread_mutex_unlock(&mu);
    return rc;
}

int io_fdatasync(int fd, const char *what)
{
    return sync_fd(fd, true, what);
}

int io_fsync(int fd, const char *what)
{
    return sync_fd(fd, false, what);
}

int io_fsync_dir(int dirfd, const char *what)
{
    if (!active)
        return fsync(dirfd) != 0 ? -errno : 0;
    pthread_mutex_lock(&mu);
    int rc = enter(what);
    if (rc != 0) {
        pthread_mutex_unlock(&mu);
        return -rc;
    }
    rc = fsync(dirfd) != 0 ? -errno : 0;
    if (rc == 0 && tracking && dirfd == data_dirfd) {
        /* everything since the last directory fsync is now durable: drop the kept copies */
        for (size_t i = 0; i < nops; i++) {
            if (ops[i].kind == OP_UNLINK) {
                struct tracked *t = by_name(ops[i].b);
                unlinkat(data_dirfd, ops[i].b, 0);
                if (t != NULL)
                    t->used = false;
            } else if (ops[i].kind == OP_RENAME && ops[i].replaced[0] != '\0') {
                struct tracked *t = by_name(ops[i].replaced);
                unlinkat(data_dirfd, ops[i].replaced, 0);
                if (t != NULL)
                    t->used = false;
            }
        }
        nops = 0;
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

int io_renameat(int dirfd, const char *from, const char *to, const char *what)
{
    if (!active)
        return renameat(dirfd, from, dirfd, to) != 0 ? -errno : 0;
    pthread_mutex_lock(&mu);
    int rc = enter(what);
    if (rc != 0) {
        pthread_mutex_unlock(&mu);
        return -rc;
    }
    if (tracking && dirfd == data_dirfd) {
        char kept[NAME_MAX_] = "";
        struct tracked *t;
        if (faccessat(dirfd, to, F_OK, 0) == 0) {
            snprintf(kept, sizeof(kept), ".iofault-kept-%u", trash_seq++);
            if (renameat(dirfd, to, dirfd, kept) != 0)
                panic("iofault: cannot keep %s: %s", to, strerror(errno));
            if ((t = by_name(to)) != NULL)
                snprintf(t->name, sizeof(t->name), "%s", kept);
        }
        rc = renameat(dirfd, from, dirfd, to) != 0 ? -errno : 0;
        if (rc == 0) {
            if ((t = by_name(from)) != NULL)
                snprintf(t->name, sizeof(t->name), "%s", to);
            add_op(OP_RENAME, from, to, kept[0] ? kept : NULL);
        } else if (kept[0] != '\0') {
            renameat(dirfd, kept, dirfd, to);
        }
    } else {
        rc = renameat(dirfd, from, dirfd, to) != 0 ? -errno : 0;
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

int io_unlinkat(int dirfd, const char *name, const char *what)
{
    if (!active)
        return unlinkat(dirfd, name, 0) != 0 ? -errno : 0;
    pthread_mutex_lock(&mu);
    int rc = enter(what);
    if (rc != 0) {
        pthread_mutex_unlock(&mu);
        return -rc;
    }
    if (tracking && dirfd == data_dirfd) {
        /* not durable until the directory is fsynced: keep the file under another name */
        char kept[NAME_MAX_];
        snprintf(kept, sizeof(kept), ".iofault-kept-%u", trash_seq++);
        rc = renameat(dirfd, name, dirfd, kept) != 0 ? -errno : 0;
        if (rc == 0) {
            struct tracked *t = by_name(name);
            if (t != NULL)
                snprintf(t->name, sizeof(t->name), "%s", kept);
            add_op(OP_UNLINK, name, kept, NULL);
        }
    } else {
        rc = unlinkat(dirfd, name, 0) != 0 ? -errno : 0;
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

int io_ftruncate(int fd, off_t len, const char *what)
{
    if (!active)
        return ftruncate(fd, len) != 0 ? -errno : 0;
    pthread_mutex_lock(&mu);
    int rc = enter(what);
    if (rc != 0) {
        pthread_mutex_unlock(&mu);
        return -rc;
    }
    rc = ftruncate(fd, len) != 0 ? -errno : 0;
    struct tracked *t = tracking ? by_fd(fd) : NULL;
    if (t != NULL && rc == 0) {
        t->size = len;
        if (t->durable > len)
            t->durable = len;
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

int io_close(int fd)
{
    if (!active)
        return close(fd) != 0 ? -errno : 0;
    pthread_mutex_lock(&mu);
    struct tracked *t = tracking ? by_fd(fd) : NULL;
    if (t != NULL)
        t->fd = -1;
    int rc = close(fd) != 0 ? -errno : 0;
    pthread_mutex_unlock(&mu);
    return rc;
}

#endif /* CAIRN_FAULTS */

int io_pwrite_all(int fd, const void *p, size_t n, off_t off, const char *what)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = io_pwrite(fd, c, n, off, what);
        if (w == -EINTR)
            continue;
        if (w < 0)
            return (int)w;
        if (w == 0)
            return -EIO;
        c += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}
