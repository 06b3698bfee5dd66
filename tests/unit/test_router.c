/* tests/unit/test_router.c -- src/router.c: matching, 404 vs 405 with Allow, parameters. */
#include <string.h>

#include "check.h"
#include "router.h"

static enum result h_list(struct request *q, struct reply *r)
{
    (void)q;
    (void)r;
    return RES_OK;
}
#define h_post h_list
#define h_get h_list
#define h_del h_list
#define h_stats h_list
#define h_health h_list
#define h_root h_list

static const struct route api_routes[] = {
    {METHOD_GET, "/", h_root, ROUTE_API},
    {METHOD_GET, "/_stats", h_stats, ROUTE_API},
    {METHOD_GET, "/{collection}", h_list, ROUTE_API},
    {METHOD_POST, "/{collection}", h_post, ROUTE_API | ROUTE_BODY},
    {METHOD_GET, "/{collection}/{id}", h_get, ROUTE_API},
    {METHOD_DELETE, "/{collection}/{id}", h_del, ROUTE_API},
    {0, NULL, NULL, 0},
};
static const struct route plain_routes[] = {
    {METHOD_GET, "/healthz", h_health, 0},
    {0, NULL, NULL, 0},
};
static const struct module m_api = {.name = "api", .routes = api_routes};
static const struct module m_plain = {.name = "plain", .routes = plain_routes};
static const struct module *const mods[] = {&m_plain, &m_api, NULL};

static const struct {
    const char *method;
    const char *path;
    enum router_outcome outcome;
    const char *label; /* FOUND: the route's label */
    const char *p0, *p1;
    const char *allow; /* BAD_METHOD */
} rows[] = {
    {"GET", "/healthz", ROUTER_FOUND, "GET /healthz", NULL, NULL, NULL},
    {"HEAD", "/healthz", ROUTER_FOUND, "GET /healthz", NULL, NULL, NULL},
    {"POST", "/healthz", ROUTER_BAD_METHOD, NULL, NULL, NULL, "GET, HEAD"},
    {"GET", "/healthz/x", ROUTER_NOT_FOUND, NULL, NULL, NULL, NULL},
    {"GET", "/", ROUTER_NOT_FOUND, NULL, NULL, NULL, NULL},
    {"GET", "/api", ROUTER_FOUND, "GET /api", NULL, NULL, NULL},
    {"GET", "/api/_stats", ROUTER_FOUND, "GET /api/_stats", NULL, NULL, NULL},
    {"POST", "/api/_stats", ROUTER_BAD_METHOD, NULL, NULL, NULL, "GET, HEAD"},
    {"GET", "/api/posts", ROUTER_FOUND, "GET /api/{collection}", "posts", NULL, NULL},
    {"POST", "/api/posts", ROUTER_FOUND, "POST /api/{collection}", "posts", NULL, NULL},
    {"PUT", "/api/posts", ROUTER_BAD_METHOD, NULL, NULL, NULL, "GET, HEAD, POST"},
    {"GET", "/api/posts/7", ROUTER_FOUND, "GET /api/{collection}/{id}", "posts", "7", NULL},
    {"DELETE", "/api/posts/a-b_c.d~e", ROUTER_FOUND, "DELETE /api/{collection}/{id}", "posts",
     "a-b_c.d~e", NULL},
    {"PATCH", "/api/posts/7", ROUTER_BAD_METHOD, NULL, NULL, NULL, "GET, HEAD, DELETE"},
    {"BREW", "/api/posts/7", ROUTER_BAD_METHOD, NULL, NULL, NULL, "GET, HEAD, DELETE"},
    {"GET", "/api/posts/7/x", ROUTER_NOT_FOUND, NULL, NULL, NULL, NULL},
    {"GET", "/api/posts/", ROUTER_BAD_PARAM, NULL, NULL, NULL, NULL},
    {"GET", "/api/po sts", ROUTER_BAD_PARAM, NULL, NULL, NULL, NULL},
    {"GET", "/api/posts/a%2Fb", ROUTER_BAD_PARAM, NULL, NULL, NULL, NULL},
    {"GET", "/other/posts", ROUTER_NOT_FOUND, NULL, NULL, NULL, NULL},
    {"GET", "/a/b/c/d/e/f/g/h/i/j", ROUTER_NOT_FOUND, NULL, NULL, NULL, NULL},
};

static void test_table(void)
{
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char path[256];
        struct router_match m;
        snprintf(path, sizeof(path), "%s", rows[i].path);
        enum router_outcome o = router_find(path, router_method(rows[i].method), &m);
        if (o != rows[i].outcome) {
            printf("#   row %zu: %s %s gave %d\n", i, rows[i].method, rows[i].path, (int)o);
            CHECK(o == rows[i].outcome);
            continue;
        }
        if (o == ROUTER_FOUND) {
            CHECK(strcmp(router_label(m.index), rows[i].label) == 0);
            CHECK(router_route(m.index) == m.route);
            CHECK(rows[i].p0 == NULL || strcmp(m.params[0], rows[i].p0) == 0);
            CHECK(rows[i].p1 == NULL || strcmp(m.params[1], rows[i].p1) == 0);
        }
        if (o == ROUTER_BAD_METHOD) {
            char allow[96];
            router_allow_string(m.allow, allow, sizeof(allow));
            if (strcmp(allow, rows[i].allow) != 0)
                printf("#   row %zu: Allow '%s'\n", i, allow);
            CHECK(strcmp(allow, rows[i].allow) == 0);
        }
    }
}

static void test_long_param(void)
{
    char path[400] = "/api/posts/";
    size_t n = strlen(path);
    memset(path + n, 'a', ROUTER_MAX_PARAM_LEN);
    path[n + ROUTER_MAX_PARAM_LEN] = '\0';
    char copy[400];
    struct router_match m;
    strcpy(copy, path);
    CHECK(router_find(copy, METHOD_GET, &m) == ROUTER_FOUND);
    strcat(path, "a");
    strcpy(copy, path);
    CHECK(router_find(copy, METHOD_GET, &m) == ROUTER_BAD_PARAM);
    CHECK(m.bad_param != NULL && strcmp(m.bad_param, "{id}") == 0);
}

static void test_count(void)
{
    CHECK(router_count() == 7);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"router/table", test_table},
        {"router/long_param", test_long_param},
        {"router/count", test_count},
        {NULL, NULL},
    };
    router_init(mods, "/api");
    int rc = run_cases(cases);
    router_fini();
    return rc;
}
