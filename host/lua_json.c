/*
** lua_json.c - Lua values <-> JSON, one set of rules for scripts and for the
** configuration.  Bad values are refused with a message naming where they
** are (list[2].key), never converted approximately and never a crash.
**
** Lua -> JSON: nil and the null value -> null; booleans; integers stay
** integers, floats stay reals (NaN and infinities refused); strings must be
** UTF-8.  A table with the array mark -> an array of t[1..max index] (holes
** are null); an unmarked table -> {} if empty, an array if its keys are
** exactly 1..n, an object if they are all strings; anything else (mixed,
** holes, other key types) is refused, as are cycles and nesting deeper than
** CPS_LUA_JSON_MAX_DEPTH.  JSON -> Lua is the inverse; arrays are marked so
** that they come back as arrays, empty ones included.
*/
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <lauxlib.h>
#include "lua_json.h"

static const char null_key = 0;    /* its address is the null value */
static const char array_key = 0;   /* its address keys the array metatable */

typedef struct conv {
    lua_State *L;
    char *err;
    size_t errlen;
    char path[256];                /* where we are, for messages */
    size_t plen;
    const void *open[CPS_LUA_JSON_MAX_DEPTH];   /* tables being converted */
} conv;

/* ---- shared pieces ---- */

void cps_lua_json_init(lua_State *L)
{
    lua_newtable(L);
    lua_pushstring(L, "array");
    lua_setfield(L, -2, "__jsontype");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &array_key);
}

void cps_lua_json_push_null(lua_State *L) { lua_pushlightuserdata(L, (void *)&null_key); }

bool cps_lua_json_is_null(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == &null_key;
}

void cps_lua_json_mark_array(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key) != LUA_TTABLE) { lua_pop(L, 1); return; }
    lua_setmetatable(L, idx);
}

static bool is_marked(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx)) return false;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
    bool marked = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return marked;
}

static void *fail(conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void *fail(conv *c, const char *fmt, ...)
{
    int n = c->plen ? snprintf(c->err, c->errlen, "%s: ", c->path) : 0;
    if (n < 0 || (size_t)n >= c->errlen) n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return NULL;
}

/* Extend the path by ".key" or "[i]"; returns the length to restore. */
static size_t path_push(conv *c, const char *key, lua_Integer index)
{
    size_t old = c->plen;
    size_t room = sizeof c->path - old;
    int n = key ? snprintf(c->path + old, room, "%s%s", old ? "." : "", key)
                : snprintf(c->path + old, room, "[%lld]", (long long)index);
    c->plen = (n < 0 || (size_t)n >= room) ? sizeof c->path - 1 : old + (size_t)n;
    return old;
}

static void path_pop(conv *c, size_t old) { c->plen = old; c->path[old] = 0; }

/* ---- Lua -> JSON ---- */

static json_t *from_lua(conv *c, int idx, int depth);

/* The keys of the table at idx: how many, how many are strings, the largest
** positive integer key, and whether any is neither. */
typedef struct shape { lua_Integer count, strings, ints, max; const char *other; } shape;

static shape table_shape(lua_State *L, int idx)
{
    shape s = { 0, 0, 0, 0, NULL };
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        s.count++;
        if (lua_type(L, -1) == LUA_TSTRING) s.strings++;
        else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
            s.ints++;
            if (lua_tointeger(L, -1) > s.max) s.max = lua_tointeger(L, -1);
        } else if (!s.other) {
            s.other = lua_isnumber(L, -1) ? "a number that is not an index 1..n" : luaL_typename(L, -1);
        }
    }
    return s;
}

static json_t *array_from_lua(conv *c, int idx, lua_Integer n, int depth)
{
    json_t *a = json_array();
    if (!a) return fail(c, "out of memory");
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(c->L, idx, i);
        size_t old = path_push(c, NULL, i);
        json_t *v = from_lua(c, -1, depth + 1);
        path_pop(c, old);
        lua_pop(c->L, 1);
        if (!v || json_array_append_new(a, v)) { json_decref(a); return v ? fail(c, "out of memory") : NULL; }
    }
    return a;
}

static json_t *object_from_lua(conv *c, int idx, int depth)
{
    json_t *o = json_object();
    if (!o) return fail(c, "out of memory");
    lua_pushnil(c->L);
    while (lua_next(c->L, idx)) {
        size_t klen;
        const char *k = lua_tolstring(c->L, -2, &klen);   /* a string: no conversion */
        size_t old = path_push(c, k, 0);
        json_t *v = from_lua(c, -1, depth + 1);
        if (v && json_object_setn_new(o, k, klen, v)) { v = NULL; fail(c, "the key is not valid UTF-8"); }
        path_pop(c, old);
        lua_pop(c->L, 1);
        if (!v) { lua_pop(c->L, 1); json_decref(o); return NULL; }
    }
    return o;
}

static json_t *table_from_lua(conv *c, int idx, int depth)
{
    const void *self = lua_topointer(c->L, idx);
    if (depth >= CPS_LUA_JSON_MAX_DEPTH) return fail(c, "nested more than %d deep", CPS_LUA_JSON_MAX_DEPTH);
    for (int i = 0; i < depth; i++)
        if (c->open[i] == self) return fail(c, "the table contains itself (a cycle)");
    if (!lua_checkstack(c->L, 8)) return fail(c, "nested too deeply for the Lua stack");
    c->open[depth] = self;
    shape s = table_shape(c->L, idx);
    if (is_marked(c->L, idx)) {
        if (s.strings || s.other) return fail(c, "an array (cps.array) has keys that are not indexes 1..n");
        /* holes become null; a huge index on few items is a mistake, not a list */
        if (s.max > 2 * s.count + 64) return fail(c, "an array with index %lld but only %lld items",
                                                   (long long)s.max, (long long)s.count);
        return array_from_lua(c, idx, s.max, depth);
    }
    if (s.count == 0) return json_object();
    if (s.ints == s.count && s.max == s.count) return array_from_lua(c, idx, s.count, depth);
    if (s.strings == s.count) return object_from_lua(c, idx, depth);
    if (s.other) return fail(c, "a key that is %s cannot be JSON", s.other);
    if (s.strings) return fail(c, "the table mixes list items and named keys");
    return fail(c, "a list with holes (use cps.null for a missing item, or cps.array)");
}

static json_t *from_lua(conv *c, int idx, int depth)
{
    lua_State *L = c->L;
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return json_null();
    case LUA_TBOOLEAN: return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) return json_integer((json_int_t)lua_tointeger(L, idx));
        if (!isfinite(lua_tonumber(L, idx))) return fail(c, "NaN or an infinity cannot be JSON");
        return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        json_t *v = json_stringn(s, n);
        return v ? v : fail(c, "the string is not valid UTF-8");
    }
    case LUA_TTABLE: return table_from_lua(c, idx, depth);
    case LUA_TLIGHTUSERDATA:
        if (cps_lua_json_is_null(L, idx)) return json_null();
        break;
    default: break;
    }
    return fail(c, "a %s cannot be JSON", luaL_typename(L, idx));
}

json_t *cps_lua_json_from_lua(lua_State *L, int idx, char *err, size_t errlen)
{
    conv c = { .L = L, .err = err, .errlen = errlen };
    if (errlen) err[0] = 0;
    int top = lua_gettop(L);
    json_t *v = from_lua(&c, idx, 0);
    lua_settop(L, top);
    return v;
}

/* ---- JSON -> Lua ---- */

static int push(conv *c, json_t *v, int depth);

static int push_object(conv *c, json_t *v, int depth)
{
    lua_State *L = c->L;
    const char *k;
    size_t klen;
    json_t *x;
    lua_createtable(L, 0, (int)json_object_size(v));
    json_object_keylen_foreach(v, k, klen, x) {
        lua_pushlstring(L, k, klen);
        size_t old = path_push(c, k, 0);
        int rc = push(c, x, depth + 1);
        path_pop(c, old);
        if (rc) return -1;
        lua_rawset(L, -3);
    }
    return 0;
}

static int push_array(conv *c, json_t *v, int depth)
{
    lua_State *L = c->L;
    size_t i;
    json_t *x;
    lua_createtable(L, (int)json_array_size(v), 0);
    json_array_foreach(v, i, x) {
        size_t old = path_push(c, NULL, (lua_Integer)i + 1);
        int rc = push(c, x, depth + 1);
        path_pop(c, old);
        if (rc) return -1;
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    cps_lua_json_mark_array(L, -1);
    return 0;
}

static int push(conv *c, json_t *v, int depth)
{
    lua_State *L = c->L;
    if (!lua_checkstack(L, 4)) { fail(c, "nested too deeply for the Lua stack"); return -1; }
    switch (json_typeof(v)) {
    case JSON_OBJECT: case JSON_ARRAY:
        if (depth >= CPS_LUA_JSON_MAX_DEPTH) {
            fail(c, "nested more than %d deep", CPS_LUA_JSON_MAX_DEPTH);
            return -1;
        }
        return json_is_object(v) ? push_object(c, v, depth) : push_array(c, v, depth);
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); return 0;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(v)); return 0;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); return 0;
    case JSON_TRUE: lua_pushboolean(L, 1); return 0;
    case JSON_FALSE: lua_pushboolean(L, 0); return 0;
    default: cps_lua_json_push_null(L); return 0;
    }
}

int cps_lua_json_push(lua_State *L, json_t *v, char *err, size_t errlen)
{
    conv c = { .L = L, .err = err, .errlen = errlen };
    if (errlen) err[0] = 0;
    int top = lua_gettop(L);
    if (!v) { cps_lua_json_push_null(L); return 0; }
    if (push(&c, v, 0)) { lua_settop(L, top); return -1; }
    return 0;
}
