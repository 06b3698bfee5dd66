/* src/util.h -- allocation that aborts on OOM, panics, small string helpers (util.c). */
#ifndef CAIRN_UTIL_H
#define CAIRN_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Out of memory is not an error path in cairnd: these abort with a message. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* New heap string, printf-formatted. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2), nonnull(1)));

/* Logs to stderr and aborts: for broken invariants, never for bad input. */
_Noreturn void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic clock in microseconds / nanoseconds. */
uint64_t now_usec(void);
uint64_t now_nsec(void);

/*
 * A growable byte buffer with a hard limit. buf_append returns 0, or -E2BIG
 * (and appends nothing) when the result would exceed 'limit'.
 */
struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t limit;
};

void buf_init(struct buf *b, size_t limit);
void buf_cleanup(struct buf *b);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends 's' as a JSON string literal, quotes included. */
int buf_json_string(struct buf *b, const char *s, size_t n);
/* Hands the bytes to the caller (NUL-terminated, free() them); 'b' is left empty. */
char *buf_steal(struct buf *b, size_t *len);

/*
 * Parses a whole decimal string into [min, max]. Returns 0, or -EINVAL for
 * anything that is not entirely a base-10 integer, -ERANGE when out of bounds.
 */
int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);

#endif
