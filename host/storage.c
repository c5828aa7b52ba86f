/*
** storage.c - the registry of storage backends (cps_storage.h): plugins
** register them by name, storing plugins ask for the configured one.  The
** host never calls a backend itself.
*/
#include <stddef.h>
#include <string.h>
#include "host.h"

#define MAX_BACKENDS 8

static struct {
    const cps_storage_backend *b;
    cps_plugin *owner;
} backends[MAX_BACKENDS];   /* the backend registry singleton */

int cps_storage_register(cps_plugin *p, const cps_storage_backend *b)
{
    if (!b || !b->name || !*b->name || b->size < offsetof(cps_storage_backend, record_del))
        return CPS_EINVAL;
    if (b->version != CPS_STORAGE_VERSION) {
        cps_log("storage", CPS_LOG_ERROR, "storage backend '%s' has interface version %d, this host knows %d",
                b->name, b->version, CPS_STORAGE_VERSION);
        return CPS_EVERSION;
    }
    int free_slot = -1;
    for (int i = 0; i < MAX_BACKENDS; i++) {
        if (backends[i].b && strcmp(backends[i].b->name, b->name) == 0) {
            cps_log("storage", CPS_LOG_ERROR, "storage backend '%s': registered by plugin '%s', refused for '%s'",
                    b->name, backends[i].owner ? backends[i].owner->name : "?", p ? p->name : "?");
            return CPS_EEXIST;
        }
        if (!backends[i].b && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) return CPS_EBUSY;
    backends[free_slot].b = b;
    backends[free_slot].owner = p;
    return 0;
}

const cps_storage_backend *cps_storage_get(const char *name)
{
    if (!name) name = cps_config_str("storage_backend", "fs");
    for (int i = 0; i < MAX_BACKENDS; i++)
        if (backends[i].b && strcmp(backends[i].b->name, name) == 0) return backends[i].b;
    return NULL;
}

void cps_storage_forget(cps_plugin *p)
{
    for (int i = 0; i < MAX_BACKENDS; i++)
        if (backends[i].b && (!p || backends[i].owner == p)) { backends[i].b = NULL; backends[i].owner = NULL; }
}
