/* src/router.h -- handler modules, their static route tables, and the one router (router.c). */
#ifndef CAIRN_ROUTER_H
#define CAIRN_ROUTER_H

#include <stddef.h>

#include "reply.h"
#include "request.h"

struct config;

/* A handler never touches the connection: it fills 'reply' and returns a result. */
typedef enum result handler_fn(struct request *req, struct reply *reply);

enum route_flag {
    ROUTE_API = 1 << 0,  /* the pattern is relative to the configured api_prefix */
    ROUTE_BODY = 1 << 1, /* takes a JSON body (Content-Type checked, 415 otherwise) */
};

/* One row of a module's table. A GET row answers HEAD too. */
struct route {
    enum method method;
    const char *pattern; /* "/healthz", "/{collection}/{id}"; NULL ends the table */
    handler_fn *handler;
    unsigned flags;
};

/* A handler module is one file exporting one const descriptor. */
struct module {
    const char *name;
    int (*init)(const struct config *cfg); /* optional; 0 or negative errno */
    void (*fini)(void);                    /* optional */
    const struct route *routes;
};

#define ROUTER_MAX_SEGMENTS 8
#define ROUTER_MAX_PARAM_LEN 128

enum router_outcome {
    ROUTER_FOUND,
    ROUTER_NOT_FOUND,
    ROUTER_BAD_METHOD, /* 'allow' says which methods the path takes */
    ROUTER_BAD_PARAM,  /* a path parameter is empty, too long or has a bad character */
};

struct router_match {
    const struct route *route;
    size_t index;  /* 0 .. router_count()-1 when found */
    unsigned allow; /* enum method bits, for 405 */
    const char *params[REQUEST_MAX_PARAMS];
    const char *bad_param; /* the pattern's name of the bad parameter */
};

/* Builds the table from a NULL-terminated list of modules; panics on a malformed pattern. */
void router_init(const struct module *const *modules, const char *api_prefix);
void router_fini(void);
size_t router_count(void);
const struct route *router_route(size_t index);
/* "GET /v1/{collection}": a stable label for metrics. */
const char *router_label(size_t index);

/*
 * Looks 'path' up for 'method'. 'path' is split in place (the caller passes a
 * private copy); params point into it. Literal segments beat parameters, so
 * "/v1/_stats" is never taken for a collection.
 */
enum router_outcome router_find(char *path, enum method method, struct router_match *m);

/* Writes "GET, HEAD, POST" for the bits in 'allow'. */
void router_allow_string(unsigned allow, char *out, size_t outlen);
/* Maps a method name to its bit; METHOD_OTHER for anything unknown. */
enum method router_method(const char *name);

#endif
