/* src/http.h -- the HTTP server: the only libmicrohttpd user (http.c). */
#ifndef CAIRN_HTTP_H
#define CAIRN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reply.h"
#include "request.h"

struct config;

enum phase {
    PHASE_STARTING, /* /readyz answers 503 */
    PHASE_READY,
    PHASE_DRAINING, /* SIGTERM seen: /readyz 503, replies carry Connection: close */
};

void http_set_phase(enum phase p);
enum phase http_phase(void);

/*
 * Starts the worker pool. 'listen_fd' is an inherited listening socket
 * (socket activation) or -1 to bind cfg->listen_address:listen_port.
 * Returns 0, or -1 with the reason in 'err'.
 */
int http_start(const struct config *cfg, int listen_fd, char *err, size_t errlen);
/* "127.0.0.1:8080" of the listening socket. */
const char *http_listen_name(void);
uint16_t http_port(void);

/*
 * Stops accepting, then waits up to 'timeout_ms' for the requests in flight
 * to complete. Returns the number still in flight.
 */
uint64_t http_quiesce(uint64_t timeout_ms);
/*
 * After this returns no handler runs, and requests that still arrive (on
 * keep-alive connections, or held past the drain) get 503: the modules can
 * stop. Deferred requests must still be finished by their owners.
 */
void http_close_handlers(void);
/* Stops the pool; in-flight requests end with DAEMON_SHUTDOWN. Call after http_quiesce. */
void http_stop(void);

/*
 * Hands libmicrohttpd one end of a socketpair as a connection (not through
 * the listening socket or max_connections), sends GET /healthz on it and waits
 * up to 'timeout_ms' for a 200: the proof that the worker pool is serving,
 * for the watchdog, also while the daemon is full.
 */
int http_probe(unsigned timeout_ms);

/*
 * Deferred replies. A handler that must wait (an fsync) calls http_defer()
 * before it hands the request to another thread, then returns RES_PENDING; it
 * must not touch 'req' afterwards. That thread later calls http_finish()
 * exactly once: it steals everything in 'reply' and queues it. The worker
 * thread is free meanwhile.
 */
void http_defer(struct request *req);
void http_finish(struct request *req, enum result rc, struct reply *reply);

#ifdef CAIRN_FAULTS
/* Fault build only: every later request blocks its worker thread forever. */
void http_fault_wedge(void);
#endif

#endif
