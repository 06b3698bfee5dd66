/*
 * src/mod_debug.c -- fault builds only (make FAULTS=1): routes that let tests
 * reach paths a production build must not expose.
 *   GET  /_debug/sleep?ms=N  answers after N ms through http_defer/http_finish,
 *                            without holding a worker thread meanwhile;
 *   POST /_debug/echo        answers the JSON body it was sent.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "modules.h"

static atomic_uint sleepers; /* threads that still owe an http_finish() */

struct sleeper {
    struct request *req;
    unsigned ms;
};

static void *sleep_then_finish(void *arg)
{
    struct sleeper *s = arg;
    struct reply reply;
    usleep(s->ms * 1000u);
    reply_init(&reply);
    reply_body_copy(&reply, "{\"slept\":true}", 14);
    http_finish(s->req, RES_OK, &reply);
    free(s);
    atomic_fetch_sub(&sleepers, 1);
    return NULL;
}

static enum result get_sleep(struct request *req, struct reply *reply)
{
    int64_t ms = 0;
    for (size_t i = 0; i < req->nquery; i++)
        if (strcmp(req->query[i].name, "ms") == 0 &&
            parse_i64(req->query[i].value, 0, 60000, &ms) != 0)
            return reply_fail(reply, RES_BAD_REQUEST, "ms must be 0..60000");
    struct sleeper *s = xmalloc(sizeof(*s));
    s->req = req;
    s->ms = (unsigned)ms;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    http_defer(req);
    atomic_fetch_add(&sleepers, 1);
    if (pthread_create(&t, &attr, sleep_then_finish, s) != 0)
        panic("mod_debug: pthread_create failed");
    pthread_attr_destroy(&attr);
    return RES_PENDING;
}

static enum result post_echo(struct request *req, struct reply *reply)
{
    if (req->body == NULL)
        return reply_fail(reply, RES_BAD_REQUEST, "a body is required");
    reply_body_copy(reply, req->body, req->body_len);
    return RES_OK;
}

/* Deferred requests must be finished before the pool stops: wait for the sleepers. */
static void debug_fini(void)
{
    while (atomic_load(&sleepers) != 0)
        usleep(10000);
}

static const struct route routes[] = {
    {METHOD_GET, "/_debug/sleep", get_sleep, 0},
    {METHOD_POST, "/_debug/echo", post_echo, ROUTE_BODY},
    {0, NULL, NULL, 0},
};

const struct module mod_debug = {
    .name = "debug",
    .fini = debug_fini,
    .routes = routes,
};
