/* src/log.h -- leveled logging to the journal or stderr (log.c). Thread-safe. */
#ifndef CAIRN_LOG_H
#define CAIRN_LOG_H

#include <syslog.h> /* LOG_ERR .. LOG_DEBUG: the priorities journald understands */

/* Picks the journal's native protocol when stderr is the journal stream (JOURNAL_STREAM). */
void log_init(void);
/* Messages above 'level' are dropped; may be called at any time (reload). */
void log_set_level(int level);
int log_level(void);
/* Parses "error|warning|notice|info|debug"; -1 if unknown. */
int log_level_parse(const char *name);

/* 'request_id' may be NULL; it is logged as its own field. */
void log_msg(int level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Writes 'msg' exactly as given (no timestamp: "file:line: message" for a bad
 * config) as one stderr line, or as a journal entry at error priority.
 */
void log_bare_err(const char *msg);

#define log_err(...) log_msg(LOG_ERR, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, NULL, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, NULL, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, NULL, __VA_ARGS__)

#endif
