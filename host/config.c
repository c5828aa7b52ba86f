/*
** config.c - the configuration: a Lua file returning one table, merged over
** the embedded default (config/default.lua), converted to JSON and checked
** against the schema below.  Every error names the key, the expected type
** and, where the key appears in the file, the file and line.  A file may
** edit the plugin and script lists (plugins_add, ...), and every section's
** keys are known, so a misspelt key is an error rather than ignored.
*/
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <unistd.h>
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

#ifdef CPS_CONFIG_FUZZ
/* The fuzz build bounds what one input may cost, so that the run measures
** the loader and not Lua: 10,000 instructions, 8 MiB (a doubling string
** concatenation in a loop would otherwise take gigabytes). */
static void fuzz_hook(lua_State *L, lua_Debug *ar) { (void)ar; luaL_error(L, "too many instructions"); }

static size_t fuzz_used, fuzz_limit = SIZE_MAX;   /* the limit holds while the chunk runs */
static void *fuzz_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) { fuzz_used -= old; free(ptr); return NULL; }
    if (nsize > old && fuzz_used + (nsize - old) > fuzz_limit) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) fuzz_used = fuzz_used - old + nsize;
    return p;
}
#endif

/* Evaluate a Lua chunk that returns a table; returns JSON or NULL. */
static json_t *eval_chunk(const char *src, size_t len, const char *name, bool is_file, errbuf *e)
{
#ifdef CPS_CONFIG_FUZZ
    bool fuzz_input = !is_file && strcmp(name, "=default");
    lua_State *L = fuzz_input ? lua_newstate(fuzz_alloc, NULL) : luaL_newstate();
#else
    lua_State *L = luaL_newstate();
#endif
    if (!L) { err_add(e, "%s: out of memory", name); return NULL; }
#ifdef CPS_CONFIG_FUZZ
    if (fuzz_input) {    /* fuzz input: no library, bounded run */
        lua_sethook(L, fuzz_hook, LUA_MASKCOUNT, 10000);
    } else
#endif
    luaL_openlibs(L);
    int rc = is_file ? luaL_loadfile(L, name) : luaL_loadbufferx(L, src, len, name, "t");
#ifdef CPS_CONFIG_FUZZ
    if (fuzz_input) fuzz_limit = (size_t)8 << 20;
#endif
    if (rc == LUA_OK) rc = lua_pcall(L, 0, 1, 0);
#ifdef CPS_CONFIG_FUZZ
    fuzz_limit = SIZE_MAX;
#endif
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

/* ---- list edits: plugins_add = { ... } and friends ---- */

static int line_of(const char *text, const char *path);

/* A file adds to or removes from a list of the layers below it without
** restating it.  Entries compare by name without the "?" of an optional
** entry: adding a name already present is a no-op (so a file can say "make
** sure X is loaded" whatever the default holds), removing a name that is
** absent is an error (it is a typo, or the default changed under you). */
static const struct { const char *edit, *list; bool add; } list_edits[] = {
    { "plugins_add", "plugins", true },
    { "plugins_remove", "plugins", false },
    { "lua_scripts_add", "lua_scripts", true },
    { "lua_scripts_remove", "lua_scripts", false },
};
#define N_EDITS (sizeof list_edits / sizeof list_edits[0])

static const char *bare(const char *name) { return name[0] == '?' ? name + 1 : name; }

/* Index of the entry named `name` (optional or not) in `list`, or -1. */
static long list_find(json_t *list, const char *name)
{
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x)
        if (json_is_string(x) && strcmp(bare(json_string_value(x)), bare(name)) == 0) return (long)i;
    return -1;
}

/* The list a file's `{}` left as an empty table becomes a list again. */
static json_t *list_at(json_t *root, const char *key)
{
    json_t *l = json_object_get(root, key);
    if (json_is_object(l) && json_object_size(l) == 0) {
        l = json_array();
        json_object_set_new(root, key, l);
    }
    return json_is_array(l) ? l : NULL;
}

static void apply_edit(json_t *root, size_t k, json_t *names, const char *where, const char *text, errbuf *e)
{
    const char *edit = list_edits[k].edit, *lname = list_edits[k].list;
    if (json_is_object(names) && json_object_size(names) == 0) return;   /* `{}`: nothing */
    json_t *list = list_at(root, lname);
    if (!json_is_array(names) || !list) {
        if (!json_is_array(names))
            err_add(e, "%s:%d: %s: expected a list of names, got %s", where, line_of(text, edit), edit,
                    json_is_object(names) ? "a table" : "a value");
        return;   /* a `plugins` of the wrong type is reported by the schema */
    }
    size_t i;
    json_t *x;
    json_array_foreach(names, i, x) {
        const char *n = json_string_value(x);
        if (!n || !*bare(n)) {
            err_add(e, "%s:%d: %s[%zu]: expected a non-empty string", where, line_of(text, edit), edit, i + 1);
            continue;
        }
        long at = list_find(list, n);
        if (list_edits[k].add) {
            if (at < 0) json_array_append(list, x);
        } else if (at < 0) {
            err_add(e, "%s:%d: %s: \"%s\" is not in %s", where, line_of(text, edit), edit, n, lname);
        } else {
            for (; at >= 0; at = list_find(list, n)) json_array_remove(list, (size_t)at);
        }
    }
}

/* Merge one layer (the overlay of a node, or the file) over `root`: its
** list edits are taken out first and applied after its plain keys, so
** `plugins = {...}` and `plugins_add = {...}` in one file compose. */
static void apply_layer(json_t *root, json_t *layer, const char *file, const char *text, errbuf *e)
{
    json_t *edits[N_EDITS];
    for (size_t k = 0; k < N_EDITS; k++) {
        edits[k] = json_incref(json_object_get(layer, list_edits[k].edit));
        json_object_del(layer, list_edits[k].edit);
    }
    merge(root, layer);
    for (size_t k = 0; k < N_EDITS; k++) {
        if (edits[k]) apply_edit(root, k, edits[k], file ? file : "(overlay)", file ? text : NULL, e);
        json_decref(edits[k]);
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
            if ((*q == '"' || *q == '\'') && q[1] == ']') q += 2;   /* ["rpc-pin"] = */
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

/* T_OPTSTR: a string that may be absent (no default value). */
enum { T_STR, T_INT, T_BOOL, T_STRLIST, T_TABLE, T_LEVEL, T_NODES, T_COUNTS, T_PORTS, T_LOGFMT, T_OPTSTR };

typedef struct rule { const char *path; int type; int64_t min, max; } rule;

static const rule schema[] = {
    { "listen", T_TABLE, 0, 0 },
    { "listen.host", T_STR, 0, 0 },
    { "listen.port", T_INT, 0, 65535 },
    { "listen.extra_ports", T_PORTS, 0, 0 },
    { "websocket_path", T_STR, 0, 0 },
    { "data_dir", T_STR, 0, 0 },
    { "storage_backend", T_STR, 0, 0 },
    { "storage_pg", T_TABLE, 0, 0 },            /* storage-pg (docs/storage-pg.md) */
    { "storage_pg.conninfo", T_OPTSTR, 0, 0 },
    { "storage_pg.pool", T_INT, 1, 64 },
    { "storage_pg.append_trains", T_INT, 1, 64 },
    { "storage_pg.trains_on_loop", T_BOOL, 0, 0 },
    { "storage_failover", T_BOOL, 0, 0 },       /* docs/protocol/cluster.md §11 */
    { "plugin_dirs", T_STRLIST, 0, 0 },
    { "lua_dirs", T_STRLIST, 0, 0 },
    { "admin.keys", T_STRLIST, 0, 0 },
    { "admin.autoload", T_BOOL, 0, 0 },
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
    { "limits.http_body_total", T_INT, 1024, INT64_C(1) << 40 },
    { "metrics", T_TABLE, 0, 0 },
    { "metrics.from", T_STRLIST, 0, 0 },        /* peers that may GET /metrics */
    { "log", T_TABLE, 0, 0 },
    { "log.level", T_LEVEL, 0, 0 },
    { "log.format", T_LOGFMT, 0, 0 },
    { "log.file", T_OPTSTR, 0, 0 },
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
    case T_STR: case T_OPTSTR:
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
    case T_LOGFMT:
        if (!json_is_string(v) || (strcmp(json_string_value(v), "text") && strcmp(json_string_value(v), "json")))
            err_add(e, "%s:%d: %s: expected \"text\" or \"json\"", WHERE(p), p);
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

/* ---- the keys of a section ---- */

/* The keys a section takes are declared once: those with a default value in
** config/default.lua (where they are documented), those the schema above
** checks, and the optional ones below, which have no default value (a
** plugin reads them when present; default.lua shows them commented out).
** A new setting with a default needs no line here.  A section named nowhere
** belongs to an out-of-tree plugin: its keys are its own and not checked. */
static const struct { const char *section, *keys; } optional_keys[] = {
    { "cluster", "key self peers" },
    { "core", "max_sessions max_sessions_per_connection" },
    { "storage", "max_queue_per_channel" },
    { "instance", "main_origin sandbox_origin permitted_embedders premium_upload_size" },
    { "web", "cryptpad_root version fresh_key dev_mode "
             "admin_email support_mailbox support_mailbox_key accounts_api "
             "file_host websocket_url enforce_mfa onlyoffice_versions instance_name "
             "instance_description instance_jurisdiction instance_notice accent_color "
             "survey_url maintenance" },
    { "blob", "max_queue_per_key max_sessions cache_control" },
    { "auth", "challenge_ttl_ms session_hours max_challenge_bytes max_challenges "
             "max_challenges_per_key totp_failures_per_minute" },
    { "rpc-pin", "limits max_cached_keys max_queue_per_key" },
    { "storage-fs", "fsync" },
    { "storage-fs", "loop_appends" },
    { "storage-fs", "open_files" },
    { "rpc-channel", "" },
    { "example_rpc", "" },
    { "example_note", "" },
    { "example_http", "" },
};
#define N_OPTIONAL (sizeof optional_keys / sizeof optional_keys[0])

/* Whether `w` is one of the space-separated `words`.  The empty name is
** none of them (strstr finds "" everywhere without moving on: a config key
** [""] looped forever, found by fuzz_config). */
static bool word_in(const char *words, const char *w)
{
    size_t n = strlen(w);
    if (!n) return false;
    for (const char *p = words; (p = strstr(p, w)) != NULL; p += n)
        if ((p == words || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return true;
    return false;
}

/* The schema's rule for a section key, as "section.key". */
static bool in_schema(const char *section, const char *key)
{
    size_t sl = strlen(section);
    for (size_t i = 0; i < sizeof schema / sizeof schema[0]; i++) {
        const char *p = schema[i].path;
        if (strncmp(p, section, sl) == 0 && p[sl] == '.' && (!key || strcmp(p + sl + 1, key) == 0))
            return true;
    }
    return false;
}

/* Whether the keys of `section` are known to this host at all. */
static bool section_checked(const char *section)
{
    if (strcmp(section, "topology") == 0) return false;   /* role = count, any role */
    if (json_is_object(json_object_get(default_keys, section)) || in_schema(section, NULL)) return true;
    for (size_t i = 0; i < N_OPTIONAL; i++)
        if (strcmp(optional_keys[i].section, section) == 0) return true;
    return false;
}

static bool section_has(const char *section, const char *key)
{
    if (json_object_get(json_object_get(default_keys, section), key) || in_schema(section, key)) return true;
    for (size_t i = 0; i < N_OPTIONAL; i++)
        if (strcmp(optional_keys[i].section, section) == 0 && word_in(optional_keys[i].keys, key)) return true;
    return false;
}

/* Edit distance of two short names, for "did you mean"; large if long. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[65];
    if (la > 64 || lb > 64) return 99;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

static void consider(const char *cand, const char *key, const char **best, size_t *bd)
{
    size_t d = distance(cand, key);
    if (d < *bd) { *bd = d; *best = cand; }
}

/* The known key of `section` closest to `key` (2 edits at most), or NULL.
** Candidates from the optional lists are copied to `buf`. */
static const char *suggest(const char *section, const char *key, char *buf, size_t n)
{
    const char *best = NULL, *k;
    size_t bd = 3;
    json_t *v;
    json_object_foreach(json_object_get(default_keys, section), k, v) consider(k, key, &best, &bd);
    size_t sl = strlen(section);
    for (size_t i = 0; i < sizeof schema / sizeof schema[0]; i++)
        if (strncmp(schema[i].path, section, sl) == 0 && schema[i].path[sl] == '.')
            consider(schema[i].path + sl + 1, key, &best, &bd);
    if (best) { snprintf(buf, n, "%s", best); best = buf; }
    for (size_t i = 0; i < N_OPTIONAL; i++) {
        if (strcmp(optional_keys[i].section, section) != 0) continue;
        for (const char *p = optional_keys[i].keys; *p; ) {
            size_t wl = strcspn(p, " ");
            char w[65];
            snprintf(w, sizeof w, "%.*s", (int)(wl < 64 ? wl : 64), p);
            size_t d = distance(w, key);
            if (d < bd) { bd = d; snprintf(buf, n, "%s", w); best = buf; }
            p += wl + (p[wl] == ' ');
        }
    }
    return best;
}

static void check_section_keys(const char *section, json_t *v, const char *file, const char *text, errbuf *e)
{
    if (!json_is_object(v) || !section_checked(section)) return;
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (section_has(section, k)) continue;
        char path[256], near[80];
        snprintf(path, sizeof path, "%s.%s", section, k);
        const char *s = suggest(section, k, near, sizeof near);
        if (s) err_add(e, "%s:%d: unknown key %s (did you mean %s.%s?)", WHERE(path), path, section, s);
        else err_add(e, "%s:%d: unknown key %s", WHERE(path), path);
    }
}

static void validate(json_t *root, const char *file, const char *text, errbuf *e)
{
    for (size_t i = 0; i < sizeof schema / sizeof schema[0]; i++) {
        json_t *v = cps_config_path(root, schema[i].path);
        if (!v && schema[i].type == T_OPTSTR) continue;
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
        else check_section_keys(k, v, file, text, e);
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
    json_t *defaults = root ? json_deep_copy(root) : NULL;   /* merge() edits root's sections */
    default_keys = defaults;
    int edit_errors = 0, before;   /* the lists can be checked after a bad edit */
    if (root && overlay) {
        json_t *o = json_deep_copy(overlay);   /* its edits are taken out */
        before = e.count;
        apply_layer(root, o, NULL, NULL, &e);
        edit_errors += e.count - before;
        json_decref(o);
    }
    if (root && file) {
        text = slurp(file);
        if (!text) {
            err_add(&e, "%s: cannot read the file", file);
        } else {
            json_t *user = eval_chunk(NULL, 0, file, true, &e);
            before = e.count;
            if (user) { apply_layer(root, user, file, text, &e); json_decref(user); }
            edit_errors += e.count - before;
        }
    }
    if (root && e.count == edit_errors) validate(root, file, text, &e);
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

/* ---- the files a configuration names ---- */

/* Whether the loaders would find a plugin or script (search.c). */
static bool plugin_exists(json_t *root, const char *name)
{
    char path[PATH_MAX];
    return cps_search_plugin(root, name, path, sizeof path);
}

/* A script spec is a file name, or "role:file" to attach it to a node. */
static bool script_exists(json_t *root, const char *spec)
{
    const char *name = spec, *colon = strchr(spec, ':');
    if (colon && colon - spec < 16 && !strchr(spec, '/')) name = colon + 1;
    char path[PATH_MAX];
    return cps_search_script(root, name, path, sizeof path);
}

/* Line of the first `"name"` in the file (0 if it is not there). */
static int line_of_name(const char *text, const char *name)
{
    char q[300];
    snprintf(q, sizeof q, "\"%s\"", name);
    const char *hit = text ? strstr(text, q) : NULL;
    if (!hit) return 0;
    int line = 1;
    for (const char *c = text; c < hit; c++) if (*c == '\n') line++;
    return line;
}

static void check_plugin(json_t *root, const char *name, const char *what, const char *file,
                         const char *text, errbuf *e)
{
    if (strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(name) || strlen(name) > 64) {
        err_add(e, "%s:%d: %s: \"%s\" is not a plugin name (a-z 0-9 _ -)", file ? file : "(default)",
                line_of_name(text, name), what, name);
        return;
    }
    if (plugin_exists(root, name)) return;
    err_add(e, "%s:%d: %s: no plugin %s.so in plugin_dirs, %s/plugins or %s", file ? file : "(default)",
            line_of_name(text, name), what, name, cps_search_exe_dir(), cps_search_plugin_dir());
}

int cps_config_check_files(const cps_config *c, char **errors)
{
    errbuf e = { 0 };
    char *text = c->file ? slurp(c->file) : NULL;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(c->root, "nodes"), i, v) {
        char role[32];   /* a role node loads the plugin of its role */
        snprintf(role, sizeof role, "%.*s", (int)strcspn(json_string_value(v), ":"), json_string_value(v));
        check_plugin(c->root, role, "nodes", c->file, text, &e);
    }
    json_array_foreach(json_object_get(c->root, "plugins"), i, v) {
        const char *n = json_string_value(v);
        if (n[0] != '?') check_plugin(c->root, n, "plugins", c->file, text, &e);
    }
    /* storage_backend = "x" loads storage-x (host/storage.c). */
    const char *be = json_string_value(json_object_get(c->root, "storage_backend"));
    if (be) {
        char pl[80];
        snprintf(pl, sizeof pl, "storage-%.64s", be);
        check_plugin(c->root, pl, "storage_backend", c->file, text, &e);
    }
    json_array_foreach(json_object_get(c->root, "lua_scripts"), i, v) {
        const char *n = json_string_value(v);
        if (n[0] != '?' && !script_exists(c->root, n))
            err_add(&e, "%s:%d: lua_scripts: no script %s in lua_dirs or %s", c->file ? c->file : "(default)",
                    line_of_name(text, n), n, cps_search_lua_dir());
    }
    free(text);
    *errors = e.s;
    return e.count;
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

#ifdef CPS_CONFIG_FUZZ
/* Only in the fuzz target (tests/fuzz/fuzz_config.c): a configuration file's
** text, loaded as cps_config_load_with loads a file (without the Lua
** libraries, and stopped after 100 000 instructions, so the fuzzer can run
** no command and loop forever).  Returns whether it loaded. */
bool cps_config_fuzz_text(const char *src, size_t len)
{
    static json_t *dflt;      /* the default, evaluated once: the run is the file's */
    errbuf e = { 0 };
    if (!dflt) dflt = eval_chunk(cps_default_config, strlen(cps_default_config), "=default", false, &e);
    json_t *root = dflt ? json_deep_copy(dflt) : NULL;
    char *text = malloc(len + 1);
    if (!root || !text) abort();
    memcpy(text, src, len);
    text[len] = 0;
    default_keys = dflt;      /* only read */
    json_t *user = eval_chunk(src, len, "=fuzz.lua", false, &e);
    int before = e.count;
    if (user) { apply_layer(root, user, "fuzz.lua", text, &e); json_decref(user); }
    if (e.count == before) validate(root, "fuzz.lua", text, &e);
    default_keys = NULL;
    json_decref(root);
    free(text);
    free(e.s);
    return e.count == 0;
}
#endif
