/* src/config.c -- see config.h. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define CONFIG_FILE_MAX (1 << 20)

enum set_type { SET_INT, SET_BOOL, SET_STRING, SET_ENUM };

enum { SET_RESTART = 1 };

struct setting {
    const char *key; /* dotted path: "store.sync" lives in group "store" */
    enum set_type type;
    size_t off;
    int64_t def, min, max; /* SET_INT, SET_BOOL (def), SET_ENUM (def index) */
    const char *def_str;   /* SET_STRING */
    const char *const *choices;
    /* SET_STRING: returns NULL when 's' is acceptable, else why not. */
    const char *(*check)(const char *s);
    unsigned flags;
    const char *help;
};

static const char *const log_levels[] = {"error", "warning", "notice", "info", "debug", NULL};
static const char *const sync_policies[] = {"always", "periodic", "none", NULL};

static const char *check_address(const char *s);
static const char *check_prefix(const char *s);
static const char *check_path(const char *s);
static const char *check_optional_path(const char *s);

#define OFF(f) offsetof(struct config, f)

/* The one table of settings. Order is the order of config_describe(). */
static const struct setting settings[] = {
    {"listen_address", SET_STRING, OFF(listen_address), 0, 0, 0, "127.0.0.1", NULL,
     check_address, SET_RESTART, "IPv4 or IPv6 address to listen on"},
    {"listen_port", SET_INT, OFF(listen_port), 8080, 0, 65535, NULL, NULL, NULL, SET_RESTART,
     "TCP port; 0 picks a free one (tests)"},
    {"threads", SET_INT, OFF(threads), 2, 1, 64, NULL, NULL, NULL, SET_RESTART,
     "worker threads in the HTTP pool"},
    {"max_connections", SET_INT, OFF(max_connections), 1024, 1, 65536, NULL, NULL, NULL,
     SET_RESTART, "open connections at most, over all workers"},
    {"max_connections_per_ip", SET_INT, OFF(max_connections_per_ip), 0, 0, 65536, NULL, NULL,
     NULL, SET_RESTART, "open connections per client address; 0 = no limit"},
    {"connection_timeout", SET_INT, OFF(connection_timeout), 15, 0, 3600, NULL, NULL, NULL,
     SET_RESTART, "seconds of inactivity before a connection is closed; 0 = never"},
    {"max_header_bytes", SET_INT, OFF(max_header_bytes), 8192, 4096, 1 << 20, NULL, NULL, NULL,
     SET_RESTART, "request line + headers at most (larger: 431)"},
    {"api_prefix", SET_STRING, OFF(api_prefix), 0, 0, 0, "/v1", NULL, check_prefix, SET_RESTART,
     "path prefix of the collections API"},
    {"max_body_bytes", SET_INT, OFF(max_body_bytes), 1 << 20, 1, 64 << 20, NULL, NULL, NULL, 0,
     "request body at most (larger: 413)"},
    {"max_json_depth", SET_INT, OFF(max_json_depth), 64, 1, 512, NULL, NULL, NULL, 0,
     "nesting depth of a JSON body at most (deeper: 400)"},
    {"shutdown_timeout", SET_INT, OFF(shutdown_timeout), 10, 0, 3600, NULL, NULL, NULL, 0,
     "seconds in-flight requests get to finish on SIGTERM"},
    {"log_level", SET_ENUM, OFF(log_level), 3, 0, 0, NULL, log_levels, NULL, 0,
     "error, warning, notice, info or debug"},
    {"collections.auto_create", SET_BOOL, OFF(auto_create), 1, 0, 1, NULL, NULL, NULL, 0,
     "a write to an unknown collection creates it"},
    {"store.data_dir", SET_STRING, OFF(data_dir), 0, 0, 0, "/var/lib/cairn", NULL, check_path,
     SET_RESTART, "directory of the log and snapshots"},
    {"store.sync", SET_ENUM, OFF(sync), SYNC_ALWAYS, 0, 0, NULL, sync_policies, NULL, SET_RESTART,
     "always, periodic or none"},
    {"store.sync_interval_ms", SET_INT, OFF(sync_interval_ms), 1000, 1, 60000, NULL, NULL, NULL,
     SET_RESTART, "fsync interval under sync = \"periodic\""},
    {"store.compact_bytes", SET_INT, OFF(compact_bytes), 64 << 20, 1 << 16, INT64_C(1) << 40,
     NULL, NULL, NULL, SET_RESTART, "log size that triggers a snapshot"},
    {"store.max_pending_writes", SET_INT, OFF(max_pending_writes), 512, 1, 1 << 20, NULL, NULL,
     NULL, SET_RESTART, "writes waiting for their fsync at most (more: 503 + Retry-After)"},
    {"store.seed_file", SET_STRING, OFF(seed_file), 0, 0, 0, "", NULL, check_optional_path,
     SET_RESTART, "db.json loaded when the store is empty; \"\" = none"},
};

static pthread_rwlock_t cur_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct config *cur; /* guarded by cur_lock; the config itself is immutable */

static const char *check_address(const char *s)
{
    unsigned char addr[16];
    if (inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1)
        return NULL;
    return "must be a numeric IPv4 or IPv6 address";
}

static const char *check_prefix(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || n > 64 || s[0] != '/' || s[n - 1] == '/')
        return "must look like \"/v1\": start with '/', not end with one, 2 to 64 characters";
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '/' && *p != '-' && *p != '_')
            return "may hold only letters, digits, '/', '-' and '_'";
    if (strstr(s, "//") != NULL)
        return "must not contain an empty segment";
    return NULL;
}

static const char *check_path(const char *s)
{
    if (s[0] == '\0')
        return "must not be empty";
    return check_optional_path(s);
}

static const char *check_optional_path(const char *s)
{
    if (strlen(s) > 4000)
        return "is too long";
    return NULL;
}

static void *field(struct config *c, const struct setting *s)
{
    return (char *)c + s->off;
}

static void set_defaults(struct config *c)
{
    for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
        const struct setting *s = &settings[i];
        switch (s->type) {
        case SET_INT:
        case SET_ENUM:
            *(int64_t *)field(c, s) = s->def;
            break;
        case SET_BOOL:
            *(bool *)field(c, s) = s->def != 0;
            break;
        case SET_STRING:
            *(char **)field(c, s) = xstrdup(s->def_str);
            break;
        }
    }
}

static void free_strings(struct config *c)
{
    for (size_t i = 0; i < ARRAY_LEN(settings); i++)
        if (settings[i].type == SET_STRING)
            free(*(char **)field(c, &settings[i]));
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct buf b;
    buf_init(&b, CONFIG_FILE_MAX);
    char chunk[4096];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = buf_append(&b, chunk, n);
    int ioerr = ferror(f);
    fclose(f);
    if (rc != 0 || ioerr) {
        snprintf(err, errlen, "%s: %s", path,
                 rc != 0 ? "larger than 1 MiB" : "read error");
        buf_cleanup(&b);
        return NULL;
    }
    return buf_steal(&b, len);
}

/* Returns the text of line 'line' (1-based) as a pointer into 'text' and its length. */
static const char *line_text(const char *text, unsigned line, size_t *len)
{
    const char *p = text;
    for (unsigned i = 1; i < line && p != NULL; i++) {
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    if (p == NULL)
        return NULL;
    const char *e = strchr(p, '\n');
    *len = e ? (size_t)(e - p) : strlen(p);
    return p;
}

/*
 * libconfig 1.5 stores an integer literal that does not fit 32 bits wrapped
 * (99999999999 reads as 1215752191) and calls it CONFIG_TYPE_INT. Re-read the
 * literal from the source line and compare: 1 if it matches, 0 if not.
 */
static int int_literal_matches(const char *text, unsigned line, const char *name, int64_t stored)
{
    size_t len, nlen = strlen(name);
    const char *l = line_text(text, line, &len);
    if (l == NULL)
        return 1;
    for (const char *p = l; p + nlen <= l + len; p++) {
        if (memcmp(p, name, nlen) != 0 || (p > l && (isalnum((unsigned char)p[-1]) ||
                                                     p[-1] == '_' || p[-1] == '-')))
            continue;
        const char *q = p + nlen;
        while (q < l + len && (*q == ' ' || *q == '\t'))
            q++;
        if (q >= l + len || (*q != '=' && *q != ':'))
            continue;
        q++;
        while (q < l + len && (*q == ' ' || *q == '\t'))
            q++;
        char lit[64];
        size_t k = 0;
        while (q < l + len && k < sizeof(lit) - 1 && (isalnum((unsigned char)*q) || *q == '-' ||
                                                       *q == '+'))
            lit[k++] = *q++;
        lit[k] = '\0';
        if (k > 0 && (lit[k - 1] == 'L' || lit[k - 1] == 'l'))
            lit[--k] = '\0';
        int hex = (lit[0] == '0' && (lit[1] == 'x' || lit[1] == 'X'));
        char *end;
        errno = 0;
        long long v = strtoll(lit, &end, hex ? 16 : 10);
        if (*end != '\0')
            return 1; /* not a literal we understand; libconfig parsed it */
        if (hex && errno == ERANGE) {
            /* hex literals are bit patterns in libconfig; compare unsigned */
            errno = 0;
            unsigned long long u = strtoull(lit, &end, 16);
            return errno == 0 && (int64_t)u == stored;
        }
        return errno == 0 && v == stored;
    }
    return 1;
}

static int fail(char *err, size_t errlen, const char *path, config_setting_t *s,
                const char *key, const char *why)
{
    snprintf(err, errlen, "%s:%u: '%s' %s", path, s ? config_setting_source_line(s) : 0, key,
             why);
    return -1;
}

static const struct setting *find_setting(const char *key)
{
    for (size_t i = 0; i < ARRAY_LEN(settings); i++)
        if (strcmp(settings[i].key, key) == 0)
            return &settings[i];
    return NULL;
}

static int is_group_name(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < ARRAY_LEN(settings); i++)
        if (strncmp(settings[i].key, name, n) == 0 && settings[i].key[n] == '.')
            return 1;
    return 0;
}

/* Rejects any setting the table does not name (a typo must not fall back to a default). */
static int check_unknown(config_setting_t *group, const char *prefix, const char *path,
                         char *err, size_t errlen)
{
    int n = config_setting_length(group);
    for (int i = 0; i < n; i++) {
        config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(s);
        char key[256];
        snprintf(key, sizeof(key), "%s%s", prefix, name ? name : "?");
        if (config_setting_type(s) == CONFIG_TYPE_GROUP) {
            if (!is_group_name(key))
                return fail(err, errlen, path, s, key, "is not a known group");
            char sub[260];
            snprintf(sub, sizeof(sub), "%s.", key);
            if (check_unknown(s, sub, path, err, errlen) != 0)
                return -1;
        } else if (find_setting(key) == NULL) {
            return fail(err, errlen, path, s, key, "is not a known setting");
        }
    }
    return 0;
}

static int read_setting(struct config *c, const struct setting *def, config_setting_t *s,
                        const char *text, const char *path, char *err, size_t errlen)
{
    int type = config_setting_type(s);
    char why[256];

    switch (def->type) {
    case SET_INT: {
        if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
            return fail(err, errlen, path, s, def->key, "must be an integer");
        int64_t v = config_setting_get_int64(s);
        if (type == CONFIG_TYPE_INT &&
            !int_literal_matches(text, config_setting_source_line(s), config_setting_name(s), v))
            return fail(err, errlen, path, s, def->key, "is not a 32-bit integer (out of range)");
        if (v < def->min || v > def->max) {
            snprintf(why, sizeof(why), "is %lld but must be between %lld and %lld",
                     (long long)v, (long long)def->min, (long long)def->max);
            return fail(err, errlen, path, s, def->key, why);
        }
        *(int64_t *)field(c, def) = v;
        return 0;
    }
    case SET_BOOL:
        if (type != CONFIG_TYPE_BOOL)
            return fail(err, errlen, path, s, def->key, "must be true or false");
        *(bool *)field(c, def) = config_setting_get_bool(s) != 0;
        return 0;
    case SET_STRING: {
        if (type != CONFIG_TYPE_STRING)
            return fail(err, errlen, path, s, def->key, "must be a string");
        const char *v = config_setting_get_string(s);
        const char *bad = def->check ? def->check(v) : NULL;
        if (bad != NULL)
            return fail(err, errlen, path, s, def->key, bad);
        char **dst = field(c, def);
        free(*dst);
        *dst = xstrdup(v);
        return 0;
    }
    case SET_ENUM: {
        if (type != CONFIG_TYPE_STRING)
            return fail(err, errlen, path, s, def->key, "must be a string");
        const char *v = config_setting_get_string(s);
        for (int64_t i = 0; def->choices[i] != NULL; i++) {
            if (strcmp(v, def->choices[i]) == 0) {
                *(int64_t *)field(c, def) = i;
                return 0;
            }
        }
        size_t off = (size_t)snprintf(why, sizeof(why), "must be one of");
        for (int i = 0; def->choices[i] != NULL && off < sizeof(why); i++)
            off += (size_t)snprintf(why + off, sizeof(why) - off, "%s \"%s\"", i ? "," : "",
                                    def->choices[i]);
        return fail(err, errlen, path, s, def->key, why);
    }
    }
    panic("config: setting %s has unknown type %d", def->key, (int)def->type);
}

/* libconfig follows @include with the daemon's rights; the config language here has none. */
static int reject_include(const char *text, const char *path, char *err, size_t errlen)
{
    unsigned line = 1;
    for (const char *p = text; *p; line++) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "@include", 8) == 0) {
            snprintf(err, errlen, "%s:%u: @include is not allowed", path, line);
            return -1;
        }
        p = strchr(p, '\n');
        if (p == NULL)
            break;
        p++;
    }
    return 0;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
    config_t cfg;
    size_t len;
    struct config *c = NULL;
    char *text = read_file(path, &len, err, errlen);

    if (text == NULL)
        return NULL;
    if (strlen(text) != len) {
        snprintf(err, errlen, "%s: contains a NUL byte", path);
        free(text);
        return NULL;
    }
    if (reject_include(text, path, err, errlen) != 0) {
        free(text);
        return NULL;
    }
    config_init(&cfg);
    if (config_read_string(&cfg, text) != CONFIG_TRUE) {
        snprintf(err, errlen, "%s:%d: %s", path, config_error_line(&cfg), config_error_text(&cfg));
        goto out_destroy;
    }
    if (check_unknown(config_root_setting(&cfg), "", path, err, errlen) != 0)
        goto out_destroy;

    c = xcalloc(1, sizeof(*c));
    atomic_init(&c->refs, 1);
    c->path = xstrdup(path);
    set_defaults(c);
    for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
        config_setting_t *s = config_lookup(&cfg, settings[i].key);
        if (s != NULL && read_setting(c, &settings[i], s, text, path, err, errlen) != 0) {
            config_release(c);
            c = NULL;
            goto out_destroy;
        }
    }
out_destroy:
    config_destroy(&cfg);
    free(text);
    return c;
}

struct config *config_retain(struct config *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void config_release(struct config *c)
{
    if (c == NULL)
        return;
    unsigned old = atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);
    if (old == 0)
        panic("config_release: refcount underflow");
    if (old != 1)
        return;
    free_strings(c);
    free(c->path);
    free(c);
}

struct config *config_current(void)
{
    pthread_rwlock_rdlock(&cur_lock);
    struct config *c = cur ? config_retain(cur) : NULL;
    pthread_rwlock_unlock(&cur_lock);
    return c;
}

static int same_value(const struct config *a, const struct config *b, const struct setting *s)
{
    const void *fa = (const char *)a + s->off, *fb = (const char *)b + s->off;
    switch (s->type) {
    case SET_INT:
    case SET_ENUM:
        return *(const int64_t *)fa == *(const int64_t *)fb;
    case SET_BOOL:
        return *(const bool *)fa == *(const bool *)fb;
    case SET_STRING:
        return strcmp(*(char *const *)fa, *(char *const *)fb) == 0;
    }
    return 0;
}

static void copy_value(struct config *dst, const struct config *src, const struct setting *s)
{
    void *fd = field(dst, s);
    const void *fs = (const char *)src + s->off;
    switch (s->type) {
    case SET_INT:
    case SET_ENUM:
        *(int64_t *)fd = *(const int64_t *)fs;
        break;
    case SET_BOOL:
        *(bool *)fd = *(const bool *)fs;
        break;
    case SET_STRING:
        free(*(char **)fd);
        *(char **)fd = xstrdup(*(char *const *)fs);
        break;
    }
}

void config_publish(struct config *next)
{
    pthread_rwlock_wrlock(&cur_lock);
    struct config *old = cur;
    if (old != NULL) {
        /* next is not published yet: this thread is its only user */
        for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
            const struct setting *s = &settings[i];
            if (!(s->flags & SET_RESTART) || same_value(old, next, s))
                continue;
            log_warn("config: '%s' changed; it takes effect only after a restart", s->key);
            copy_value(next, old, s);
        }
        next->generation = old->generation + 1;
    } else {
        next->generation = 1;
    }
    cur = next;
    pthread_rwlock_unlock(&cur_lock);
    config_release(old);
}

void config_shutdown(void)
{
    pthread_rwlock_wrlock(&cur_lock);
    struct config *old = cur;
    cur = NULL;
    pthread_rwlock_unlock(&cur_lock);
    config_release(old);
}

void config_describe(void (*emit)(const char *line, void *cls), void *cls)
{
    char line[512];
    for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
        const struct setting *s = &settings[i];
        const char *when = (s->flags & SET_RESTART) ? "restart" : "reload";
        switch (s->type) {
        case SET_INT:
            snprintf(line, sizeof(line), "%s\tinteger\t%lld\t[%lld, %lld]\t%s\t%s", s->key,
                     (long long)s->def, (long long)s->min, (long long)s->max, when, s->help);
            break;
        case SET_BOOL:
            snprintf(line, sizeof(line), "%s\tboolean\t%s\t-\t%s\t%s", s->key,
                     s->def ? "true" : "false", when, s->help);
            break;
        case SET_STRING:
            snprintf(line, sizeof(line), "%s\tstring\t\"%s\"\t-\t%s\t%s", s->key, s->def_str,
                     when, s->help);
            break;
        case SET_ENUM:
            snprintf(line, sizeof(line), "%s\tstring\t\"%s\"\t-\t%s\t%s", s->key,
                     s->choices[s->def], when, s->help);
            break;
        }
        emit(line, cls);
    }
}
