/*
** lua_json.h - the one converter between Lua values and JSON (jansson),
** used by the Lua host (script arguments and answers) and the configuration
** (a Lua file returning a table).  The rules are in lua_json.c.
*/
#ifndef CPS_LUA_JSON_H
#define CPS_LUA_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include <lua.h>

/* Tables nested deeper than this are refused in both directions. */
#define CPS_LUA_JSON_MAX_DEPTH 64

/* Create, in L's registry, the metatable that marks a table as a JSON array
** (so an empty array stays an array).  Call once per state; without it no
** table is marked and the rest still works. */
void cps_lua_json_init(lua_State *L);

/* The JSON null of Lua: a light userdata distinct from nil, so that a null
** inside an array keeps its place. */
void cps_lua_json_push_null(lua_State *L);
bool cps_lua_json_is_null(lua_State *L, int idx);

/* Give the table at idx the array mark. */
void cps_lua_json_mark_array(lua_State *L, int idx);

/* The Lua value at idx as JSON (a new reference), or NULL with a message in
** err ("path: why", the path in the form list[2].key).  Raises only on a Lua
** memory error, so call it protected in a state whose memory is capped. */
json_t *cps_lua_json_from_lua(lua_State *L, int idx, char *err, size_t errlen);

/* Push v as a Lua value; 0, or -1 with nothing pushed and a message in err.
** Arrays get the array mark, null is cps_lua_json_push_null's value. */
int cps_lua_json_push(lua_State *L, json_t *v, char *err, size_t errlen);

#endif
