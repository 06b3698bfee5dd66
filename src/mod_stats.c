/* src/mod_stats.c -- GET /metrics (Prometheus text) and GET {api_prefix}/_stats (JSON). */
#include "modules.h"
#include "stats.h"

static enum result get_metrics(struct request *req, struct reply *reply)
{
    struct buf b;
    (void)req;
    buf_init(&b, SIZE_MAX);
    stats_render_prometheus(&b);
    reply_body_buf(reply, &b);
    reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return RES_OK;
}

static enum result get_stats(struct request *req, struct reply *reply)
{
    struct buf b;
    (void)req;
    buf_init(&b, SIZE_MAX);
    stats_render_json(&b);
    reply_body_buf(reply, &b);
    return RES_OK;
}

static const struct route routes[] = {
    {METHOD_GET, "/metrics", get_metrics, 0},
    {METHOD_GET, "/_stats", get_stats, ROUTE_API},
    {0, NULL, NULL, 0},
};

const struct module mod_stats = {
    .name = "stats",
    .routes = routes,
};
