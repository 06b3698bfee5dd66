/* src/log.c -- see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "notify.h"

static _Atomic int cur_level = LOG_INFO;
static int to_journal;

static const char *const level_names[] = {
    [LOG_ERR] = "error", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
    [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

void log_init(void)
{
    /* JOURNAL_STREAM is "dev:ino" of the stream systemd connected; only trust it for fd 2. */
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long long dev, ino;

    if (js != NULL && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
        (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
        to_journal = 1;
}

void log_set_level(int level)
{
    atomic_store_explicit(&cur_level, level, memory_order_relaxed);
}

int log_level(void)
{
    return atomic_load_explicit(&cur_level, memory_order_relaxed);
}

int log_level_parse(const char *name)
{
    for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void log_msg(int level, const char *request_id, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    if (level > log_level())
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    if (to_journal) {
        notify_journal(level, request_id, msg);
        return;
    }
    char ts[40];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    /* One fprintf per line: stdio locks the stream, so lines never interleave. */
    if (request_id != NULL)
        fprintf(stderr, "%s.%03ldZ %s [%s] %s\n", ts, now.tv_nsec / 1000000,
                level_names[level < LOG_ERR ? LOG_ERR : level], request_id, msg);
    else
        fprintf(stderr, "%s.%03ldZ %s %s\n", ts, now.tv_nsec / 1000000,
                level_names[level < LOG_ERR ? LOG_ERR : level], msg);
}

void log_bare_err(const char *msg)
{
    if (to_journal)
        notify_journal(LOG_ERR, NULL, msg);
    else
        fprintf(stderr, "%s\n", msg);
}
