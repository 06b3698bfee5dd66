/* src/store/snapfile.c -- see snapfile.h. */
#include "store/snapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/coll.h"
#include "store/iofault.h"
#include "store/record.h"

#define FLUSH_AT (1u << 20)

void snapfile_name(char *out, uint64_t rev)
{
    snprintf(out, SNAPFILE_NAME_MAX, "snap.%020" PRIu64, rev);
}

bool snapfile_parse_name(const char *name, uint64_t *rev)
{
    if (strncmp(name, "snap.", 5) != 0 || strlen(name) != 25)
        return false;
    for (int i = 5; i < 25; i++)
        if (name[i] < '0' || name[i] > '9')
            return false;
    *rev = strtoull(name + 5, NULL, 10);
    return true;
}

struct writer {
    int fd;
    uint64_t off;
    uint64_t records;
    struct buf b;
    int err;
};

static void flush(struct writer *w)
{
    if (w->err == 0 && w->b.len > 0) {
        w->err = io_pwrite_all(w->fd, w->b.data, w->b.len, (off_t)w->off, "snap-write");
        w->off += w->b.len;
    }
    w->b.len = 0;
}

static void put(struct writer *w, const struct rec *r)
{
    if (w->err != 0)
        return;
    if (rec_encode(&w->b, r) != 0)
        panic("snapfile: record too large");
    w->records++;
    if (w->b.len >= FLUSH_AT)
        flush(w);
}

int snapfile_write(int dirfd, const struct snap *s, uint64_t *bytes)
{
    char name[SNAPFILE_NAME_MAX], tmp[SNAPFILE_NAME_MAX + 8];
    struct writer w = {.fd = -1};
    uint64_t rev = snap_revision(s);
    int rc;

    snapfile_name(name, rev);
    snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    w.fd = io_openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600, "snap-create");
    if (w.fd < 0)
        return w.fd;
    buf_init(&w.b, SIZE_MAX);

    struct rec hdr = {.rev = rev,
                      .aux = REC_FORMAT_VERSION,
                      .kind = REC_SNAP_HEADER,
                      .name = "cairn-snapshot",
                      .name_len = 14};
    put(&w, &hdr);
    for (size_t i = 0; i < snap_ncolls(s); i++) {
        const struct coll *c = snap_coll_at(s, i);
        unsigned char max_int[8];
        struct coll_iter it;
        struct doc *d;
        const char *cname = coll_name(c);

        rec_put_u64(max_int, (uint64_t)coll_max_int_id(c));
        struct rec cr = {.rev = coll_revision(c),
                         .aux = coll_next_seq(c),
                         .kind = REC_SNAP_COLL,
                         .name = cname,
                         .name_len = strlen(cname),
                         .data = (const char *)max_int,
                         .data_len = 8};
        put(&w, &cr);
        coll_iter_init(&it, c, 0);
        while ((d = coll_iter_next(&it)) != NULL) {
            struct rec dr = {.rev = d->rev,
                             .aux = d->seq,
                             .kind = REC_SNAP_DOC,
                             .flags = d->int_id ? REC_F_INT_ID : 0,
                             .name = cname,
                             .name_len = strlen(cname),
                             .id = d->id,
                             .id_len = d->id_len,
                             .data = d->bytes,
                             .data_len = d->len};
            put(&w, &dr);
        }
    }
    for (size_t i = 0; i < snap_nsingles(s); i++) {
        const struct doc *d = snap_single_at(s, i);
        struct rec sr = {.rev = d->rev,
                         .kind = REC_SNAP_SINGLE,
                         .name = d->id,
                         .name_len = d->id_len,
                         .data = d->bytes,
                         .data_len = d->len};
        put(&w, &sr);
    }
    struct rec end = {.rev = rev, .aux = w.records, .kind = REC_SNAP_END};
    put(&w, &end);
    flush(&w);
    buf_cleanup(&w.b);

    rc = w.err;
    if (rc == 0)
        rc = io_fsync(w.fd, "snap-sync");
    io_close(w.fd);
    if (rc == 0)
        rc = io_renameat(dirfd, tmp, name, "snap-rename");
    if (rc != 0) {
        io_unlinkat(dirfd, tmp, "snap-unlink-tmp");
        return rc;
    }
    /* until the directory is synced the rename may not survive a power loss */
    rc = io_fsync_dir(dirfd, "snap-dirsync");
    if (rc != 0)
        return rc;
    *bytes = w.off;
    return 0;
}

int map_file(int dirfd, const char *name, struct mapped *m)
{
    struct stat st;
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);

    m->p = NULL;
    m->len = 0;
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int rc = -errno;
            close(fd);
            return rc;
        }
        madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
        m->p = p;
        m->len = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

void unmap_file(struct mapped *m)
{
    if (m->p != NULL)
        munmap((void *)m->p, m->len);
    m->p = NULL;
    m->len = 0;
}

int snapfile_load(const char *name, const struct mapped *m, struct loader *l, bool lenient,
                  void (*warn)(void *cls, const char *msg), void *warn_cls, char *err,
                  size_t errlen)
{
    size_t off = 0;
    uint64_t records = 0;
    bool ended = false, skipping_coll = false;
    const char *coll = NULL; /* the collection DOC records belong to */
    size_t coll_len = 0;

    while (off < m->len && !ended) {
        struct rec r;
        enum rec_status st = rec_decode(m->p + off, m->len - off, &r);
        if (st != REC_OK) {
            size_t next = rec_find_next(m->p, m->len, off + 1, 0, UINT64_MAX);
            snprintf(err, errlen, "%s: offset %zu: damaged record (%s)", name, off,
                     rec_status_str(st));
            if (!lenient)
                return -1;
            if (warn != NULL) {
                char msg[512];
                snprintf(msg, sizeof(msg), "%s; %s (--recover-truncate)", err,
                         next == SIZE_MAX ? "the rest of the file is lost"
                                          : "skipped to the next valid record");
                warn(warn_cls, msg);
            }
            if (next == SIZE_MAX)
                break;
            off = next;
            continue;
        }
        if (off == 0 && r.kind != REC_SNAP_HEADER) {
            snprintf(err, errlen, "%s: offset 0: not a cairn snapshot", name);
            return -1;
        }
        if (r.kind == REC_SNAP_COLL) {
            coll = r.name;
            coll_len = r.name_len;
            skipping_coll = false;
        } else if (r.kind == REC_SNAP_DOC && (coll == NULL || r.name_len != coll_len ||
                                              memcmp(r.name, coll, coll_len) != 0)) {
            /* its collection's record was lost (lenient only: otherwise we stopped there) */
            snprintf(err, errlen, "%s: offset %zu: document of collection '%.*s' without it", name,
                     off, (int)r.name_len, r.name);
            if (!lenient)
                return -1;
            if (!skipping_coll && warn != NULL)
                warn(warn_cls, err);
            skipping_coll = true;
            off += r.len;
            continue;
        }
        if (r.kind == REC_SNAP_END) {
            if (!lenient && r.aux != records) {
                snprintf(err, errlen,
                         "%s: offset %zu: the end record counts %" PRIu64
                         " records, the file has %" PRIu64,
                         name, off, r.aux, records);
                return -1;
            }
            ended = true;
        }
        if (loader_feed(l, &r, name, off, err, errlen) != 0) {
            if (!lenient)
                return -1;
            if (warn != NULL)
                warn(warn_cls, err);
        }
        records++;
        off += r.len;
    }
    if (!ended) {
        snprintf(err, errlen, "%s: offset %zu: the snapshot ends without its end record", name,
                 off);
        if (!lenient)
            return -1;
        if (warn != NULL)
            warn(warn_cls, err);
    } else if (off != m->len) {
        snprintf(err, errlen, "%s: offset %zu: %zu bytes after the end record", name, off,
                 m->len - off);
        if (!lenient)
            return -1;
        if (warn != NULL)
            warn(warn_cls, err);
    }
    return 0;
}
