/* src/reply.h -- handler results and reply objects (reply.c). */
#ifndef CAIRN_REPLY_H
#define CAIRN_REPLY_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/*
 * What a handler returns. RES_OK means "reply->status (200 if unset) with the
 * body the handler set"; every other code is turned into an RFC 9457
 * problem+json reply by reply_status()/reply_problem(), the one place that
 * maps results to HTTP.
 */
enum result {
    RES_OK = 0,
    RES_BAD_REQUEST,          /* 400 */
    RES_NOT_FOUND,            /* 404 */
    RES_METHOD_NOT_ALLOWED,   /* 405, with Allow */
    RES_CONFLICT,             /* 409 */
    RES_PRECONDITION_FAILED,  /* 412 */
    RES_TOO_LARGE,            /* 413 */
    RES_URI_TOO_LONG,         /* 414 */
    RES_UNSUPPORTED_MEDIA,    /* 415 */
    RES_HEADERS_TOO_LARGE,    /* 431 */
    RES_INTERNAL,             /* 500 */
    RES_UNAVAILABLE,          /* 503 */
    RES_INSUFFICIENT_STORAGE, /* 507 */
    RES_PENDING,              /* the reply comes later, through http_finish() */
};

#define REPLY_MAX_HEADERS 10

struct reply_header {
    const char *name; /* static string */
    char *value;      /* owned */
};

/*
 * One reply, built by one thread, fully serialized before it is queued.
 * The body is either owned (freed with the reply) or borrowed from an
 * immutable owner that 'release' drops when the connection is done with it.
 */
struct reply {
    int status;
    const char *content_type; /* static string; NULL = application/json */
    struct reply_header headers[REPLY_MAX_HEADERS];
    unsigned nheaders;
    char *body;
    size_t len;
    void (*release)(void *cls);
    void *release_cls;
    char *detail; /* problem detail for an error result */
};

void reply_init(struct reply *r);
/* Frees what the reply still owns (body, header values, detail). */
void reply_cleanup(struct reply *r);

/* Adds a header; the value is formatted and copied. Panics past REPLY_MAX_HEADERS. */
void reply_header(struct reply *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * reply_header(r, name, "%" PRIu64, value), or "\"%" PRIu64 "\"" when 'quoted' (an
 * ETag), without printf: ETag and X-Revision go out with most replies.
 */
void reply_header_u64(struct reply *r, const char *name, uint64_t value, bool quoted);
/* Steals 'body' (a malloc'd buffer of 'len' bytes). Replaces any earlier body. */
void reply_body_steal(struct reply *r, char *body, size_t len);
/* Borrows 'body' until release(cls) is called; the owner must keep it unchanged. */
void reply_body_borrow(struct reply *r, const char *body, size_t len, void (*release)(void *),
                       void *cls);
/* Steals the bytes of 'b' (left empty) as the body. */
void reply_body_buf(struct reply *r, struct buf *b);
/* Copies 'body'. */
void reply_body_copy(struct reply *r, const char *body, size_t len);

/* Records the problem detail and returns 'rc', so handlers can `return reply_fail(...)`. */
enum result reply_fail(struct reply *r, enum result rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The HTTP status of a result; aborts on a result that has none. */
int reply_status(enum result rc);
/* Replaces the body with the problem+json document for 'rc'. */
void reply_problem(struct reply *r, enum result rc, const char *request_id, const char *instance);

#endif
