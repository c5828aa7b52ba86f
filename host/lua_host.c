/*
** lua_host.c - the one Lua 5.4 state of the process and the `cps` module
** that gives scripts the services of the C API: RPC commands, inter-node
** commands, send/query, timers, configuration, logging.  Every call into
** Lua is protected: an error or an exhausted instruction budget becomes an
** error reply and a log line, never a crash.  Memory is capped.
*/
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/resource.h>
#include "host.h"
#include "lua_json.h"


static struct {
    lua_State *L;
    size_t mem, max_mem;
    long budget;              /* instructions left in the current call */
    long max_instructions;
    int depth;                /* nested calls into Lua (budget_call) */
    cps_plugin *current;      /* script being loaded */
} LH;   /* the Lua host singleton */

#define HOOK_STEP 1000

/* ---- allocator with a cap ---- */

static void *lalloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (!ptr) osize = 0;
    if (nsize == 0) { LH.mem -= osize; free(ptr); return NULL; }
    if (nsize > osize && LH.mem + (nsize - osize) > LH.max_mem) return NULL;
    void *n = realloc(ptr, nsize);
    if (n) LH.mem = LH.mem - osize + nsize;
    return n;
}

static void hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    LH.budget -= HOOK_STEP;
    if (LH.budget < 0) luaL_error(L, "ETIMEDOUT");
}

/* ---- JSON <-> Lua (lua_json.c), protected against the memory cap ---- */

/* Protected conversion: lua_json raises only when the capped allocator
** refuses, and that must not unwind through the host. */
static int p_to_json(lua_State *L)
{
    char *err = lua_touserdata(L, 3);
    json_t **out = lua_touserdata(L, 2);
    *out = cps_lua_json_from_lua(L, 1, err, 256);
    return 0;
}

static json_t *safe_json(lua_State *L, int idx, char *err, size_t errlen)
{
    char why[256] = "";
    json_t *out = NULL;
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, p_to_json);
    lua_pushvalue(L, idx);
    lua_pushlightuserdata(L, &out);
    lua_pushlightuserdata(L, why);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
        snprintf(why, sizeof why, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_pop(L, 1);
        json_decref(out);
        out = NULL;
    }
    if (!out) snprintf(err, errlen, "EINVAL: %s", why);
    return out;
}

static int p_push_json(lua_State *L)
{
    char *err = lua_touserdata(L, 2);
    json_t *v = lua_touserdata(L, 1);
    lua_settop(L, 0);
    if (cps_lua_json_push(L, v, err, 256)) return 0;
    return 1;
}

/* Push v; 0, or -1 with nothing pushed and the reason in err. */
static int safe_push(lua_State *L, json_t *v, char *err, size_t errlen)
{
    char why[256] = "";
    lua_pushcfunction(L, p_push_json);
    lua_pushlightuserdata(L, v);
    lua_pushlightuserdata(L, why);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        snprintf(why, sizeof why, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_pop(L, 1);
    } else if (why[0]) {
        lua_pop(L, 1);    /* the nil that stands for nothing */
    } else {
        return 0;
    }
    snprintf(err, errlen, "%s", why);
    return -1;
}

/* The code in an error message: "EINVAL", "EINVAL: detail", "file.lua:3:
** EINVAL ..." -> "EINVAL"; anything else is EINTERNAL. */
static const char *error_code(const char *msg, char *buf, size_t n)
{
    const char *c = msg;
    for (int tries = 0; c && tries < 3; tries++) {
        size_t len = 0;
        if (c[0] >= 'A' && c[0] <= 'Z') {
            while ((c[len] >= 'A' && c[len] <= 'Z') || (c[len] >= '0' && c[len] <= '9') || c[len] == '_') len++;
            if (len < n && (c[len] == 0 || c[len] == ':' || c[len] == ' ')) {
                memcpy(buf, c, len);
                buf[len] = 0;
                return buf;
            }
        }
        c = strstr(c, ": ");    /* skip a "chunk:line: " prefix */
        if (c) c += 2;
    }
    return "EINTERNAL";
}

/* Call the function at the top of the stack (below its nargs arguments)
** with the instruction budget. */
static int budget_call(lua_State *L, int nargs, int nres)
{
    /* A call made from inside another (cps.admin_call runs a Lua command
    ** at once) shares the outer call's budget and keeps its hook. */
    if (LH.depth == 0) LH.budget = LH.max_instructions;
    LH.depth++;
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_STEP);
    int rc = lua_pcall(L, nargs, nres, 0);
    if (--LH.depth == 0) lua_sethook(L, NULL, 0, 0);
    return rc;
}

/* ---- RPC commands written in Lua ---- */

/* What a Lua handler answers through: an RPC call (ctx) or an inter-node
** call (call).  One userdata type serves both; `h` is cleared once answered. */
typedef struct lua_answer {
    bool is_rpc;
    void *h;              /* cps_rpc * or cps_call * */
    char from[32];        /* inter-node calls: the sender */
} lua_answer;

static void answer_ok(lua_answer *a, json_t *v)
{
    if (a->is_rpc) cps_rpc_reply(a->h, v); else cps_router_reply(a->h, CPS_OK, v);
}

/* Lua speaks error names; the C side codes (api/cps_errors.h). */
static void answer_err(lua_answer *a, const char *name)
{
    int code = cps_errcode(name);
    if (a->is_rpc) cps_rpc_error(a->h, code); else cps_router_reply(a->h, code, NULL);
}

static int answer_reply(lua_State *L)
{
    lua_answer *a = luaL_checkudata(L, 1, "cps.answer");
    if (!a->h) return luaL_error(L, "EINVAL: already answered");
    char err[256];
    json_t *v = safe_json(L, 2, err, sizeof err);
    lua_answer done = *a;
    a->h = NULL;
    if (!v) { cps_log("lua", CPS_LOG_ERROR, "reply: %s", err); answer_err(&done, "EINTERNAL"); }
    else answer_ok(&done, v);
    return 0;
}

static int answer_error(lua_State *L)
{
    lua_answer *a = luaL_checkudata(L, 1, "cps.answer");
    const char *code = luaL_checkstring(L, 2);
    if (!a->h) return luaL_error(L, "EINVAL: already answered");
    lua_answer done = *a;
    a->h = NULL;
    answer_err(&done, code);
    return 0;
}

static int answer_index(lua_State *L)
{
    lua_answer *a = luaL_checkudata(L, 1, "cps.answer");
    const char *k = luaL_checkstring(L, 2);
    const char *v = NULL;
    if (!strcmp(k, "reply")) { lua_pushcfunction(L, answer_reply); return 1; }
    if (!strcmp(k, "error")) { lua_pushcfunction(L, answer_error); return 1; }
    if (a->is_rpc && a->h) {
        if (!strcmp(k, "key")) v = cps_rpc_key(a->h);
        else if (!strcmp(k, "name")) v = cps_rpc_name(a->h);
        else if (!strcmp(k, "caller")) v = cps_rpc_caller(a->h);
    } else if (!a->is_rpc && !strcmp(k, "from")) {
        v = a->from;
    }
    if (v) lua_pushstring(L, v); else lua_pushnil(L);
    return 1;
}

/* How loud a failed handler is.  A code the script raised on purpose
** (EINVAL, ENOENT, ...) answers a client's mistake: info, or a client could
** fill the log at error level at will.  An exhausted budget (ETIMEDOUT) may be
** a client's big request or a slow script: warn.  EINTERNAL (a runtime error,
** error("boom"), memory) is a bug in the script: error (lua/README.md). */
static int failure_level(const char *code)
{
    if (!strcmp(code, "EINTERNAL")) return CPS_LOG_ERROR;
    if (!strcmp(code, "ETIMEDOUT")) return CPS_LOG_WARN;
    return CPS_LOG_INFO;
}

/* Call the handler at `ref` with (args, answer handle): the handler returns
** the answer, raises a code, or returns nothing and answers later. */
static int run_handler(int ref, json_t *args, bool is_rpc, void *h, const char *from, const char *what)
{
    lua_State *L = LH.L;
    int top = lua_gettop(L);
    lua_answer *a = lua_newuserdatauv(L, sizeof *a, 0);   /* anchored below the call */
    a->is_rpc = is_rpc;
    a->h = h;
    snprintf(a->from, sizeof a->from, "%s", from ? from : "");
    luaL_setmetatable(L, "cps.answer");
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    char err[256];
    if (safe_push(L, args, err, sizeof err)) {
        /* e.g. arguments nested deeper than a script may receive */
        cps_log("lua", CPS_LOG_INFO, "%s: arguments refused: %s", what, err);
        lua_answer done = *a;
        a->h = NULL;
        lua_settop(L, top);
        answer_err(&done, "EINVAL");
        return CPS_OK;
    }
    lua_pushvalue(L, top + 1);
    int rc = budget_call(L, 2, 1);
    if (rc != LUA_OK) {
        char buf[64];
        const char *msg = lua_tostring(L, -1);
        const char *code = error_code(msg, buf, sizeof buf);
        cps_log("lua", failure_level(code), "%s failed: %s", what, msg ? msg : "(error object)");
        if (a->h) { lua_answer done = *a; a->h = NULL; answer_err(&done, code); }
        lua_settop(L, top);
        return CPS_OK;
    }
    if (!a->h) { lua_settop(L, top); return CPS_OK; }                  /* answered */
    if (lua_isnil(L, -1)) { lua_settop(L, top); return CPS_ASYNC; }   /* later */
    json_t *v = safe_json(L, -1, err, sizeof err);
    lua_answer done = *a;
    a->h = NULL;
    lua_settop(L, top);
    if (!v) {
        cps_log("lua", CPS_LOG_ERROR, "%s returned a value that is not JSON: %s", what, err);
        answer_err(&done, "EINTERNAL");
    } else {
        answer_ok(&done, v);
    }
    return CPS_OK;
}

static int lua_rpc_handler(cps_rpc *rpc, json_t *args, void *ud)
{
    char what[96];
    snprintf(what, sizeof what, "RPC %s", cps_rpc_name(rpc));
    return run_handler((int)(intptr_t)ud, args, true, rpc, NULL, what);
}

static cps_plugin *script_of(lua_State *L)
{
    cps_plugin *p = lua_touserdata(L, lua_upvalueindex(1));
    return p ? p : cps_plugins_host();
}

static int l_register_rpc(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    const char *kind_s = luaL_optstring(L, 3, "anon");
    int kind = strcmp(kind_s, "auth") == 0 ? CPS_RPC_AUTH : strcmp(kind_s, "admin") == 0 ? CPS_RPC_ADMIN :
               strcmp(kind_s, "anon") == 0 ? CPS_RPC_ANON : -1;
    if (kind < 0) return luaL_error(L, "register_rpc: kind must be \"anon\", \"auth\" or \"admin\"");
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int rc = cps_rpc_register(script_of(L), name, kind, lua_rpc_handler, (void *)(intptr_t)ref);
    if (rc) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "register_rpc %s: %s", name, cps_errname(rc));
    }
    return 0;
}

/* cps.admin_command(name, summary, fn): an admin command (kind "admin"),
** with the one-line summary listings show.  The same registry serves
** CryptPad's ADMIN RPC (ctx.key is the admin's key, args its parameter)
** and the operator's `cpsd admin` (ctx.key is nil, args the command-line
** words as strings). */
static int l_admin_command(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *summary = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lua_pushvalue(L, 3);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int rc = cps_rpc_register(script_of(L), name, CPS_RPC_ADMIN, lua_rpc_handler, (void *)(intptr_t)ref);
    if (rc) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "admin_command %s: %s", name, cps_errname(rc));
    }
    cps_rpc_describe(script_of(L), name, summary);
    return 0;
}

/* cps.instance_set(key, value): a live instance setting of this process
** (config_get("instance.<key>") in C, cps.config here); nil removes it. */
static int l_instance_set(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    json_t *v = NULL;
    if (!lua_isnoneornil(L, 2)) {
        char err[256];
        v = safe_json(L, 2, err, sizeof err);
        if (!v) return luaL_error(L, "%s", err);
    }
    int rc = cps_instance_set(script_of(L), key, v);
    if (rc) return luaL_error(L, "%s: instance_set %s", cps_errname(rc), key);
    return 0;
}

/* cps.base64_decode(text): the bytes of standard base64 (padding optional),
** or nil and "EINVAL" for anything else. */
static int b64_value(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static int l_base64_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    while (n && s[n - 1] == '=') n--;
    if (n % 4 == 1) { lua_pushnil(L); lua_pushstring(L, "EINVAL"); return 2; }
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, n / 4 * 3 + 3);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) { lua_pushnil(L); lua_pushstring(L, "EINVAL"); return 2; }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) { bits -= 8; out[o++] = (char)((acc >> bits) & 0xff); }
    }
    luaL_pushresultsize(&b, o);
    return 1;
}

/* cps.random_hex(nbytes): nbytes (1..64) from the system's CSPRNG, as hex. */
static int l_random_hex(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1 || n > 64) return luaL_error(L, "EINVAL: random_hex takes 1 to 64 bytes");
    unsigned char buf[64];
    char hex[129];
    if (uv_random(NULL, NULL, buf, (size_t)n, 0, NULL) != 0) return luaL_error(L, "EINTERNAL: no randomness");
    for (lua_Integer i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", buf[i]);
    lua_pushlstring(L, hex, (size_t)(2 * n));
    return 1;
}

/* cps.random_bytes(n): n (1..64) random bytes; cps.base64_encode(s):
** standard base64 with padding. */
static int l_random_bytes(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1 || n > 64) return luaL_error(L, "EINVAL: random_bytes takes 1 to 64 bytes");
    unsigned char buf[64];
    if (uv_random(NULL, NULL, buf, (size_t)n, 0, NULL) != 0) return luaL_error(L, "EINTERNAL: no randomness");
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    return 1;
}

static int l_base64_encode(lua_State *L)
{
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
        luaL_addchar(&b, T[v >> 18 & 63]);
        luaL_addchar(&b, T[v >> 12 & 63]);
        luaL_addchar(&b, i + 1 < n ? T[v >> 6 & 63] : '=');
        luaL_addchar(&b, i + 2 < n ? T[v & 63] : '=');
    }
    luaL_pushresult(&b);
    return 1;
}

/* cps.equal(a, b): constant-time comparison of two strings (secrets). */
static int l_equal(lua_State *L)
{
    size_t la, lb;
    const char *a = luaL_checklstring(L, 1, &la), *b = luaL_checklstring(L, 2, &lb);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la && i < lb; i++) d |= (unsigned char)(a[i] ^ b[i]);
    lua_pushboolean(L, d == 0);
    return 1;
}

/* cps.counter(name): the value of a host counter of this process (what
** GET /metrics shows), e.g. "front_users". */
static int l_counter(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)cps_metrics_value(luaL_checkstring(L, 1)));
    return 1;
}

/* cps.sessions(): { count, unique_peers } of this process's client
** connections (websockets). */
static int l_sessions(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)cps_server_session_count());
    lua_setfield(L, -2, "count");
    lua_pushinteger(L, (lua_Integer)cps_server_unique_peers());
    lua_setfield(L, -2, "unique_peers");
    return 1;
}

/* cps.process(): { fds, fd_limit, rss, lua_memory, pid } of this process. */
static int l_process(lua_State *L)
{
    lua_createtable(L, 0, 5);
    long fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) if (e->d_name[0] != '.') fds++;
        closedir(d);
        fds--;    /* the directory handle itself */
    }
    lua_pushinteger(L, fds);
    lua_setfield(L, -2, "fds");
    struct rlimit rl;
    lua_pushinteger(L, getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (lua_Integer)rl.rlim_cur : -1);
    lua_setfield(L, -2, "fd_limit");
    size_t rss = 0;
    uv_resident_set_memory(&rss);
    lua_pushinteger(L, (lua_Integer)rss);
    lua_setfield(L, -2, "rss");
    lua_pushinteger(L, (lua_Integer)LH.mem);
    lua_setfield(L, -2, "lua_memory");
    lua_pushinteger(L, (lua_Integer)getpid());
    lua_setfield(L, -2, "pid");
    return 1;
}

/* cps.timings(): {name = {count, seconds}} of every latency histogram of
** this process (RPC calls, appends, history streams): where its time goes. */
static void lua_timing_one(const char *name, uint64_t count, double sum, void *ud)
{
    lua_State *L = ud;
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)count);
    lua_setfield(L, -2, "count");
    lua_pushnumber(L, sum);
    lua_setfield(L, -2, "seconds");
    lua_setfield(L, -2, name);
}

static int l_timings(lua_State *L)
{
    lua_newtable(L);
    cps_metrics_each_histogram(lua_timing_one, L);
    return 1;
}

/* cps.print(text): one line on standard output (operator messages such as
** the first-admin link, which CryptPad prints there too). */
static int l_print(lua_State *L)
{
    const char *t = luaL_checkstring(L, 1);
    fprintf(stdout, "%s\n", t);
    fflush(stdout);
    return 0;
}

/* ---- inter-node commands, send, query ---- */

/* fn(args, call): call.from, call:reply(v), call:error(code). */
static int lua_command_handler(cps_call *call, json_t *args, void *ud)
{
    return run_handler((int)(intptr_t)ud, args, false, call, cps_router_call_from(call), "command handler");
}

/* This process's node of `role` in buf ("core:1"), or NULL if it runs none.
** Nodes are found by index because a node of a cluster may be any index. */
static const char *local_node(const char *role, char *buf, size_t n)
{
    int count = cps_router_role_count(role);
    for (int i = 0; i < count; i++) {
        int w = snprintf(buf, n, "%s:%d", role, i);
        if (w > 0 && (size_t)w < n && cps_router_is_local(buf)) return buf;
    }
    return NULL;
}

/* A command for a node this process does not run would never be called:
** refuse it with an error the script sees, and say so in the log. */
static int refuse_remote(lua_State *L, const char *fn, const char *name, const char *node)
{
    cps_log(script_of(L)->name, CPS_LOG_ERROR, "%s %s refused: node %s is not run by this process",
            fn, name, node);
    return luaL_error(L, "EINVAL: %s %s: node %s is not run by this process; a script registers "
                      "commands only on the nodes of its own process", fn, name, node);
}

/* Register fn (at stack index fn_idx) as `name` on `node`, a node of this
** process; raises on failure. */
static void register_on(lua_State *L, const char *fn_name, const char *node, const char *name, int fn_idx)
{
    cps_plugin *p = script_of(L);
    char role[32];
    snprintf(role, sizeof role, "%.*s", (int)strcspn(node, ":"), node);
    lua_pushvalue(L, fn_idx);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    void *ud = (void *)(intptr_t)ref;
    /* The script's own node exactly; another local node through its role
    ** (a process runs one node per role, declared before any remote one). */
    int rc = p->node && strcmp(p->node, node) == 0 ? cps_router_register(p, name, lua_command_handler, ud)
                                                    : cps_router_register_role(p, role, name, lua_command_handler, ud);
    if (rc) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        luaL_error(L, "%s %s on %s: %s", fn_name, name, node, cps_errname(rc));
    }
}

/* cps.register_command(name, fn): on the node the script is bound to. */
static int l_register_command(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    cps_plugin *p = script_of(L);
    if (!p->node)
        return luaL_error(L, "EINVAL: register_command %s: the script is bound to no node (list it as "
                          "\"role:%s\" in lua_scripts, or use register_role_command)", name, p->name);
    if (!cps_router_is_local(p->node)) return refuse_remote(L, "register_command", name, p->node);
    register_on(L, "register_command", p->node, name, 2);
    return 0;
}

/* cps.register_role_command(role or node, name, fn): on this process's node
** of a role (false if it runs none: a script loaded everywhere registers
** where it can), or on one named node, which must be this process's. */
static int l_register_role_command(lua_State *L)
{
    const char *target = luaL_checkstring(L, 1);
    const char *name = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    char node[32];
    if (strchr(target, ':')) {
        if (!cps_router_is_local(target)) return refuse_remote(L, "register_role_command", name, target);
        snprintf(node, sizeof node, "%s", target);
    } else if (!local_node(target, node, sizeof node)) {
        cps_log(script_of(L)->name, CPS_LOG_INFO, "%s not registered: this process runs no %s node", name, target);
        lua_pushboolean(L, 0);
        return 1;
    }
    register_on(L, "register_role_command", node, name, 3);
    lua_pushboolean(L, 1);
    return 1;
}

/* cps.node(): the node the script is bound to; cps.node(role): this
** process's node of that role; nil if none. */
static int l_node(lua_State *L)
{
    char buf[32];
    const char *n = lua_isnoneornil(L, 1) ? script_of(L)->node : local_node(luaL_checkstring(L, 1), buf, sizeof buf);
    if (n) lua_pushstring(L, n); else lua_pushnil(L);
    return 1;
}

/* ---- the unload hook: kept in the registry under the script's plugin ---- */

/* cps.on_unload(fn): fn runs when the script is unloaded; nil removes it. */
static int l_on_unload(lua_State *L)
{
    if (!lua_isnil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, script_of(L));
    return 0;
}

static void forget_hook(lua_State *L, cps_plugin *p)
{
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, p);
}

/* The script's fini: the host calls it at unload, then stops the script's
** timers and drops its registrations, so the hook still sees them. */
static void script_fini(cps_plugin *p, void *state)
{
    (void)state;
    lua_State *L = LH.L;
    if (!L) return;
    int top = lua_gettop(L);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, p) == LUA_TFUNCTION && budget_call(L, 0, 0) != LUA_OK)
        cps_log(p->name, CPS_LOG_ERROR, "unload hook failed: %s", lua_tostring(L, -1));
    lua_settop(L, top);
    forget_hook(L, p);
}

/* A one-shot Lua callback held at registry ref `ud`: begin pushes it (and
** releases the ref), the caller pushes its arguments, end calls it. */
static int callback_begin(void *ud)
{
    lua_State *L = LH.L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, (int)(intptr_t)ud);
    luaL_unref(L, LUA_REGISTRYINDEX, (int)(intptr_t)ud);
    return top;
}

static void callback_end(int top, int nargs, const char *what)
{
    lua_State *L = LH.L;
    if (budget_call(L, nargs, 0) != LUA_OK)
        cps_log("lua", CPS_LOG_ERROR, "%s callback failed: %s", what, lua_tostring(L, -1));
    lua_settop(L, top);
}

/* The result of a call that took a callback: true, or nil and the error
** (then the callback, held at `ref`, is released: it will never run). */
static int push_status(lua_State *L, int rc, int ref)
{
    if (!rc) { lua_pushboolean(L, 1); return 1; }
    if (ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, ref);
    lua_pushnil(L);
    lua_pushstring(L, cps_errname(rc));
    return 2;
}

/* cps.admin_call(name, args, fn(err, value)): run an admin command as the
** operator (no key, caller "lua"), as `cpsd admin` does: a script builds
** on the others.  fn runs on a later loop turn, never inside this call (a
** command may answer at once, and Lua must not be re-entered). */
typedef struct admin_call { int ref; int err; json_t *value; cps_plugin *p; } admin_call;

static void admin_call_fire(cps_timer *t, void *ud)
{
    (void)t;
    admin_call *c = ud;
    lua_State *L = LH.L;
    if (L) {
        int top = callback_begin((void *)(intptr_t)c->ref);
        if (c->err) lua_pushstring(L, cps_errname(c->err)); else lua_pushnil(L);
        char why[256];
        if (c->err || !c->value) lua_pushnil(L);
        else if (safe_push(L, c->value, why, sizeof why)) lua_pushnil(L);
        callback_end(top, 2, "admin_call");
    }
    json_decref(c->value);
    free(c);
}

static void admin_call_done(void *ud, int err, json_t *value, unsigned flags)
{
    (void)flags;
    admin_call *c = ud;
    c->err = err;
    c->value = value ? json_incref(value) : NULL;
    if (!cps_timer_start(c->p, 0, 0, admin_call_fire, c)) {
        cps_log("lua", CPS_LOG_ERROR, "admin_call: no timer for the answer");
        if (LH.L) luaL_unref(LH.L, LUA_REGISTRYINDEX, c->ref);
        json_decref(c->value);
        free(c);
    }
}

static int l_admin_call(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    char err[256];
    json_t *args = lua_isnoneornil(L, 2) ? json_null() : safe_json(L, 2, err, sizeof err);
    if (!args) return luaL_error(L, "%s", err);
    admin_call *c = calloc(1, sizeof *c);
    if (!c) { json_decref(args); return luaL_error(L, "ENOMEM"); }
    lua_pushvalue(L, 3);
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->p = script_of(L);
    int rc = cps_rpc_call(c->p, name, CPS_RPC_ADMIN, NULL, "lua", args, admin_call_done, c);
    if (rc) { int ref = c->ref; free(c); return push_status(L, rc, ref); }
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- small records of the storage backend (this process's) ---- */

static void lua_record_done(void *ud, int status, const char *data, size_t len)
{
    lua_State *L = LH.L;
    if (!L) return;
    int top = callback_begin(ud);
    if (status != CPS_OK) lua_pushstring(L, cps_errname(status)); else lua_pushnil(L);
    if (status == CPS_OK && data) lua_pushlstring(L, data, len); else lua_pushnil(L);
    callback_end(top, 2, "record");
}

static void lua_record_status(void *ud, int status) { lua_record_done(ud, status, NULL, 0); }

/* cps.record_get(ns, key, fn(err, data)), cps.record_put(ns, key, data, fn(err)),
** cps.record_del(ns, key, fn(err)): on this process's storage backend. */
static int l_record(lua_State *L, int op)
{
    const char *ns = luaL_checkstring(L, 1);
    const char *key = luaL_checkstring(L, 2);
    size_t len = 0;
    const char *data = op == 1 ? luaL_checklstring(L, 3, &len) : NULL;
    int fn = op == 1 ? 4 : 3;
    luaL_checktype(L, fn, LUA_TFUNCTION);
    const cps_storage_backend *b = cps_storage_get(NULL);
    if (!b) return push_status(L, CPS_ENOENT, LUA_NOREF);
    lua_pushvalue(L, fn);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    void *ud = (void *)(intptr_t)ref;
    int rc = op == 0 ? b->record_get(b->state, ns, key, lua_record_done, ud) :
             op == 1 ? b->record_put(b->state, ns, key, data, len, lua_record_status, ud) :
                       b->record_del(b->state, ns, key, lua_record_status, ud);
    return push_status(L, rc, ref);
}

static int l_record_get(lua_State *L) { return l_record(L, 0); }
static int l_record_put(lua_State *L) { return l_record(L, 1); }
static int l_record_del(lua_State *L) { return l_record(L, 2); }

/* cps.json_decode(text): the value, or nil and "EINVAL: why" (bad JSON,
** or deeper than a script may receive).  cps.json_encode(v): compact text,
** or raises EINVAL. */
static int l_json_decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v) { lua_pushnil(L); lua_pushfstring(L, "EINVAL: %s", je.text); return 2; }
    char err[256];
    int rc = safe_push(L, v, err, sizeof err);
    json_decref(v);
    if (rc) { lua_pushnil(L); lua_pushfstring(L, "EINVAL: %s", err); return 2; }
    return 1;
}

static int l_json_encode(lua_State *L)
{
    char err[256];
    luaL_checkany(L, 1);
    json_t *v = safe_json(L, 1, err, sizeof err);
    if (!v) return luaL_error(L, "%s", err);
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (!t) return luaL_error(L, "ENOMEM");
    lua_pushstring(L, t);
    free(t);
    return 1;
}

/* ---- the storage backend's objects, pin logs and channels ---- */

static void lua_store_size(void *ud, int status, uint64_t size)
{
    lua_State *L = LH.L;
    if (!L) return;
    int top = callback_begin(ud);
    if (status != CPS_OK) lua_pushstring(L, cps_errname(status)); else lua_pushnil(L);
    if (status == CPS_OK) lua_pushinteger(L, (lua_Integer)size); else lua_pushnil(L);
    callback_end(top, 2, "storage");
}

/* Objects read whole: bounded, the admin scripts read small files. */
#define LUA_OBJ_MAX (16u << 20)

static void lua_obj_read_done(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    (void)next;
    if (status == CPS_OK && !eof) status = CPS_ERR_TOO_LARGE;
    lua_record_done(ud, status, data, len);
}

static const cps_storage_backend *need_backend(lua_State *L, int fn_idx, int *ref)
{
    luaL_checktype(L, fn_idx, LUA_TFUNCTION);
    const cps_storage_backend *b = cps_storage_get(NULL);
    *ref = LUA_NOREF;
    if (!b) return NULL;
    lua_pushvalue(L, fn_idx);
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return b;
}

/* cps.store_list(space, after, max, fn(err, names, done)): one page of the
** names a raw space of this process's backend holds ("pin", "channel",
** "obj/blob"... api/cps_storage.h, the raw view), after `after` in byte
** order; `done` once the space has no more.  Reading a live store's list is
** safe; it may miss entries made meanwhile. */
static void lua_store_names(void *ud, int status, const char *const *names, size_t n, bool end)
{
    lua_State *L = LH.L;
    if (!L) return;
    int top = callback_begin(ud);
    if (status != CPS_OK) lua_pushstring(L, cps_errname(status)); else lua_pushnil(L);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_pushboolean(L, status == CPS_OK && end);
    callback_end(top, 3, "store_list");
}

static int l_store_list(lua_State *L)
{
    const char *space = luaL_checkstring(L, 1), *after = luaL_checkstring(L, 2);
    lua_Integer max = luaL_checkinteger(L, 3);
    if (max < 1 || max > 4096) return luaL_error(L, "cps.store_list: max must be 1 to 4096");
    int ref;
    const cps_storage_backend *b = need_backend(L, 4, &ref);
    if (!b || !CPS_STORAGE_HAS(b, raw_list) || !b->raw_list) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->raw_list(b->state, space, after, (size_t)max, lua_store_names, (void *)(intptr_t)ref), ref);
}

/* cps.store_spaces(fn(err, spaces)): every raw space holding an entry;
** cps.store_size(space, name, fn(err, bytes)): one entry's size.  With
** store_list, what an admin script sums to tell the disk usage. */
static int l_store_spaces(lua_State *L)
{
    int ref;
    const cps_storage_backend *b = need_backend(L, 1, &ref);
    if (!b || !CPS_STORAGE_HAS(b, raw_spaces) || !b->raw_spaces) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->raw_spaces(b->state, lua_store_names, (void *)(intptr_t)ref), ref);
}

static int l_store_size(lua_State *L)
{
    const char *space = luaL_checkstring(L, 1), *name = luaL_checkstring(L, 2);
    int ref;
    const cps_storage_backend *b = need_backend(L, 3, &ref);
    if (!b || !CPS_STORAGE_HAS(b, raw_size) || !b->raw_size) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->raw_size(b->state, space, name, lua_store_size, (void *)(intptr_t)ref), ref);
}

/* cps.obj_read(store, key, fn(err, data)): a whole object (at most 16 MiB). */
static int l_obj_read(lua_State *L)
{
    const char *store = luaL_checkstring(L, 1), *key = luaL_checkstring(L, 2);
    int ref;
    const cps_storage_backend *b = need_backend(L, 3, &ref);
    if (!b || !CPS_STORAGE_HAS(b, obj_read)) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->obj_read(b->state, store, key, 0, LUA_OBJ_MAX, lua_obj_read_done,
                                      (void *)(intptr_t)ref), ref);
}

/* cps.obj_append(store, key, data, fn(err, size)) */
static int l_obj_append(lua_State *L)
{
    const char *store = luaL_checkstring(L, 1), *key = luaL_checkstring(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    int ref;
    const cps_storage_backend *b = need_backend(L, 4, &ref);
    if (!b || !CPS_STORAGE_HAS(b, obj_append)) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->obj_append(b->state, store, key, data, len, lua_store_size,
                                        (void *)(intptr_t)ref), ref);
}

/* cps.obj_size(store, key, fn(err, size)) */
static int l_obj_size(lua_State *L)
{
    const char *store = luaL_checkstring(L, 1), *key = luaL_checkstring(L, 2);
    int ref;
    const cps_storage_backend *b = need_backend(L, 3, &ref);
    if (!b || !CPS_STORAGE_HAS(b, obj_size)) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->obj_size(b->state, store, key, lua_store_size, (void *)(intptr_t)ref), ref);
}

/* cps.obj_write(store, key, data, fn(err)), cps.obj_delete(store, key, fn(err)),
** cps.obj_archive(store, key, fn(err)) */
static int l_obj_write(lua_State *L)
{
    const char *store = luaL_checkstring(L, 1), *key = luaL_checkstring(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    int ref;
    const cps_storage_backend *b = need_backend(L, 4, &ref);
    if (!b || !CPS_STORAGE_HAS(b, obj_write)) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->obj_write(b->state, store, key, data, len, lua_record_status,
                                       (void *)(intptr_t)ref), ref);
}

static int l_obj_delete(lua_State *L)
{
    const char *store = luaL_checkstring(L, 1), *key = luaL_checkstring(L, 2);
    int ref;
    const cps_storage_backend *b = need_backend(L, 3, &ref);
    if (!b || !CPS_STORAGE_HAS(b, obj_delete)) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->obj_delete(b->state, store, key, lua_record_status, (void *)(intptr_t)ref), ref);
}

static int l_obj_archive(lua_State *L)
{
    const char *store = luaL_checkstring(L, 1), *key = luaL_checkstring(L, 2);
    int ref;
    const cps_storage_backend *b = need_backend(L, 3, &ref);
    if (!b || !CPS_STORAGE_HAS(b, obj_archive)) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->obj_archive(b->state, store, key, lua_record_status, (void *)(intptr_t)ref), ref);
}

/* cps.obj_restore(store, key, fn(err)): the archived copy back (ENOENT if
** none, EEXIST over a live object; ENOENT too on a backend without it). */
static int l_obj_restore(lua_State *L)
{
    const char *store = luaL_checkstring(L, 1), *key = luaL_checkstring(L, 2);
    int ref;
    const cps_storage_backend *b = need_backend(L, 3, &ref);
    if (!b || !CPS_STORAGE_HAS(b, obj_restore) || !b->obj_restore) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->obj_restore(b->state, store, key, lua_record_status, (void *)(intptr_t)ref), ref);
}

/* cps.channel_read(id, offset, max, fn(err, text, next, eof)): complete
** lines of a channel log from a byte offset (max at most 1 MiB). */
static void lua_channel_read_done(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    lua_State *L = LH.L;
    if (!L) return;
    int top = callback_begin(ud);
    if (status != CPS_OK) lua_pushstring(L, cps_errname(status)); else lua_pushnil(L);
    if (status == CPS_OK) lua_pushlstring(L, data ? data : "", len); else lua_pushnil(L);
    lua_pushinteger(L, (lua_Integer)next);
    lua_pushboolean(L, eof);
    callback_end(top, 4, "channel_read");
}

static int l_channel_read(lua_State *L)
{
    const char *id = luaL_checkstring(L, 1);
    lua_Integer off = luaL_checkinteger(L, 2), max = luaL_checkinteger(L, 3);
    if (off < 0 || max < 1 || max > (1 << 20)) return luaL_error(L, "EINVAL: channel_read offset/max");
    int ref;
    const cps_storage_backend *b = need_backend(L, 4, &ref);
    if (!b) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->channel_read(b->state, id, (uint64_t)off, (size_t)max, lua_channel_read_done,
                                          (void *)(intptr_t)ref), ref);
}

/* cps.channel_delete(id, fn(err)): the log, metadata log and placeholder,
** for good. */
static int l_channel_delete(lua_State *L)
{
    const char *id = luaL_checkstring(L, 1);
    int ref;
    const cps_storage_backend *b = need_backend(L, 2, &ref);
    if (!b) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->channel_delete(b->state, id, lua_record_status, (void *)(intptr_t)ref), ref);
}

/* cps.pin_read(safe_key, fn(err, text)): a key's pin log. */
static int l_pin_read(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    int ref;
    const cps_storage_backend *b = need_backend(L, 2, &ref);
    if (!b) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->pin_read(b->state, key, lua_record_done, (void *)(intptr_t)ref), ref);
}

/* cps.pin_archive(safe_key, fn(err)): move a key's pin log to the archive. */
static int l_pin_archive(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    int ref;
    const cps_storage_backend *b = need_backend(L, 2, &ref);
    if (!b || !CPS_STORAGE_HAS(b, pin_archive)) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->pin_archive(b->state, key, lua_record_status, (void *)(intptr_t)ref), ref);
}

/* cps.pin_restore(safe_key, fn(err)): the archived pin log back (ENOENT if
** none, EEXIST over a live one). */
static int l_pin_restore(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    int ref;
    const cps_storage_backend *b = need_backend(L, 2, &ref);
    if (!b || !CPS_STORAGE_HAS(b, pin_restore) || !b->pin_restore) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->pin_restore(b->state, key, lua_record_status, (void *)(intptr_t)ref), ref);
}

/* cps.channel_size(id, fn(err, bytes)), cps.placeholder_read(id, fn(err, text)),
** cps.meta_read(id, fn(err, text)): a channel of this process's backend (in
** a cluster, run them on the channel's owner, cps.owner("storage", id)). */
static int l_channel_size(lua_State *L)
{
    const char *id = luaL_checkstring(L, 1);
    int ref;
    const cps_storage_backend *b = need_backend(L, 2, &ref);
    if (!b) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->channel_size(b->state, id, lua_store_size, (void *)(intptr_t)ref), ref);
}

static int l_placeholder_read(lua_State *L)
{
    const char *id = luaL_checkstring(L, 1);
    int ref;
    const cps_storage_backend *b = need_backend(L, 2, &ref);
    if (!b) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->placeholder_read(b->state, id, lua_record_done, (void *)(intptr_t)ref), ref);
}

static int l_meta_read(lua_State *L)
{
    const char *id = luaL_checkstring(L, 1);
    int ref;
    const cps_storage_backend *b = need_backend(L, 2, &ref);
    if (!b) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->meta_read(b->state, id, lua_record_done, (void *)(intptr_t)ref), ref);
}

/* cps.channel_restore(id, fn(err)) */
static int l_channel_restore(lua_State *L)
{
    const char *id = luaL_checkstring(L, 1);
    int ref;
    const cps_storage_backend *b = need_backend(L, 2, &ref);
    if (!b) return push_status(L, CPS_ENOENT, ref);
    return push_status(L, b->channel_restore(b->state, id, lua_record_status, (void *)(intptr_t)ref), ref);
}

static int l_send(lua_State *L)
{
    const char *node = luaL_checkstring(L, 1);
    const char *cmd = luaL_checkstring(L, 2);
    char err[256];
    json_t *args = safe_json(L, 3, err, sizeof err);
    if (!args) return luaL_error(L, "%s", err);
    return push_status(L, cps_router_send(script_of(L), node, cmd, args), LUA_NOREF);
}

static void lua_query_done(void *ud, int err, json_t *data)
{
    lua_State *L = LH.L;
    if (!L) return;
    int top = callback_begin(ud);
    if (err) lua_pushstring(L, cps_errname(err)); else lua_pushnil(L);
    char why[256];
    if (!data) lua_pushnil(L);
    else if (safe_push(L, data, why, sizeof why)) {
        cps_log("lua", CPS_LOG_ERROR, "query: the answer cannot reach Lua: %s", why);
        lua_pop(L, 1);
        lua_pushstring(L, "EINVAL");
        lua_pushnil(L);
    }
    callback_end(top, 2, "query");
}

static int l_query(lua_State *L)
{
    const char *node = luaL_checkstring(L, 1);
    const char *cmd = luaL_checkstring(L, 2);
    luaL_checktype(L, 4, LUA_TFUNCTION);
    lua_Integer timeout = luaL_optinteger(L, 5, 0);
    char err[256];
    json_t *args = safe_json(L, 3, err, sizeof err);
    if (!args) return luaL_error(L, "%s", err);
    lua_pushvalue(L, 4);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int rc = cps_router_query(script_of(L), node, cmd, args, (unsigned)timeout, lua_query_done,
                              (void *)(intptr_t)ref);
    return push_status(L, rc, ref);
}

/* ---- timers ---- */

typedef struct lua_timer { cps_timer *t; int ref; bool repeat; } lua_timer;

static void lua_timer_fire(cps_timer *t, void *ud)
{
    (void)t;
    lua_timer *lt = ud;
    lua_State *L = LH.L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->ref);
    if (!lt->repeat) {
        /* A one-shot timer is freed by the host after this: drop the
        ** handle and the anchors so the userdata can be collected. */
        lt->t = NULL;
        luaL_unref(L, LUA_REGISTRYINDEX, lt->ref);
        lua_pushnil(L);
        lua_rawsetp(L, LUA_REGISTRYINDEX, lt);
    }
    if (budget_call(L, 0, 0) != LUA_OK)
        cps_log("lua", CPS_LOG_ERROR, "timer callback failed: %s", lua_tostring(L, -1));
    lua_settop(L, top);
}

static int l_timer(lua_State *L)
{
    lua_Integer after = luaL_checkinteger(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_Integer repeat = luaL_optinteger(L, 3, 0);
    if (after < 0 || repeat < 0) return luaL_error(L, "EINVAL: negative delay");
    lua_timer *lt = lua_newuserdatauv(L, sizeof *lt, 1);
    luaL_setmetatable(L, "cps.timer");
    lua_pushvalue(L, 2);
    lt->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    /* The timer userdata is anchored in the registry while it runs. */
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, lt);
    lt->repeat = repeat > 0;
    lt->t = cps_timer_start(script_of(L), (uint64_t)after, (uint64_t)repeat, lua_timer_fire, lt);
    return 1;
}

static int l_timer_stop(lua_State *L)
{
    lua_timer *lt = luaL_checkudata(L, 1, "cps.timer");
    if (lt->t) {
        cps_timer_stop(lt->t);
        lt->t = NULL;
        luaL_unref(L, LUA_REGISTRYINDEX, lt->ref);
        lua_pushnil(L);
        lua_rawsetp(L, LUA_REGISTRYINDEX, lt);
    }
    return 0;
}

/* ---- misc ---- */

static int l_log(lua_State *L)
{
    int level = CPS_LOG_INFO;
    const char *msg;
    if (lua_gettop(L) >= 2) {
        level = cps_log_level_from_name(luaL_checkstring(L, 1));
        if (level < 0) level = CPS_LOG_INFO;
        msg = luaL_checkstring(L, 2);
    } else {
        msg = luaL_checkstring(L, 1);
    }
    cps_log(script_of(L)->name, level, "%s", msg);
    return 0;
}

static int l_config(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    json_t *v = cps_config_live(path);
    char err[256];
    if (!v) lua_pushnil(L);
    else if (cps_lua_json_push(L, v, err, sizeof err)) return luaL_error(L, "EINVAL: config %s: %s", path, err);
    return 1;
}

static int l_owner(lua_State *L)
{
    char buf[64];
    const char *n = cps_router_owner(luaL_checkstring(L, 1), luaL_checkstring(L, 2), buf, sizeof buf);
    if (n) lua_pushstring(L, n); else lua_pushnil(L);
    return 1;
}

static int l_role_count(lua_State *L)
{
    lua_pushinteger(L, cps_router_role_count(luaL_checkstring(L, 1)));
    return 1;
}

static int l_now(lua_State *L) { lua_pushinteger(L, (lua_Integer)cps_now_ms()); return 1; }

static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) lua_newtable(L); else luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lua_isnil(L, 1)) { lua_pop(L, 1); lua_newtable(L); }
    cps_lua_json_mark_array(L, -1);
    return 1;
}

static const luaL_Reg cps_funcs[] = {
    { "register_rpc", l_register_rpc },
    { "register_command", l_register_command },
    { "register_role_command", l_register_role_command },
    { "record_get", l_record_get },
    { "record_put", l_record_put },
    { "record_del", l_record_del },
    { "send", l_send },
    { "query", l_query },
    { "timer", l_timer },
    { "log", l_log },
    { "config", l_config },
    { "owner", l_owner },
    { "role_count", l_role_count },
    { "now", l_now },
    { "array", l_array },
    { "node", l_node },
    { "on_unload", l_on_unload },
    { "admin_command", l_admin_command },
    { "admin_call", l_admin_call },
    { "json_decode", l_json_decode },
    { "json_encode", l_json_encode },
    { "instance_set", l_instance_set },
    { "random_hex", l_random_hex },
    { "base64_decode", l_base64_decode },
    { "base64_encode", l_base64_encode },
    { "random_bytes", l_random_bytes },
    { "equal", l_equal },
    { "counter", l_counter },
    { "print", l_print },
    { "sessions", l_sessions },
    { "process", l_process },
    { "timings", l_timings },
    { "obj_read", l_obj_read },
    { "obj_append", l_obj_append },
    { "obj_size", l_obj_size },
    { "obj_write", l_obj_write },
    { "obj_delete", l_obj_delete },
    { "obj_archive", l_obj_archive },
    { "obj_restore", l_obj_restore },
    { "channel_read", l_channel_read },
    { "channel_delete", l_channel_delete },
    { "pin_read", l_pin_read },
    { "store_list", l_store_list },
    { "store_spaces", l_store_spaces },
    { "store_size", l_store_size },
    { "pin_archive", l_pin_archive },
    { "pin_restore", l_pin_restore },
    { "channel_size", l_channel_size },
    { "placeholder_read", l_placeholder_read },
    { "meta_read", l_meta_read },
    { "channel_restore", l_channel_restore },
    { NULL, NULL }
};

/* Build the module with the script's plugin as upvalue of every function. */
static void push_module(lua_State *L, cps_plugin *p)
{
    luaL_newlibtable(L, cps_funcs);
    lua_pushlightuserdata(L, p);
    luaL_setfuncs(L, cps_funcs, 1);
    cps_lua_json_push_null(L);
    lua_setfield(L, -2, "null");
    lua_pushstring(L, CPS_VERSION);
    lua_setfield(L, -2, "version");
}

int cps_lua_init(void)
{
    LH.max_mem = (size_t)cps_config_int("lua.max_memory", 268435456);
    LH.max_instructions = (long)cps_config_int("lua.max_instructions", 10000000);
    LH.L = lua_newstate(lalloc, NULL);
    if (!LH.L) return CPS_ENOMEM;
    lua_State *L = LH.L;
    luaL_openlibs(L);
    cps_lua_json_init(L);
    luaL_newmetatable(L, "cps.answer");
    lua_pushcfunction(L, answer_index);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, "cps.timer");
    lua_newtable(L);
    lua_pushcfunction(L, l_timer_stop);
    lua_setfield(L, -2, "stop");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    return 0;
}

/* The node a script listed as "role:file.lua" is bound to: this process's
** node of that role, whatever its index.  Sets *name to the file part.
** Returns 0 (node set, or "" for a script without a role), 1 if this process
** runs no node of the role (the script is for other processes), or an error. */
static int bind_node(const char *spec, const char **name, char *node, size_t n)
{
    const char *colon = strchr(spec, ':');
    node[0] = 0;
    *name = spec;
    if (!colon || (size_t)(colon - spec) >= 16 || strchr(spec, '/')) return 0;
    char role[16];
    snprintf(role, sizeof role, "%.*s", (int)(colon - spec), spec);
    *name = colon + 1;
    if (local_node(role, node, n)) return 0;
    if (cps_router_role_count(role) == 0) {
        cps_log("lua", CPS_LOG_ERROR, "Lua script '%s': the topology has no role '%s'", spec, role);
        return CPS_ENOENT;
    }
    cps_log("lua", CPS_LOG_INFO, "Lua script '%s' not loaded: this process runs no %s node", spec, role);
    return 1;
}

/* Load one script as a plugin of its own.  `spec` may be "role:file.lua"
** to bind the script to this process's node of that role (register_command
** registers there); a script for a role this process does not run is
** skipped (0). */
int cps_lua_load(const char *spec)
{
    char path[PATH_MAX], node[32];
    const char *name;
    int bound = bind_node(spec, &name, node, sizeof node);
    if (bound) return bound > 0 ? 0 : bound;
    if (!cps_search_script(cps_cfg ? cps_cfg->root : NULL, name, path, sizeof path)) {
        cps_log("lua", CPS_LOG_ERROR, "Lua script '%s' not found in lua_dirs or %s", name, cps_search_lua_dir());
        return CPS_ENOENT;
    }
    cps_plugin *p = cps_plugin_new(name, path, node[0] ? node : NULL);
    if (!p) return CPS_ENOMEM;
    p->is_lua = true;
    p->version = "lua";
    p->fini = script_fini;
    lua_State *L = LH.L;
    int top = lua_gettop(L);
    int rc = luaL_loadfile(L, path);
    if (rc == LUA_OK) {
        /* Each script gets its own environment whose `cps` is bound to it;
        ** everything else falls through to the shared globals. */
        lua_newtable(L);
        push_module(L, p);
        lua_setfield(L, -2, "cps");
        lua_newtable(L);
        lua_pushglobaltable(L);
        lua_setfield(L, -2, "__index");
        lua_setmetatable(L, -2);
        lua_setupvalue(L, -2, 1);
        rc = budget_call(L, 0, 0);
    }
    if (rc != LUA_OK) {
        cps_log("lua", CPS_LOG_ERROR, "Lua script %s failed to load: %s", path, lua_tostring(L, -1));
        lua_settop(L, top);
        forget_hook(L, p);   /* never loaded: no unload; the address may be reused */
        p->unloading = true;
        cps_plugin_forget(p);
        cps_plugin_free(p);
        return CPS_EINVAL;
    }
    lua_settop(L, top);
    cps_log("lua", CPS_LOG_INFO, "loaded Lua script %s%s%s", path, node[0] ? " on " : "", node);
    return 0;
}

void cps_lua_close(void)
{
    if (LH.L) lua_close(LH.L);
    LH.L = NULL;
}

/* The admin commands: every admin/NAME.lua of the lua_dirs, then of the
** built-in directory, in name order; a name found in an earlier directory
** hides the same name later (an operator overrides a built-in command by
** dropping a file of that name).  admin.autoload = false turns it off.
** A script that fails to load is logged and skipped: one operator's broken
** command must not keep the server down. */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void collect_admin(const char *dir, char ***names, size_t *n, size_t *cap)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/admin", dir);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && *n < 1024) {
        size_t l = strlen(e->d_name);
        if (l < 5 || l > 128 || strcmp(e->d_name + l - 4, ".lua") || e->d_name[0] == '.') continue;
        bool dup = false;
        for (size_t i = 0; i < *n && !dup; i++) dup = !strcmp((*names)[i], e->d_name);
        if (dup) continue;
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            char **nn = realloc(*names, nc * sizeof *nn);
            if (!nn) break;
            *names = nn;
            *cap = nc;
        }
        if (((*names)[*n] = strdup(e->d_name))) (*n)++;
    }
    closedir(d);
}

int cps_lua_load_admin(void)
{
    json_t *root = cps_cfg ? cps_cfg->root : NULL;
    if (json_is_false(cps_config_path(root, "admin.autoload"))) return 0;
    char **names = NULL;
    size_t n = 0, cap = 0, i;
    json_t *d;
    json_array_foreach(cps_config_path(root, "lua_dirs"), i, d)
        if (json_is_string(d)) collect_admin(json_string_value(d), &names, &n, &cap);
    collect_admin(cps_search_lua_dir(), &names, &n, &cap);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (i = 0; i < n; i++) {
        char spec[160];
        snprintf(spec, sizeof spec, "admin/%s", names[i]);
        if (cps_lua_load(spec)) cps_log("lua", CPS_LOG_ERROR, "admin command script %s skipped", spec);
        free(names[i]);
    }
    free(names);
    return 0;
}
