/* tests/unit/test_reply.c -- src/reply.c: the one result -> status map and problem+json bodies. */
#include <inttypes.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "reply.h"

static void test_status_map(void)
{
    static const struct {
        enum result rc;
        int status;
    } rows[] = {
        {RES_OK, 200},
        {RES_BAD_REQUEST, 400},
        {RES_NOT_FOUND, 404},
        {RES_METHOD_NOT_ALLOWED, 405},
        {RES_CONFLICT, 409},
        {RES_PRECONDITION_FAILED, 412},
        {RES_TOO_LARGE, 413},
        {RES_URI_TOO_LONG, 414},
        {RES_UNSUPPORTED_MEDIA, 415},
        {RES_HEADERS_TOO_LARGE, 431},
        {RES_INTERNAL, 500},
        {RES_UNAVAILABLE, 503},
        {RES_INSUFFICIENT_STORAGE, 507},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++)
        CHECK(reply_status(rows[i].rc) == rows[i].status);
}

static void test_problem_body(void)
{
    struct reply r;
    json_error_t err;
    reply_init(&r);
    CHECK(reply_fail(&r, RES_CONFLICT, "id %d \"taken\"", 7) == RES_CONFLICT);
    reply_problem(&r, RES_CONFLICT, "rid-1", "/v1/posts");
    CHECK(r.status == 409);
    CHECK(strcmp(r.content_type, "application/problem+json") == 0);
    json_t *doc = json_loadb(r.body, r.len, 0, &err);
    CHECK(doc != NULL);
    CHECK(json_integer_value(json_object_get(doc, "status")) == 409);
    CHECK(strcmp(json_string_value(json_object_get(doc, "title")), "Conflict") == 0);
    CHECK(strcmp(json_string_value(json_object_get(doc, "detail")), "id 7 \"taken\"") == 0);
    CHECK(strcmp(json_string_value(json_object_get(doc, "instance")), "/v1/posts") == 0);
    CHECK(strcmp(json_string_value(json_object_get(doc, "request_id")), "rid-1") == 0);
    CHECK(strcmp(json_string_value(json_object_get(doc, "type")), "about:blank") == 0);
    json_decref(doc);
    reply_cleanup(&r);
}

static int released;

static void count_release(void *cls)
{
    (void)cls;
    released++;
}

static void test_body_ownership(void)
{
    struct reply r;
    static const char shared[] = "{\"a\":1}";
    reply_init(&r);
    reply_body_borrow(&r, shared, sizeof(shared) - 1, count_release, NULL);
    CHECK(released == 0);
    reply_body_copy(&r, "x", 1); /* replacing a borrowed body releases it once */
    CHECK(released == 1);
    reply_header(&r, "ETag", "\"%d\"", 12);
    CHECK(r.nheaders == 1 && strcmp(r.headers[0].value, "\"12\"") == 0);
    reply_cleanup(&r);
    CHECK(released == 1 && r.body == NULL && r.nheaders == 0);
    reply_body_borrow(&r, shared, sizeof(shared) - 1, count_release, NULL);
    reply_cleanup(&r);
    CHECK(released == 2);
}

static void test_header_u64(void)
{
    static const uint64_t values[] = {0, 1, 9, 10, 99, 100, 12345, 4294967295u, 4294967296u,
                                      UINT64_MAX / 10, UINT64_MAX - 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        struct reply r;
        char plain[32], quoted[32];
        snprintf(plain, sizeof(plain), "%" PRIu64, values[i]);
        snprintf(quoted, sizeof(quoted), "\"%" PRIu64 "\"", values[i]);
        reply_init(&r);
        reply_header_u64(&r, "X-Revision", values[i], false);
        reply_header_u64(&r, "ETag", values[i], true);
        CHECK(r.nheaders == 2);
        CHECK(strcmp(r.headers[0].name, "X-Revision") == 0);
        CHECK(strcmp(r.headers[0].value, plain) == 0);
        CHECK(strcmp(r.headers[1].name, "ETag") == 0);
        CHECK(strcmp(r.headers[1].value, quoted) == 0);
        reply_cleanup(&r);
    }
}

int main(void)
{
    static const struct test_case cases[] = {
        {"reply/status_map", test_status_map},
        {"reply/problem_body", test_problem_body},
        {"reply/body_ownership", test_body_ownership},
        {"reply/header_u64 equals printf's", test_header_u64},
        {NULL, NULL},
    };
    return run_cases(cases);
}
