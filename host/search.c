/*
** search.c - where the files a configuration names are found: .so plugins
** and Lua scripts.  The loaders (plugin.c, lua_host.c) and --check-config
** (config.c) all ask here, so "OK" from the checker means the server finds
** everything it is told to load.
*/
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "host.h"

#ifndef CPS_PLUGIN_INSTALL_DIR
#define CPS_PLUGIN_INSTALL_DIR "/usr/local/lib/cpsd/plugins"
#endif
#ifndef CPS_LUA_DIR
#define CPS_LUA_DIR "/usr/local/share/cpsd/lua"
#endif

const char *cps_search_exe_dir(void)
{
    static char dir[PATH_MAX];
    if (!dir[0]) {
        ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
        if (n <= 0) { strcpy(dir, "."); return dir; }
        dir[n] = 0;
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
    }
    return dir;
}

const char *cps_search_plugin_dir(void) { return CPS_PLUGIN_INSTALL_DIR; }
const char *cps_search_lua_dir(void) { return CPS_LUA_DIR; }

static bool readable(const char *path) { return access(path, R_OK) == 0; }

/* plugin_dirs, then <binary's dir>/plugins, then the install prefix. */
bool cps_search_plugin(json_t *root, const char *name, char *out, size_t n)
{
    size_t i;
    json_t *d;
    json_array_foreach(cps_config_path(root, "plugin_dirs"), i, d) {
        snprintf(out, n, "%s/%s.so", json_string_value(d), name);
        if (readable(out)) return true;
    }
    snprintf(out, n, "%s/plugins/%s.so", cps_search_exe_dir(), name);
    if (readable(out)) return true;
    snprintf(out, n, "%s/%s.so", CPS_PLUGIN_INSTALL_DIR, name);
    return readable(out);
}

/* An absolute path as it is; else lua_dirs, then the built-in scripts.  A
** relative name may not climb out of its directory. */
bool cps_search_script(json_t *root, const char *name, char *out, size_t n)
{
    if (name[0] == '/') { snprintf(out, n, "%s", name); return readable(out); }
    if (strstr(name, "..")) return false;
    size_t i;
    json_t *d;
    json_array_foreach(cps_config_path(root, "lua_dirs"), i, d) {
        snprintf(out, n, "%s/%s", json_string_value(d), name);
        if (readable(out)) return true;
    }
    snprintf(out, n, "%s/%s", CPS_LUA_DIR, name);
    return readable(out);
}
