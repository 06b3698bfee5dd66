/*
 * tests/unit/test_wal.c -- the durable store: record framing and CRC, torn
 * and corrupt logs and snapshots, recovery equal to the live store, group
 * commit, the data dir lock. Crashes are simulated by a forked child that
 * writes and then _exit()s without closing anything (kill -9 as far as files
 * go: what it wrote is in the page cache).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "check.h"
#include "log.h"
#include "stats.h"
#include "store/durable.h"
#include "store/record.h"
#include "store/snapfile.h"
#include "store/wal.h"
#include "util.h"

/* ---- helpers ---- */

static char tmp_root[64];

/* rm -rf of a directory holding only files */
static void rmdir_files(const char *dir)
{
    DIR *dd = opendir(dir);
    struct dirent *e;
    char path[300];
    if (dd == NULL)
        return;
    while ((e = readdir(dd)) != NULL) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(dd);
    rmdir(dir);
}

/* The name of the one snapshot file in 'dir' ("" if none). */
static void find_snapshot(const char *dir, char *out, size_t n) /* n >= 300 */
{
    DIR *dd = opendir(dir);
    struct dirent *e;
    out[0] = '\0';
    while (dd != NULL && (e = readdir(dd)) != NULL) {
        uint64_t rev;
        if (snapfile_parse_name(e->d_name, &rev))
            snprintf(out, n, "%.150s/%.100s", dir, e->d_name);
    }
    if (dd != NULL)
        closedir(dd);
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        panic("test: '%s' failed", cmd);
}

/* A fresh empty directory path under tmp_root (not created). */
static void new_dir(char *out, size_t n, const char *tag)
{
    static int seq;
    snprintf(out, n, "%s/%s-%d", tmp_root, tag, seq++);
}

static bool quick_close; /* durable_close without its snapshot: many starts in a loop */

static struct durable *open_dir(const char *dir, enum durable_sync sync, uint64_t compact,
                                int *status)
{
    struct durable_opts o = {.dir = dir,
                             .sync = sync,
                             .interval_ms = 50,
                             .compact_bytes = compact ? compact : (uint64_t)1 << 40,
                             .no_close_snapshot = quick_close};
    struct durable *d = NULL;
    *status = durable_open(&o, &d);
    return d;
}

static struct durable *open_lenient(const char *dir, int *status)
{
    struct durable_opts o = {.dir = dir,
                             .sync = DURABLE_SYNC_NONE,
                             .interval_ms = 50,
                             .compact_bytes = (uint64_t)1 << 40,
                             .recover_truncate = true};
    struct durable *d = NULL;
    *status = durable_open(&o, &d);
    return d;
}

static json_t *J(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (j == NULL)
        panic("test JSON '%s': %s", text, err.text);
    return j;
}

/* Every observable field of a snapshot, as text: equal text means equal stores. */
static char *dump(const struct snap *s)
{
    struct buf b;
    buf_init(&b, SIZE_MAX);
    buf_printf(&b, "rev %" PRIu64 "\n", snap_revision(s));
    for (size_t i = 0; i < snap_ncolls(s); i++) {
        const struct coll *c = snap_coll_at(s, i);
        struct coll_iter it;
        struct doc *d;
        buf_printf(&b, "coll %s rev %" PRIu64 " next %" PRIu64 " max %" PRId64 " allint %d n %zu\n",
                   coll_name(c), coll_revision(c), coll_next_seq(c), coll_max_int_id(c),
                   coll_ids_all_int(c), coll_count(c));
        coll_iter_init(&it, c, 0);
        while ((d = coll_iter_next(&it)) != NULL)
            buf_printf(&b, " doc %s seq %" PRIu64 " rev %" PRIu64 " int %d %s\n", d->id, d->seq,
                       d->rev, d->int_id, d->bytes);
    }
    for (size_t i = 0; i < snap_nsingles(s); i++) {
        const struct doc *d = snap_single_at(s, i);
        buf_printf(&b, "single %s rev %" PRIu64 " %s\n", d->id, d->rev, d->bytes);
    }
    size_t len;
    return buf_steal(&b, &len);
}

static char *dump_store(struct durable *d)
{
    struct snap *s = store_acquire(durable_store(d));
    char *t = dump(s);
    snap_release(s);
    return t;
}

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* One random write of every kind the API has, including failures and an occasional import. */
static void random_write(struct store *st, int i)
{
    static const char *const names[] = {"a", "b", "c"};
    struct store_op op;
    struct store_res res;
    char id[32], body[160];
    memset(&op, 0, sizeof(op));
    int k = (int)(rnd() % 100);
    op.name = names[rnd() % 3];
    if (rnd() % 2)
        snprintf(id, sizeof(id), "%d", (int)(rnd() % 40));
    else
        snprintf(id, sizeof(id), "k%d", (int)(rnd() % 20));
    snprintf(body, sizeof(body),
             "{\"v\":%d,\"t\":\"w%d\",\"r\":%.3f,\"n\":{\"x\":[1,\"\\u00e9\"]}}", i, i,
             (double)(rnd() % 1000) / 7.0);
    json_t *j = J(body);
    if (k < 30) {
        op.kind = STORE_POST;
        if (k < 10)
            json_object_set_new(j, "id", json_integer((json_int_t)(rnd() % 60)));
        else if (k < 13)
            json_object_set_new(j, "id", json_string(id));
    } else if (k < 50) {
        op.kind = STORE_PUT;
        op.id = id;
    } else if (k < 65) {
        op.kind = STORE_PATCH;
        op.id = id;
    } else if (k < 85) {
        op.kind = STORE_DELETE;
        op.id = id;
    } else if (k < 92) {
        op.kind = k < 89 ? STORE_PUT_SINGLE : STORE_PATCH_SINGLE;
        op.name = rnd() % 2 ? "s1" : "s2";
    } else if (k < 93) {
        op.kind = STORE_IMPORT;
        json_decref(j);
        j = J("{\"a\":[{\"id\":3,\"v\":1},{\"v\":2},{\"id\":9}],\"s1\":{\"p\":1},\"d\":[]}");
    } else {
        op.kind = STORE_POST;
        op.name = "c";
    }
    op.body = op.kind == STORE_DELETE ? NULL : j;
    store_write(st, &op, &res);
    store_res_cleanup(&res);
    json_decref(j);
}

static void cb(void *cls, int err, uint64_t rev, uint64_t bytes, uint64_t usec)
{
    (void)rev;
    (void)bytes;
    (void)usec;
    atomic_store((atomic_int *)cls, err == 0 ? 1 : -1);
}

/*
 * The first child_synced writes of the next child_writes are each fdatasynced,
 * as under sync = always with one writer; the rest are only appended.
 */
static int child_synced;

/* In a child: open 'dir', run 'n' random writes (snapshot after 'snap_at' if > 0), crash. */
static void child_writes(const char *dir, int n, int snap_at, uint64_t seed, const char *dump_path)
{
    pid_t pid = fork();
    if (pid < 0)
        panic("fork");
    if (pid > 0) {
        int wst;
        waitpid(pid, &wst, 0);
        if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0)
            panic("test child failed: %d", wst);
        return;
    }
    int status;
    struct durable *d = open_dir(dir, DURABLE_SYNC_NONE, 0, &status);
    if (d == NULL)
        _exit(1);
    rng_state = seed;
    for (int i = 0; i < n; i++) {
        random_write(durable_store(d), i);
        if (i < child_synced && durable_sync_now(d) != 0)
            _exit(2);
        if (i + 1 == snap_at) {
            atomic_int done = 0;
            durable_snapshot(d, cb, &done);
            while (!atomic_load(&done))
                usleep(1000);
        }
    }
    char *t = dump_store(d);
    FILE *f = fopen(dump_path, "w");
    fputs(t, f);
    fclose(f);
    _exit(0); /* no close: the log is all there is */
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    struct buf b;
    char tmp[65536];
    size_t n;
    buf_init(&b, SIZE_MAX);
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        buf_append(&b, tmp, n);
    fclose(f);
    return buf_steal(&b, len ? len : &n);
}

static void spit(const char *path, const char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n)
        panic("cannot write %s", path);
    fclose(f);
}

static uint64_t open_rev(struct durable *d)
{
    struct snap *s = store_acquire(durable_store(d));
    uint64_t r = snap_revision(s);
    snap_release(s);
    return r;
}

/* Offsets of the records in a log segment (header included). */
static size_t record_offsets(const char *p, size_t len, size_t *offs, size_t max)
{
    size_t n = 0, off = 0;
    struct rec r;
    while (off < len && n < max && rec_decode(p + off, len - off, &r) == REC_OK) {
        offs[n++] = off;
        off += r.len;
    }
    return n;
}

/* ---- records and CRC ---- */

static uint32_t crc_bitwise(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
}

static void test_crc32c(void)
{
    unsigned char buf[300];
    CHECK(crc32c(0, "123456789", 9) == 0xE3069283u); /* the standard check value */
    CHECK(crc32c(0, "", 0) == 0);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof(buf); n += 7)
        CHECK(crc32c(0, buf, n) == crc_bitwise(buf, n));
    /* continuing a CRC equals one pass */
    CHECK(crc32c(crc32c(0, buf, 100), buf + 100, 200) == crc32c(0, buf, 300));
}

static void encode_sample(struct buf *b)
{
    struct rec r = {.rev = 42,
                    .aux = 7,
                    .kind = REC_PUT,
                    .flags = REC_F_INT_ID,
                    .name = "posts",
                    .name_len = 5,
                    .id = "17",
                    .id_len = 2,
                    .data = "{\"id\":17,\"t\":\"x\"}",
                    .data_len = 17};
    buf_init(b, SIZE_MAX);
    CHECK(rec_encode(b, &r) == 0);
}

static void test_record_roundtrip(void)
{
    struct buf b;
    struct rec r;
    encode_sample(&b);
    CHECK(b.len == rec_size(5, 2, 17));
    CHECK(rec_decode(b.data, b.len, &r) == REC_OK);
    CHECK(r.rev == 42 && r.aux == 7 && r.kind == REC_PUT && r.flags == REC_F_INT_ID);
    CHECK(r.name_len == 5 && memcmp(r.name, "posts", 5) == 0);
    CHECK(r.id_len == 2 && memcmp(r.id, "17", 2) == 0);
    CHECK(r.data_len == 17 && memcmp(r.data, "{\"id\":17,\"t\":\"x\"}", 17) == 0);
    CHECK(r.len == b.len);
    /* trailing bytes are not part of the record */
    buf_append(&b, "garbage", 7);
    CHECK(rec_decode(b.data, b.len, &r) == REC_OK && r.len == b.len - 7);
    buf_cleanup(&b);
}

static void test_record_every_cut_and_flip(void)
{
    struct buf b;
    struct rec r;
    encode_sample(&b);
    for (size_t cut = 0; cut < b.len; cut++)
        CHECK(rec_decode(b.data, cut, &r) == REC_TRUNCATED);
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b.data[i] ^= (char)(1 << bit);
            CHECK(rec_decode(b.data, b.len, &r) != REC_OK);
            b.data[i] ^= (char)(1 << bit);
        }
        b.data[i] ^= (char)0xff;
        CHECK(rec_decode(b.data, b.len, &r) != REC_OK);
        b.data[i] ^= (char)0xff;
    }
    CHECK(rec_decode(b.data, b.len, &r) == REC_OK);
    buf_cleanup(&b);
}

static void test_find_next(void)
{
    struct buf b;
    buf_init(&b, SIZE_MAX);
    for (uint64_t rev = 1; rev <= 3; rev++) {
        struct rec r = {
            .rev = rev, .kind = REC_DELETE, .name = "a", .name_len = 1, .id = "1", .id_len = 1};
        rec_encode(&b, &r);
    }
    size_t one = rec_size(1, 1, 0);
    b.data[one + 20] ^= 1; /* damage record 2 */
    CHECK(rec_find_next(b.data, b.len, one + 1, 2, 100) == 2 * one);
    CHECK(rec_find_next(b.data, b.len, one + 1, 4, 100) == SIZE_MAX); /* rev filter */
    CHECK(rec_find_next(b.data, b.len - 1, one + 1, 2, 100) == SIZE_MAX);
    buf_cleanup(&b);
}

/* ---- recovery equals the live store ---- */

static void check_recovers_to(const char *dir, const char *dump_path)
{
    int status;
    char *want = slurp(dump_path, NULL);
    struct durable *d = open_dir(dir, DURABLE_SYNC_NONE, 0, &status);
    CHECK(status == 0 && d != NULL && want != NULL);
    if (d != NULL && want != NULL) {
        char *got = dump_store(d);
        CHECK(strcmp(got, want) == 0);
        if (strcmp(got, want) != 0)
            fprintf(stdout, "# want:\n%.2000s\n# got:\n%.2000s\n", want, got);
        free(got);
    }
    free(want);
    durable_close(d);
}

static void test_log_replay_equals_store(void)
{
    char dir[128], dp[160];
    new_dir(dir, sizeof(dir), "replay");
    snprintf(dp, sizeof(dp), "%s.dump", dir);
    child_writes(dir, 3000, 0, 12345, dp);
    check_recovers_to(dir, dp);
    /* and again: the close above wrote a snapshot, the second start loads it */
    check_recovers_to(dir, dp);
}

static void test_snapshot_plus_log_equals_store(void)
{
    char dir[128], dp[160];
    new_dir(dir, sizeof(dir), "snaplog");
    snprintf(dp, sizeof(dp), "%s.dump", dir);
    child_writes(dir, 2000, 1200, 777, dp);
    check_recovers_to(dir, dp);
    /* a second crash on top: snapshot + new log */
    child_writes(dir, 500, 100, 778, dp);
    check_recovers_to(dir, dp);
}

static void test_clean_close_leaves_snapshot_only(void)
{
    char dir[128], path[200];
    int status;
    struct stat st;
    new_dir(dir, sizeof(dir), "close");
    struct durable *d = open_dir(dir, DURABLE_SYNC_ALWAYS, 0, &status);
    CHECK(status == 0);
    rng_state = 99;
    for (int i = 0; i < 300; i++)
        random_write(durable_store(d), i);
    char *before = dump_store(d);
    uint64_t rev = open_rev(d);
    durable_close(d);
    snprintf(path, sizeof(path), "%s/snap.%020" PRIu64, dir, rev);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(path, sizeof(path), "%s/log.%020" PRIu64, dir, rev + 1);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(path, sizeof(path), "%s/log.%020d", dir, 1);
    CHECK(stat(path, &st) != 0); /* covered by the snapshot: removed */
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
    d = open_dir(dir, DURABLE_SYNC_ALWAYS, 0, &status);
    CHECK(status == 0);
    char *after = dump_store(d);
    CHECK(strcmp(before, after) == 0);
    free(before);
    free(after);
    durable_close(d);
}

static void test_compaction_by_size(void)
{
    char dir[128];
    int status, nlogs = 0;
    new_dir(dir, sizeof(dir), "compact");
    uint64_t snaps0 = STATS_GET(store_snapshots);
    struct durable *d = open_dir(dir, DURABLE_SYNC_NONE, 65536, &status);
    CHECK(status == 0);
    rng_state = 5;
    for (int i = 0; i < 6000; i++)
        random_write(durable_store(d), i);
    usleep(200000);
    CHECK(STATS_GET(store_snapshots) > snaps0);
    char *before = dump_store(d);
    DIR *dd = opendir(dir);
    struct dirent *e;
    while ((e = readdir(dd)) != NULL)
        nlogs += strncmp(e->d_name, "log.", 4) == 0;
    closedir(dd);
    CHECK(nlogs <= 2);
    durable_close(d);
    d = open_dir(dir, DURABLE_SYNC_NONE, 65536, &status);
    char *after = dump_store(d);
    CHECK(strcmp(before, after) == 0);
    free(before);
    free(after);
    durable_close(d);
}

/* ---- torn and corrupt logs ---- */

/*
 * A dir holding only log.1 with 'n' records from a crashed child, the first
 * 'synced' of them fdatasynced one by one; returns the log's bytes.
 */
static char *crashed_log_synced(char *dir, size_t dirlen, int n, int synced, size_t *len)
{
    char dp[160], path[200];
    new_dir(dir, dirlen, "torn");
    snprintf(dp, sizeof(dp), "%s.dump", dir);
    child_synced = synced;
    child_writes(dir, n, 0, 4242, dp);
    child_synced = 0;
    snprintf(path, sizeof(path), "%s/log.%020d", dir, 1);
    return slurp(path, len);
}

/* The same with every record synced (sync = always): damage anywhere but the end is damage. */
static char *crashed_log(char *dir, size_t dirlen, int n, size_t *len)
{
    return crashed_log_synced(dir, dirlen, n, n, len);
}

/* Writes 'p' as the only file of a fresh dir; returns the dir. */
static void dir_with_log(char *dir, size_t dirlen, const char *p, size_t n)
{
    char path[200];
    new_dir(dir, dirlen, "case");
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/log.%020d", dir, 1);
    spit(path, p, n);
}

static uint64_t last_rev_in(const char *p, size_t len)
{
    size_t offs[20000];
    size_t n = record_offsets(p, len, offs, 20000);
    struct rec r;
    rec_decode(p + offs[n - 1], len - offs[n - 1], &r);
    return r.rev;
}

static void test_torn_last_record_every_offset(void)
{
    char dir[128], cdir[128], path[200];
    size_t len, offs[20000];
    char *log = crashed_log(dir, sizeof(dir), 40, &len);
    size_t n = record_offsets(log, len, offs, 20000);
    CHECK(offs[n - 1] + 1 < len);
    quick_close = true;
    uint64_t last = last_rev_in(log, len);
    for (size_t cut = offs[n - 1]; cut < len; cut++) {
        int status;
        struct stat st;
        dir_with_log(cdir, sizeof(cdir), log, cut);
        struct durable *d = open_dir(cdir, DURABLE_SYNC_NONE, 0, &status);
        CHECK(status == 0);
        if (d == NULL)
            continue;
        CHECK(open_rev(d) == last - 1);
        snprintf(path, sizeof(path), "%s/log.%020d", cdir, 1);
        CHECK(stat(path, &st) == 0 && (size_t)st.st_size == offs[n - 1]); /* cut off */
        durable_close(d);
        rmdir_files(cdir);
    }
    quick_close = false;
    free(log);
}

static void test_flipped_byte_in_last_record(void)
{
    char dir[128], cdir[128];
    size_t len, offs[20000];
    char *log = crashed_log(dir, sizeof(dir), 40, &len);
    size_t n = record_offsets(log, len, offs, 20000);
    uint64_t last = last_rev_in(log, len);
    quick_close = true;
    for (size_t i = offs[n - 1]; i < len; i++) {
        int status;
        log[i] ^= 0x20;
        dir_with_log(cdir, sizeof(cdir), log, len);
        struct durable *d = open_dir(cdir, DURABLE_SYNC_NONE, 0, &status);
        CHECK(status == 0 && d != NULL && open_rev(d) == last - 1);
        durable_close(d);
        rmdir_files(cdir);
        log[i] ^= 0x20;
    }
    quick_close = false;
    free(log);
}

static void test_flipped_byte_in_middle_record_refuses(void)
{
    char dir[128], cdir[128], path[200];
    size_t len, offs[20000];
    char *log = crashed_log(dir, sizeof(dir), 40, &len);
    size_t n = record_offsets(log, len, offs, 20000);
    /* every byte of a record in the middle, and of the segment header */
    size_t mid = n / 2;
    for (size_t rec = 0; rec < 2; rec++) {
        size_t from = rec == 0 ? offs[mid] : 0, to = rec == 0 ? offs[mid + 1] : offs[1];
        for (size_t i = from; i < to; i++) {
            int status;
            struct stat st;
            log[i] ^= 0x01;
            dir_with_log(cdir, sizeof(cdir), log, len);
            struct durable *d = open_dir(cdir, DURABLE_SYNC_NONE, 0, &status);
            CHECK(d == NULL && status == EX_DATAERR);
            durable_close(d);
            snprintf(path, sizeof(path), "%s/log.%020d", cdir, 1);
            CHECK(stat(path, &st) == 0 && (size_t)st.st_size == len); /* untouched */
            rmdir_files(cdir);
            log[i] ^= 0x01;
        }
    }
    free(log);
}

static uint64_t rev_at(const char *p, size_t len, size_t off)
{
    struct rec r;
    CHECK(rec_decode(p + off, len - off, &r) == REC_OK);
    return r.rev;
}

/* Rewrites a log as format version 1: header version 1, every record's synced claim 0. */
static void make_v1(char *p, size_t len)
{
    size_t off = 0;
    struct rec r;
    while (off < len && rec_decode(p + off, len - off, &r) == REC_OK) {
        rec_put_u64((unsigned char *)p + off + 16, off == 0 ? WAL_FORMAT_V1 : 0);
        uint32_t crc = crc32c(0, p + off + 4, r.len - 4);
        for (int i = 0; i < 4; i++)
            p[off + i] = (char)(crc >> (8 * i));
        off += r.len;
    }
}

/* The index of the first record that no later record claims synced (wal.h). */
static size_t first_unsynced(const char *p, size_t len, const size_t *offs, size_t n)
{
    uint64_t claim = 0;
    struct rec r;
    for (size_t i = 1; i < n; i++)
        if (rec_decode(p + offs[i], len - offs[i], &r) == REC_OK && r.aux > claim)
            claim = r.aux;
    for (size_t i = 1; i < n; i++)
        if (offs[i] >= claim)
            return i;
    return n;
}

/* [from, to) of 'p' lost by a power loss: zeros, or stale bytes when 'stale'. */
static void punch(char *p, size_t from, size_t to, bool stale)
{
    for (size_t i = from; i < to; i++)
        p[i] = stale ? (char)(rnd() >> 11) : 0;
}

/* Starts a copy of log 'p' (len bytes); returns the status and, on success, the revision. */
static int start_log(const char *p, size_t len, uint64_t *rev, size_t *size_after)
{
    char cdir[128], path[200];
    int status;
    struct stat st;
    dir_with_log(cdir, sizeof(cdir), p, len);
    struct durable *d = open_dir(cdir, DURABLE_SYNC_NONE, 0, &status);
    *rev = d != NULL ? open_rev(d) : 0;
    durable_close(d);
    snprintf(path, sizeof(path), "%s/log.%020d", cdir, 1);
    *size_after = stat(path, &st) == 0 ? (size_t)st.st_size : 0;
    rmdir_files(cdir);
    return status;
}

static void test_hole_in_unsynced_tail_is_cut(void)
{
    char dir[128];
    size_t len, offs[20001] = {0}, after;
    uint64_t rev;
    /* 35 writes fdatasynced one by one, then 35 only appended (not acknowledged) */
    char *log = crashed_log_synced(dir, sizeof(dir), 70, 35, &len);
    char *work = xmalloc(len);
    size_t n = record_offsets(log, len, offs, 20000);
    size_t u = first_unsynced(log, len, offs, n);
    printf("# %zu records, the first unsynced is %zu\n", n, u);
    CHECK(n > 30 && u > 10 && u + 12 < n);
    offs[n] = len;
    quick_close = true;
    rng_state = 31;
    /* a hole over one unsynced record, over several, up to the last one; zeros or stale bytes */
    const size_t holes[][2] = {{u, u + 1}, {u + 3, u + 7}, {u + 1, n - 2}, {n - 2, n - 1}};
    for (size_t h = 0; h < sizeof(holes) / sizeof(holes[0]); h++) {
        for (int stale = 0; stale < 2; stale++) {
            size_t from = offs[holes[h][0]], to = offs[holes[h][1]];
            memcpy(work, log, len);
            punch(work, from + (stale ? 0 : 3), to - 1, stale != 0);
            CHECK(start_log(work, len, &rev, &after) == 0);
            CHECK(rev == rev_at(log, len, offs[holes[h][0] - 1])); /* the writes before it */
            CHECK(after == from);                                  /* cut at the hole */
            /* counted: the bytes and the valid records after the hole went with it */
            CHECK(STATS_GET(store_recovery_cut_bytes) == len - from);
            CHECK(STATS_GET(store_recovery_cut_records) == n - holes[h][1]);
        }
    }
    /* damage in what later records show was synced: 65, whatever follows */
    const size_t synced[] = {1, u / 2, u - 1};
    for (size_t k = 0; k < sizeof(synced) / sizeof(synced[0]); k++) {
        memcpy(work, log, len);
        punch(work, offs[synced[k]] + 5, offs[synced[k]] + 6, true);
        work[offs[synced[k]] + 5] ^= 0x55;
        CHECK(start_log(work, len, &rev, &after) == EX_DATAERR);
        CHECK(after == len); /* untouched */
    }
    /* a version 1 log has no claims: any damage before a valid record stays damage */
    memcpy(work, log, len);
    make_v1(work, len);
    CHECK(start_log(work, len, &rev, &after) == 0 && rev == rev_at(log, len, offs[n - 1]));
    punch(work, offs[u + 2], offs[u + 3], false);
    CHECK(start_log(work, len, &rev, &after) == EX_DATAERR && after == len);
    quick_close = false;
    free(work);
    free(log);
}

/* Sets the synced claim of the record at 'off' and its checksum to match. */
static void set_claim(char *p, size_t len, size_t off, uint64_t claim)
{
    struct rec r;
    CHECK(rec_decode(p + off, len - off, &r) == REC_OK);
    rec_put_u64((unsigned char *)p + off + 16, claim);
    uint32_t crc = crc32c(0, p + off + 4, r.len - 4);
    for (int i = 0; i < 4; i++)
        p[off + i] = (char)(crc >> (8 * i));
}

/* The name of the one log segment in 'dir' (n >= WAL_NAME_MAX). */
static void only_segment(const char *dir, char *out)
{
    DIR *dd = opendir(dir);
    struct dirent *e;
    int found = 0;
    while (dd != NULL && (e = readdir(dd)) != NULL) {
        uint64_t first;
        if (wal_parse_name(e->d_name, &first)) {
            wal_segment_name(out, first);
            found++;
        }
    }
    if (dd != NULL)
        closedir(dd);
    CHECK(found == 1);
}

/* Starts a copy of 'src' with its segment 'seg' replaced by p[0..len); as start_log. */
static int start_copy(const char *src, const char *seg, const char *p, size_t len, uint64_t *rev,
                      size_t *size_after)
{
    char cdir[128], path[200];
    int status;
    struct stat st;
    new_dir(cdir, sizeof(cdir), "copy");
    sh("cp -r %s %s", src, cdir);
    snprintf(path, sizeof(path), "%s/%s", cdir, seg);
    spit(path, p, len);
    struct durable *d = open_dir(cdir, DURABLE_SYNC_NONE, 0, &status);
    *rev = d != NULL ? open_rev(d) : 0;
    durable_close(d);
    *size_after = stat(path, &st) == 0 ? (size_t)st.st_size : 0;
    rmdir_files(cdir);
    return status;
}

static void test_claims_after_rotation_and_restart(void)
{
    char dir[128], dp[160], seg[WAL_NAME_MAX], path[200];
    size_t len, n, u, after, offs[20001] = {0};
    uint64_t rev;
    quick_close = true;

    /* the second segment, after a snapshot: its claims count from its own header */
    new_dir(dir, sizeof(dir), "rotated");
    snprintf(dp, sizeof(dp), "%s.dump", dir);
    child_synced = 50;
    child_writes(dir, 80, 20, 77, dp);
    child_synced = 0;
    only_segment(dir, seg);
    CHECK(strcmp(seg, "log.00000000000000000001") != 0);
    snprintf(path, sizeof(path), "%s/%s", dir, seg);
    char *log = slurp(path, &len);
    char *work = xmalloc(len);
    n = record_offsets(log, len, offs, 20000);
    u = first_unsynced(log, len, offs, n);
    CHECK(n > 40 && u > 10 && u + 10 < n);
    memcpy(work, log, len);
    punch(work, offs[u + 2] + 3, offs[u + 4] - 1, false); /* a hole in the unsynced tail: cut */
    CHECK(start_copy(dir, seg, work, len, &rev, &after) == 0);
    CHECK(rev == rev_at(log, len, offs[u + 1]) && after == offs[u + 2]);
    memcpy(work, log, len);
    work[offs[u / 2] + 40] ^= 0x10; /* damage in what later records claim synced: 65 */
    CHECK(start_copy(dir, seg, work, len, &rev, &after) == EX_DATAERR && after == len);
    /* a record that claims more than its own offset claims bytes after it too: damage */
    memcpy(work, log, len);
    punch(work, offs[u + 2] + 3, offs[u + 3] - 1, false);
    set_claim(work, len, offs[u + 5], offs[u + 5] + 100);
    CHECK(start_copy(dir, seg, work, len, &rev, &after) == EX_DATAERR && after == len);
    free(work);
    free(log);
    rmdir_files(dir);

    /* after a recovery cut a hole, the restart's appends claim everything before them */
    char cdir[128];
    log = crashed_log_synced(dir, sizeof(dir), 70, 35, &len);
    n = record_offsets(log, len, offs, 20000);
    u = first_unsynced(log, len, offs, n);
    CHECK(n > 30 && u > 10 && u + 12 < n);
    punch(log, offs[u + 2] + 3, offs[u + 3] - 1, false);
    dir_with_log(cdir, sizeof(cdir), log, len);
    snprintf(dp, sizeof(dp), "%s.dump", cdir);
    child_synced = 10;
    child_writes(cdir, 20, 0, 99, dp); /* starts (cut at the hole), 10 synced, 10 appended */
    child_synced = 0;
    size_t cut = offs[u + 2];
    snprintf(path, sizeof(path), "%s/log.%020d", cdir, 1);
    size_t len2;
    char *log2 = slurp(path, &len2);
    size_t offs2[20001] = {0};
    size_t n2 = record_offsets(log2, len2, offs2, 20000);
    size_t u2 = first_unsynced(log2, len2, offs2, n2);
    printf("# restart: cut at record %zu, %zu records after it, the first unsynced %zu\n", u + 2,
           n2 - u - 2, u2);
    CHECK(offs2[u + 2] == cut && n2 > u + 2 + 12 && u2 > u + 2 + 5 && u2 + 3 < n2);
    work = xmalloc(len2);
    /* the record before the cut was unsynced before the restart; the restart synced it */
    memcpy(work, log2, len2);
    work[offs2[u + 1] + 40] ^= 0x10;
    CHECK(start_log(work, len2, &rev, &after) == EX_DATAERR && after == len2);
    /* a hole in what the restart appended and did not sync: cut there */
    memcpy(work, log2, len2);
    punch(work, offs2[u2] + 3, offs2[u2 + 1] - 1, false);
    CHECK(start_log(work, len2, &rev, &after) == 0);
    CHECK(rev == rev_at(log2, len2, offs2[u2 - 1]) && after == offs2[u2]);
    free(work);
    free(log2);
    free(log);
    rmdir_files(cdir);
    quick_close = false;
}

/* Writes the file log.<first> in 'dir': 0 bytes, 20 (a torn header), or a whole header alone. */
static void leftover_segment(const char *dir, uint64_t first, int variant)
{
    char path[200];
    struct buf b;
    struct rec h = {.rev = first,
                    .aux = WAL_FORMAT_VERSION,
                    .kind = REC_LOG_HEADER,
                    .name = "cairn-log",
                    .name_len = 9};
    buf_init(&b, SIZE_MAX);
    rec_encode(&b, &h);
    snprintf(path, sizeof(path), "%s/log.%020" PRIu64, dir, first);
    spit(path, b.data, variant == 0 ? 0 : variant == 1 ? 20 : b.len);
    buf_cleanup(&b);
}

/*
 * After a start at revision 'want' (d open on 'cdir', or NULL after a failed
 * CHECK): a write gets want + 1, and a second start sees it. Closes 'd'.
 */
static void check_writes_go_on(const char *cdir, struct durable *d, uint64_t want)
{
    int status;
    if (d != NULL) {
        struct store_op op = {.kind = STORE_POST, .name = "after"};
        struct store_res res;
        json_t *j = J("{\"x\":1}");
        op.body = j;
        store_write(durable_store(d), &op, &res);
        CHECK(res.code == STORE_CREATED && res.rev == want + 1);
        store_res_cleanup(&res);
        json_decref(j);
    }
    durable_close(d);
    d = open_dir(cdir, DURABLE_SYNC_NONE, 0, &status); /* and again: clean */
    CHECK(status == 0 && d != NULL && open_rev(d) == want + 1);
    durable_close(d);
}

static void test_leftover_segment_of_a_failed_rotation(void)
{
    char dir[128], cdir[128], path[200];
    size_t len, offs[20000] = {0};
    int status;
    struct stat st;
    char *log = crashed_log_synced(dir, sizeof(dir), 70, 35, &len);
    char *work = xmalloc(len);
    size_t n = record_offsets(log, len, offs, 20000);
    size_t u = first_unsynced(log, len, offs, n);
    CHECK(n > 30 && u > 10 && u + 12 < n);
    uint64_t last = rev_at(log, len, offs[n - 1]);
    quick_close = true;
    for (int variant = 0; variant < 3; variant++) {
        for (int holed = 0; holed < 2; holed++) {
            /* a rotation after record 10 failed; its segment came back after the power loss */
            for (int late = 0; late < 1 + holed; late++) {
                uint64_t first = rev_at(log, len, offs[late ? u + 1 : u / 2]) + 1;
                memcpy(work, log, len);
                if (holed)
                    punch(work, offs[u + 2], offs[u + 3], false);
                dir_with_log(cdir, sizeof(cdir), work, len);
                leftover_segment(cdir, first, variant);
                struct durable *d = open_dir(cdir, DURABLE_SYNC_NONE, 0, &status);
                CHECK(status == 0 && d != NULL);
                uint64_t want = holed ? rev_at(log, len, offs[u + 1]) : last;
                CHECK(d == NULL || open_rev(d) == want);
                snprintf(path, sizeof(path), "%s/log.%020" PRIu64, cdir, first);
                CHECK(stat(path, &st) != 0); /* removed */
                check_writes_go_on(cdir, d, want);
                rmdir_files(cdir);
            }
        }
    }
    quick_close = false;
    free(work);
    free(log);
}

/*
 * Opens 'cdir' and checks: it starts at revision 'want', log.1 is 'log1_size'
 * bytes, none of leftovers[0..nleft) is there; a write then gets want + 1 and
 * a second start sees it.
 */
static void check_leftovers(const char *cdir, uint64_t want, size_t log1_size,
                            const uint64_t *leftovers, size_t nleft)
{
    char path[200];
    struct stat st;
    int status;
    struct durable *d = open_dir(cdir, DURABLE_SYNC_NONE, 0, &status);
    CHECK(status == 0 && d != NULL);
    CHECK(d == NULL || open_rev(d) == want);
    snprintf(path, sizeof(path), "%s/log.%020d", cdir, 1);
    CHECK(stat(path, &st) == 0 && (size_t)st.st_size == log1_size);
    for (size_t i = 0; i < nleft; i++) {
        snprintf(path, sizeof(path), "%s/log.%020" PRIu64, cdir, leftovers[i]);
        CHECK(stat(path, &st) != 0); /* removed */
    }
    check_writes_go_on(cdir, d, want);
}

static void test_leftover_segments_anywhere(void)
{
    char dir[128], cdir[128], path[200];
    size_t len, offs[20000] = {0};
    char *log = crashed_log_synced(dir, sizeof(dir), 70, 35, &len);
    size_t n = record_offsets(log, len, offs, 20000);
    CHECK(n > 30);
    uint64_t last = rev_at(log, len, offs[n - 1]);
    uint64_t left[12];
    quick_close = true;
    for (int variant = 0; variant < 3; variant++) {
        /* two at once: one inside the log, one right after it that becomes the append target */
        dir_with_log(cdir, sizeof(cdir), log, len);
        left[0] = rev_at(log, len, offs[n / 3]) + 1;
        leftover_segment(cdir, left[0], variant);
        leftover_segment(cdir, last + 1, variant);
        check_leftovers(cdir, last, len, left, 1);
        snprintf(path, sizeof(path), "%s/log.%020" PRIu64, cdir, last + 1);
        struct stat st;
        CHECK(stat(path, &st) == 0 && st.st_size > 0); /* the append target: it holds the write */
        rmdir_files(cdir);

        /* more than 8 of them, and a torn last record: cut off all the same */
        dir_with_log(cdir, sizeof(cdir), log, len - 3);
        for (size_t i = 0; i < 12; i++) {
            left[i] = rev_at(log, len, offs[2 + i * 2]) + 1;
            leftover_segment(cdir, left[i], variant);
        }
        check_leftovers(cdir, rev_at(log, len, offs[n - 2]), offs[n - 1], left, 12);
        rmdir_files(cdir);

        /* between two segments that hold records: log.1 = records 1..k, log.<k+1> the rest */
        size_t k = n / 2;
        uint64_t second = rev_at(log, len, offs[k - 1]) + 1;
        CHECK(rev_at(log, len, offs[k]) == second);
        dir_with_log(cdir, sizeof(cdir), log, offs[k]);
        leftover_segment(cdir, second, 2);
        snprintf(path, sizeof(path), "%s/log.%020" PRIu64, cdir, second);
        size_t hl;
        char *seg = slurp(path, &hl);
        struct buf b;
        buf_init(&b, SIZE_MAX);
        buf_append(&b, seg, hl);
        buf_append(&b, log + offs[k], len - offs[k]);
        spit(path, b.data, b.len);
        buf_cleanup(&b);
        free(seg);
        left[0] = rev_at(log, len, offs[k / 2]) + 1;
        leftover_segment(cdir, left[0], variant);
        check_leftovers(cdir, last, offs[k], left, 1);
        rmdir_files(cdir);
    }
    quick_close = false;
    free(log);
}

/* Starts a log of one POST to "c" of 'id' (an integer id when 'int_id'); returns the status. */
static int start_one_post(const char *id, bool int_id, const char *doc)
{
    char cdir[128];
    int status;
    struct buf b;
    struct rec h = {.rev = 1,
                    .aux = WAL_FORMAT_VERSION,
                    .kind = REC_LOG_HEADER,
                    .name = "cairn-log",
                    .name_len = 9};
    struct rec r = {.rev = 1,
                    .kind = REC_POST,
                    .flags = int_id ? REC_F_INT_ID : 0,
                    .name = "c",
                    .name_len = 1,
                    .id = id,
                    .id_len = strlen(id),
                    .data = doc,
                    .data_len = strlen(doc)};
    buf_init(&b, SIZE_MAX);
    rec_encode(&b, &h);
    rec_encode(&b, &r);
    dir_with_log(cdir, sizeof(cdir), b.data, b.len);
    buf_cleanup(&b);
    struct durable *d = open_dir(cdir, DURABLE_SYNC_NONE, 0, &status);
    durable_close(d);
    rmdir_files(cdir);
    return status;
}

static void test_replayed_keys_are_checked(void)
{
    quick_close = true;
    CHECK(start_one_post("0", true, "{\"id\":0}") == 0);
    CHECK(start_one_post("9223372036854775807", true, "{\"id\":9223372036854775807}") == 0);
    CHECK(start_one_post("k-1.x_~", false, "{\"id\":\"k-1.x_~\"}") == 0);
    CHECK(start_one_post("9223372036854775808", true, "{\"id\":1}") == EX_DATAERR);
    CHECK(start_one_post("07", true, "{\"id\":7}") == EX_DATAERR);
    CHECK(start_one_post("-0", true, "{\"id\":0}") == EX_DATAERR);
    CHECK(start_one_post("+7", true, "{\"id\":7}") == EX_DATAERR);
    CHECK(start_one_post("", true, "{\"id\":0}") == EX_DATAERR);
    CHECK(start_one_post("a/b", false, "{\"id\":\"a/b\"}") == EX_DATAERR);
    CHECK(start_one_post("..", false, "{\"id\":\"..\"}") == EX_DATAERR);
    quick_close = false;
}

static void test_recover_truncate_drops_damaged_record(void)
{
    char dir[128], cdir[128];
    size_t len, offs[20000];
    int status;
    char *log = crashed_log(dir, sizeof(dir), 40, &len);
    size_t n = record_offsets(log, len, offs, 20000);
    uint64_t last = last_rev_in(log, len);
    log[offs[n / 2] + 3] ^= 0x10;
    dir_with_log(cdir, sizeof(cdir), log, len);
    struct durable *d = open_lenient(cdir, &status);
    CHECK(status == 0 && d != NULL && open_rev(d) == last);
    durable_close(d);
    /* the dir is clean again: a strict start works */
    d = open_dir(cdir, DURABLE_SYNC_NONE, 0, &status);
    CHECK(status == 0 && d != NULL && open_rev(d) == last);
    durable_close(d);
    free(log);
}

static void test_damaged_or_missing_snapshot_refuses(void)
{
    char dir[128], dp[160], path[300];
    int status;
    size_t len;
    new_dir(dir, sizeof(dir), "snapbad");
    snprintf(dp, sizeof(dp), "%s.dump", dir);
    child_writes(dir, 300, 200, 31, dp); /* a snapshot after 200 writes, then 100 more */
    find_snapshot(dir, path, sizeof(path));
    char *snapbytes = slurp(path, &len);
    CHECK(snapbytes != NULL && len > 100);
    for (size_t i = 0; snapbytes != NULL && i < len; i += len / 37 + 1) {
        snapbytes[i] ^= 0x04;
        spit(path, snapbytes, len);
        struct durable *d = open_dir(dir, DURABLE_SYNC_NONE, 0, &status);
        CHECK(d == NULL && status == EX_DATAERR);
        durable_close(d);
        snapbytes[i] ^= 0x04;
    }
    spit(path, snapbytes, len);
    check_recovers_to(dir, dp); /* intact again: fine (and the close wrote a newer one) */
    /* a deleted snapshot: the log alone starts after it */
    find_snapshot(dir, path, sizeof(path));
    CHECK(unlink(path) == 0);
    struct durable *d = open_dir(dir, DURABLE_SYNC_NONE, 0, &status);
    CHECK(d == NULL && status == EX_DATAERR);
    durable_close(d);
    free(snapbytes);
}

/* ---- group commit, lock ---- */

struct gc_ctx {
    struct durable *d;
    atomic_int callbacks, errors, immediate;
};

static void gc_done(void *cls, int err)
{
    struct gc_ctx *c = cls;
    if (err != 0)
        atomic_fetch_add(&c->errors, 1);
    atomic_fetch_add(&c->callbacks, 1);
}

static void *gc_writer(void *arg)
{
    struct gc_ctx *c = arg;
    for (int i = 0; i < 150; i++) {
        struct store_op op = {.kind = STORE_POST, .name = "g"};
        struct store_res res;
        json_t *j = J("{\"x\":1}");
        op.body = j;
        CHECK(durable_begin(c->d));
        store_write(durable_store(c->d), &op, &res);
        CHECK(res.code == STORE_CREATED);
        if (durable_is_durable(c->d, res.rev)) {
            atomic_fetch_add(&c->immediate, 1);
            durable_end(c->d);
        } else {
            durable_wait(c->d, res.rev, gc_done, c);
        }
        store_res_cleanup(&res);
        json_decref(j);
    }
    return NULL;
}

static void test_group_commit(void)
{
    char dir[128];
    int status;
    pthread_t t[16];
    struct gc_ctx c;
    memset(&c, 0, sizeof(c));
    new_dir(dir, sizeof(dir), "gc");
    c.d = open_dir(dir, DURABLE_SYNC_ALWAYS, 0, &status);
    CHECK(status == 0);
    uint64_t f0 = STATS_GET(store_fsyncs);
    for (int i = 0; i < 16; i++)
        pthread_create(&t[i], NULL, gc_writer, &c);
    for (int i = 0; i < 16; i++)
        pthread_join(t[i], NULL);
    durable_close(c.d); /* drains every waiter */
    CHECK(atomic_load(&c.callbacks) + atomic_load(&c.immediate) == 16 * 150);
    CHECK(atomic_load(&c.errors) == 0);
    uint64_t fsyncs = STATS_GET(store_fsyncs) - f0;
    printf("# group commit: %d writes, %" PRIu64 " fsyncs\n", 16 * 150, fsyncs);
    CHECK(fsyncs < 16 * 150); /* shared: far fewer fsyncs than writes */
    CHECK(STATS_GET(store_durable_revision) >= 16 * 150);
}

static void test_second_open_is_locked_out(void)
{
    char dir[128];
    int status, status2;
    new_dir(dir, sizeof(dir), "lock");
    struct durable *d = open_dir(dir, DURABLE_SYNC_NONE, 0, &status);
    CHECK(status == 0);
    struct durable *d2 = open_dir(dir, DURABLE_SYNC_NONE, 0, &status2);
    CHECK(d2 == NULL && status2 == EX_TEMPFAIL);
    durable_close(d);
    d2 = open_dir(dir, DURABLE_SYNC_NONE, 0, &status2);
    CHECK(status2 == 0); /* released on close */
    durable_close(d2);
}

static void test_names(void)
{
    char n[64];
    uint64_t v;
    wal_segment_name(n, 43);
    CHECK(strcmp(n, "log.00000000000000000043") == 0);
    CHECK(wal_parse_name(n, &v) && v == 43);
    snapfile_name(n, 18446744073709551615ull);
    CHECK(strcmp(n, "snap.18446744073709551615") == 0);
    CHECK(snapfile_parse_name(n, &v) && v == 18446744073709551615ull);
    CHECK(!snapfile_parse_name("snap.00000000000000000042.tmp", &v));
    CHECK(!wal_parse_name("log.1", &v));
}

/*
 * --measure [N] [DIR]: recovery times. A child writes N small docs (default
 * 1,000,000; those of docs/STORE.md) with sync = none and dies without a
 * snapshot; then: replay of the log alone, a snapshot of N docs at close,
 * and a start from that snapshot. DIR (kept) lets cairnd itself be timed;
 * with CAIRN_MEASURE_LOG_ONLY set it holds just the log.
 */
static int measure(long n, const char *dir_arg)
{
    char dir[256];
    int status;
    uint64_t t0;
    struct stat st;
    char seg[300];

    if (dir_arg != NULL)
        snprintf(dir, sizeof(dir), "%s", dir_arg);
    else
        new_dir(dir, sizeof(dir), "measure");
    pid_t pid = fork();
    if (pid == 0) {
        struct durable *d = open_dir(dir, DURABLE_SYNC_NONE, 0, &status);
        if (d == NULL)
            _exit(1);
        /* CAIRN_MEASURE_PAD=N adds an N-byte string member to every doc */
        static char pad[4096];
        long padn = getenv("CAIRN_MEASURE_PAD") ? atol(getenv("CAIRN_MEASURE_PAD")) : 0;
        if (padn < 0 || padn >= (long)sizeof(pad))
            padn = 0;
        memset(pad, 'p', (size_t)padn);
        t0 = now_usec();
        for (long i = 0; i < n; i++) {
            char body[4300];
            struct store_op op = {.kind = STORE_POST, .name = "posts"};
            struct store_res res;
            snprintf(body, sizeof(body),
                     "{\"title\":\"post number %06ld\",\"author\":\"someone\",\"views\":%ld,"
                     "\"published\":true%s%s%s}",
                     i, (i * 7919) % 1000, padn ? ",\"pad\":\"" : "", pad, padn ? "\"" : "");
            json_t *j = J(body);
            op.body = j;
            store_write(durable_store(d), &op, &res);
            store_res_cleanup(&res);
            json_decref(j);
        }
        printf("# wrote %ld docs through store_write + log append in %.2f s\n", n,
               (double)(now_usec() - t0) / 1e6);
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        panic("measure: the writer failed");
    if (getenv("CAIRN_MEASURE_LOG_ONLY") != NULL)
        return 0; /* leave the log for cairnd to replay */
    snprintf(seg, sizeof(seg), "%s/log.%020d", dir, 1);
    stat(seg, &st);
    sh("sync");
    t0 = now_usec();
    struct durable *d = open_dir(dir, DURABLE_SYNC_NONE, 0, &status);
    printf("# replay of a %.1f MB log of %ld writes: %.2f s (rev %" PRIu64 ")\n",
           (double)st.st_size / 1e6, n, (double)(now_usec() - t0) / 1e6, d ? open_rev(d) : 0);
    t0 = now_usec();
    durable_close(d);
    printf("# snapshot of %ld docs at close: %.2f s (%" PRIu64 " bytes)\n", n,
           (double)(now_usec() - t0) / 1e6, (uint64_t)STATS_GET(store_snapshot_bytes));
    t0 = now_usec();
    d = open_dir(dir, DURABLE_SYNC_NONE, 0, &status);
    printf("# load of a snapshot of %ld docs: %.2f s\n", n, (double)(now_usec() - t0) / 1e6);
    quick_close = true;
    durable_close(d);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"crc32c: check value, against a bitwise reference", test_crc32c},
        {"record: encode/decode round trip", test_record_roundtrip},
        {"record: every cut is torn, every flipped bit is caught", test_record_every_cut_and_flip},
        {"record: rec_find_next finds the record after damage", test_find_next},
        {"file names", test_names},
        {"recovery: log replay equals the live store (3000 random writes)",
         test_log_replay_equals_store},
        {"recovery: snapshot + log equals the live store", test_snapshot_plus_log_equals_store},
        {"clean close: snapshot, covered log removed, modes 0600/0700",
         test_clean_close_leaves_snapshot_only},
        {"compaction past compact_bytes", test_compaction_by_size},
        {"torn log: last record cut at every offset -> start, tail cut off",
         test_torn_last_record_every_offset},
        {"corrupt log: a flipped byte in the last record -> start, tail cut off",
         test_flipped_byte_in_last_record},
        {"corrupt log: a flipped byte in a middle record or the header -> 65, file untouched",
         test_flipped_byte_in_middle_record_refuses},
        {"power-loss hole in the unsynced tail -> start, cut there; damage in synced data -> 65",
         test_hole_in_unsynced_tail_is_cut},
        {"claims after a rotation, after a restart's cut; a claim past its own offset -> 65",
         test_claims_after_rotation_and_restart},
        {"an empty segment left by a failed rotation is removed, the tail before it cut",
         test_leftover_segment_of_a_failed_rotation},
        {"leftover segments anywhere: two at once, more than 8, between real segments",
         test_leftover_segments_anywhere},
        {"replayed keys: canonical integer ids and valid string ids only",
         test_replayed_keys_are_checked},
        {"--recover-truncate drops a damaged middle record and leaves a clean dir",
         test_recover_truncate_drops_damaged_record},
        {"damaged or missing snapshot -> 65", test_damaged_or_missing_snapshot_refuses},
        {"group commit: 16 writers share fsyncs, all called back", test_group_commit},
        {"the data dir lock keeps a second opener out", test_second_open_is_locked_out},
        {NULL, NULL},
    };
    log_set_level(LOG_ERR - 1); /* the cases provoke errors on purpose; keep the output short */
    snprintf(tmp_root, sizeof(tmp_root), "/tmp/cairn-test-wal.XXXXXX");
    if (mkdtemp(tmp_root) == NULL)
        panic("mkdtemp");
    if (argc > 1 && strcmp(argv[1], "--measure") == 0) {
        int rc = measure(argc > 2 ? atol(argv[2]) : 1000000, argc > 3 ? argv[3] : NULL);
        sh("rm -rf %s", tmp_root); /* a DIR given on the command line is elsewhere and kept */
        return rc;
    }
    int rc = run_cases(cases);
    sh("rm -rf %s", tmp_root);
    return rc;
}
