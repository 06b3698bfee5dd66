/* src/notify.h -- the only libsystemd user: sd_notify, watchdog, socket activation, journal. */
#ifndef CAIRN_NOTIFY_H
#define CAIRN_NOTIFY_H

#include <stdint.h>

/* Sends one sd_notify state string (several lines allowed). No-op outside systemd. */
void notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* RELOADING=1 with MONOTONIC_USEC, as systemd 252 expects before the reload's READY=1. */
void notify_reloading(void);
/* The watchdog interval in microseconds the manager asked for, or 0. */
uint64_t notify_watchdog_usec(void);
/*
 * The listening socket passed by socket activation, or -1 when there is none.
 * Returns -2 when the passed sockets are unusable (more than one, or not a
 * listening TCP stream socket); the caller must refuse to start.
 */
int notify_listen_fd(void);
/* Writes one native journal entry with PRIORITY, MESSAGE and REQUEST_ID fields. */
void notify_journal(int priority, const char *request_id, const char *msg);

#endif
