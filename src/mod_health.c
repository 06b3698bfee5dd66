/* src/mod_health.c -- GET /healthz (liveness) and GET /readyz (readiness). */
#include <string.h>

#include "http.h"
#include "modules.h"
#include "store/durable.h"

static const char alive[] = "{\"status\":\"ok\"}";

static enum result get_healthz(struct request *req, struct reply *reply)
{
    (void)req;
    reply_body_copy(reply, alive, sizeof(alive) - 1);
    return RES_OK;
}

static enum result get_readyz(struct request *req, struct reply *reply)
{
    (void)req;
    switch (http_phase()) {
    case PHASE_READY: {
        char why[256];
        if (durable_degraded(why, sizeof(why)))
            return reply_fail(reply, RES_UNAVAILABLE, "degraded: writes are refused: %s", why);
        reply_body_copy(reply, "{\"status\":\"ready\"}", 18);
        return RES_OK;
    }
    case PHASE_STARTING:
        reply_header(reply, "Retry-After", "1");
        return reply_fail(reply, RES_UNAVAILABLE, "starting");
    case PHASE_DRAINING:
        return reply_fail(reply, RES_UNAVAILABLE, "draining: shutting down");
    }
    return reply_fail(reply, RES_INTERNAL, "unknown phase");
}

static const struct route routes[] = {
    {METHOD_GET, "/healthz", get_healthz, 0},
    {METHOD_GET, "/readyz", get_readyz, 0},
    {0, NULL, NULL, 0},
};

const struct module mod_health = {
    .name = "health",
    .routes = routes,
};
