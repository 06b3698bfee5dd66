/* src/store/durable.c -- see durable.h and docs/DURABILITY.md. */
#include "store/durable.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "stats.h"
#include "store/iofault.h"
#include "store/load.h"
#include "store/record.h"
#include "store/snapfile.h"
#include "store/wal.h"
#include "util.h"

#define SNAPSHOT_RETRY_USEC 1000000 /* after a failed snapshot, wait this long before the next */
#define ENC_KEEP (4u << 20)         /* the encode buffer is freed after a record bigger than this */

struct waiter {
    struct waiter *next;
    uint64_t rev;
    void (*fn)(void *cls, int err);
    void *cls;
};

struct snap_req {
    struct snap_req *next;
    durable_snap_fn *fn;
    void *cls;
};

struct durable {
    struct durable_opts o;
    char *dir;
    int dirfd, lockfd;
    struct store *st;
    struct wal wal;
    bool wal_open;
    struct buf enc; /* the record being appended: writer mutex */

    _Atomic bool read_only;
    _Atomic bool closing;
    atomic_uint_fast64_t inflight; /* durable_begin() brackets not yet ended */
    atomic_uint_fast64_t waiting;  /* writes queued by durable_wait() and not yet called back */
    _Atomic uint64_t durable_rev;
    _Atomic uint64_t snap_rev; /* revision of the newest snapshot file (0: none) */
    bool lossy;                /* --recover-truncate dropped something: snapshot at once */
    bool stopped;              /* durable_stop() ran: files closed, store still readable */
    bool force_snapshot;       /* the next snapshot is written even at the same revision */
    size_t rec_max;            /* the largest record a write may append (REC_MAX) */

    /* the committer: one thread, one fdatasync per batch */
    pthread_t committer;
    bool committer_started;
    pthread_mutex_t q_mu;
    pthread_cond_t q_cond;
    struct waiter *q_head, **q_tail;
    size_t q_len;
    bool q_stop;

    /* the snapshot thread */
    pthread_t snapper;
    bool snapper_started;
    pthread_mutex_t s_mu;
    pthread_cond_t s_cond;
    struct snap_req *s_reqs;
    bool s_requested, s_running, s_stop;
    uint64_t s_retry_at; /* monotonic usec */
};

/* ---- the read-only state: per process, for /readyz ---- */

static pthread_mutex_t degraded_mu = PTHREAD_MUTEX_INITIALIZER;
static char degraded_why[256];
static bool degraded;

bool durable_degraded(char *why, size_t whylen)
{
    pthread_mutex_lock(&degraded_mu);
    bool on = degraded;
    if (on && why != NULL)
        snprintf(why, whylen, "%s", degraded_why);
    pthread_mutex_unlock(&degraded_mu);
    return on;
}

static void go_read_only(struct durable *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * After EIO the kernel may already have dropped the dirty pages it could not
 * write and marked them clean, so a second fsync could "succeed" without
 * the data (the PostgreSQL fsyncgate lesson): never retry, never acknowledge.
 */
static void go_read_only(struct durable *d, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&degraded_mu);
    bool first = !degraded;
    if (first) {
        degraded = true;
        snprintf(degraded_why, sizeof(degraded_why), "%s", why);
    }
    pthread_mutex_unlock(&degraded_mu);
    atomic_store(&d->read_only, true);
    STATS_SET(store_read_only, 1);
    if (first) {
        log_err("store is read-only until restart: %s", why);
        notify_send("STATUS=degraded: store read-only until restart: %.200s", why);
    }
    pthread_mutex_lock(&d->q_mu);
    pthread_cond_signal(&d->q_cond);
    pthread_mutex_unlock(&d->q_mu);
}

bool durable_read_only(struct durable *d, char *why, size_t whylen)
{
    if (atomic_load(&d->read_only)) {
        char reason[256] = "an I/O error";
        durable_degraded(reason, sizeof(reason));
        if (why != NULL)
            snprintf(why, whylen, "the store is read-only until restart after: %.180s", reason);
        return true;
    }
    if (atomic_load(&d->closing)) {
        if (why != NULL)
            snprintf(why, whylen, "shutting down");
        return true;
    }
    return false;
}

static const char *errstr(int neg_errno, char *buf, size_t n)
{
    return strerror_r(-neg_errno, buf, n);
}

static bool disk_full(int err)
{
    return err == -ENOSPC || err == -EDQUOT;
}

static void raise_durable(struct durable *d, uint64_t rev)
{
    uint64_t cur = atomic_load(&d->durable_rev);
    while (cur < rev && !atomic_compare_exchange_weak(&d->durable_rev, &cur, rev))
        ;
    STATS_SET(store_durable_revision, atomic_load(&d->durable_rev));
}

/* ---- the commit hook: append under the writer mutex, before publishing ---- */

static void maybe_snapshot(struct durable *d)
{
    if (atomic_load(&d->wal.bytes) < d->o.compact_bytes)
        return;
    pthread_mutex_lock(&d->s_mu);
    if (!d->s_running && !d->s_requested && now_usec() >= d->s_retry_at) {
        d->s_requested = true;
        pthread_cond_signal(&d->s_cond);
    }
    pthread_mutex_unlock(&d->s_mu);
}

static int commit(void *cls, const struct store_change *ch)
{
    struct durable *d = cls;
    struct rec r = {.rev = ch->rev};
    struct buf db = {0};
    char ebuf[96], seg[WAL_NAME_MAX];
    bool clean;
    int rc;

    if (atomic_load(&d->read_only))
        return -EROFS;
    if (atomic_load(&d->closing))
        return -ESHUTDOWN;
    switch (ch->op->kind) {
    case STORE_POST:
    case STORE_PUT:
    case STORE_PATCH:
    case STORE_DELETE:
        r.kind = ch->op->kind == STORE_POST    ? REC_POST
                 : ch->op->kind == STORE_PUT   ? REC_PUT
                 : ch->op->kind == STORE_PATCH ? REC_PATCH
                                               : REC_DELETE;
        r.name = ch->name;
        r.name_len = strlen(ch->name);
        r.id = ch->doc->id;
        r.id_len = ch->doc->id_len;
        r.flags = ch->doc->int_id ? REC_F_INT_ID : 0;
        if (ch->op->kind != STORE_DELETE) {
            r.data = ch->doc->bytes;
            r.data_len = ch->doc->len;
        }
        break;
    case STORE_PUT_SINGLE:
    case STORE_PATCH_SINGLE:
        r.kind = ch->op->kind == STORE_PUT_SINGLE ? REC_PUT_SINGLE : REC_PATCH_SINGLE;
        r.name = ch->name;
        r.name_len = strlen(ch->name);
        r.data = ch->doc->bytes;
        r.data_len = ch->doc->len;
        break;
    case STORE_IMPORT:
        /* the result, not the request: generated ids are in it, so replay is exact */
        r.kind = REC_IMPORT;
        /* room for the record's header, name and id (the encoded record is checked below) */
        buf_init(&db, d->rec_max > 1024 ? d->rec_max - 1024 : d->rec_max);
        if (snap_export(ch->next, &db) != 0) {
            buf_cleanup(&db);
            return -EFBIG;
        }
        r.data = db.data;
        r.data_len = db.len;
        break;
    }
    /* the synced claim: what recovery needs to tell a power-loss hole from damage */
    r.aux = wal_synced_end(&d->wal);
    d->enc.len = 0;
    rc = rec_encode(&d->enc, &r);
    buf_cleanup(&db);
    bool too_big = rc != 0 || d->enc.len > d->rec_max;
    if (!too_big)
        rc = wal_append(&d->wal, d->enc.data, d->enc.len, ch->rev, &clean);
    if (d->enc.cap > ENC_KEEP) {
        /* also after a record too big to log: keep no such buffer for the process's life */
        buf_cleanup(&d->enc);
        buf_init(&d->enc, SIZE_MAX);
    }
    if (too_big)
        return -EFBIG; /* the caller answers 413: this write can never be logged */
    if (rc != 0) {
        wal_segment_name(seg, d->wal.first);
        if (disk_full(rc) && clean) {
            STATS_INC(store_writes_enospc);
            log_warn("%s/%s: disk full appending revision %" PRIu64 "; the write was refused",
                     d->dir, seg, ch->rev);
        } else {
            go_read_only(d, "appending to %s/%s failed: %s%s", d->dir, seg,
                         errstr(rc, ebuf, sizeof(ebuf)),
                         clean ? "" : " (and the partial record could not be cut off)");
        }
        return rc;
    }
    STATS_INC(store_log_appends);
    STATS_SET(store_revision, ch->rev);
    STATS_SET(store_log_bytes, atomic_load(&d->wal.bytes));
    maybe_snapshot(d);
    return 0;
}

/* ---- group commit ---- */

bool durable_begin(struct durable *d)
{
    atomic_fetch_add(&d->inflight, 1);
    if (atomic_load(&d->closing)) {
        atomic_fetch_sub(&d->inflight, 1);
        return false;
    }
    STATS_INC(store_writes_pending);
    return true;
}

void durable_end(struct durable *d)
{
    atomic_fetch_sub(&d->inflight, 1);
    STATS_DEC(store_writes_pending);
}

bool durable_refuse_busy(struct durable *d)
{
    if (d->o.max_pending == 0 || d->o.sync != DURABLE_SYNC_ALWAYS)
        return false;
    if (atomic_load(&d->waiting) + atomic_load(&d->inflight) < d->o.max_pending)
        return false;
    STATS_INC(store_writes_busy);
    return true;
}

bool durable_must_wait(const struct durable *d)
{
    return d->o.sync == DURABLE_SYNC_ALWAYS;
}

bool durable_is_durable(const struct durable *d, uint64_t rev)
{
    return atomic_load(&((struct durable *)d)->durable_rev) >= rev;
}

void durable_wait(struct durable *d, uint64_t rev, void (*fn)(void *cls, int err), void *cls)
{
    struct waiter *w = xmalloc(sizeof(*w));
    w->next = NULL;
    w->rev = rev;
    w->fn = fn;
    w->cls = cls;
    atomic_fetch_add(&d->waiting, 1);
    STATS_INC(store_writes_pending);
    pthread_mutex_lock(&d->q_mu);
    *d->q_tail = w;
    d->q_tail = &w->next;
    d->q_len++;
    STATS_SET(store_commit_queue, d->q_len);
    pthread_cond_signal(&d->q_cond);
    pthread_mutex_unlock(&d->q_mu);
    durable_end(d);
}

/* One fdatasync for whatever is appended; read-only on failure. */
static int sync_log(struct durable *d)
{
    char ebuf[96], seg[WAL_NAME_MAX];
    uint64_t synced;
    int rc;

    if (atomic_load(&d->read_only))
        return -EIO;
    rc = wal_sync(&d->wal, &synced);
    if (rc != 0) {
        pthread_mutex_lock(&d->wal.fd_lock); /* a rotation may be changing it */
        wal_segment_name(seg, d->wal.first);
        pthread_mutex_unlock(&d->wal.fd_lock);
        go_read_only(d, "fdatasync of %s/%s failed: %s", d->dir, seg,
                     errstr(rc, ebuf, sizeof(ebuf)));
        return rc;
    }
    /* every write this fsync covered, whether its writer waited or already had its reply */
    uint64_t before = atomic_load(&d->durable_rev);
    uint64_t batch = synced > before ? synced - before : 0;
    raise_durable(d, synced);
    STATS_INC(store_fsyncs);
    STATS_ADD(store_fsync_writes, batch);
    STATS_SET(store_last_batch_writes, batch);
    return 0;
}

static void *committer_main(void *arg)
{
    struct durable *d = arg;
    bool periodic = d->o.sync == DURABLE_SYNC_PERIODIC;
    uint64_t next_tick = now_usec() + d->o.interval_ms * 1000;

    pthread_mutex_lock(&d->q_mu);
    for (;;) {
        while (d->q_head == NULL && !d->q_stop) {
            if (!periodic) {
                pthread_cond_wait(&d->q_cond, &d->q_mu);
                continue;
            }
            uint64_t now = now_usec();
            if (now >= next_tick)
                break;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts); /* q_cond waits on it: see durable_open */
            uint64_t ns = (uint64_t)ts.tv_nsec + (next_tick - now) * 1000;
            ts.tv_sec += (time_t)(ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            pthread_cond_timedwait(&d->q_cond, &d->q_mu, &ts);
        }
        struct waiter *batch = d->q_head;
        bool stop = d->q_stop;
        d->q_head = NULL;
        d->q_tail = &d->q_head;
        d->q_len = 0;
        STATS_SET(store_commit_queue, 0);
        pthread_mutex_unlock(&d->q_mu);

        /* the waiters' records were appended before they queued: one sync covers them all */
        bool need = false;
        for (struct waiter *w = batch; w != NULL; w = w->next)
            need = need || !durable_is_durable(d, w->rev);
        if (periodic && now_usec() >= next_tick) {
            need = need || atomic_load(&d->wal.last_rev) > atomic_load(&d->durable_rev);
            next_tick = now_usec() + d->o.interval_ms * 1000;
        }
        int err = need ? sync_log(d) : atomic_load(&d->read_only) ? -EIO : 0;
        while (batch != NULL) {
            struct waiter *w = batch;
            batch = w->next;
            /* a write that was durable before a failure still succeeded */
            w->fn(w->cls, durable_is_durable(d, w->rev) ? 0 : err != 0 ? err : -EIO);
            free(w);
            atomic_fetch_sub(&d->waiting, 1);
            STATS_DEC(store_writes_pending);
        }

        pthread_mutex_lock(&d->q_mu);
        if (stop && d->q_head == NULL)
            break;
    }
    pthread_mutex_unlock(&d->q_mu);
    return NULL;
}

int durable_sync_now(struct durable *d)
{
    return sync_log(d);
}

/* ---- snapshots ---- */

struct cut {
    struct durable *d;
    struct snap *snap;
    uint64_t rev;
    int err;
    bool nothing_new;
};

/* Writer mutex held: take the snapshot and start a new log segment at its revision. */
static void cut_here(void *cls, const struct snap *cur)
{
    struct cut *c = cls;
    struct durable *d = c->d;

    c->rev = snap_revision(cur);
    if (c->rev == atomic_load(&d->snap_rev) && c->rev != 0 && !d->force_snapshot) {
        c->nothing_new = true;
        return;
    }
    c->snap = snap_retain(cur);
    if (d->wal.first != c->rev + 1)
        c->err = wal_rotate(&d->wal, c->rev + 1);
    if (c->err == 0)
        raise_durable(d, c->rev); /* the rotation synced the old segment */
    else if (wal_sync_failed(&d->wal))
        /* fail-stop now, under the writer mutex: no write may append after a failed sync */
        go_read_only(d, "fdatasync of the log before a snapshot failed: %s", strerror(-c->err));
}

/* Removes segments and snapshots the snapshot at 'rev' covers, and stale temp files. */
static void cleanup(struct durable *d, uint64_t rev)
{
    DIR *dir;
    struct dirent *e;
    int dfd = openat(d->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool removed = false;

    if (dfd < 0 || (dir = fdopendir(dfd)) == NULL) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    while ((e = readdir(dir)) != NULL) {
        uint64_t n;
        struct stat st;
        const char *what = NULL;
        if (wal_parse_name(e->d_name, &n) && n <= rev)
            what = "log-unlink";
        else if (snapfile_parse_name(e->d_name, &n) && n < rev)
            what = "snap-unlink";
        else if (strncmp(e->d_name, "snap.", 5) == 0 && strlen(e->d_name) > 4 &&
                 strcmp(e->d_name + strlen(e->d_name) - 4, ".tmp") == 0)
            what = "snap-unlink-tmp";
        if (what == NULL)
            continue;
        bool is_log = what[0] == 'l';
        if (is_log && fstatat(d->dirfd, e->d_name, &st, 0) != 0)
            continue;
        if (io_unlinkat(d->dirfd, e->d_name, what) == 0) {
            removed = true;
            if (is_log)
                atomic_fetch_sub(&d->wal.bytes, (uint64_t)st.st_size);
        }
    }
    closedir(dir);
    if (removed)
        io_fsync_dir(d->dirfd, "cleanup-dirsync");
    STATS_SET(store_log_bytes, atomic_load(&d->wal.bytes));
}

/* Writes a snapshot of the current revision. 0 or -errno; *rev etc. describe it. */
static int do_snapshot(struct durable *d, uint64_t *rev, uint64_t *bytes, uint64_t *usec)
{
    struct cut c = {.d = d};
    char ebuf[96], name[SNAPFILE_NAME_MAX];
    uint64_t t0 = now_usec();
    int rc;

    *rev = *bytes = *usec = 0;
    if (atomic_load(&d->read_only))
        return -EROFS;
    store_exclusive(d->st, cut_here, &c);
    *rev = c.rev;
    if (c.nothing_new)
        return 0;
    if (c.err != 0) {
        snap_release(c.snap);
        STATS_INC(store_snapshot_failures);
        /* a full disk while creating the segment is recoverable; a failed fdatasync never is */
        if (wal_sync_failed(&d->wal))
            log_err("snapshot at revision %" PRIu64 ": %s", c.rev,
                    errstr(c.err, ebuf, sizeof(ebuf)));
        else if (!disk_full(c.err))
            go_read_only(d, "starting log segment %" PRIu64 " in %s failed: %s", c.rev + 1, d->dir,
                         errstr(c.err, ebuf, sizeof(ebuf)));
        else
            log_warn("snapshot at revision %" PRIu64 ": cannot start a log segment: %s", c.rev,
                     errstr(c.err, ebuf, sizeof(ebuf)));
        return c.err;
    }
    rc = snapfile_write(d->dirfd, c.snap, bytes);
    snap_release(c.snap); /* may free a large old version: we are off the request path */
    *usec = now_usec() - t0;
    snapfile_name(name, c.rev);
    if (rc != 0) {
        /* the old snapshot and every log segment stay: recovery does not need this one */
        STATS_INC(store_snapshot_failures);
        log_warn("%s/%s: snapshot failed, keeping the previous one and the log: %s", d->dir, name,
                 errstr(rc, ebuf, sizeof(ebuf)));
        return rc;
    }
    atomic_store(&d->snap_rev, c.rev);
    cleanup(d, c.rev);
    STATS_INC(store_snapshots);
    STATS_SET(store_snapshot_revision, c.rev);
    STATS_SET(store_snapshot_unix_seconds, (uint64_t)time(NULL));
    STATS_SET(store_snapshot_duration_ms, *usec / 1000);
    STATS_SET(store_snapshot_bytes, *bytes);
    log_info("%s/%s: snapshot written (%" PRIu64 " bytes in %" PRIu64 " ms)", d->dir, name, *bytes,
             *usec / 1000);
    return 0;
}

static void *snapper_main(void *arg)
{
    struct durable *d = arg;

    pthread_mutex_lock(&d->s_mu);
    for (;;) {
        while (!d->s_requested && !d->s_stop)
            pthread_cond_wait(&d->s_cond, &d->s_mu);
        if (d->s_stop)
            break; /* requests still queued are answered by durable_close */
        struct snap_req *reqs = d->s_reqs;
        d->s_reqs = NULL;
        d->s_requested = false;
        d->s_running = true;
        pthread_mutex_unlock(&d->s_mu);

        uint64_t rev, bytes, usec;
        int err = do_snapshot(d, &rev, &bytes, &usec);
        while (reqs != NULL) {
            struct snap_req *r = reqs;
            reqs = r->next;
            r->fn(r->cls, err, rev, bytes, usec);
            free(r);
        }

        pthread_mutex_lock(&d->s_mu);
        d->s_running = false;
        if (err != 0)
            d->s_retry_at = now_usec() + SNAPSHOT_RETRY_USEC;
    }
    pthread_mutex_unlock(&d->s_mu);
    return NULL;
}

void durable_snapshot(struct durable *d, durable_snap_fn *fn, void *cls)
{
    struct snap_req *r = xmalloc(sizeof(*r));
    r->fn = fn;
    r->cls = cls;
    pthread_mutex_lock(&d->s_mu);
    r->next = d->s_reqs;
    d->s_reqs = r;
    d->s_requested = true;
    pthread_cond_signal(&d->s_cond);
    pthread_mutex_unlock(&d->s_mu);
}

/* ---- recovery ---- */

struct seg {
    uint64_t first;
    char name[WAL_NAME_MAX];
};

struct recovery {
    struct durable *d;
    struct loader *l;
    struct mapped *maps;
    char **names; /* each its own allocation: the loader keeps pointers to them */
    size_t nmaps;
    bool lossy; /* --recover-truncate dropped something: snapshot at once */
    char err[640];
};

static void warn_cb(void *cls, const char *msg)
{
    struct recovery *r = cls;
    r->lossy = true;
    log_warn("recovery: %s", msg);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists log segments and snapshots. */
static int list_dir(int dirfd, uint64_t **segs, size_t *nsegs, uint64_t **snaps, size_t *nsnaps)
{
    int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct dirent *e;
    size_t cs = 0, cn = 0;

    *segs = *snaps = NULL;
    *nsegs = *nsnaps = 0;
    if (dir == NULL) {
        int rc = -errno;
        if (dfd >= 0)
            close(dfd);
        return rc;
    }
    while ((e = readdir(dir)) != NULL) {
        uint64_t n;
        if (wal_parse_name(e->d_name, &n)) {
            if (*nsegs == cs) {
                cs = cs ? cs * 2 : 8;
                *segs = xrealloc(*segs, cs * sizeof(**segs));
            }
            (*segs)[(*nsegs)++] = n;
        } else if (snapfile_parse_name(e->d_name, &n)) {
            if (*nsnaps == cn) {
                cn = cn ? cn * 2 : 4;
                *snaps = xrealloc(*snaps, cn * sizeof(**snaps));
            }
            (*snaps)[(*nsnaps)++] = n;
        }
    }
    closedir(dir);
    if (*nsegs)
        qsort(*segs, *nsegs, sizeof(**segs), cmp_u64);
    if (*nsnaps)
        qsort(*snaps, *nsnaps, sizeof(**snaps), cmp_u64);
    return 0;
}

static struct mapped *add_map(struct recovery *r, const char *name)
{
    r->maps = xrealloc(r->maps, (r->nmaps + 1) * sizeof(*r->maps));
    r->names = xrealloc(r->names, (r->nmaps + 1) * sizeof(*r->names));
    r->names[r->nmaps] = xstrdup(name);
    memset(&r->maps[r->nmaps], 0, sizeof(r->maps[0]));
    return &r->maps[r->nmaps++];
}

/* Where the log ends after replay: the last segment and its valid length. */
struct log_end {
    bool have;
    uint64_t first;
    uint64_t valid;     /* bytes of whole records (0: even the header is gone) */
    uint64_t size;      /* bytes in the file */
    uint64_t bytes;     /* all live segments, after the cut */
    size_t cut_records; /* valid records cut with a hole at the end (valid..size) */
    /* segments left by a failed rotation (no record, revisions replayed elsewhere): removed */
    uint64_t *leftover;
    size_t nleftover, cap_leftover;
};

/* A segment header's length: a segment no longer than this holds no record. */
#define LOG_HEADER_LEN (REC_HEADER + 9)

/*
 * The highest synced claim (wal.h) of the valid log records at or after
 * 'from' whose revisions are at least 'min_rev'; *at and *at_rev name the
 * record making it, *count how many valid records there are.
 */
static uint64_t later_claim(const struct mapped *m, size_t from, uint64_t min_rev, size_t *at,
                            uint64_t *at_rev, size_t *count)
{
    uint64_t best = 0;
    struct rec rec;

    *at = SIZE_MAX;
    *at_rev = 0;
    *count = 0;
    while ((from = rec_find_next(m->p, m->len, from, min_rev, min_rev + (UINT64_C(1) << 40))) !=
           SIZE_MAX) {
        if (rec_decode(m->p + from, m->len - from, &rec) != REC_OK)
            break; /* rec_find_next returned it as valid: cannot happen */
        if (rec.kind >= REC_POST && rec.kind <= REC_IMPORT) {
            (*count)++;
            if (rec.aux > best || *at == SIZE_MAX) {
                best = rec.aux > best ? rec.aux : best;
                *at = from;
                *at_rev = rec.rev;
            }
        }
        from += rec.len;
    }
    return best;
}

/*
 * Replays one segment into the loader. 'last': damage with nothing valid
 * after it is a torn tail (cut off), not corruption; so is, in a version 2
 * segment, damage that no later record shows was synced (a power-loss
 * hole). Returns 0 or -1 ('err').
 */
static int replay_segment(struct recovery *r, uint64_t first, bool last, struct log_end *end)
{
    char name[WAL_NAME_MAX];
    size_t i = r->nmaps;
    struct mapped *m;
    size_t off = 0;
    uint64_t version = 0;
    int rc;
    const char *file;

    wal_segment_name(name, first);
    m = add_map(r, name);
    file = r->names[i];
    rc = map_file(r->d->dirfd, name, m);
    if (rc != 0) {
        char ebuf[96];
        snprintf(r->err, sizeof(r->err), "%s: offset 0: cannot read: %s", name,
                 errstr(rc, ebuf, sizeof(ebuf)));
        return -1;
    }
    if (first > loader_rev(r->l) + 1) {
        snprintf(r->err, sizeof(r->err),
                 "%s: offset 0: revisions %" PRIu64 "..%" PRIu64
                 " are in no snapshot and no log segment",
                 name, loader_rev(r->l) + 1, first - 1);
        if (!r->d->o.recover_truncate)
            return -1;
        warn_cb(r, r->err);
    }
    while (off < m->len) {
        struct rec rec;
        enum rec_status st = rec_decode(m->p + off, m->len - off, &rec);
        bool header = off == 0;
        if (st == REC_OK && header &&
            (rec.kind != REC_LOG_HEADER || rec.rev != first ||
             (rec.aux != WAL_FORMAT_V1 && rec.aux != WAL_FORMAT_VERSION))) {
            snprintf(r->err, sizeof(r->err),
                     "%s: offset 0: not a cairn log segment (version %d or %d) starting at "
                     "revision %" PRIu64,
                     name, WAL_FORMAT_V1, WAL_FORMAT_VERSION, first);
            return -1;
        }
        if (st == REC_OK) {
            if (header)
                version = rec.aux;
            else if (loader_feed(r->l, &rec, file, off, r->err, sizeof(r->err)) != 0) {
                if (!r->d->o.recover_truncate)
                    return -1;
                warn_cb(r, r->err);
            }
            off += rec.len;
            continue;
        }
        uint64_t from = loader_rev(r->l) + 1;
        size_t next = rec_find_next(m->p, m->len, off + 1, from, from + (UINT64_C(1) << 40));
        if (last && next == SIZE_MAX) {
            log_warn("%s/%s: offset %zu: %s record at the end of the log (%zu bytes): cut off; "
                     "a torn write was never acknowledged, but if this is damage it may be a "
                     "write acknowledged by the last group commit (sync = always) or before "
                     "its fsync (periodic, none)",
                     r->d->dir, name, off, rec_status_str(st), m->len - off);
            break;
        }
        if (last && version >= 2) {
            /*
             * Valid records follow. If none of them was appended after an
             * fsync that covered this offset, these bytes may never have
             * reached the disk while later pages did: a hole left by a power
             * loss in the unsynced tail, of which nothing was acknowledged.
             */
            size_t at, count;
            uint64_t at_rev;
            uint64_t claim = later_claim(m, next, from, &at, &at_rev, &count);
            if (claim <= off) {
                log_warn("%s/%s: offset %zu: %s record followed by %zu bytes holding %zu valid "
                         "records, none of them written after offset %zu was on stable storage: "
                         "a hole left by a power loss in the unsynced end of the log, or damage "
                         "in the last group commit; cut off from offset %zu. A hole holds no "
                         "acknowledged write; damage may include writes acknowledged by the "
                         "last group commit (sync = always) or before their fsync (periodic, "
                         "none)",
                         r->d->dir, name, off, rec_status_str(st), m->len - off, count, off, off);
                end->cut_records = count;
                break;
            }
            snprintf(r->err, sizeof(r->err),
                     "%s: offset %zu: damaged record (%s) in data that was on stable storage "
                     "(the record at offset %zu, revision %" PRIu64
                     ", was written after the first %" PRIu64 " bytes were synced)",
                     name, off, rec_status_str(st), at, at_rev, claim);
        } else {
            snprintf(r->err, sizeof(r->err),
                     "%s: offset %zu: damaged record (%s) in the middle of the log%s", name, off,
                     rec_status_str(st),
                     next != SIZE_MAX ? "; valid records follow it" : "; later segments follow");
        }
        if (!r->d->o.recover_truncate)
            return -1;
        warn_cb(r, r->err);
        if (next == SIZE_MAX)
            break;
        off = next;
    }
    if (last) {
        end->have = true;
        end->first = first;
        end->valid = off;
        end->size = m->len;
    }
    end->bytes += last ? off : m->len;
    return 0;
}

/* Bytes in segment 'first', or 0 when it cannot be stat'ed. */
static uint64_t segment_size(int dirfd, uint64_t first)
{
    char name[WAL_NAME_MAX];
    struct stat st;
    wal_segment_name(name, first);
    return fstatat(dirfd, name, &st, 0) == 0 ? (uint64_t)st.st_size : 0;
}

/*
 * Replays the segments after the snapshot, segs[0..n). A segment that holds
 * no record (empty, a torn header, a header alone) is what a rotation leaves
 * when it fails, or is killed, after creating the file: the appends went on
 * in the segment before, whose unsynced end (torn, or with holes) may then
 * be the log's end. Wherever such a segment sits, if it starts at or before
 * the next revision it holds nothing the log needs: a leftover, removed
 * after the replay; except that the final segment, starting right after the
 * last revision of a log that was not cut, is the place to append. The last
 * segment that holds records is replayed as the log's end. Returns 0 or -1
 * ('err').
 */
static int replay_log(struct recovery *r, const uint64_t *segs, size_t n, struct log_end *end)
{
    size_t last_real = SIZE_MAX;
    bool *empty = xcalloc(n ? n : 1, sizeof(*empty));
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        empty[i] = segment_size(r->d->dirfd, segs[i]) <= LOG_HEADER_LEN;
        if (!empty[i])
            last_real = i;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t next = loader_rev(r->l) + 1;
        bool cut = end->have && end->valid < end->size;
        if (!empty[i]) {
            rc = replay_segment(r, segs[i], i == last_real, end);
        } else if (segs[i] <= next && !(i + 1 == n && segs[i] == next && !cut)) {
            if (end->nleftover == end->cap_leftover) {
                end->cap_leftover = end->cap_leftover ? end->cap_leftover * 2 : 4;
                end->leftover = xrealloc(end->leftover, end->cap_leftover * sizeof(*end->leftover));
            }
            end->leftover[end->nleftover++] = segs[i];
        } else {
            /* the segment to append to, or a gap that replay_segment reports */
            rc = replay_segment(r, segs[i], i + 1 == n, end);
        }
    }
    free(empty);
    return rc;
}

static int recover(struct durable *d, struct snap **out, struct log_end *end, uint64_t *snap_rev)
{
    struct recovery r = {.d = d};
    uint64_t *segs, *snaps;
    size_t nsegs, nsnaps;
    int status = 0;
    char ebuf[96];

    uint64_t t_start = now_usec();
    int rc = list_dir(d->dirfd, &segs, &nsegs, &snaps, &nsnaps);
    if (rc != 0) {
        log_err("%s: cannot list: %s", d->dir, errstr(rc, ebuf, sizeof(ebuf)));
        return EX_IOERR;
    }
    r.l = loader_new(d->o.recover_truncate, warn_cb, &r);
    *snap_rev = 0;
    if (nsnaps > 0) {
        char name[SNAPFILE_NAME_MAX];
        uint64_t want = snaps[nsnaps - 1];
        snapfile_name(name, want);
        struct mapped *m = add_map(&r, name);
        rc = map_file(d->dirfd, name, m);
        if (rc != 0) {
            snprintf(r.err, sizeof(r.err), "%s: offset 0: cannot read: %s", name,
                     errstr(rc, ebuf, sizeof(ebuf)));
            status = EX_DATAERR;
            goto out;
        }
        if (snapfile_load(r.names[r.nmaps - 1], m, r.l, d->o.recover_truncate, warn_cb, &r, r.err,
                          sizeof(r.err)) != 0) {
            status = EX_DATAERR;
            goto out;
        }
        if (loader_rev(r.l) != want) {
            snprintf(r.err, sizeof(r.err), "%s: offset 0: holds revision %" PRIu64, name,
                     loader_rev(r.l));
            if (!d->o.recover_truncate) {
                status = EX_DATAERR;
                goto out;
            }
            warn_cb(&r, r.err);
        }
        *snap_rev = want;
    }
    /* segments at or before the snapshot are covered by it (see wal.h) */
    size_t k = 0;
    for (; k < nsegs && segs[k] <= *snap_rev; k++) {
        char name[WAL_NAME_MAX];
        struct stat st;
        wal_segment_name(name, segs[k]);
        if (fstatat(d->dirfd, name, &st, 0) == 0)
            end->bytes += (uint64_t)st.st_size; /* until cleanup() removes it */
    }
    if (replay_log(&r, segs + k, nsegs - k, end) != 0) {
        status = EX_DATAERR;
        goto out;
    }
    uint64_t t_read = now_usec();
    *out = loader_finish(r.l, r.err, sizeof(r.err));
    if (*out == NULL)
        status = EX_DATAERR;
    else
        log_info("%s: recovery read the files in %" PRIu64 " ms, built %zu docs in %" PRIu64 " ms",
                 d->dir, (t_read - t_start) / 1000, loader_docs(r.l), (now_usec() - t_read) / 1000);
out:
    if (status == EX_DATAERR)
        log_err("%s/%s; refusing to start (exit status 65). Nothing was changed. To start "
                "anyway and drop what is damaged, run cairnd once with --recover-truncate "
                "(docs/DURABILITY.md)",
                d->dir, r.err);
    loader_free(r.l);
    for (size_t i = 0; i < r.nmaps; i++)
        unmap_file(&r.maps[i]);
    free(r.maps);
    for (size_t i = 0; i < r.nmaps; i++)
        free(r.names[i]);
    free(r.names);
    free(segs);
    free(snaps);
    d->lossy = status == 0 && r.lossy;
    return status;
}

/* ---- open and close ---- */

static int lock_dir(struct durable *d)
{
    char pid[32] = "";
    int fd = openat(d->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_err("%s/lock: %s", d->dir, strerror(errno));
        return errno == EACCES || errno == EROFS ? EX_CANTCREAT : EX_IOERR;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK) {
            log_err("%s is in use by another cairnd (pid %s): refusing to start", d->dir,
                    pid[0] ? pid : "unknown");
            return EX_TEMPFAIL;
        }
        log_err("%s/lock: flock: %s", d->dir, strerror(e));
        return EX_IOERR;
    }
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        log_warn("%s/lock: cannot record the pid: %s", d->dir, strerror(errno));
    d->lockfd = fd;
    return 0;
}

static void stop_threads(struct durable *d)
{
    if (d->snapper_started) {
        pthread_mutex_lock(&d->s_mu);
        d->s_stop = true;
        pthread_cond_signal(&d->s_cond);
        pthread_mutex_unlock(&d->s_mu);
        pthread_join(d->snapper, NULL);
        d->snapper_started = false;
    }
    if (d->committer_started) {
        pthread_mutex_lock(&d->q_mu);
        d->q_stop = true;
        pthread_cond_signal(&d->q_cond);
        pthread_mutex_unlock(&d->q_mu);
        pthread_join(d->committer, NULL);
        d->committer_started = false;
    }
}

static void free_durable(struct durable *d)
{
    if (d->wal_open)
        wal_close(&d->wal);
    store_free(d->st);
    buf_cleanup(&d->enc);
    if (d->dirfd >= 0)
        close(d->dirfd);
    if (d->lockfd >= 0)
        close(d->lockfd); /* releases the flock */
    pthread_mutex_destroy(&d->q_mu);
    pthread_cond_destroy(&d->q_cond);
    pthread_mutex_destroy(&d->s_mu);
    pthread_cond_destroy(&d->s_cond);
    free(d->dir);
    free(d);
}

int durable_open(const struct durable_opts *o, struct durable **out)
{
    struct durable *d = xcalloc(1, sizeof(*d));
    struct store_opts so;
    struct log_end end = {0};
    struct snap *snap = NULL;
    uint64_t t0 = now_usec(), snap_rev = 0;
    struct stat st;
    char ebuf[96];
    int status, rc;

    d->o = *o;
    d->dir = xstrdup(o->dir);
    d->o.dir = d->dir;
    d->dirfd = d->lockfd = -1;
    d->q_tail = &d->q_head;
    d->rec_max = REC_MAX;
#ifdef CAIRN_FAULTS
    /* tests: a small limit makes the 413 of an oversized record reachable */
    const char *lim = getenv("CAIRN_RECORD_MAX");
    if (lim != NULL && *lim != '\0')
        d->rec_max = (size_t)strtoull(lim, NULL, 10);
#endif
    pthread_mutex_init(&d->q_mu, NULL);
    /* the periodic sync's timed wait: a wall-clock step must not stretch or skip it */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->q_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&d->s_mu, NULL);
    pthread_cond_init(&d->s_cond, NULL);
    buf_init(&d->enc, SIZE_MAX);
    *out = NULL;

    if (mkdir(d->dir, 0700) != 0 && errno != EEXIST) {
        log_err("cannot create the data directory %s: %s", d->dir, strerror(errno));
        status = EX_CANTCREAT;
        goto fail;
    }
    d->dirfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->dirfd < 0) {
        log_err("cannot open the data directory %s: %s", d->dir, strerror(errno));
        status = EX_IOERR;
        goto fail;
    }
    if (fstat(d->dirfd, &st) == 0 && (st.st_mode & 077) != 0) {
        /* keep other users out of it, as of the files (0600) */
        if (st.st_uid == geteuid() && fchmod(d->dirfd, 0700) == 0)
            log_info("the data directory %s was mode %04o; now 0700", d->dir,
                     (unsigned)(st.st_mode & 07777));
        else
            log_warn("the data directory %s is open to other users (mode %04o); its files are "
                     "0600",
                     d->dir, (unsigned)(st.st_mode & 07777));
    }
    status = lock_dir(d);
    if (status != 0)
        goto fail;
    io_init(d->dirfd);

    status = recover(d, &snap, &end, &snap_rev);
    if (status != 0)
        goto fail;
    uint64_t rev = snap_revision(snap);
    so.commit = commit;
    so.commit_cls = d;
    d->st = store_new(&so);
    store_install(d->st, snap);
    atomic_store(&d->snap_rev, snap_rev);
    atomic_store(&d->durable_rev, rev);

    for (size_t i = 0; i < end.nleftover; i++) {
        char name[WAL_NAME_MAX];
        wal_segment_name(name, end.leftover[i]);
        log_warn("%s/%s: a log segment holding no record, left by a failed rotation (its "
                 "revisions are in other segments): removed",
                 d->dir, name);
        rc = io_unlinkat(d->dirfd, name, "log-unlink");
        if (rc != 0) {
            log_err("%s/%s: cannot remove: %s", d->dir, name, errstr(rc, ebuf, sizeof(ebuf)));
            status = EX_IOERR;
            goto fail;
        }
    }
    free(end.leftover);
    end.leftover = NULL;
    /*
     * The appender: continue the last segment, cut after its last whole
     * record. Synced either way: the records appended next claim all of it
     * on stable storage (wal.h), and after a process crash some of it may
     * still be only in the page cache.
     */
    if (end.have) {
        char name[WAL_NAME_MAX];
        wal_segment_name(name, end.first);
        if (end.valid > 0 || end.size > 0) {
            int fd = io_openat(d->dirfd, name, O_WRONLY, 0600, "recover-open");
            rc = fd < 0 ? fd : 0;
            if (rc == 0 && end.valid < end.size)
                rc = io_ftruncate(fd, (off_t)end.valid, "recover-truncate");
            if (rc == 0)
                rc = io_fsync(fd, "recover-sync");
            if (fd >= 0)
                io_close(fd);
            if (rc != 0) {
                log_err("%s/%s: cannot %s: %s", d->dir, name,
                        end.valid < end.size ? "cut off the torn tail" : "sync the log",
                        errstr(rc, ebuf, sizeof(ebuf)));
                status = EX_IOERR;
                goto fail;
            }
        }
        /*
         * And the directory: a process killed between creating a segment
         * and the directory fsync leaves one whose entry may not be durable
         * (a record-less segment that becomes the append target here), and
         * the removals above must be durable before anything is appended.
         */
        rc = io_fsync_dir(d->dirfd, "recover-dirsync");
        if (rc != 0) {
            log_err("%s: cannot sync the directory: %s", d->dir, errstr(rc, ebuf, sizeof(ebuf)));
            status = EX_IOERR;
            goto fail;
        }
        rc = wal_open(&d->wal, d->dirfd, end.first, end.valid, rev, end.bytes);
    } else {
        rc = wal_create(&d->wal, d->dirfd, rev + 1, rev, 0);
    }
    if (rc != 0) {
        log_err("%s: cannot open the log for writing: %s", d->dir, errstr(rc, ebuf, sizeof(ebuf)));
        status = disk_full(rc) ? EX_CANTCREAT : EX_IOERR;
        goto fail;
    }
    d->wal_open = true;

    uint64_t usec = now_usec() - t0;
    STATS_SET(store_recovery_ms, usec / 1000);
    STATS_SET(store_recovery_cut_bytes, end.have ? end.size - end.valid : 0);
    STATS_SET(store_recovery_cut_records, end.have ? end.cut_records : 0);
    STATS_SET(store_revision, rev);
    STATS_SET(store_durable_revision, rev);
    STATS_SET(store_snapshot_revision, snap_rev);
    STATS_SET(store_log_bytes, atomic_load(&d->wal.bytes));
    STATS_SET(store_read_only, 0);
    log_notice("%s: recovered revision %" PRIu64 " (snapshot at %" PRIu64 " + %" PRIu64
               " log records) in %" PRIu64 " ms",
               d->dir, rev, snap_rev, rev - snap_rev, usec / 1000);

    if (d->lossy) {
        /* damaged records were dropped: make the state on disk clean again */
        uint64_t srev, bytes, susec;
        d->force_snapshot = true;
        rc = do_snapshot(d, &srev, &bytes, &susec);
        d->force_snapshot = false;
        if (rc != 0) {
            log_err("%s: cannot write the snapshot that ends --recover-truncate: %s", d->dir,
                    errstr(rc, ebuf, sizeof(ebuf)));
            status = EX_IOERR;
            goto fail;
        }
        log_warn("%s: --recover-truncate: state at revision %" PRIu64 " written to a new snapshot",
                 d->dir, srev);
    } else {
        cleanup(d, snap_rev); /* leftovers of an interrupted snapshot or cleanup */
    }

    if (d->o.sync != DURABLE_SYNC_NONE) {
        if (pthread_create(&d->committer, NULL, committer_main, d) != 0)
            panic("durable: cannot start the committer thread");
        d->committer_started = true;
    }
    if (pthread_create(&d->snapper, NULL, snapper_main, d) != 0)
        panic("durable: cannot start the snapshot thread");
    d->snapper_started = true;
    *out = d;
    return 0;

fail:
    free(end.leftover);
    free_durable(d);
    return status;
}

size_t durable_record_max(const struct durable *d)
{
    return d->rec_max;
}

struct store *durable_store(struct durable *d)
{
    return d->st;
}

void durable_stop(struct durable *d)
{
    struct snap_req *reqs;
    uint64_t rev = 0, bytes = 0, usec = 0;
    int err = 0;

    if (d == NULL || d->stopped)
        return;
    /* no new write from here; wait for those past durable_begin to queue or end */
    atomic_store(&d->closing, true);
    while (atomic_load(&d->inflight) != 0)
        usleep(1000);
    /* the committer drains its queue (one last fsync) before it exits */
    stop_threads(d);

    pthread_mutex_lock(&d->s_mu);
    reqs = d->s_reqs;
    d->s_reqs = NULL;
    pthread_mutex_unlock(&d->s_mu);
    if (!atomic_load(&d->read_only)) {
        struct snap *cur = store_acquire(d->st);
        bool behind = snap_revision(cur) != atomic_load(&d->snap_rev);
        snap_release(cur);
        if ((behind && !d->o.no_close_snapshot) || reqs != NULL)
            err = do_snapshot(d, &rev, &bytes, &usec);
        if (err != 0 || d->o.sync != DURABLE_SYNC_ALWAYS)
            sync_log(d); /* whatever the snapshot could not cover */
    } else {
        err = -EROFS;
    }
    while (reqs != NULL) {
        struct snap_req *r = reqs;
        reqs = r->next;
        r->fn(r->cls, err, rev, bytes, usec);
        free(r);
    }
    if (d->wal_open)
        wal_close(&d->wal);
    d->wal_open = false;
    if (d->lockfd >= 0)
        close(d->lockfd); /* releases the flock: the next daemon may start */
    d->lockfd = -1;
    d->stopped = true;
}

void durable_close(struct durable *d)
{
    if (d == NULL)
        return;
    durable_stop(d);
    free_durable(d);
}
