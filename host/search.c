/*
** search.c - where the files a configuration names are found: .so plugins
** and Lua scripts.  The loaders (plugin.c, lua_host.c) and --check-config
** (config.c) all ask here, so "OK" from the checker means the server finds
** everything it is told to load.
**
** The rule (docs/operator-guide.md, "Installing"), from the directory of the
** running binary (/proc/self/exe, symlinks resolved), never from the working
** directory nor a path fixed at configure time, so an install moved with
** `cmake --install --prefix` or DESTDIR still finds its files:
**
**   plugins:  plugin_dirs, then <exe dir>/plugins (the build tree keeps its
**             plugins beside the binary), then <exe dir>/CPS_REL_PLUGINDIR
**             (../lib/cpsd/plugins in the default layout).
**   scripts:  an absolute path as it is; else lua_dirs, then the built-in
**             scripts directory, which is the source tree's lua/ when the
**             binary lives in the build tree it was built in (<build> or
**             below: cpsd and the test programs), and <exe dir>/CPS_REL_LUADIR
**             (../share/cpsd/lua) otherwise.  An installed binary therefore
**             never reads the source tree, even if it is still there.
*/
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "host.h"

#ifndef CPS_REL_PLUGINDIR
#define CPS_REL_PLUGINDIR "../lib/cpsd/plugins"
#endif
#ifndef CPS_REL_LUADIR
#define CPS_REL_LUADIR "../share/cpsd/lua"
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

/* Whether the binary runs from the build tree it was compiled in: its
** directory is CPS_BUILD_DIR or below it (compared with symlinks resolved,
** as /proc/self/exe gives them). */
bool cps_search_in_build_tree(void)
{
#ifdef CPS_BUILD_DIR
    static int known = -1;
    if (known < 0) {
        char build[PATH_MAX];
        const char *exe = cps_search_exe_dir();
        size_t n;
        known = realpath(CPS_BUILD_DIR, build) && (n = strlen(build)) > 1 &&
                strncmp(exe, build, n) == 0 && (exe[n] == 0 || exe[n] == '/');
    }
    return known;
#else
    return false;
#endif
}

/* <exe dir>/<rel>, with the ".." steps taken off so that messages read well. */
static void beside_exe(char *out, size_t n, const char *rel)
{
    snprintf(out, n, "%s", cps_search_exe_dir());
    while (strncmp(rel, "../", 3) == 0) {
        char *slash = strrchr(out, '/');
        if (!slash || slash == out) break;
        *slash = 0;
        rel += 3;
    }
    size_t len = strlen(out);
    if (len + 1 < n) snprintf(out + len, n - len, "/%s", rel);
}

const char *cps_search_plugin_dir(void)
{
    static char dir[PATH_MAX];
    if (!dir[0]) beside_exe(dir, sizeof dir, CPS_REL_PLUGINDIR);
    return dir;
}

const char *cps_search_lua_dir(void)
{
    static char dir[PATH_MAX];
    if (!dir[0]) {
#ifdef CPS_SOURCE_LUA_DIR
        if (cps_search_in_build_tree()) {
            snprintf(dir, sizeof dir, "%s", CPS_SOURCE_LUA_DIR);
            return dir;
        }
#endif
        beside_exe(dir, sizeof dir, CPS_REL_LUADIR);
    }
    return dir;
}

static bool readable(const char *path) { return access(path, R_OK) == 0; }

/* `name` + `ext` in the first directory of the list `dirs` that has it. */
static bool in_dirs(json_t *dirs, const char *name, const char *ext, char *out, size_t n)
{
    size_t i;
    json_t *d;
    json_array_foreach(dirs, i, d) {
        snprintf(out, n, "%s/%s%s", json_string_value(d), name, ext);
        if (readable(out)) return true;
    }
    return false;
}

bool cps_search_plugin(json_t *root, const char *name, char *out, size_t n)
{
    if (in_dirs(cps_config_path(root, "plugin_dirs"), name, ".so", out, n)) return true;
    snprintf(out, n, "%s/plugins/%s.so", cps_search_exe_dir(), name);
    if (readable(out)) return true;
    snprintf(out, n, "%s/%s.so", cps_search_plugin_dir(), name);
    return readable(out);
}

/* A relative name may not climb out of its directory. */
bool cps_search_script(json_t *root, const char *name, char *out, size_t n)
{
    if (name[0] == '/') { snprintf(out, n, "%s", name); return readable(out); }
    if (strstr(name, "..")) return false;
    if (in_dirs(cps_config_path(root, "lua_dirs"), name, "", out, n)) return true;
    snprintf(out, n, "%s/%s", cps_search_lua_dir(), name);
    return readable(out);
}
