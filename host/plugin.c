/*
** plugin.c - loading and unloading .so plugins: find the file in the plugin
** directories, check the ABI its descriptor was built for before running
** any of its code, call its init with the API table, and undo everything
** it registered if it is refused or unloaded.
*/
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "host.h"

static cps_plugin *plugins;       /* loaded plugins, newest first */
static cps_plugin host_self = { .name = "cpsd", .path = "<host>" };

cps_plugin *cps_plugins_host(void) { return &host_self; }

cps_plugin *cps_plugin_new(const char *name, const char *path, const char *node)
{
    cps_plugin *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->name = strdup(name);
    p->path = strdup(path ? path : "");
    p->node = node ? strdup(node) : NULL;
    if (!p->name || !p->path || (node && !p->node)) { cps_plugin_free(p); return NULL; }
    p->next = plugins;
    plugins = p;
    return p;
}

void cps_plugin_free(cps_plugin *p)
{
    if (!p) return;
    cps_plugin **pp = &plugins;
    while (*pp && *pp != p) pp = &(*pp)->next;
    if (*pp) *pp = p->next;
    free(p->name);
    free(p->path);
    free(p->node);
    free(p);
}

void cps_plugin_forget(cps_plugin *p)
{
    cps_router_forget(p);
    cps_rpc_forget(p);
    cps_timers_forget(p);
    cps_watches_forget(p);
    cps_server_forget(p);
    cps_storage_forget(p);
    cps_http_forget(p);
}

static bool valid_name(const char *s)
{
    if (!*s || strlen(s) > 64) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* Why the descriptor `d` cannot be used by this host, or NULL if it can
** (api/cps.h VERSIONING).  Runs before any of the plugin's code. */
static const char *abi_refusal(const cps_plugin_def *d, char *buf, size_t n)
{
    if (d->size < offsetof(cps_plugin_def, fini) + sizeof d->fini) {
        snprintf(buf, n, "its descriptor is %zu bytes, smaller than ABI %d.0's (%zu)",
                 d->size, CPS_ABI_MAJOR, offsetof(cps_plugin_def, fini) + sizeof d->fini);
        return buf;
    }
    if (d->abi_major != CPS_ABI_MAJOR || d->abi_minor > CPS_ABI_MINOR) {
        snprintf(buf, n, "built for ABI %u.%u, this host provides %d.%d (same major, minor up to %d): "
                 "rebuild it against this host's cps.h", d->abi_major, d->abi_minor,
                 CPS_ABI_MAJOR, CPS_ABI_MINOR, CPS_ABI_MINOR);
        return buf;
    }
    if (d->api_size > sizeof(cps_api)) {
        snprintf(buf, n, "built against a function table of %zu bytes for ABI %u.%u, but this host's "
                 "table has %zu: its cps.h was changed without a minor bump", d->api_size,
                 d->abi_major, d->abi_minor, sizeof(cps_api));
        return buf;
    }
    if (!d->init) {
        snprintf(buf, n, "its descriptor has no init function");
        return buf;
    }
    return NULL;
}

int cps_plugin_load_path(const char *name, const char *path, const char *node)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        cps_log("plugin", CPS_LOG_ERROR, "plugin '%s': cannot load %s: %s", name, path, dlerror());
        return CPS_ENOENT;
    }
    const cps_plugin_def *def = dlsym(dl, CPS_PLUGIN_SYMBOL);
    char buf[320];
    const char *why = NULL;
    int rc = CPS_EVERSION;
    if (!def) {
        /* ABI 1.x plugins exported a function instead of a descriptor. */
        if (dlsym(dl, "cps_plugin_init"))
            snprintf(buf, sizeof buf, "built for ABI 1.x (it exports cps_plugin_init); rebuild it "
                     "against ABI %d.%d", CPS_ABI_MAJOR, CPS_ABI_MINOR);
        else
            snprintf(buf, sizeof buf, "it exports no %s descriptor (CPS_PLUGIN_DEFINE)", CPS_PLUGIN_SYMBOL);
        why = buf;
    } else {
        why = abi_refusal(def, buf, sizeof buf);
    }
    if (why) {
        cps_log("plugin", CPS_LOG_ERROR, "plugin '%s' (%s) refused: %s", name, path, why);
        dlclose(dl);
        return rc;
    }
    cps_plugin *p = cps_plugin_new(name, path, node);
    if (!p) { dlclose(dl); return CPS_ENOMEM; }
    p->dl = dl;
    p->def = def;
    p->fini = def->fini;
    p->version = def->version ? def->version : "";
    rc = def->init(&cps_host_api, p, &p->state);
    if (rc < 0) {
        cps_log("plugin", CPS_LOG_ERROR, "plugin '%s' (%s) refused: its initialisation failed: %s",
                name, path, cps_errname(rc));
        p->unloading = true;
        cps_plugin_forget(p);
        cps_plugin_free(p);
        dlclose(dl);
        return rc;
    }
    cps_log("plugin", CPS_LOG_INFO, "loaded plugin '%s' %s (ABI %u.%u)%s%s", name, p->version,
            def->abi_major, def->abi_minor, node ? " for " : "", node ? node : "");
    return 0;
}

int cps_plugin_load(const char *name, const char *node, bool required)
{
    char path[PATH_MAX];
    int rc;
    if (!valid_name(name)) {
        cps_log("plugin", CPS_LOG_ERROR, "plugin name '%s' is not valid (a-z 0-9 _ -)", name);
        rc = CPS_EINVAL;
    } else if (!cps_search_plugin(cps_cfg ? cps_cfg->root : NULL, name, path, sizeof path)) {
        cps_log("plugin", CPS_LOG_ERROR, "plugin '%s': no %s.so in plugin_dirs, %s/plugins or %s",
                name, name, cps_search_exe_dir(), cps_search_plugin_dir());
        rc = CPS_ENOENT;
    } else {
        rc = cps_plugin_load_path(name, path, node);
    }
    if (rc && !required)
        cps_log("plugin", CPS_LOG_WARN, "optional plugin '%s' not loaded; carrying on without it", name);
    return required ? rc : 0;
}

void cps_plugins_fini(void)
{
    /* Newest first: a plugin may depend on one loaded before it. */
    for (cps_plugin *p = plugins; p; p = p->next) {
        if (p->unloading) continue;
        p->unloading = true;
        if (p->fini) p->fini(p, p->state);
        cps_plugin_forget(p);
    }
}

void cps_plugins_close(void)
{
    while (plugins) {
        cps_plugin *p = plugins;
        void *dl = p->dl;
        cps_plugin_free(p);
        if (dl) dlclose(dl);
    }
}
