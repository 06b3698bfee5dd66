/* tests/unit/test_config.c -- src/config.c: the settings table, file:line errors, publishing. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "log.h"
#include "util.h"

static char dir[] = "/tmp/cairn-test-config-XXXXXX";

static char *write_conf(const char *name, const char *text)
{
    char *path = xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* Bad files: each must be refused with "<path>:<line>: ..." naming the problem. */
static const struct {
    const char *name;
    const char *text;
    int line;
    const char *want; /* substring of the message */
} bad[] = {
    {"syntax", "threads = 2;\nlisten_port = = 80;\n", 2, "syntax error"},
    {"unknown_key", "threads = 2;\nlisten_prot = 80;\n", 2, "'listen_prot' is not a known setting"},
    {"unknown_group", "bogus = { a = 1; };\n", 1, "'bogus' is not a known group"},
    {"unknown_in_group", "store = {\n  sync = \"none\";\n  snyc = 1;\n};\n", 3,
     "'store.snyc' is not a known setting"},
    {"wrong_type_int", "listen_port = \"8080\";\n", 1, "'listen_port' must be an integer"},
    {"wrong_type_float", "listen_port = 1e3;\n", 1, "must be an integer"},
    {"wrong_type_string", "api_prefix = 5;\n", 1, "'api_prefix' must be a string"},
    {"wrong_type_bool", "collections = { auto_create = 1; };\n", 1, "must be true or false"},
    {"out_of_range", "\n\nlisten_port = 99999;\n", 3,
     "'listen_port' is 99999 but must be between 0 and 65535"},
    {"negative", "threads = -1;\n", 1, "between 1 and 64"},
    {"wrapped_int", "listen_port = 99999999999;\n", 1, "out of range"},
    {"wrapped_int_2e31", "max_body_bytes = 2147483648;\n", 1, "out of range"},
    {"wrapped_int_to_zero", "threads = 4294967296;\n", 1, "out of range"},
    {"int64_too_big", "listen_port = 99999999999L;\n", 1, "between 0 and 65535"},
    {"duplicate", "threads = 2;\nthreads = 3;\n", 2, "duplicate"},
    {"bad_enum", "log_level = \"loud\";\n", 1, "must be one of \"error\""},
    {"bad_address", "listen_address = \"localhost\";\n", 1, "numeric IPv4 or IPv6"},
    {"bad_prefix", "api_prefix = \"v1/\";\n", 1, "must look like"},
    {"include", "threads = 2;\n  @include \"/etc/hostname\"\n", 2, "@include is not allowed"},
    {"empty_data_dir", "store = { data_dir = \"\"; };\n", 1, "must not be empty"},
};

static void test_bad_files(void)
{
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char err[CONFIG_ERR_MAX] = "";
        char *path = write_conf(bad[i].name, bad[i].text);
        char *prefix = xasprintf("%s:%d: ", path, bad[i].line);
        struct config *c = config_load(path, err, sizeof(err));
        int ok = c == NULL && strncmp(err, prefix, strlen(prefix)) == 0 &&
                 strstr(err, bad[i].want) != NULL;
        if (!ok)
            printf("#   case %s: got '%s'\n", bad[i].name, err);
        CHECK(ok);
        config_release(c);
        free(prefix);
        free(path);
    }
}

static void test_missing_file(void)
{
    char err[CONFIG_ERR_MAX];
    char *path = xasprintf("%s/nope.conf", dir);
    CHECK(config_load(path, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "nope.conf: cannot open: No such file or directory") != NULL);
    free(path);
}

static void test_defaults(void)
{
    char err[CONFIG_ERR_MAX];
    char *path = write_conf("empty", "");
    struct config *c = config_load(path, err, sizeof(err));
    CHECK(c != NULL);
    if (c == NULL)
        return;
    CHECK(strcmp(c->listen_address, "127.0.0.1") == 0);
    CHECK(c->listen_port == 8080 && c->threads == 2 && c->max_body_bytes == 1 << 20);
    CHECK(c->max_json_depth == 64 && c->sync == SYNC_ALWAYS && c->auto_create);
    CHECK(strcmp(c->api_prefix, "/v1") == 0 && strcmp(c->data_dir, "/var/lib/cairn") == 0);
    CHECK(LOG_ERR + c->log_level == LOG_INFO);
    config_release(c);
    free(path);
}

static void test_values(void)
{
    char err[CONFIG_ERR_MAX];
    char *path = write_conf("values", "listen_address = \"::1\";\nlisten_port = 0x1F90;\n"
                                      "max_body_bytes = 1048576L;\nlog_level = \"debug\";\n"
                                      "store = { sync = \"periodic\"; compact_bytes = 1099511627776L; };\n"
                                      "collections = { auto_create = false; };\n");
    struct config *c = config_load(path, err, sizeof(err));
    if (c == NULL)
        printf("#   %s\n", err);
    CHECK(c != NULL);
    if (c == NULL)
        return;
    CHECK(strcmp(c->listen_address, "::1") == 0 && c->listen_port == 8080);
    CHECK(c->max_body_bytes == 1048576 && LOG_ERR + c->log_level == LOG_DEBUG);
    CHECK(c->sync == SYNC_PERIODIC && c->compact_bytes == INT64_C(1) << 40 && !c->auto_create);
    config_release(c);
    free(path);
}

static void test_shipped_config(void)
{
    char err[CONFIG_ERR_MAX];
    struct config *c = config_load("conf/cairnd.conf", err, sizeof(err));
    if (c == NULL)
        printf("#   %s\n", err);
    CHECK(c != NULL);
    config_release(c);
}

static void test_publish(void)
{
    char err[CONFIG_ERR_MAX];
    char *p1 = write_conf("gen1", "listen_port = 1000;\nmax_body_bytes = 100;\n");
    char *p2 = write_conf("gen2", "listen_port = 2000;\nmax_body_bytes = 200;\n");
    config_publish(config_load(p1, err, sizeof(err)));
    struct config *held = config_current();
    CHECK(held->generation == 1 && held->max_body_bytes == 100);
    config_publish(config_load(p2, err, sizeof(err)));
    struct config *now = config_current();
    /* reloadable keys change; restart-only keys keep the running value */
    CHECK(now->generation == 2 && now->max_body_bytes == 200 && now->listen_port == 1000);
    /* a reference taken earlier still sees the old, unchanged snapshot */
    CHECK(held->generation == 1 && held->max_body_bytes == 100);
    config_release(held);
    config_release(now);
    config_shutdown();
    CHECK(config_current() == NULL);
    free(p1);
    free(p2);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"config/bad_files", test_bad_files},
        {"config/missing_file", test_missing_file},
        {"config/defaults", test_defaults},
        {"config/values", test_values},
        {"config/shipped_config", test_shipped_config},
        {"config/publish", test_publish},
        {NULL, NULL},
    };
    if (mkdtemp(dir) == NULL)
        return 2;
    log_set_level(LOG_ERR); /* config_publish warns about restart-only keys */
    int rc = run_cases(cases);
    char *cmd = xasprintf("rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = 1;
    free(cmd);
    return rc;
}
