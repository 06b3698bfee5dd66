/* src/request.h -- the plain request object handlers see; http.c fills it in. */
#ifndef CAIRN_REQUEST_H
#define CAIRN_REQUEST_H

#include <stddef.h>

struct config;
struct route;

enum method {
    METHOD_GET = 1 << 0,
    METHOD_HEAD = 1 << 1,
    METHOD_POST = 1 << 2,
    METHOD_PUT = 1 << 3,
    METHOD_PATCH = 1 << 4,
    METHOD_DELETE = 1 << 5,
    METHOD_OPTIONS = 1 << 6,
    METHOD_OTHER = 1 << 7,
};

#define REQUEST_MAX_PARAMS 4
#define REQUEST_MAX_QUERY 64
#define REQUEST_ID_MAX 64

struct request_arg {
    const char *name;  /* decoded; borrowed for the request's lifetime */
    const char *value; /* decoded; "" when the argument had no '=' */
};

/*
 * Everything here is borrowed from the connection and valid until the request
 * completes; handlers copy what they keep. 'cfg' is the config the request
 * started under: one request never sees two configs.
 */
struct request {
    enum method method;
    const char *method_name;
    const char *path;                        /* decoded URL path, without the query */
    const char *params[REQUEST_MAX_PARAMS]; /* path parameters, in pattern order */
    struct request_arg *query; /* nquery of them (room for REQUEST_MAX_QUERY); NULL when none */
    size_t nquery;
    const char *if_match;      /* NULL when absent */
    const char *if_none_match; /* NULL when absent */
    const char *body;          /* NULL when the request had none */
    size_t body_len;
    const struct config *cfg;
    const struct route *route;
    char id[REQUEST_ID_MAX + 1];
    void *http; /* http.c's connection state: pass it to http_defer/http_finish */
};

#endif
