/* src/modules.h -- the handler modules main.c registers, each one const descriptor. */
#ifndef CAIRN_MODULES_H
#define CAIRN_MODULES_H

#include <stdbool.h>

#include "router.h"

extern const struct module mod_health;  /* mod_health.c */
extern const struct module mod_stats;   /* mod_stats.c */
extern const struct module mod_collections; /* mod_collections.c */

/* mod_collections.c: replace the store with this db.json at start (cairnd --import). */
void collections_set_import(const char *path);
/* mod_collections.c: accept losing damaged log/snapshot records at start (cairnd --recover-truncate). */
void collections_set_recover_truncate(bool on);
#ifdef CAIRN_FAULTS
extern const struct module mod_debug;   /* mod_debug.c, fault builds only */
#endif

#endif
