/* src/stats.c -- see stats.h. */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "router.h"

struct stats stats;

/* class 0 = 1xx .. 4 = 5xx */
static atomic_uint_fast64_t (*route_counts)[5];
static size_t nroute_rows;
static uint64_t started_usec;

static const char *const classes[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

static const char *const termination_names[6] = {
#define X(name, help) #name,
    STATS_TERMINATIONS(X)
#undef X
};

static const char *const termination_help[6] = {
#define X(name, help) help,
    STATS_TERMINATIONS(X)
#undef X
};

void stats_init(size_t nroutes)
{
    nroute_rows = nroutes + 1;
    route_counts = xcalloc(nroute_rows, sizeof(*route_counts));
    started_usec = now_usec();
}

void stats_fini(void)
{
    free(route_counts);
    route_counts = NULL;
}

uint64_t stats_started_usec(void)
{
    return started_usec;
}

void stats_count_reply(size_t route, int status)
{
    int cls = status / 100 - 1;
    if (cls < 0 || cls > 4 || route >= nroute_rows)
        panic("stats_count_reply: route %zu status %d", route, status);
    atomic_fetch_add_explicit(&route_counts[route][cls], 1, memory_order_relaxed);
    STATS_INC(requests);
}

void stats_count_termination(unsigned code)
{
    if (code < ARRAY_LEN(stats.terminations))
        atomic_fetch_add_explicit(&stats.terminations[code], 1, memory_order_relaxed);
}

static uint64_t rss_bytes(void)
{
    unsigned long size, resident;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

static const char *route_name(size_t i)
{
    return i + 1 < nroute_rows ? router_label(i) : "unmatched";
}

struct computed {
    uint64_t generation, uptime, rss, in_flight, snapshot_age;
};

static void compute(struct computed *c)
{
    struct config *cfg = config_current();
    c->generation = cfg ? cfg->generation : 0;
    config_release(cfg);
    c->uptime = (now_usec() - started_usec) / 1000000;
    c->rss = rss_bytes();
    c->in_flight = STATS_GET(request_contexts_created) - STATS_GET(request_contexts_freed);
    /* since the last snapshot, or since start when there has been none */
    uint64_t snap = STATS_GET(store_snapshot_unix_seconds), now = (uint64_t)time(NULL);
    c->snapshot_age = snap != 0 && now > snap ? now - snap : snap != 0 ? 0 : c->uptime;
}

void stats_render_json(struct buf *b)
{
    struct computed c;
    compute(&c);
    buf_puts(b, "{\"counters\":{");
    const char *sep = "";
#define X(name, help)                                                                             \
    buf_printf(b, "%s\"" #name "\":%llu", sep, (unsigned long long)STATS_GET(name));              \
    sep = ",";
    STATS_COUNTERS(X)
#undef X
    buf_puts(b, "},\"gauges\":{");
    sep = "";
#define X(name, help)                                                                             \
    buf_printf(b, "%s\"" #name "\":%llu", sep, (unsigned long long)STATS_GET(name));              \
    sep = ",";
    STATS_GAUGES(X)
#undef X
    buf_printf(b,
               ",\"requests_in_flight\":%llu,\"config_generation\":%llu,\"uptime_seconds\":%llu,"
               "\"rss_bytes\":%llu,\"store_snapshot_age_seconds\":%llu},\"terminations\":{",
               (unsigned long long)c.in_flight, (unsigned long long)c.generation,
               (unsigned long long)c.uptime, (unsigned long long)c.rss,
               (unsigned long long)c.snapshot_age);
    for (size_t i = 0; i < 6; i++)
        buf_printf(b, "%s\"%s\":%llu", i ? "," : "", termination_names[i],
                   (unsigned long long)atomic_load(&stats.terminations[i]));
    buf_puts(b, "},\"routes\":{");
    for (size_t r = 0; r < nroute_rows; r++) {
        buf_printf(b, "%s", r ? "," : "");
        const char *name = route_name(r);
        buf_json_string(b, name, strlen(name));
        buf_puts(b, ":{");
        for (int k = 0; k < 5; k++)
            buf_printf(b, "%s\"%s\":%llu", k ? "," : "", classes[k],
                       (unsigned long long)atomic_load(&route_counts[r][k]));
        buf_puts(b, "}");
    }
    buf_puts(b, "}}");
}

static void prom_metric(struct buf *b, const char *name, const char *type, const char *help,
                        unsigned long long v)
{
    buf_printf(b, "# HELP cairn_%s %s\n# TYPE cairn_%s %s\ncairn_%s %llu\n", name, help, name,
               type, name, v);
}

void stats_render_prometheus(struct buf *b)
{
    struct computed c;
    compute(&c);
#define X(name, help) prom_metric(b, #name "_total", "counter", help, STATS_GET(name));
    STATS_COUNTERS(X)
#undef X
#define X(name, help) prom_metric(b, #name, "gauge", help, STATS_GET(name));
    STATS_GAUGES(X)
#undef X
    prom_metric(b, "requests_in_flight", "gauge", "request contexts not yet freed", c.in_flight);
    prom_metric(b, "config_generation", "gauge", "config generation; +1 per successful reload",
                c.generation);
    prom_metric(b, "uptime_seconds", "gauge", "seconds since start", c.uptime);
    prom_metric(b, "rss_bytes", "gauge", "resident set size", c.rss);
    prom_metric(b, "store_snapshot_age_seconds", "gauge",
                "seconds since the last snapshot (since start when there was none)",
                c.snapshot_age);

    buf_puts(b, "# HELP cairn_request_terminations_total how requests ended, by code:");
    for (size_t i = 0; i < 6; i++)
        buf_printf(b, " %s = %s;", termination_names[i], termination_help[i]);
    buf_puts(b, "\n# TYPE cairn_request_terminations_total counter\n");
    for (size_t i = 0; i < 6; i++)
        buf_printf(b, "cairn_request_terminations_total{code=\"%s\"} %llu\n",
                   termination_names[i],
                   (unsigned long long)atomic_load(&stats.terminations[i]));

    buf_puts(b, "# HELP cairn_http_responses_total replies by route and status class\n"
                "# TYPE cairn_http_responses_total counter\n");
    for (size_t r = 0; r < nroute_rows; r++)
        for (int k = 0; k < 5; k++)
            buf_printf(b, "cairn_http_responses_total{route=\"%s\",class=\"%s\"} %llu\n",
                       route_name(r), classes[k],
                       (unsigned long long)atomic_load(&route_counts[r][k]));
}
