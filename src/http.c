/*
 * src/http.c -- the only file that includes <microhttpd.h>.
 *
 * Request lifecycle (see docs/ARCHITECTURE.md):
 *  - first callback: a context is created (and counted); headers alone decide
 *    413/400/415/404/405 for bodies we will not read -- those replies are
 *    queued at once and libmicrohttpd closes the connection after them;
 *  - body callbacks: bytes are copied into the context's bounded buffer;
 *  - last callback: the router picks a handler, the handler returns a result
 *    and a fully serialized reply, and queue_reply() hands it to
 *    libmicrohttpd exactly once. If that fails the client is gone: the reply
 *    is freed, replies_unqueued goes up, and nothing else is ever written;
 *  - completion callback: the only place a context is freed, whatever the
 *    termination code.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "router.h"
#include "stats.h"
#include "util.h"

#define QUERY_NAME_MAX 256
#define QUERY_VALUE_MAX 4096

/*
 * The connection's memory pool (MHD_OPTION_CONNECTION_MEMORY_LIMIT). In
 * 0.9.75 it holds the read buffer -- the request line and headers are parsed
 * in place there and must fit whole -- one bookkeeping record per header line,
 * query argument and cookie (64 bytes here, measured), a copy of the Cookie
 * value (the cookie parser's), the reply's header block, and
 * it is cleared whole at every keep-alive request (MHD_pool_reset), so its
 * size is paid per request. It is sized so that a header block of
 * max_header_bytes with up to POOL_HEADER_LINES lines still fits with room for
 * POOL_REPLY_HEADERS of reply headers; what is larger than max_header_bytes
 * but fits is refused by decide_early(), so the limit is exact whatever the
 * pool's slack. A reply whose headers would not fit loses its Link header
 * (queue_reply()): libmicrohttpd would close the connection without a reply.
 * With the default 8 KiB that happens to paged lists whose query string is
 * over ~1.2 KB (the Link header repeats it four times).
 */
#define POOL_HEADER_LINES 64
#define POOL_HEADER_LINE_COST 64
#define POOL_REPLY_HEADERS 1024
#define POOL_READ_GROWTH 1024
/* libmicrohttpd's pool rounds every allocation up to this */
#define POOL_ALIGN 16
/* libmicrohttpd's own reply lines: status line, Date, Content-Length, Connection, blank line */
#define REPLY_MHD_LINES 160

struct ctx {
    struct request req;
    struct reply reply;
    struct buf body;
    struct config *cfg;      /* the config this request started under */
    struct MHD_Connection *conn;
    const char *version;     /* "HTTP/1.1": libmicrohttpd's, valid until completion */
    char *path;              /* private copy the router splits */
    size_t route_index;      /* router_count() when unmatched */
    enum router_outcome outcome;
    struct router_match match;
    enum result early;       /* decided on the first callback */
    bool body_expected;
    bool body_overflow;      /* a chunked body passed max_body_bytes: discard, 413 at the end */
    bool query_bad;
    bool deferred;
    bool encoded_slash;      /* the raw path held %2F: libmicrohttpd decoded it to '/' */
    char query_error[160];
    size_t reply_room; /* bytes of reply header block libmicrohttpd's pool has left (decide_early) */
};

/*
 * What on_uri() hands the first access-handler call when the raw path holds
 * an encoded '/': a static marker, so nothing leaks when libmicrohttpd never
 * presents the request (it sends no completion for those).
 */
static char encoded_slash_marker;

/* Per connection (libmicrohttpd's socket context): what on_uri() saw of the current request. */
struct conn_state {
    size_t target_len; /* the raw request target, before libmicrohttpd decodes it */
    bool probe;        /* the watchdog's probe (AF_UNIX): outside the connection counts */
};

static struct MHD_Daemon *daemon_;
static int listen_fd_ = -1;
static bool listen_fd_owned;
static struct sockaddr_storage listen_addr;
static socklen_t listen_addrlen;
static char listen_name[INET6_ADDRSTRLEN + 8];
static uint64_t max_connections;
static atomic_bool accepting;   /* set by http_start(), cleared by http_quiesce() */
static atomic_int bursts;       /* accept_burst() calls under way */
static atomic_uint probes_live; /* the watchdog's probe connection: 0 or 1 */
static size_t pool_size; /* set by http_start() */
/*
 * Connections the accept policy let in and not yet closed: stats.connections_live,
 * a gauge. It can only leak a slot if libmicrohttpd, after the policy said yes,
 * fails to set the connection up (no memory for its pool): no STARTED/closed
 * notification comes for it. No sound reconciliation exists in 0.9.75 (a
 * socket queued to a worker is not yet STARTED either), so the gauge is
 * published and the tests check it returns to the open connections once the
 * clients are gone.
 */
static _Atomic int phase = PHASE_STARTING;
static _Atomic uint64_t deferred_count;
static atomic_int dispatching;    /* handler calls under way */
static atomic_bool handlers_closed; /* set before the modules stop */
static uint32_t request_id_seed;
static atomic_uint_fast64_t request_id_next;
#ifdef CAIRN_FAULTS
static atomic_bool wedged;
#endif

void http_set_phase(enum phase p)
{
    atomic_store(&phase, (int)p);
}

enum phase http_phase(void)
{
    return (enum phase)atomic_load(&phase);
}

const char *http_listen_name(void)
{
    return listen_name;
}

uint16_t http_port(void)
{
    if (listen_addr.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&listen_addr)->sin6_port);
    return ntohs(((struct sockaddr_in *)&listen_addr)->sin_port);
}

/* ---- request ids ---- */

static bool request_id_sane(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

static void request_id_make(char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t n = atomic_fetch_add_explicit(&request_id_next, 1, memory_order_relaxed);
    char tail[16];
    size_t len = 0;

    /* "%08x%012llx" of the seed and n, without printf (once per request) */
    for (int i = 7; i >= 0; i--)
        *out++ = hex[(request_id_seed >> (4 * i)) & 0xf];
    do {
        tail[len++] = hex[n & 0xf];
        n >>= 4;
    } while (n != 0);
    for (size_t pad = len; pad < 12; pad++)
        *out++ = '0';
    while (len > 0)
        *out++ = tail[--len];
    *out = '\0';
}

/* ---- queue-once ---- */

static void count_and_log(struct ctx *c, int status)
{
    stats_count_reply(c->route_index, status);
    if (status >= 500)
        log_msg(LOG_ERR, c->req.id, "%s %s -> %d: %s", c->req.method_name, c->req.path, status,
                c->reply.detail ? c->reply.detail : "");
    else if (status >= 400)
        log_msg(LOG_INFO, c->req.id, "%s %s -> %d: %s", c->req.method_name, c->req.path, status,
                c->reply.detail ? c->reply.detail : "");
    else
        log_msg(LOG_DEBUG, c->req.id, "%s %s -> %d", c->req.method_name, c->req.path, status);
}

/* Turns a result into the final reply: the handler's for RES_OK, problem+json otherwise. */
static void finalize(struct ctx *c, enum result rc)
{
    if (rc == RES_OK) {
        if (c->reply.status == 0)
            c->reply.status = 200;
    } else {
        reply_problem(&c->reply, rc, c->req.id, c->req.path);
        if (rc == RES_METHOD_NOT_ALLOWED) {
            char allow[96];
            router_allow_string(c->match.allow, allow, sizeof(allow));
            reply_header(&c->reply, "Allow", "%s", allow);
        }
    }
}

/* About how many bytes of libmicrohttpd's pool the reply's header block takes. */
static size_t reply_header_bytes(const struct ctx *c)
{
    const struct reply *r = &c->reply;
    size_t need = REPLY_MHD_LINES + strlen(MHD_HTTP_HEADER_CONTENT_TYPE) + 4 +
                  strlen(r->content_type ? r->content_type : "application/json") +
                  strlen("X-Request-Id") + 4 + strlen(c->req.id);
    for (unsigned i = 0; i < r->nheaders; i++)
        need += strlen(r->headers[i].name) + 4 + strlen(r->headers[i].value);
    return need;
}

/*
 * An early reply (the connection closes after it) whose header block would
 * not fit what the pool has left: libmicrohttpd would close the connection
 * without a byte. It is written to the socket here instead -- nothing of
 * this request has been written, and MHD_NO then makes libmicrohttpd close
 * the connection without writing anything. The reply is small and the
 * socket's send buffer empty, so one send() takes it whole.
 */
static enum MHD_Result send_early_direct(struct ctx *c)
{
    struct reply *r = &c->reply;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    const char *reason = MHD_get_reason_phrase_for((unsigned)r->status);
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
    struct buf out;
    buf_init(&out, SIZE_MAX);
    buf_printf(&out,
               "HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: close\r\nContent-Length: %zu\r\n"
               "Content-Type: %s\r\nX-Request-Id: %s\r\n",
               r->status, reason ? reason : "", date, r->body ? r->len : 0,
               r->content_type ? r->content_type : "application/json", c->req.id);
    for (unsigned i = 0; i < r->nheaders; i++)
        buf_printf(&out, "%s: %s\r\n", r->headers[i].name, r->headers[i].value);
    buf_append(&out, "\r\n", 2);
    if (r->body != NULL && strcmp(c->req.method_name, "HEAD") != 0)
        buf_append(&out, r->body, r->len);
    ssize_t n = ci == NULL ? -1 : send(ci->connect_fd, out.data, out.len, MSG_NOSIGNAL);
    bool whole = n == (ssize_t)out.len;
    buf_cleanup(&out);
    STATS_INC(early_replies_direct);
    if (!whole) {
        STATS_INC(replies_unqueued);
        log_msg(LOG_NOTICE, c->req.id, "client gone; reply %d dropped", r->status);
        return MHD_NO;
    }
    count_and_log(c, r->status);
    return MHD_NO; /* libmicrohttpd closes the connection, writing nothing */
}

/*
 * Hands c->reply to libmicrohttpd. The one place a reply is queued: on
 * failure the reply is dropped and counted, and MHD_NO makes libmicrohttpd
 * close the connection without writing anything else.
 */
static enum MHD_Result queue_reply(struct ctx *c)
{
    struct reply *r = &c->reply;
    struct MHD_Response *resp;
    int status = r->status;

    if (r->body == NULL)
        reply_body_copy(r, "", 0);
    if (r->release != NULL)
        resp = MHD_create_response_from_buffer_with_free_callback_cls(r->len, r->body, r->release,
                                                                       r->release_cls);
    else
        resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        STATS_INC(replies_unqueued);
        log_msg(LOG_ERR, c->req.id, "cannot create a reply object; connection dropped");
        return MHD_NO; /* r still owns the body; freed with the context */
    }
    /* the body now belongs to resp */
    r->body = NULL;
    r->release = NULL;
    r->len = 0;

    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->content_type ? r->content_type : "application/json");
    MHD_add_response_header(resp, "X-Request-Id", c->req.id);
    /*
     * Link (pagination) is the one header that grows with the request: four
     * URLs with its query. If the header block would not fit what the pool
     * has left (http_pool_size()), libmicrohttpd would close the connection
     * without a reply: Link is left out instead (X-Total-Count stays).
     */
    bool drop_link = false;
    size_t need = reply_header_bytes(c);
    for (unsigned i = 0; i < r->nheaders; i++)
        drop_link = drop_link || strcasecmp(r->headers[i].name, "Link") == 0;
    drop_link = drop_link && need > c->reply_room;
    if (drop_link)
        log_msg(LOG_NOTICE, c->req.id,
                "the reply's headers (%zu bytes) do not fit the connection's buffer (about %zu "
                "left): Link left out",
                need, c->reply_room);
    for (unsigned i = 0; i < r->nheaders; i++)
        if (!drop_link || strcasecmp(r->headers[i].name, "Link") != 0)
            MHD_add_response_header(resp, r->headers[i].name, r->headers[i].value);
    if (http_phase() == PHASE_DRAINING)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");

    enum MHD_Result ok = MHD_queue_response(c->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (ok != MHD_YES) {
        STATS_INC(replies_unqueued);
        log_msg(LOG_NOTICE, c->req.id, "client gone; reply %d dropped", status);
        return MHD_NO;
    }
    count_and_log(c, status);
    return MHD_YES;
}

/* ---- the first callback: decide what the headers alone can decide ---- */

struct header_tally {
    int content_lengths;
    size_t lines;
    size_t bytes; /* the header lines as "Name: value" CRLF */
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    struct header_tally *t = cls;
    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        t->content_lengths++;
    t->lines++;
    t->bytes += strlen(key) + 2 + (value ? strlen(value) : 0) + 2;
    return MHD_YES;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct ctx *c = cls;
    (void)kind;
    if (c->query_bad)
        return MHD_NO;
    if (value == NULL)
        value = "";
    if (c->req.nquery == REQUEST_MAX_QUERY) {
        snprintf(c->query_error, sizeof(c->query_error), "more than %d query parameters",
                 REQUEST_MAX_QUERY);
        c->query_bad = true;
        return MHD_NO;
    }
    if (strlen(key) > QUERY_NAME_MAX || strlen(value) > QUERY_VALUE_MAX) {
        snprintf(c->query_error, sizeof(c->query_error),
                 "query parameter names are limited to %d bytes and values to %d bytes",
                 QUERY_NAME_MAX, QUERY_VALUE_MAX);
        c->query_bad = true;
        return MHD_NO;
    }
    /*
     * Owned by the context like the rest, and only made when the request has
     * arguments: 1 KiB inline made every context too large for malloc's
     * per-thread cache (its calloc cost ~1,500 instructions of a small GET).
     */
    if (c->req.query == NULL)
        c->req.query = xmalloc(REQUEST_MAX_QUERY * sizeof(*c->req.query));
    c->req.query[c->req.nquery].name = key;
    c->req.query[c->req.nquery].value = value;
    c->req.nquery++;
    return MHD_YES;
}

/* The reply for a request the router did not match. */
static enum result route_failure(struct ctx *c)
{
    if (c->encoded_slash)
        return reply_fail(&c->reply, RES_BAD_REQUEST,
                          "an encoded '/' (%%2F) is not allowed in a path segment");
    switch (c->outcome) {
    case ROUTER_NOT_FOUND:
        return reply_fail(&c->reply, RES_NOT_FOUND, "no such resource");
    case ROUTER_BAD_METHOD:
        return reply_fail(&c->reply, RES_METHOD_NOT_ALLOWED, "method %s is not allowed here",
                          c->req.method_name);
    case ROUTER_BAD_PARAM:
        return reply_fail(&c->reply, RES_BAD_REQUEST,
                          "invalid path parameter %s: 1 to %d characters of A-Z a-z 0-9 - . _ ~",
                          c->match.bad_param, ROUTER_MAX_PARAM_LEN);
    case ROUTER_FOUND:
        break;
    }
    panic("route_failure: the route was found");
}

static bool is_json_type(const char *ct)
{
    if (ct == NULL)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return true;
    /* application/merge-patch+json, application/vnd.x+json ... */
    return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
           strncasecmp(ct + n - 5, "+json", 5) == 0;
}

static enum result decide_early(struct ctx *c)
{
    struct MHD_Connection *conn = c->conn;
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    struct header_tally tally = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_header, &tally);
    int ncl = tally.content_lengths;

    /*
     * max_header_bytes, exactly: the pool is larger than the limit (see
     * http_start), so a header block over it reaches us and is refused here.
     */
    const struct conn_state *cs =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT)->socket_context;
    size_t line = strlen(c->req.method_name) + 1 + cs->target_len + 1 + strlen(c->version) + 2;
    size_t limit = (size_t)c->cfg->max_header_bytes;
    size_t block = line + tally.bytes + 2;
    /*
     * What the pool keeps of this request when the reply's headers are built:
     * the read buffer (the block and whatever was pipelined behind it: at
     * least half the pool, as 0.9.75 sizes it, or the block and one growth
     * step), a record per header line, query argument and cookie -- counted
     * by libmicrohttpd, which keeps every argument where collect_arg() stops
     * at REQUEST_MAX_QUERY or the first bad one -- and the copy of the Cookie
     * value 0.9.75's cookie parser makes in the pool.
     */
    size_t read_buffer = block + POOL_READ_GROWTH > pool_size / 2 ? block + POOL_READ_GROWTH
                                                                 : pool_size / 2;
    int nargs = MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, NULL, NULL);
    int ncookies = MHD_get_connection_values(conn, MHD_COOKIE_KIND, NULL, NULL);
    const char *cookie = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_COOKIE);
    size_t cookie_copy =
        cookie ? (strlen(cookie) + 1 + POOL_ALIGN - 1) / POOL_ALIGN * POOL_ALIGN : 0;
    size_t records =
        tally.lines + (size_t)(nargs > 0 ? nargs : 0) + (size_t)(ncookies > 0 ? ncookies : 0) + 1;
    size_t kept = read_buffer + cookie_copy + POOL_HEADER_LINE_COST * records;
    c->reply_room = pool_size > kept ? pool_size - kept : 0;

    if (line > limit)
        return reply_fail(&c->reply, RES_URI_TOO_LONG,
                          "the request line is %zu bytes; at most %zu are accepted", line, limit);
    if (block > limit)
        return reply_fail(&c->reply, RES_HEADERS_TOO_LARGE,
                          "the request line and headers are %zu bytes; at most %zu are accepted",
                          block, limit);

    /* 0.9.75 is lenient here (RELIABILITY.md 2.4): reject ambiguous framing ourselves */
    if (te != NULL && cl != NULL)
        return reply_fail(&c->reply, RES_BAD_REQUEST,
                          "Transfer-Encoding and Content-Length together are ambiguous");
    if (ncl > 1)
        return reply_fail(&c->reply, RES_BAD_REQUEST, "Content-Length appears more than once");
    if (te != NULL && strcasecmp(te, "chunked") != 0)
        return reply_fail(&c->reply, RES_BAD_REQUEST,
                          "Transfer-Encoding '%.40s' is not supported; only chunked", te);

    int64_t len = 0;
    if (cl != NULL && parse_i64(cl, 0, INT64_MAX, &len) != 0)
        return reply_fail(&c->reply, RES_BAD_REQUEST, "Content-Length is not a number");
    c->body_expected = te != NULL || len > 0;
    if (len > c->cfg->max_body_bytes)
        return reply_fail(&c->reply, RES_TOO_LARGE,
                          "the body is %lld bytes; at most %lld are accepted", (long long)len,
                          (long long)c->cfg->max_body_bytes);
    if (!c->body_expected)
        return RES_OK;

    /* a body we would not use is not read: answer now and let the connection close */
    if (c->outcome != ROUTER_FOUND)
        return route_failure(c);
    if (!(c->match.route->flags & ROUTE_BODY))
        return reply_fail(&c->reply, RES_BAD_REQUEST, "%s %s takes no request body",
                          c->req.method_name, c->req.path);
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!is_json_type(ct))
        return reply_fail(&c->reply, RES_UNSUPPORTED_MEDIA,
                          "the body must be application/json (got '%.60s')", ct ? ct : "none");
    return RES_OK;
}

static struct ctx *ctx_new(struct MHD_Connection *conn, const char *url, const char *method,
                           bool encoded_slash)
{
    struct ctx *c = xcalloc(1, sizeof(*c));
    c->encoded_slash = encoded_slash;
    STATS_INC(request_contexts_created);
    c->conn = conn;
    c->cfg = config_current();
    reply_init(&c->reply);
    buf_init(&c->body, (size_t)c->cfg->max_body_bytes);

    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid != NULL && request_id_sane(rid))
        snprintf(c->req.id, sizeof(c->req.id), "%s", rid);
    else
        request_id_make(c->req.id);

    c->req.method = router_method(method);
    c->req.method_name = method;
    c->req.path = url;
    c->req.cfg = c->cfg;
    c->req.http = c;
    c->req.if_match = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_MATCH);
    c->req.if_none_match =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);

    c->path = xstrdup(url);
    c->outcome = router_find(c->path, c->req.method, &c->match);
    if (c->encoded_slash)
        c->outcome = ROUTER_BAD_PARAM; /* "/v1/a%2Fb" must not become "/v1/a/b" */
    c->route_index = c->outcome == ROUTER_FOUND ? c->match.index : router_count();
    if (c->outcome == ROUTER_FOUND) {
        c->req.route = c->match.route;
        memcpy(c->req.params, c->match.params, sizeof(c->req.params));
    }
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, c);
    return c;
}

static void ctx_free(struct ctx *c)
{
    reply_cleanup(&c->reply);
    buf_cleanup(&c->body);
    config_release(c->cfg);
    free(c->path);
    free(c->req.query);
    free(c);
    STATS_INC(request_contexts_freed);
}

/* ---- the last callback: route, handle, queue ---- */

static enum result dispatch(struct ctx *c)
{
    if (c->body_overflow)
        return reply_fail(&c->reply, RES_TOO_LARGE, "the body is larger than %lld bytes",
                          (long long)c->cfg->max_body_bytes);
    if (c->outcome != ROUTER_FOUND)
        return route_failure(c);
    if (c->query_bad)
        return reply_fail(&c->reply, RES_BAD_REQUEST, "%s", c->query_error);
    if (c->body_expected) {
        c->req.body = c->body.data ? c->body.data : "";
        c->req.body_len = c->body.len;
    }
#ifdef CAIRN_FAULTS
    while (atomic_load(&wedged))
        sleep(1);
#endif
    return c->match.route->handler(&c->req, &c->reply);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct ctx *c = *con_cls;
    (void)cls;

    if (c == NULL || c == (void *)&encoded_slash_marker) {
        c = ctx_new(conn, url, method, c != NULL);
        c->version = version ? version : "";
        *con_cls = c;
        c->early = decide_early(c);
        if (c->early == RES_OK)
            return MHD_YES; /* the normal reply goes out on a later call: keeps keep-alive */
        STATS_INC(early_replies);
        finalize(c, c->early);
        if (reply_header_bytes(c) > c->reply_room)
            return send_early_direct(c);
        return queue_reply(c);
    }
    if (*upload_data_size != 0) {
        /* always consume everything (RELIABILITY.md 2.1); past the limit, discard */
        if (!c->body_overflow && buf_append(&c->body, upload_data, *upload_data_size) != 0) {
            c->body_overflow = true;
            buf_cleanup(&c->body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (c->deferred)
        return MHD_YES; /* resumed: the reply was queued by http_finish() */

    /*
     * Handlers may run only while the modules are up: http_close_handlers()
     * sets 'closed' and then waits for 'dispatching' to drain (both seq_cst,
     * so either this thread sees 'closed' or the closer sees it dispatching).
     */
    enum result rc;
    atomic_fetch_add(&dispatching, 1);
    if (atomic_load(&handlers_closed))
        rc = reply_fail(&c->reply, RES_UNAVAILABLE, "shutting down");
    else
        rc = dispatch(c);
    atomic_fetch_sub(&dispatching, 1);
    if (rc == RES_PENDING)
        return MHD_YES;
    finalize(c, rc);
    return queue_reply(c);
}

void http_defer(struct request *req)
{
    struct ctx *c = req->http;
    c->deferred = true;
    atomic_fetch_add(&deferred_count, 1);
    MHD_suspend_connection(c->conn);
}

void http_finish(struct request *req, enum result rc, struct reply *reply)
{
    struct ctx *c = req->http;
    /* c->reply may hold a detail from before the defer; the new reply replaces it */
    reply_cleanup(&c->reply);
    c->reply = *reply;
    reply_init(reply);
    finalize(c, rc);
    /* legal from any thread while the connection is suspended (microhttpd.h) */
    queue_reply(c);
    MHD_resume_connection(c->conn);
    atomic_fetch_sub(&deferred_count, 1);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    if (*con_cls == NULL || *con_cls == (void *)&encoded_slash_marker) {
        /* a connection that ended between requests: no request, no context */
        STATS_INC(completions_without_request);
        return;
    }
    stats_count_termination((unsigned)toe);
    ctx_free(*con_cls); /* the only place a context is freed */
    *con_cls = NULL;
}

/* Sees the raw request target before libmicrohttpd decodes it. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    struct conn_state *cs =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT)->socket_context;
    cs->target_len = strlen(uri);
    size_t n = strcspn(uri, "?");
    for (size_t i = 0; i + 2 < n; i++)
        if (uri[i] == '%' && uri[i + 1] == '2' && (uri[i + 2] == 'f' || uri[i + 2] == 'F'))
            return &encoded_slash_marker;
    return NULL;
}

static void accept_burst(void);

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        struct conn_state *cs = xcalloc(1, sizeof(*cs));
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        cs->probe = ci != NULL && ci->client_addr != NULL && ci->client_addr->sa_family == AF_UNIX;
        *socket_context = cs;
        if (cs->probe)
            return;
        STATS_INC(open_connections);
        STATS_INC(connections_accepted);
        accept_burst();
    } else {
        struct conn_state *cs = *socket_context;
        if (cs != NULL && cs->probe) {
            atomic_fetch_sub(&probes_live, 1);
        } else {
            STATS_DEC(open_connections);
            atomic_fetch_sub(&stats.connections_live, 1);
        }
        free(cs);
        *socket_context = NULL;
    }
}

/*
 * libmicrohttpd logs a line per aborted connection; a storm of dead clients
 * must not become a storm of log lines. At most MHD_LOG_BURST lines a second;
 * the rest are counted in mhd_log_suppressed.
 */
#define MHD_LOG_BURST 20

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    static _Atomic uint64_t window_sec;
    static atomic_uint in_window;
    char msg[512];
    (void)cls;
    /* libmicrohttpd's only word on a per-IP refusal (its own limit is never reached) */
    if (strcmp(fmt, "Server reached connection limit. Closing inbound connection.\n") == 0)
        STATS_INC(connections_refused);
    uint64_t sec = now_usec() / 1000000;
    uint64_t seen = atomic_load(&window_sec);
    if (seen != sec && atomic_compare_exchange_strong(&window_sec, &seen, sec))
        atomic_store(&in_window, 0);
    if (atomic_fetch_add(&in_window, 1) >= MHD_LOG_BURST) {
        STATS_INC(mhd_log_suppressed);
        return;
    }
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_msg(LOG_WARNING, NULL, "libmicrohttpd: %s", msg);
}

static void on_mhd_panic(void *cls, const char *file, unsigned int line, const char *reason)
{
    (void)cls;
    panic("libmicrohttpd: %s:%u: %s", file ? file : "?", line, reason ? reason : "");
}

/* ---- start, stop, probe ---- */

static int bind_listen(const struct config *cfg, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, cfg->listen_address, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ss.ss_family = AF_INET;
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)cfg->listen_port);
        len = sizeof(struct sockaddr_in);
    } else if (inet_pton(AF_INET6, cfg->listen_address,
                         &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        ss.ss_family = AF_INET6;
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)cfg->listen_port);
        len = sizeof(struct sockaddr_in6);
    } else {
        snprintf(err, errlen, "bad listen address %s", cfg->listen_address);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "cannot listen on %s port %lld: %s", cfg->listen_address,
                 (long long)cfg->listen_port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void describe_listen(void)
{
    char host[INET6_ADDRSTRLEN] = "?";
    listen_addrlen = sizeof(listen_addr);
    getsockname(listen_fd_, (struct sockaddr *)&listen_addr, &listen_addrlen);
    if (listen_addr.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&listen_addr)->sin6_addr, host, sizeof(host));
        snprintf(listen_name, sizeof(listen_name), "[%s]:%u", host, http_port());
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&listen_addr)->sin_addr, host, sizeof(host));
        snprintf(listen_name, sizeof(listen_name), "%s:%u", host, http_port());
    }
}


static size_t http_pool_size(const struct config *cfg)
{
    return (size_t)cfg->max_header_bytes + POOL_HEADER_LINES * POOL_HEADER_LINE_COST +
           POOL_REPLY_HEADERS;
}

/*
 * Accepting. libmicrohttpd's workers poll the listening socket and take one
 * connection per loop iteration, and an iteration serves every ready
 * connection first, so under load a burst of new clients waited hundreds of
 * iterations (S7 in docs/PERFORMANCE.md). A worker that has just taken a
 * connection (NOTIFY_CONNECTION started) may take up to ACCEPT_BURST more
 * from the backlog with accept4() and queue them with MHD_add_connection(),
 * which its next iteration (or another worker's, by fd modulo the pool) sets
 * up. Accepting stays in the worker's own thread: a separate accept thread
 * cost two context switches per connection on one core (-26% req/s per core
 * with Connection: close).
 *
 * A queued socket costs more than one libmicrohttpd accepts itself (an ITC
 * write, an fcntl, the queue), so the burst is taken only when waiting would
 * cost more: the k-th connection in the backlog waits about k iterations, and
 * an iteration grows with the open connections, so the burst goes when
 * backlog x open connections reaches BURST_WAIT_COST -- 8 waiting at 64 open,
 * 1 at 512. The backlog's length is the listening socket's TCP_INFO
 * (tcpi_unacked); where that is unknown, the burst goes. With one request per
 * connection at 64 connections (S6) the backlog was empty at 89% of accepts
 * and under 8 at 99.8%, and bursting at any backlog cost ~8% req/s per core.
 *
 * max_connections is counted in the accept policy callback, which
 * libmicrohttpd calls for every connection, both its own accepts and ours,
 * before it sets the connection up: connections_live goes up there and down at
 * NOTIFY_CONNECTION closed, and a socket over the limit is closed at once,
 * without a request or a context (the refusal the config documents).
 * libmicrohttpd's own limit is set so that no worker can reach it: a worker
 * that finds itself full while taking a queued socket leaves a mutex locked in
 * 0.9.75, and the storm test caught both workers deadlocked on it. The per-IP
 * limit stays libmicrohttpd's; its refusals are counted from its log line.
 */
#define ACCEPT_BURST 128
#define BURST_WAIT_COST 512


/* A refusal at max_connections: one log line a second at most, with the count since the last. */
static void refusal_log(void)
{
    static _Atomic uint64_t last_log_usec;
    static _Atomic uint64_t unlogged;
    uint64_t now = now_usec();
    atomic_fetch_add(&unlogged, 1);
    uint64_t last = atomic_load(&last_log_usec);
    if (last != 0 && (now < last || now - last < 1000000))
        return; /* now < last: another thread's newer clock logged already */
    if (!atomic_compare_exchange_strong(&last_log_usec, &last, now))
        return; /* another thread logs this second */
    uint64_t n = atomic_exchange(&unlogged, 0);
    log_msg(LOG_WARNING, NULL,
            "max_connections (%llu) reached: new connections refused (%llu since the last "
            "such line)",
            (unsigned long long)max_connections, (unsigned long long)n);
}

/*
 * Set by on_accept_policy() when it lets a connection in, in the thread that
 * called MHD_add_connection(): a caller that gets MHD_NO afterwards (the
 * policy said yes, libmicrohttpd then failed to set the connection up: no
 * memory) gives the slot back, since no closed notification will come.
 */
static _Thread_local bool policy_admitted;

static enum MHD_Result on_accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)cls;
    /*
     * The watchdog's probe (AF_UNIX, http_probe()) is outside max_connections,
     * one at a time: a probe still queued to a stalled worker makes the next
     * one fail rather than pile up (each on top of the worker's share).
     */
    if (addrlen >= sizeof(sa_family_t) && addr->sa_family == AF_UNIX) {
        unsigned none = 0;
        if (!atomic_compare_exchange_strong(&probes_live, &none, 1))
            return MHD_NO;
        policy_admitted = true;
        return MHD_YES;
    }
    uint64_t live = atomic_load(&stats.connections_live);
    while (live < max_connections)
        if (atomic_compare_exchange_weak(&stats.connections_live, &live, live + 1)) {
            policy_admitted = true;
            return MHD_YES;
        }
    STATS_INC(connections_refused);
    refusal_log();
    return MHD_NO; /* libmicrohttpd closes the socket */
}

/* MHD_add_connection() with the slot given back when it fails after the policy's yes. */
static enum MHD_Result add_connection(int fd, const struct sockaddr *addr, socklen_t len)
{
    policy_admitted = false;
    enum MHD_Result rc = MHD_add_connection(daemon_, fd, addr, len);
    if (rc != MHD_YES && policy_admitted) {
        if (addr->sa_family == AF_UNIX)
            atomic_fetch_sub(&probes_live, 1);
        else
            atomic_fetch_sub(&stats.connections_live, 1);
    }
    return rc;
}

/* Whether the backlog, left to one accept per iteration, would wait too long (above). */
static bool backlog_waits(void)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (getsockopt(listen_fd_, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_unacked) + sizeof(ti.tcpi_unacked))
        return true;
    /* for a listening socket, tcpi_unacked is the accept queue's length */
    uint64_t open = atomic_load(&stats.connections_live);
    return ti.tcpi_unacked > 0 &&
           (uint64_t)ti.tcpi_unacked * (open > 0 ? open : 1) >= BURST_WAIT_COST;
}

/*
 * In a worker, after it took a connection: the rest of the backlog, up to
 * ACCEPT_BURST. Not at max_connections: every socket taken would be refused,
 * and the workers' own accepts refuse one per iteration without holding a
 * worker off its connections. 'bursts' lets http_quiesce() wait until no
 * burst can still take a socket.
 */
static void accept_burst(void)
{
    atomic_fetch_add(&bursts, 1);
    if (atomic_load(&accepting) && backlog_waits()) {
        for (int i = 0; i < ACCEPT_BURST && atomic_load(&accepting) &&
                        atomic_load(&stats.connections_live) < max_connections;
             i++) {
            struct sockaddr_storage addr;
            socklen_t len = sizeof(addr);
            int fd =
                accept4(listen_fd_, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                break; /* EAGAIN; an error is libmicrohttpd's own accept's to see and log */
            STATS_INC(connections_burst_accepted);
            /* on MHD_NO libmicrohttpd has closed fd (and the policy counted a refusal) */
            (void)add_connection(fd, (struct sockaddr *)&addr, len);
        }
    }
    atomic_fetch_sub(&bursts, 1);
}

int http_start(const struct config *cfg, int listen_fd, char *err, size_t errlen)
{
    uint32_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
        seed = (uint32_t)getpid() ^ (uint32_t)now_nsec();
    request_id_seed = seed;

    if (listen_fd >= 0) {
        listen_fd_ = listen_fd;
        listen_fd_owned = false;
    } else {
        listen_fd_ = bind_listen(cfg, err, errlen);
        if (listen_fd_ < 0)
            return -1;
        listen_fd_owned = true;
    }
    describe_listen();

    MHD_set_panic_func(on_mhd_panic, NULL);
    /*
     * A pool of poll() workers (docs/ARCHITECTURE.md): poll reaps aborted
     * uploads at once and cannot stall at 128/256/512 connections as 0.9.75's
     * epoll loop does; suspend/resume frees a worker while a request waits.
     */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    /* one worker is the internal polling thread itself: libmicrohttpd wants no pool then */
    unsigned pool = cfg->threads > 1 ? (unsigned)cfg->threads : 0;
#if defined(CAIRN_MHD_MODE) && CAIRN_MHD_MODE == 1
    /* benchmark builds only (bench/): the pool on epoll, for the comparison */
    flags = (flags & ~(unsigned)MHD_USE_POLL) | MHD_USE_EPOLL;
#elif defined(CAIRN_MHD_MODE) && CAIRN_MHD_MODE == 2
    /* benchmark builds only (bench/): thread per connection */
    flags |= MHD_USE_THREAD_PER_CONNECTION;
    pool = 0;
#endif
    if (listen_addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /*
     * every worker's share (the limit over the pool size) is max_connections + 2: see
     * accept_burst; the watchdog's probe may come on top of max_connections (http_probe)
     */
    /* accept_burst() must not block: the workers' own accepts find the backlog empty too */
    int fl = fcntl(listen_fd_, F_GETFL);
    if (fl < 0 || fcntl(listen_fd_, F_SETFL, fl | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "listening socket: %s", strerror(errno));
        if (listen_fd_owned)
            close(listen_fd_);
        listen_fd_ = -1;
        return -1;
    }
    max_connections = (uint64_t)cfg->max_connections;
    pool_size = http_pool_size(cfg);
    unsigned mhd_limit = ((unsigned)cfg->max_connections + 2) * (pool > 0 ? pool : 1);
    daemon_ = MHD_start_daemon(
        flags, 0, on_accept_policy, NULL, on_request, NULL,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd_,
        MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool_size,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
        /* last, so that without a pool the list ends here: 0.9.75 logs a warning at size 0 */
        pool > 0 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, pool,
        MHD_OPTION_END);
    if (daemon_ == NULL) {
        /*
         * Not closed here: libmicrohttpd may have closed the socket it was
         * given on its way out, and the number may be reused by now. The
         * daemon exits after a failed start.
         */
        snprintf(err, errlen, "libmicrohttpd refused to start on %s", listen_name);
        listen_fd_ = -1;
        return -1;
    }
    atomic_store(&accepting, true);
    return 0;
}

/*
 * Once: no burst takes a socket any more (one past its check is waited for)
 * and libmicrohttpd gives the listening socket back, so MHD_stop_daemon()
 * never shuts it down.
 */
static void stop_accepting(void)
{
    if (!atomic_exchange(&accepting, false))
        return;
    while (atomic_load(&bursts) != 0)
        usleep(1000);
    if (MHD_quiesce_daemon(daemon_) == MHD_INVALID_SOCKET)
        log_msg(LOG_ERR, NULL, "libmicrohttpd did not give the listening socket back");
}

uint64_t http_quiesce(uint64_t timeout_ms)
{
    if (daemon_ == NULL)
        return 0;
    /*
     * No connection is accepted from here on. libmicrohttpd gives the listening
     * socket back (it would shutdown() an inherited one at stop); ours is shut
     * down, so that new clients are refused at once instead of waiting in the
     * backlog to be reset at exit, and closed at http_stop(), after the workers
     * that may still be in accept() on it are gone. An inherited one (socket
     * activation) stays as it was for the next start.
     */
    stop_accepting();
    if (listen_fd_owned && listen_fd_ >= 0)
        shutdown(listen_fd_, SHUT_RDWR);
    uint64_t deadline = now_usec() + timeout_ms * 1000;
    for (;;) {
        uint64_t left = STATS_GET(request_contexts_created) - STATS_GET(request_contexts_freed);
        if (left == 0 || now_usec() >= deadline)
            return left;
        usleep(10000);
    }
}

void http_close_handlers(void)
{
    atomic_store(&handlers_closed, true);
    while (atomic_load(&dispatching) != 0)
        usleep(1000);
}

void http_stop(void)
{
    if (daemon_ == NULL)
        return;
    if (atomic_load(&deferred_count) != 0)
        panic("http_stop: %llu deferred requests were never finished",
              (unsigned long long)atomic_load(&deferred_count));
    stop_accepting(); /* if never quiesced: keep libmicrohttpd off an inherited socket */
    MHD_stop_daemon(daemon_);
    daemon_ = NULL;
    if (listen_fd_owned && listen_fd_ >= 0)
        close(listen_fd_);
    listen_fd_ = -1;
}

int http_probe(unsigned timeout_ms)
{
    int rc = -1;
    char buf[64];
    size_t got = 0;

    /*
     * One end of a socketpair goes straight to MHD_add_connection(): the probe
     * bypasses the listening socket and max_connections (a full daemon is not a
     * hung one; on_accept_policy() lets AF_UNIX in), and an AF_UNIX address is
     * outside libmicrohttpd's per-IP count. It is not in connections_live or
     * open_connections: probes_live counts it, and one at a time is let in, so
     * probes cannot pile up on a stalled worker past its share (http_start).
     */
    int sv[2];
    if (daemon_ == NULL ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
        STATS_INC(watchdog_probes_failed);
        return -1;
    }
    int fd = sv[0];
    struct sockaddr_un peer = {.sun_family = AF_UNIX};
    if (add_connection(sv[1], (struct sockaddr *)&peer, sizeof(sa_family_t)) != MHD_YES)
        goto out_close; /* libmicrohttpd closed sv[1] (or a probe is still in) */
    uint64_t deadline = now_usec() + (uint64_t)timeout_ms * 1000;

    static const char probe[] = "GET /healthz HTTP/1.1\r\nHost: cairnd\r\n"
                                "X-Request-Id: watchdog-probe\r\nConnection: close\r\n\r\n";
    size_t sent = 0;
    while (got < 12) {
        uint64_t now = now_usec();
        if (now >= deadline)
            goto out_close;
        struct pollfd p = {.fd = fd, .events = sent < sizeof(probe) - 1 ? POLLOUT : POLLIN};
        if (poll(&p, 1, (int)((deadline - now) / 1000) + 1) <= 0)
            continue;
        if (sent < sizeof(probe) - 1) {
            ssize_t n = send(fd, probe + sent, sizeof(probe) - 1 - sent, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN)
                goto out_close;
            sent += n > 0 ? (size_t)n : 0;
            continue;
        }
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            goto out_close;
        got += n > 0 ? (size_t)n : 0;
    }
    buf[got] = '\0';
    rc = strncmp(buf, "HTTP/1.1 200", 12) == 0 ? 0 : -1;
out_close:
    close(fd);
    if (rc != 0)
        STATS_INC(watchdog_probes_failed);
    return rc;
}

#ifdef CAIRN_FAULTS
void http_fault_wedge(void)
{
    atomic_store(&wedged, true);
}
#endif
