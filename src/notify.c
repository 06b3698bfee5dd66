/* src/notify.c -- see notify.h. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include "util.h"

void notify_send(const char *fmt, ...)
{
    char state[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(state, sizeof(state), fmt, ap);
    va_end(ap);
    int r = sd_notify(0, state);
    if (r < 0)
        fprintf(stderr, "<4>cairnd: sd_notify: %s\n", strerror(-r));
}

void notify_reloading(void)
{
    notify_send("RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)now_usec());
}

uint64_t notify_watchdog_usec(void)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0)
        return 0;
    return usec;
}

int notify_listen_fd(void)
{
    int n = sd_listen_fds(0);
    if (n == 0)
        return -1;
    if (n != 1)
        return -2;
    if (sd_is_socket_inet(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1, 0) <= 0)
        return -2;
    return SD_LISTEN_FDS_START;
}

void notify_journal(int priority, const char *request_id, const char *msg)
{
    if (request_id != NULL)
        sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", priority, "REQUEST_ID=%s", request_id,
                        "SYSLOG_IDENTIFIER=cairnd", NULL);
    else
        sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", priority, "SYSLOG_IDENTIFIER=cairnd",
                        NULL);
}
