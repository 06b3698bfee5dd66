/* tests/unit/test_util.c -- src/util.c: bounded buffers, JSON string escaping, number parsing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "util.h"

static void test_buf_limit(void)
{
    struct buf b;
    buf_init(&b, 8);
    CHECK(buf_append(&b, "1234", 4) == 0);
    CHECK(buf_append(&b, "5678", 4) == 0);
    CHECK(buf_append(&b, "9", 1) == -E2BIG);
    CHECK(b.len == 8 && memcmp(b.data, "12345678", 8) == 0 && b.data[8] == '\0');
    CHECK(buf_printf(&b, "%d", 1) == -E2BIG);
    buf_cleanup(&b);
    CHECK(b.data == NULL && b.len == 0);
}

static void test_buf_steal(void)
{
    struct buf b;
    size_t len = 99;
    buf_init(&b, 100);
    char *empty = buf_steal(&b, &len);
    CHECK(empty != NULL && len == 0 && empty[0] == '\0');
    free(empty);
    buf_printf(&b, "%s-%d", "x", 42);
    char *p = buf_steal(&b, &len);
    CHECK(len == 4 && strcmp(p, "x-42") == 0);
    CHECK(b.data == NULL && b.len == 0);
    free(p);
}

static void test_json_string(void)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } rows[] = {
        {"plain", 5, "\"plain\""},
        {"q\"b\\", 4, "\"q\\\"b\\\\\""},
        {"a\nb\x01", 4, "\"a\\u000ab\\u0001\""},
        {"", 0, "\"\""},
        {"caf\xc3\xa9", 5, "\"caf\xc3\xa9\""},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct buf b;
        buf_init(&b, 1000);
        CHECK(buf_json_string(&b, rows[i].in, rows[i].len) == 0);
        CHECK(b.data != NULL && strcmp(b.data, rows[i].out) == 0);
        buf_cleanup(&b);
    }
}

static void test_parse_i64(void)
{
    static const struct {
        const char *in;
        int64_t min, max;
        int rc;
        int64_t v;
    } rows[] = {
        {"0", 0, 10, 0, 0},        {"10", 0, 10, 0, 10},     {"11", 0, 10, -ERANGE, 0},
        {"-1", 0, 10, -ERANGE, 0}, {"-5", -10, 10, 0, -5},   {"", 0, 10, -EINVAL, 0},
        {" 1", 0, 10, -EINVAL, 0}, {"1 ", 0, 10, -EINVAL, 0}, {"1x", 0, 10, -EINVAL, 0},
        {"+1", 0, 10, -EINVAL, 0}, {"0x10", 0, 100, -EINVAL, 0},
        {"99999999999999999999", 0, INT64_MAX, -ERANGE, 0},
        {"9223372036854775807", 0, INT64_MAX, 0, INT64_MAX},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        int64_t v = -12345;
        int rc = parse_i64(rows[i].in, rows[i].min, rows[i].max, &v);
        CHECK(rc == rows[i].rc);
        if (rc == 0)
            CHECK(v == rows[i].v);
        else
            CHECK(v == -12345);
    }
}

int main(void)
{
    static const struct test_case cases[] = {
        {"util/buf_limit", test_buf_limit},
        {"util/buf_steal", test_buf_steal},
        {"util/json_string", test_json_string},
        {"util/parse_i64", test_parse_i64},
        {NULL, NULL},
    };
    return run_cases(cases);
}
