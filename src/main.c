/*
 * src/main.c -- command line, start-up, the signal thread, shutdown order.
 *
 * Every signal the daemon acts on is blocked before any thread starts and is
 * taken here, synchronously, with sigtimedwait(): no work happens in an
 * asynchronous handler. The same loop sends the watchdog keep-alive, and only
 * after the worker pool answered a real request (http_probe).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "modules.h"
#include "notify.h"
#include "router.h"
#include "stats.h"
#include "util.h"

#ifndef CAIRN_VERSION
#define CAIRN_VERSION "0.1.0"
#endif

static const struct module *const modules[] = {
    &mod_health,
    &mod_stats,
    &mod_collections,
#ifdef CAIRN_FAULTS
    &mod_debug,
#endif
    NULL,
};

/* jansson's allocations abort on OOM like ours; free() stays free() (MHD frees dumps). */
static void *json_xmalloc(size_t n)
{
    return xmalloc(n);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cairnd [-c FILE] [-d DIR] [--import FILE] [--recover-truncate] [--check-config]\n"
            "              [--version] [--help]\n"
            "  -c, --config FILE   config file (default " CONFIG_DEFAULT_PATH ")\n"
            "  -d, --data-dir DIR  use DIR for store.data_dir, whatever the file says\n"
            "  -i, --import FILE   replace the store's contents with a json-server db.json\n"
            "      --recover-truncate  start even if the log or snapshot is damaged, dropping\n"
            "                      the damaged records (docs/DURABILITY.md); without it cairnd\n"
            "                      refuses to start with status 65\n"
            "  -t, --check-config  validate the config file and exit: 0 if good, 78 if not\n"
            "  -V, --version       print the version and exit\n"
            "  -h, --help          this text\n");
}

static const char *data_dir_override;

/* Loads 'path' and applies the command line's overrides. */
static struct config *load(const char *path, char *err, size_t errlen)
{
    struct config *c = config_load(path, err, errlen);
    if (c != NULL && data_dir_override != NULL) {
        free(c->data_dir);
        c->data_dir = xstrdup(data_dir_override);
    }
    return c;
}

static void reload(const char *path)
{
    char err[CONFIG_ERR_MAX];
    notify_reloading();
    struct config *next = load(path, err, sizeof(err));
    if (next == NULL) {
        STATS_INC(config_reload_failures);
        log_err("reload refused, keeping the running config: %s", err);
        notify_send("READY=1\nSTATUS=reload failed: %.200s; running the previous config", err);
        return;
    }
    int level = LOG_ERR + (int)next->log_level;
    config_publish(next); /* steals next */
    log_set_level(level);
    STATS_INC(config_reloads);
    struct config *cur = config_current();
    log_notice("config reloaded from %s: generation %llu", path,
               (unsigned long long)cur->generation);
    notify_send("READY=1\nSTATUS=serving on %s, config generation %llu", http_listen_name(),
                (unsigned long long)cur->generation);
    config_release(cur);
}

/* Waits for signals; returns when SIGTERM or SIGINT arrives. */
static void signal_loop(const sigset_t *set, const char *path)
{
    uint64_t wd = notify_watchdog_usec();
    /* ping at a third of the interval; probe with a quarter, so a ping is never late */
    uint64_t tick_us = wd ? wd / 3 : 1000000;
    uint64_t next_ping = 0;

    for (;;) {
        if (wd != 0 && now_usec() >= next_ping) {
            if (http_probe((unsigned)(wd / 4000)) == 0)
                notify_send("WATCHDOG=1");
            else
                log_warn("watchdog: the worker pool did not answer a probe; no keep-alive sent");
            next_ping = now_usec() + tick_us;
        }
        struct timespec ts = {.tv_sec = (time_t)(tick_us / 1000000),
                              .tv_nsec = (long)(tick_us % 1000000) * 1000};
        siginfo_t si;
        int sig = sigtimedwait(set, &si, &ts);
        if (sig < 0)
            continue; /* EAGAIN: tick; EINTR: again */
        switch (sig) {
        case SIGHUP:
            reload(path);
            break;
        case SIGTERM:
        case SIGINT:
            log_notice("%s received: shutting down", strsignal(sig));
            return;
#ifdef CAIRN_FAULTS
        case SIGUSR2:
            log_warn("fault injection: wedging the worker pool");
            http_fault_wedge();
            break;
#endif
        default:
            break;
        }
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, 'd'},
        {"import", required_argument, NULL, 'i'},
        {"recover-truncate", no_argument, NULL, 'R'},
        {"check-config", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = CONFIG_DEFAULT_PATH;
    int check_only = 0, opt;
    char err[CONFIG_ERR_MAX];

    while ((opt = getopt_long(argc, argv, "c:d:i:tVh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'd':
            data_dir_override = optarg;
            break;
        case 'i':
            collections_set_import(optarg);
            break;
        case 'R':
            collections_set_recover_truncate(true);
            break;
        case 't':
            check_only = 1;
            break;
        case 'V':
            printf("cairnd %s\n", CAIRN_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EX_USAGE;
    }

    log_init();
    struct config *cfg = load(path, err, sizeof(err));
    if (cfg == NULL) {
        log_bare_err(err);
        return EX_CONFIG;
    }
    if (check_only) {
        printf("%s: OK\n", path);
        config_release(cfg);
        return 0;
    }
    log_set_level(LOG_ERR + (int)cfg->log_level);

    /* before any thread exists: signals go to sigtimedwait only, SIGPIPE nowhere */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    json_set_alloc_funcs(json_xmalloc, free);
    json_object_seed(0);

    config_publish(cfg);
    cfg = config_current();
    notify_send("STATUS=starting");
    router_init(modules, cfg->api_prefix);
    stats_init(router_count());

    int status = 0;
    size_t started = 0;
    for (; modules[started] != NULL; started++) {
        if (modules[started]->init == NULL)
            continue;
        int rc = modules[started]->init(cfg);
        if (rc != 0) {
            log_err("module %s failed to start", modules[started]->name);
            status = rc;
            goto out_fini;
        }
    }

    int fd = notify_listen_fd();
    if (fd == -2) {
        log_err("socket activation: expected exactly one listening TCP socket");
        status = EX_USAGE;
        goto out_fini;
    }
    if (http_start(cfg, fd, err, sizeof(err)) != 0) {
        log_err("%s", err);
        status = EX_UNAVAILABLE;
        goto out_fini;
    }
    http_set_phase(PHASE_READY);
    log_notice("cairnd %s listening on %s%s (%lld worker threads, config generation %llu)",
               CAIRN_VERSION, http_listen_name(), fd >= 0 ? " (socket activation)" : "",
               (long long)cfg->threads, (unsigned long long)cfg->generation);
    notify_send("READY=1\nSTATUS=serving on %s, config generation %llu", http_listen_name(),
                (unsigned long long)cfg->generation);
    config_release(cfg);
    cfg = NULL;

    signal_loop(&set, path);

    http_set_phase(PHASE_DRAINING);
    notify_send("STOPPING=1\nSTATUS=draining");
    struct config *now = config_current();
    uint64_t left = http_quiesce((uint64_t)now->shutdown_timeout * 1000);
    config_release(now);
    if (left != 0)
        log_warn("shutdown_timeout passed with %llu requests in flight; closing them",
                 (unsigned long long)left);

out_fini:
    http_close_handlers(); /* idle keep-alive connections must not reach a stopped module */
    while (started-- > 0)
        if (modules[started]->fini != NULL)
            modules[started]->fini();
    http_stop();
    config_release(cfg);
    stats_fini();
    router_fini();
    config_shutdown();
    if (status == 0)
        log_notice("stopped");
    return status;
}
