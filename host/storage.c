/*
** storage.c - the registry of storage backends (cps_storage.h): plugins
** register them by name, storing plugins ask for the configured one.  The
** host never calls a backend itself.
*/
#include <dirent.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
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

/* ---- choosing the backend (storage_backend) ---- */

static bool in_list(const char *list, const char *name, size_t len)
{
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += len)
        if ((p == list || p[-1] == ' ') && (p[len] == ',' || p[len] == 0)) return true;
    return false;
}

static void add_name(char *buf, size_t n, const char *name, size_t len)
{
    if (in_list(buf, name, len)) return;
    size_t at = strlen(buf);
    snprintf(buf + at, n - at, "%s%.*s", at ? ", " : "", (int)len, name);
}

/* The storage-<name>.so files of one directory, as backend names. */
static void scan_dir(const char *dir, char *buf, size_t n)
{
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 11 && strncmp(e->d_name, "storage-", 8) == 0 && strcmp(e->d_name + l - 3, ".so") == 0)
            add_name(buf, n, e->d_name + 8, l - 11);
    }
    if (d) closedir(d);
}

void cps_storage_available(char *buf, size_t n)
{
    buf[0] = 0;
    for (int i = 0; i < MAX_BACKENDS; i++)
        if (backends[i].b) add_name(buf, n, backends[i].b->name, strlen(backends[i].b->name));
    size_t i;
    json_t *d;
    json_array_foreach(cps_config_path(cps_cfg ? cps_cfg->root : NULL, "plugin_dirs"), i, d)
        scan_dir(json_string_value(d), buf, n);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/plugins", cps_search_exe_dir());
    scan_dir(dir, buf, n);
    scan_dir(cps_search_plugin_dir(), buf, n);
    if (!buf[0]) snprintf(buf, n, "none");
}

/* A backend name becomes a plugin name: the same characters. */
static bool valid_backend(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 32 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

int cps_storage_load_configured(void)
{
    const char *name = cps_config_str("storage_backend", "fs");
    char plugin[64], path[PATH_MAX], avail[512];
    if (!valid_backend(name)) {
        cps_storage_available(avail, sizeof avail);
        cps_log("storage", CPS_LOG_ERROR, "storage_backend = \"%s\" is not a backend name (a-z 0-9 _ -); "
                "available: %s", name, avail);
        return CPS_EINVAL;
    }
    snprintf(plugin, sizeof plugin, "storage-%s", name);
    /* Listed in `plugins`: loaded there, in its place in the list. */
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(cps_cfg->root, "plugins"), i, v) {
        const char *p = json_string_value(v);
        if (p && strcmp(p + (p[0] == '?'), plugin) == 0) return 0;
    }
    if (!cps_search_plugin(cps_cfg->root, plugin, path, sizeof path)) {
        cps_storage_available(avail, sizeof avail);
        cps_log("storage", CPS_LOG_ERROR, "storage_backend = \"%s\": no such backend (no plugin %s.so); "
                "available: %s", name, plugin, avail);
        return CPS_ENOENT;
    }
    return cps_plugin_load(plugin, NULL, true);
}

int cps_storage_check_configured(void)
{
    if (cps_storage_get(NULL)) return 0;
    char avail[512];
    cps_storage_available(avail, sizeof avail);
    cps_log("storage", CPS_LOG_ERROR, "storage_backend = \"%s\": no plugin registered this backend; "
            "available: %s", cps_config_str("storage_backend", "fs"), avail);
    return CPS_ENOENT;
}
