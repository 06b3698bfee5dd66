/* src/store/record.h -- self-checking records: the framing of log segments and snapshot files. */
#ifndef CAIRN_STORE_RECORD_H
#define CAIRN_STORE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/*
 * One record, little-endian, in a log segment or a snapshot file:
 *
 *   offset  size  field
 *        0     4  crc       CRC32C (Castagnoli) of bytes [4, len)
 *        4     4  len       total length in bytes, header included: 32 .. REC_MAX
 *        8     8  rev       global revision (log: of the write; snapshot: of the doc or collection)
 *       16     8  aux       log: the synced claim (wal.h; 0 in format 1); snapshot: the
 *                           doc's seq or the collection's next seq
 *       24     1  kind      enum rec_kind
 *       25     1  flags     REC_F_INT_ID: the doc's "id" is a JSON integer
 *       26     2  name_len  collection or resource name, 0..64 bytes
 *       28     4  id_len    document key, 0..128 bytes
 *       32        name, id, then data (len - 32 - name_len - id_len bytes)
 *
 * The checksum covers the length, so a damaged length is caught like any
 * other byte, unless it points past the end of the file, which looks like a
 * torn tail; the readers tell the two apart by looking for a valid record
 * after the damage (rec_find_next).
 */

#define REC_HEADER 32
#define REC_MAX (1u << 30) /* 1 GiB: an IMPORT of a big db.json is one record */

enum rec_kind {
    /* log records: one per write; data is the resulting doc's bytes (none for DELETE) */
    REC_POST = 1,
    REC_PUT = 2,
    REC_PATCH = 3,
    REC_DELETE = 4,
    REC_PUT_SINGLE = 5,
    REC_PATCH_SINGLE = 6,
    REC_IMPORT = 7, /* data: the whole resulting store as db.json */
    /* first record of every log segment: name "cairn-log", aux = format version, rev = first rev */
    REC_LOG_HEADER = 16,
    /* snapshot files */
    REC_SNAP_HEADER = 32, /* rev: the snapshot's; aux: version; name "cairn-snapshot" */
    REC_SNAP_COLL = 33,   /* name; rev: the collection's; aux: next seq; data: i64 max int id */
    REC_SNAP_DOC = 34,    /* id: key; rev; aux: seq; data: the doc's bytes */
    REC_SNAP_SINGLE = 35, /* name; rev; data: the resource's bytes */
    REC_SNAP_END = 36,    /* rev: the snapshot's; aux: records before this one */
};

#define REC_F_INT_ID 1u
#define REC_FORMAT_VERSION 1

struct rec {
    uint64_t rev, aux;
    uint8_t kind, flags;
    const char *name; /* not NUL-terminated when decoded: use name_len */
    size_t name_len;
    const char *id;
    size_t id_len;
    const char *data;
    size_t data_len;
    size_t len; /* decoded: the record's total length */
};

enum rec_status {
    REC_OK = 0,
    REC_TRUNCATED,  /* fewer bytes than a header, or than the length says: torn or cut */
    REC_BAD_LENGTH, /* length out of range or fields longer than the record */
    REC_BAD_CHECKSUM,
};

/* CRC32C of p[0..n), continuing 'crc' (start with 0). Uses SSE4.2 when the CPU has it. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

/* Bytes a record with these field lengths takes. */
size_t rec_size(size_t name_len, size_t id_len, size_t data_len);

/* Appends the encoded record to 'b'. Returns 0 or -E2BIG (b's limit; nothing appended). */
int rec_encode(struct buf *b, const struct rec *r);

/*
 * Decodes the record at p[0..avail). Fills 'out' (pointers into p) on REC_OK.
 * Never reads past p + avail.
 */
enum rec_status rec_decode(const void *p, size_t avail, struct rec *out);

/* "torn or cut short", "bad length", "checksum mismatch". */
const char *rec_status_str(enum rec_status s);

/*
 * The offset of the first valid record in p[from..avail) whose revision is
 * in [min_rev, max_rev], or SIZE_MAX when there is none. Used after a damaged
 * record to decide whether the damage is the end of the log (nothing valid
 * follows) or in the middle of it.
 */
size_t rec_find_next(const void *p, size_t avail, size_t from, uint64_t min_rev, uint64_t max_rev);

/* Little-endian helpers for record payloads. */
void rec_put_u64(unsigned char *p, uint64_t v);
uint64_t rec_get_u64(const void *p);

#endif
