/* src/stats.h -- the daemon's counters, declared once; /v1/_stats and /metrics render them (stats.c). */
#ifndef CAIRN_STATS_H
#define CAIRN_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* name, help. Counters only go up. */
#define STATS_COUNTERS(X)                                                                         \
    X(requests, "replies queued to clients")                                                      \
    X(request_contexts_created, "per-request contexts created on a request's first callback")     \
    X(request_contexts_freed, "per-request contexts freed in the completion callback")            \
    X(replies_unqueued, "replies that could not be queued because the client was gone")           \
    X(early_replies, "replies decided from the headers alone; the connection is closed after")    \
    X(early_replies_direct, "early replies written to the socket by cairnd: libmicrohttpd's "   \
                            "buffer had no room left for their headers")                     \
    X(completions_without_request, "completion callbacks for connections that ended between "    \
                                   "requests (no context, not in terminations)")                \
    X(connections_accepted, "connections accepted")                                               \
    X(connections_refused, "connections closed at once: over max_connections(_per_ip)")          \
    X(connections_burst_accepted, "connections a worker took from the backlog after its own accept") \
    X(mhd_log_suppressed, "libmicrohttpd log lines dropped by the rate limit (20 a second)")     \
    X(config_reloads, "successful config reloads")                                                \
    X(config_reload_failures, "config reloads refused; the old config stayed")                    \
    X(watchdog_probes_failed, "self-probes of the worker pool that got no answer")             \
    X(store_log_appends, "records appended to the write-ahead log")                              \
    X(store_fsyncs, "fdatasync calls of the log by the committer (one per group commit)")        \
    X(store_fsync_writes, "writes made durable by those calls; / store_fsyncs = writes per fsync") \
    X(store_snapshots, "snapshots written")                                                       \
    X(store_snapshot_failures, "snapshots that failed; the previous one was kept")               \
    X(store_writes_enospc, "writes refused with 507 because the disk was full (rolled back)")   \
    X(store_writes_busy, "writes refused with 503 because store.max_pending_writes were waiting")

/* name, help. Gauges go up and down. */
#define STATS_GAUGES(X)                                                                           \
    X(open_connections, "connections open now")                                                   \
    X(connections_live, "connections let in by the accept policy and not yet closed "          \
                        "(max_connections counts these; open_connections plus those not yet "   \
                        "started)")                                                             \
    X(store_revision, "revision of the last write appended to the log")                          \
    X(store_durable_revision, "highest revision known to be on stable storage")                  \
    X(store_log_bytes, "bytes in the log segments a snapshot would free")                        \
    X(store_commit_queue, "writes waiting for their fsync")                                       \
    X(store_last_batch_writes, "writes made durable by the last group commit")                   \
    X(store_writes_pending, "writes admitted, not yet answered: what max_pending_writes bounds")  \
    X(store_read_only, "1 after an I/O error turned the store read-only until restart")          \
    X(store_snapshot_revision, "revision of the last snapshot")                                   \
    X(store_snapshot_unix_seconds, "wall-clock time the last snapshot finished")                 \
    X(store_snapshot_duration_ms, "time the last snapshot took to write")                         \
    X(store_snapshot_bytes, "size of the last snapshot file")                                     \
    X(store_recovery_ms, "time recovery took at start (snapshot load + log replay)")            \
    X(store_recovery_cut_bytes, "bytes recovery cut off the end of the log (torn tail or hole)") \
    X(store_recovery_cut_records, "valid records recovery cut off with a hole at the log's end")

/* name, help: libmicrohttpd's termination codes, in its order. */
#define STATS_TERMINATIONS(X)                                                                     \
    X(completed_ok, "the reply was sent")                                                         \
    X(with_error, "error while handling or sending (e.g. the peer reset mid-reply)")              \
    X(timeout_reached, "inactivity timeout")                                                      \
    X(daemon_shutdown, "closed by shutdown")                                                      \
    X(read_error, "the connection broke before the request was received")                        \
    X(client_abort, "the client closed while still sending the request")

struct stats {
#define X(name, help) atomic_uint_fast64_t name;
    STATS_COUNTERS(X)
    STATS_GAUGES(X)
#undef X
    atomic_uint_fast64_t terminations[6];
};

extern struct stats stats;

#define STATS_INC(name) atomic_fetch_add_explicit(&stats.name, 1, memory_order_relaxed)
#define STATS_DEC(name) atomic_fetch_sub_explicit(&stats.name, 1, memory_order_relaxed)
#define STATS_GET(name) atomic_load_explicit(&stats.name, memory_order_relaxed)
#define STATS_ADD(name, v) atomic_fetch_add_explicit(&stats.name, (v), memory_order_relaxed)
#define STATS_SET(name, v) atomic_store_explicit(&stats.name, (v), memory_order_relaxed)

/* Sizes the per-route table: 'nroutes' rows plus one for requests that matched none. */
void stats_init(size_t nroutes);
void stats_fini(void);
/* Counts one reply: 'route' is the route index, or nroutes for unmatched. */
void stats_count_reply(size_t route, int status);
void stats_count_termination(unsigned code);
/* The monotonic time stats_init ran, for uptime. */
uint64_t stats_started_usec(void);

/* Appends all figures as one JSON object. */
void stats_render_json(struct buf *b);
/* Appends all figures in the Prometheus text exposition format 0.0.4. */
void stats_render_prometheus(struct buf *b);

#endif
