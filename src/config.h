/* src/config.h -- the config file as an immutable, refcounted snapshot (config.c). */
#ifndef CAIRN_CONFIG_H
#define CAIRN_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_DEFAULT_PATH "/etc/cairn/cairnd.conf"
#define CONFIG_ERR_MAX 512

enum sync_policy { SYNC_ALWAYS, SYNC_PERIODIC, SYNC_NONE };

/*
 * Every field is set from the settings table in config.c, which is the one
 * place that names a key, its type, default, bounds and whether a change needs
 * a restart. A published config is never modified.
 */
struct config {
    atomic_uint refs;
    uint64_t generation; /* 1 for the first config, +1 per successful reload */
    char *path;

    /* [restart] */
    char *listen_address;
    int64_t listen_port;
    int64_t threads;
    int64_t max_connections;
    int64_t max_connections_per_ip;
    int64_t connection_timeout; /* seconds of inactivity */
    int64_t max_header_bytes;
    char *api_prefix;
    char *data_dir;

    /* [reload] */
    int64_t max_body_bytes;
    int64_t max_json_depth;
    int64_t shutdown_timeout; /* seconds */
    int64_t log_level;        /* 0 = error .. 4 = debug: syslog priority LOG_ERR + this */
    bool auto_create;
    int64_t sync;             /* enum sync_policy */
    int64_t sync_interval_ms;
    int64_t compact_bytes;
    int64_t max_pending_writes;
    char *seed_file;
};

/*
 * Reads and validates 'path'. Returns a new config with refs == 1, or NULL
 * with "file:line: message" (or "file: reason") in 'err'.
 */
struct config *config_load(const char *path, char *err, size_t errlen);
/* New reference. */
struct config *config_retain(struct config *c);
/* Drops a reference; frees at zero. NULL-safe. */
void config_release(struct config *c);

/*
 * The running config. config_current returns a new reference; config_publish
 * steals 'next', carries restart-only settings over from the running config
 * (logging each that changed), gives it the next generation and swaps it in.
 */
struct config *config_current(void);
void config_publish(struct config *next);
/* Drops the running config at exit. */
void config_shutdown(void);

/* Writes the settings table as documentation (key, type, default, bounds, reload/restart). */
void config_describe(void (*emit)(const char *line, void *cls), void *cls);

#endif
