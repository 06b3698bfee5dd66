/* src/reply.c -- see reply.h. */
#include "reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void reply_init(struct reply *r)
{
    memset(r, 0, sizeof(*r));
}

static void drop_body(struct reply *r)
{
    if (r->release != NULL)
        r->release(r->release_cls);
    else
        free(r->body);
    r->body = NULL;
    r->len = 0;
    r->release = NULL;
    r->release_cls = NULL;
}

void reply_cleanup(struct reply *r)
{
    drop_body(r);
    for (unsigned i = 0; i < r->nheaders; i++)
        free(r->headers[i].value);
    r->nheaders = 0;
    free(r->detail);
    r->detail = NULL;
}

/* Appends the header; takes 'value' (heap). */
static void add_header(struct reply *r, const char *name, char *value)
{
    if (r->nheaders == REPLY_MAX_HEADERS)
        panic("reply_header: more than %d headers (adding %s)", REPLY_MAX_HEADERS, name);
    r->headers[r->nheaders].name = name;
    r->headers[r->nheaders].value = value;
    r->nheaders++;
}

void reply_header(struct reply *r, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *v = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(v, (size_t)n + 1, fmt, ap);
    va_end(ap);
    add_header(r, name, v);
}

void reply_header_u64(struct reply *r, const char *name, uint64_t value, bool quoted)
{
    char digits[20]; /* UINT64_MAX has 20 */
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    char *v = xmalloc(n + 3), *p = v;
    if (quoted)
        *p++ = '"';
    while (n > 0)
        *p++ = digits[--n];
    if (quoted)
        *p++ = '"';
    *p = '\0';
    add_header(r, name, v);
}

void reply_body_steal(struct reply *r, char *body, size_t len)
{
    drop_body(r);
    r->body = body;
    r->len = len;
}

void reply_body_borrow(struct reply *r, const char *body, size_t len, void (*release)(void *),
                       void *cls)
{
    drop_body(r);
    r->body = (char *)body;
    r->len = len;
    r->release = release;
    r->release_cls = cls;
}

void reply_body_buf(struct reply *r, struct buf *b)
{
    size_t len;
    char *body = buf_steal(b, &len);
    reply_body_steal(r, body, len);
}

void reply_body_copy(struct reply *r, const char *body, size_t len)
{
    char *p = xmalloc(len + 1);
    memcpy(p, body, len);
    p[len] = '\0';
    reply_body_steal(r, p, len);
}

enum result reply_fail(struct reply *r, enum result rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    free(r->detail);
    r->detail = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(r->detail, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return rc;
}

static const struct {
    int status;
    const char *title;
} problems[] = {
    [RES_OK] = {200, "OK"},
    [RES_BAD_REQUEST] = {400, "Bad Request"},
    [RES_NOT_FOUND] = {404, "Not Found"},
    [RES_METHOD_NOT_ALLOWED] = {405, "Method Not Allowed"},
    [RES_CONFLICT] = {409, "Conflict"},
    [RES_PRECONDITION_FAILED] = {412, "Precondition Failed"},
    [RES_TOO_LARGE] = {413, "Content Too Large"},
    [RES_URI_TOO_LONG] = {414, "URI Too Long"},
    [RES_UNSUPPORTED_MEDIA] = {415, "Unsupported Media Type"},
    [RES_HEADERS_TOO_LARGE] = {431, "Request Header Fields Too Large"},
    [RES_INTERNAL] = {500, "Internal Server Error"},
    [RES_UNAVAILABLE] = {503, "Service Unavailable"},
    [RES_INSUFFICIENT_STORAGE] = {507, "Insufficient Storage"},
};

int reply_status(enum result rc)
{
    switch (rc) {
    case RES_OK:
    case RES_BAD_REQUEST:
    case RES_NOT_FOUND:
    case RES_METHOD_NOT_ALLOWED:
    case RES_CONFLICT:
    case RES_PRECONDITION_FAILED:
    case RES_TOO_LARGE:
    case RES_URI_TOO_LONG:
    case RES_UNSUPPORTED_MEDIA:
    case RES_HEADERS_TOO_LARGE:
    case RES_INTERNAL:
    case RES_UNAVAILABLE:
    case RES_INSUFFICIENT_STORAGE:
        return problems[rc].status;
    case RES_PENDING:
        break;
    }
    panic("reply_status: result %d has no HTTP status", (int)rc);
}

void reply_problem(struct reply *r, enum result rc, const char *request_id, const char *instance)
{
    struct buf b;
    int status = reply_status(rc);

    buf_init(&b, SIZE_MAX);
    buf_printf(&b, "{\"type\":\"about:blank\",\"title\":\"%s\",\"status\":%d", problems[rc].title,
               status);
    if (r->detail != NULL) {
        buf_puts(&b, ",\"detail\":");
        buf_json_string(&b, r->detail, strlen(r->detail));
    }
    if (instance != NULL) {
        buf_puts(&b, ",\"instance\":");
        buf_json_string(&b, instance, strlen(instance));
    }
    buf_puts(&b, ",\"request_id\":");
    buf_json_string(&b, request_id, strlen(request_id));
    buf_puts(&b, "}");
    reply_body_buf(r, &b);
    r->status = status;
    r->content_type = "application/problem+json";
}
