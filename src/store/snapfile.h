/* src/store/snapfile.h -- snapshot files: the whole store at one revision (snapfile.c). */
#ifndef CAIRN_STORE_SNAPFILE_H
#define CAIRN_STORE_SNAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/load.h"
#include "store/snap.h"

/*
 * "snap.<revision, 20 digits>" in the data dir: a sequence of records
 * (record.h): one REC_SNAP_HEADER, then per collection a REC_SNAP_COLL and
 * its REC_SNAP_DOCs in insertion order, then a REC_SNAP_SINGLE per resource,
 * then REC_SNAP_END. Unlike db.json it keeps every revision, insertion
 * sequence and id counter, so ETags and generated ids survive a restart.
 */

#define SNAPFILE_NAME_MAX 40

/* "snap.00000000000000000042" */
void snapfile_name(char *out, uint64_t rev);
/* Parses a snapshot file name; false for anything else (temp files included). */
bool snapfile_parse_name(const char *name, uint64_t *rev);

/*
 * Writes 's' to "snap.<rev>.tmp", fsyncs it, renames it to "snap.<rev>" and
 * fsyncs the directory. Returns 0 and the file size in *bytes, or a negative
 * errno; on failure the temp file is removed and nothing else changed.
 */
int snapfile_write(int dirfd, const struct snap *s, uint64_t *bytes);

/* A read-only mapping of a whole file. */
struct mapped {
    const unsigned char *p;
    size_t len;
};
/* 0, or a negative errno. An empty file maps to p = NULL, len = 0. */
int map_file(int dirfd, const char *name, struct mapped *m);
void unmap_file(struct mapped *m);

/*
 * Feeds snapshot file 'name' (mapped in 'm', which must stay mapped until
 * loader_finish) to 'l'. Returns 0, or -1 with "name: offset N: reason" in
 * 'err'. With 'lenient', a damaged record is skipped with a warning through
 * 'warn' (so are the docs of a collection whose record is lost) and a
 * missing end is accepted.
 */
int snapfile_load(const char *name, const struct mapped *m, struct loader *l, bool lenient,
                  void (*warn)(void *cls, const char *msg), void *warn_cls, char *err,
                  size_t errlen);

#endif
