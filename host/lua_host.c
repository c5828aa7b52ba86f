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
#include "host.h"

#ifndef CPS_LUA_DIR
#define CPS_LUA_DIR "/usr/local/share/cpsd/lua"
#endif

static struct {
    lua_State *L;
    size_t mem, max_mem;
    long budget;              /* instructions left in the current call */
    long max_instructions;
    int array_mt;             /* registry ref: metatable marking JSON arrays */
    cps_plugin *current;      /* script being loaded */
} LH;   /* the Lua host singleton */

static const char NULL_KEY = 0;   /* address used as cps.null */
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

/* ---- JSON <-> Lua ---- */

static void push_json(lua_State *L, json_t *v)
{
    size_t i;
    const char *k;
    json_t *x;
    luaL_checkstack(L, 4, "json too deep");
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        lua_createtable(L, 0, (int)json_object_size(v));
        json_object_foreach(v, k, x) { push_json(L, x); lua_setfield(L, -2, k); }
        break;
    case JSON_ARRAY:
        lua_createtable(L, (int)json_array_size(v), 0);
        json_array_foreach(v, i, x) { push_json(L, x); lua_rawseti(L, -2, (lua_Integer)i + 1); }
        lua_rawgeti(L, LUA_REGISTRYINDEX, LH.array_mt);
        lua_setmetatable(L, -2);
        break;
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(v)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    default: lua_pushlightuserdata(L, (void *)&NULL_KEY); break;
    }
}

static json_t *to_json(lua_State *L, int idx, int depth)
{
    idx = lua_absindex(L, idx);
    if (depth > 64) luaL_error(L, "EINVAL: value nested too deeply");
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return json_null();
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == &NULL_KEY) return json_null();
        break;
    case LUA_TBOOLEAN: return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) return json_integer((json_int_t)lua_tointeger(L, idx));
        return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        json_t *j = json_stringn(s, n);
        if (!j) luaL_error(L, "EINVAL: string is not valid UTF-8");
        return j;
    }
    case LUA_TTABLE: {
        bool marked = false;
        if (lua_getmetatable(L, idx)) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, LH.array_mt);
            marked = lua_rawequal(L, -1, -2);
            lua_pop(L, 2);
        }
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        if (marked || n > 0) {
            json_t *a = json_array();
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, idx, i);
                json_array_append_new(a, to_json(L, -1, depth + 1));
                lua_pop(L, 1);
            }
            return a;
        }
        json_t *o = json_object();
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                json_object_set_new(o, lua_tostring(L, -2), to_json(L, -1, depth + 1));
            } else {
                json_decref(o);
                luaL_error(L, "EINVAL: table keys must be strings");
            }
            lua_pop(L, 1);
        }
        return o;
    }
    default: break;
    }
    luaL_error(L, "EINVAL: a %s cannot be sent as JSON", luaL_typename(L, idx));
    return NULL;
}

/* Protected conversion (to_json may raise). */
static int p_to_json(lua_State *L)
{
    json_t **out = lua_touserdata(L, 2);
    *out = to_json(L, 1, 0);
    return 0;
}

static json_t *safe_json(lua_State *L, int idx, char *err, size_t errlen)
{
    json_t *out = NULL;
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, p_to_json);
    lua_pushvalue(L, idx);
    lua_pushlightuserdata(L, &out);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_pop(L, 1);
        json_decref(out);
        return NULL;
    }
    return out;
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
    LH.budget = LH.max_instructions;
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_STEP);
    int rc = lua_pcall(L, nargs, nres, 0);
    lua_sethook(L, NULL, 0, 0);
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
    push_json(L, args);
    lua_pushvalue(L, top + 1);
    int rc = budget_call(L, 2, 1);
    if (rc != LUA_OK) {
        char buf[64];
        const char *msg = lua_tostring(L, -1);
        cps_log("lua", CPS_LOG_ERROR, "%s failed: %s", what, msg ? msg : "(error object)");
        if (a->h) { lua_answer done = *a; a->h = NULL; answer_err(&done, error_code(msg, buf, sizeof buf)); }
        lua_settop(L, top);
        return CPS_OK;
    }
    if (!a->h) { lua_settop(L, top); return CPS_OK; }                  /* answered */
    if (lua_isnil(L, -1)) { lua_settop(L, top); return CPS_ASYNC; }   /* later */
    char err[256];
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

/* ---- inter-node commands, send, query ---- */

/* fn(args, call): call.from, call:reply(v), call:error(code). */
static int lua_command_handler(cps_call *call, json_t *args, void *ud)
{
    return run_handler((int)(intptr_t)ud, args, false, call, cps_router_call_from(call), "command handler");
}

static int l_register_command(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int rc = cps_router_register(script_of(L), name, lua_command_handler, (void *)(intptr_t)ref);
    if (rc) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "register_command %s: %s (scripts attach to a node with `node = \"core\"` in lua_scripts)", name, cps_errname(rc));
    }
    return 0;
}

static int l_register_role_command(lua_State *L)
{
    const char *role = luaL_checkstring(L, 1);
    const char *name = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lua_pushvalue(L, 3);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int rc = cps_router_register_role(script_of(L), role, name, lua_command_handler, (void *)(intptr_t)ref);
    if (rc) luaL_unref(L, LUA_REGISTRYINDEX, ref);
    if (rc == CPS_ENOENT) { lua_pushboolean(L, 0); return 1; }   /* no such node here */
    if (rc) return luaL_error(L, "register_role_command %s: %s", name, cps_errname(rc));
    lua_pushboolean(L, 1);
    return 1;
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
    if (data) push_json(L, data); else lua_pushnil(L);
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
    json_t *v = cps_config_path(cps_cfg ? cps_cfg->root : NULL, path);
    if (!v) lua_pushnil(L); else push_json(L, v);
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
    lua_rawgeti(L, LUA_REGISTRYINDEX, LH.array_mt);
    lua_setmetatable(L, -2);
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
    { NULL, NULL }
};

/* Build the module with the script's plugin as upvalue of every function. */
static void push_module(lua_State *L, cps_plugin *p)
{
    luaL_newlibtable(L, cps_funcs);
    lua_pushlightuserdata(L, p);
    luaL_setfuncs(L, cps_funcs, 1);
    lua_pushlightuserdata(L, (void *)&NULL_KEY);
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
    lua_newtable(L);
    lua_pushstring(L, "array");
    lua_setfield(L, -2, "__jsontype");
    LH.array_mt = luaL_ref(L, LUA_REGISTRYINDEX);
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

static bool find_script(const char *name, char *out, size_t n)
{
    if (name[0] == '/') { snprintf(out, n, "%s", name); return access(out, R_OK) == 0; }
    if (strstr(name, "..")) return false;
    size_t i;
    json_t *d;
    json_array_foreach(cps_config_path(cps_cfg ? cps_cfg->root : NULL, "lua_dirs"), i, d) {
        snprintf(out, n, "%s/%s", json_string_value(d), name);
        if (access(out, R_OK) == 0) return true;
    }
    snprintf(out, n, "%s/%s", CPS_LUA_DIR, name);
    return access(out, R_OK) == 0;
}

/* Load one script as a plugin of its own.  `name` may be "role:file.lua"
** to attach the script to a local node (for register_command). */
int cps_lua_load(const char *spec)
{
    char path[PATH_MAX], node[32] = "";
    const char *name = spec;
    const char *colon = strchr(spec, ':');
    if (colon && (size_t)(colon - spec) < 16 && !strchr(spec, '/')) {
        snprintf(node, sizeof node, "%.*s:0", (int)(colon - spec), spec);
        name = colon + 1;
    }
    if (!find_script(name, path, sizeof path)) {
        cps_log("lua", CPS_LOG_ERROR, "Lua script '%s' not found in lua_dirs or %s", name, CPS_LUA_DIR);
        return CPS_ENOENT;
    }
    cps_plugin *p = cps_plugin_new(name, path, node[0] ? node : NULL);
    if (!p) return CPS_ENOMEM;
    p->is_lua = true;
    p->version = "lua";
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
        p->unloading = true;
        cps_plugin_forget(p);
        cps_plugin_free(p);
        return CPS_EINVAL;
    }
    lua_settop(L, top);
    cps_log("lua", CPS_LOG_INFO, "loaded Lua script %s", path);
    return 0;
}

void cps_lua_close(void)
{
    if (LH.L) lua_close(LH.L);
    LH.L = NULL;
}
