/*
** config.c - the configuration: a Lua file returning one table, merged over
** the embedded default (config/default.lua), converted to JSON and checked
** against the schema below.  Every error names the key, the expected type
** and, where the key appears in the file, the file and line.
*/
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "host.h"
#include "lua_json.h"
#include "default_config.h"   /* generated: const char cps_default_config[] */

cps_config *cps_cfg;   /* the process's configuration singleton */

/* ---- error list ---- */

typedef struct errbuf { char *s; size_t len; int count; } errbuf;

static void err_add(errbuf *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void err_add(errbuf *e, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = sizeof line - 1;
    char *s = realloc(e->s, e->len + (size_t)n + 2);
    if (!s) return;
    memcpy(s + e->len, line, (size_t)n);
    e->len += (size_t)n;
    s[e->len++] = '\n';
    s[e->len] = 0;
    e->s = s;
    e->count++;
}

/* Evaluate a Lua chunk that returns a table; returns JSON or NULL. */
static json_t *eval_chunk(const char *src, size_t len, const char *name, bool is_file, errbuf *e)
{
    lua_State *L = luaL_newstate();
    if (!L) { err_add(e, "%s: out of memory", name); return NULL; }
    luaL_openlibs(L);
    int rc = is_file ? luaL_loadfile(L, name) : luaL_loadbuffer(L, src, len, name);
    if (rc == LUA_OK) rc = lua_pcall(L, 0, 1, 0);
    json_t *out = NULL;
    if (rc != LUA_OK) {
        err_add(e, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : name);
    } else if (!lua_istable(L, -1)) {
        err_add(e, "%s: must return a table, returned %s", name, luaL_typename(L, -1));
    } else {
        char why[512];
        out = cps_lua_json_from_lua(L, -1, why, sizeof why);
        if (!out) err_add(e, "%s: %s", name, why);
        else if (!json_is_object(out)) {
            err_add(e, "%s: must return a table of named keys", name);
            json_decref(out);
            out = NULL;
        }
    }
    lua_close(L);
    return out;
}

/* ---- merging ---- */

static void merge(json_t *dst, json_t *src)
{
    const char *k;
    json_t *v;
    json_object_foreach(src, k, v) {
        json_t *d = json_object_get(dst, k);
        if (json_is_object(d) && json_is_object(v)) merge(d, v);
        else if (json_is_array(d) && json_is_object(v) && json_object_size(v) == 0)
            json_object_set_new(dst, k, json_array());   /* `{}` empties a list */
        else json_object_set(dst, k, v);
    }
}

json_t *cps_config_path(json_t *root, const char *path)
{
    char buf[256];
    if (!root || !path || strlen(path) >= sizeof buf) return NULL;
    strcpy(buf, path);
    json_t *cur = root;
    for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, "."))
        cur = json_object_get(cur, tok);
    return cur;
}

/* ---- line numbers: find "key =" in the file text, nested under parents ---- */

static int line_of(const char *text, const char *path)
{
    if (!text) return 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const char *from = text;
    int found = 0;
    for (char *tok = strtok(buf, ".["); tok; tok = strtok(NULL, ".[")) {
        if (isdigit((unsigned char)tok[0])) break;
        size_t kl = strlen(tok);
        const char *p = from, *hit = NULL;
        while ((p = strstr(p, tok)) != NULL) {
            bool left = p == text || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
            const char *q = p + kl;
            while (*q == ' ' || *q == '\t') q++;
            if (left && q[0] == '=' && q[1] != '=') { hit = p; break; }
            p += kl;
        }
        if (!hit) break;
        from = hit + kl;
        found = 1;
        for (const char *c = text; c < hit; c++) if (*c == '\n') found++;
    }
    return found;
}

/* ---- schema ---- */

enum { T_STR, T_INT, T_BOOL, T_STRLIST, T_TABLE, T_LEVEL, T_NODES, T_COUNTS, T_PORTS };

typedef struct rule { const char *path; int type; int64_t min, max; } rule;

static const rule schema[] = {
    { "listen", T_TABLE, 0, 0 },
    { "listen.host", T_STR, 0, 0 },
    { "listen.port", T_INT, 0, 65535 },
    { "listen.extra_ports", T_PORTS, 0, 0 },
    { "websocket_path", T_STR, 0, 0 },
    { "data_dir", T_STR, 0, 0 },
    { "storage_backend", T_STR, 0, 0 },
    { "plugin_dirs", T_STRLIST, 0, 0 },
    { "lua_dirs", T_STRLIST, 0, 0 },
    { "nodes", T_NODES, 0, 0 },
    { "topology", T_COUNTS, 0, 0 },
    { "plugins", T_STRLIST, 0, 0 },
    { "lua_scripts", T_STRLIST, 0, 0 },
    { "limits", T_TABLE, 0, 0 },
    { "limits.max_frame", T_INT, 1024, INT64_C(1) << 31 },
    { "limits.max_send_queue", T_INT, 4096, INT64_C(1) << 40 },
    { "limits.router_queue", T_INT, 16, INT64_C(1) << 30 },
    { "limits.pending_queries", T_INT, 16, INT64_C(1) << 30 },
    { "limits.query_timeout_ms", T_INT, 1, 86400000 },
    { "limits.rpc_timeout_ms", T_INT, 1, 86400000 },
    { "limits.work_queue", T_INT, 1, INT64_C(1) << 30 },
    { "limits.max_sessions", T_INT, 1, INT64_C(1) << 30 },
    { "log", T_TABLE, 0, 0 },
    { "log.level", T_LEVEL, 0, 0 },
    { "limits.link_queue", T_INT, 65536, INT64_C(1) << 40 },
    { "cluster", T_TABLE, 0, 0 },
    { "lua", T_TABLE, 0, 0 },
    { "lua.max_instructions", T_INT, 1000, INT64_C(1) << 50 },
    { "lua.max_memory", T_INT, 1 << 20, INT64_C(1) << 40 },
};

static const char *type_name(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "a table";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "nil";
    }
}

/* An empty Lua table converts to {}: accept it where a list is expected. */
static bool is_list(json_t *v) { return json_is_array(v) || (json_is_object(v) && json_object_size(v) == 0); }

static bool valid_node_id(const char *s)
{
    const char *c = strchr(s, ':');
    if (!c || c == s || c - s > 20 || !c[1] || strlen(c + 1) > 6) return false;
    for (const char *p = s; p < c; p++) if (!islower((unsigned char)*p)) return false;
    for (const char *p = c + 1; *p; p++) if (!isdigit((unsigned char)*p)) return false;
    return true;
}

#define WHERE(path) file ? file : "(default)", line_of(text, path)

static void check_rule(const rule *r, json_t *v, const char *file, const char *text, errbuf *e)
{
    const char *p = r->path;
    switch (r->type) {
    case T_TABLE:
        if (!json_is_object(v)) err_add(e, "%s:%d: %s: expected a table, got %s", WHERE(p), p, type_name(v));
        break;
    case T_STR:
        if (!json_is_string(v)) err_add(e, "%s:%d: %s: expected a string, got %s", WHERE(p), p, type_name(v));
        break;
    case T_BOOL:
        if (!json_is_boolean(v)) err_add(e, "%s:%d: %s: expected a boolean, got %s", WHERE(p), p, type_name(v));
        break;
    case T_INT:
        if (!json_is_integer(v))
            err_add(e, "%s:%d: %s: expected an integer, got %s", WHERE(p), p, type_name(v));
        else if (json_integer_value(v) < r->min || json_integer_value(v) > r->max)
            err_add(e, "%s:%d: %s: expected an integer from %lld to %lld, got %lld", WHERE(p), p,
                    (long long)r->min, (long long)r->max, (long long)json_integer_value(v));
        break;
    case T_LEVEL:
        if (!json_is_string(v) || cps_log_level_from_name(json_string_value(v)) < 0)
            err_add(e, "%s:%d: %s: expected one of \"error\", \"warn\", \"info\", \"debug\"", WHERE(p), p);
        break;
    case T_STRLIST: case T_NODES: {
        if (!is_list(v)) { err_add(e, "%s:%d: %s: expected a list of strings, got %s", WHERE(p), p, type_name(v)); break; }
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            if (!json_is_string(x) || !*json_string_value(x))
                err_add(e, "%s:%d: %s[%zu]: expected a non-empty string, got %s", WHERE(p), p, i + 1, type_name(x));
            else if (r->type == T_NODES && !valid_node_id(json_string_value(x)))
                err_add(e, "%s:%d: %s[%zu]: expected a node id like \"core:0\", got \"%s\"", WHERE(p), p, i + 1, json_string_value(x));
        }
        break;
    }
    case T_PORTS: {
        if (!is_list(v)) { err_add(e, "%s:%d: %s: expected a list of ports, got %s", WHERE(p), p, type_name(v)); break; }
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > 65535)
                err_add(e, "%s:%d: %s[%zu]: expected a port from 0 to 65535", WHERE(p), p, i + 1);
        break;
    }
    case T_COUNTS: {
        if (!json_is_object(v)) { err_add(e, "%s:%d: %s: expected a table of role = count, got %s", WHERE(p), p, type_name(v)); break; }
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
            if (!json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > 4096)
                err_add(e, "%s:%d: %s.%s: expected an integer from 1 to 4096", WHERE(p), p, k);
        break;
    }
    }
}

static json_t *default_keys;   /* top-level keys of the embedded default */

static bool known_top(const char *k, json_t *root)
{
    if (json_object_get(default_keys, k)) return true;   /* a documented section */
    for (size_t i = 0; i < sizeof schema / sizeof schema[0]; i++)
        if (!strchr(schema[i].path, '.') && strcmp(schema[i].path, k) == 0) return true;
    /* Sections of plugins: any role in nodes/topology, any plugin named. */
    const char *lists[] = { "plugins", "nodes" };
    for (int l = 0; l < 2; l++) {
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(root, lists[l]), i, x) {
            if (!json_is_string(x)) continue;
            const char *s = json_string_value(x);
            if (*s == '?') s++;
            size_t n = strcspn(s, ":");
            if (strlen(k) == n && strncmp(s, k, n) == 0) return true;
        }
    }
    return json_object_get(json_object_get(root, "topology"), k) != NULL;
}

static void validate(json_t *root, const char *file, const char *text, errbuf *e)
{
    for (size_t i = 0; i < sizeof schema / sizeof schema[0]; i++) {
        json_t *v = cps_config_path(root, schema[i].path);
        if (!v) {
            /* a nested key is checked only if its parent is a table */
            const char *dot = strrchr(schema[i].path, '.');
            if (dot) {
                char parent[128];
                snprintf(parent, sizeof parent, "%.*s", (int)(dot - schema[i].path), schema[i].path);
                if (!json_is_object(cps_config_path(root, parent))) continue;
            }
            err_add(e, "%s: %s: missing", file ? file : "(default)", schema[i].path);
            continue;
        }
        check_rule(&schema[i], v, file, text, e);
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (!known_top(k, root))
            err_add(e, "%s:%d: %s: unknown key (not a setting, nor the section of a plugin in use)", WHERE(k), k);
    }
    /* Plugin sections must be tables. */
    json_object_foreach(root, k, v) {
        bool in_schema = false;
        for (size_t i = 0; i < sizeof schema / sizeof schema[0]; i++)
            if (strcmp(schema[i].path, k) == 0) in_schema = true;
        if (!in_schema && known_top(k, root) && !json_is_object(v))
            err_add(e, "%s:%d: %s: a plugin section must be a table, got %s", WHERE(k), k, type_name(v));
    }
}

static char *slurp(const char *file)
{
    FILE *f = fopen(file, "rb");
    if (!f) return NULL;
    char *s = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *n = realloc(s, cap);
            if (!n) { free(s); fclose(f); return NULL; }
            s = n;
        }
        size_t r = fread(s + len, 1, 4096, f);
        len += r;
        if (r < 4096) break;
    }
    fclose(f);
    s[len] = 0;
    return s;
}

/* A Lua file returning a table, as JSON (the topology file). */
json_t *cps_config_eval_file(const char *file, char **errors)
{
    errbuf e = { 0 };
    json_t *v = eval_chunk(NULL, 0, file, true, &e);
    *errors = e.s;
    return v;
}

cps_config *cps_config_load(const char *file, char **errors)
{
    return cps_config_load_with(file, NULL, errors);
}

/* The default, then `file`, then `overlay` (a node's part of a topology). */
cps_config *cps_config_load_with(const char *file, json_t *overlay, char **errors)
{
    errbuf e = { 0 };
    *errors = NULL;
    json_t *root = eval_chunk(cps_default_config, strlen(cps_default_config), "=default", false, &e);
    char *text = NULL;
    json_t *defaults = root ? json_copy(root) : NULL;
    default_keys = defaults;
    if (root && overlay) merge(root, overlay);
    if (root && file) {
        text = slurp(file);
        if (!text) {
            err_add(&e, "%s: cannot read the file", file);
        } else {
            json_t *user = eval_chunk(NULL, 0, file, true, &e);
            if (user) { merge(root, user); json_decref(user); }
        }
    }
    if (root && e.count == 0) validate(root, file, text, &e);
    default_keys = NULL;
    json_decref(defaults);
    free(text);
    if (e.count) {
        json_decref(root);
        *errors = e.s;
        return NULL;
    }
    cps_config *c = calloc(1, sizeof *c);
    c->root = root;
    c->file = file ? strdup(file) : NULL;
    return c;
}

void cps_config_free(cps_config *c)
{
    if (!c) return;
    json_decref(c->root);
    free(c->file);
    free(c);
}

const char *cps_config_str(const char *path, const char *def)
{
    json_t *v = cps_config_path(cps_cfg ? cps_cfg->root : NULL, path);
    return json_is_string(v) ? json_string_value(v) : def;
}

int64_t cps_config_int(const char *path, int64_t def)
{
    json_t *v = cps_config_path(cps_cfg ? cps_cfg->root : NULL, path);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}
