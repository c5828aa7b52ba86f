/*
** test_lua.c - the Lua host: scripts under tests/unit/lua register RPC
** commands with cps.register_rpc; they are called through cps_rpc_call as
** the dispatcher plugin would.  JSON round trips, error codes, the
** instruction budget, the memory cap, load failures rolled back, async
** replies from cps.timer, duplicate names, cps.config.  The process runs
** core:1 of a two-core cluster (core:0 and storage:0 are remote): scripts
** bind to core:1, registrations for remote nodes are refused.  The unload
** hook.  The Lua<->JSON converter on its own (lua_json.c).
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include "host.h"
#include "lua_json.h"
#include "test_util.h"

static uv_loop_t loop;
static char cfg_path[64];

/* Tests keep their `result` structs static: after a failed assertion an
** async call may still be answered (ECANCELED at teardown), and its done
** callback must not write into a dead stack frame. */
typedef struct result { int calls; char error[32]; char *value; } result;

static void done(void *ud, int err, json_t *value, unsigned flags)
{
    (void)flags;
    result *r = ud;
    r->calls++;
    snprintf(r->error, sizeof r->error, "%s", err ? cps_errname(err) : "");
    free(r->value);
    r->value = value ? json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
}

static void result_free(result *r) { free(r->value); memset(r, 0, sizeof *r); }

/* Calls `name` with `args_json` (parsed; NULL for none) as an anonymous
** command; returns cps_rpc_call's code. */
static int call_kind(const char *name, int kind, const char *key, const char *args_json, result *r)
{
    result_free(r);
    json_t *args = NULL;
    if (args_json) {
        json_error_t e;
        args = json_loads(args_json, JSON_DECODE_ANY, &e);
        if (!args) fail_msg("bad test JSON %s: %s", args_json, e.text);
    }
    return cps_rpc_call(NULL, name, kind, key, NULL, args, done, r);
}

static int call(const char *name, const char *args_json, result *r)
{
    return call_kind(name, CPS_RPC_ANON, NULL, args_json, r);
}

static void guard_fire(uv_timer_t *t) { *(bool *)t->data = true; }
static void guard_closed(uv_handle_t *h) { (void)h; }

static int run_until(int *flag, uint64_t max_ms)
{
    uv_timer_t guard;
    bool expired = false;
    uv_timer_init(&loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, guard_fire, max_ms, 0);
    while (!*flag && !expired) uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&guard);
    uv_close((uv_handle_t *)&guard, guard_closed);
    uv_run(&loop, UV_RUN_NOWAIT);
    return *flag;
}

static int group_setup(void **state)
{
    (void)state;
    char text[1024];
    snprintf(text, sizeof text,
             "return {\n"
             "    lua_dirs = { \"%s/lua\" },\n"
             "    listen = { port = 4321 },\n"
             "    lua = { max_instructions = 100000, max_memory = 4194304 },\n"
             "}\n", TEST_DATA_DIR);
    write_temp(cfg_path, sizeof cfg_path, ".lua", text);
    char *err = NULL;
    cps_cfg = cps_config_load(cfg_path, &err);
    unlink(cfg_path);          /* read once; nothing reads it later */
    if (!cps_cfg) { fprintf(stderr, "config: %s\n", err); free(err); return -1; }
    if (uv_loop_init(&loop)) return -1;
    cps_timers_init(&loop);
    if (cps_router_init(&loop)) return -1;
    /* As `cpsd --topology F --role core --index 1` would: its own node
    ** first, then the peers it knows through links. */
    cps_router_set_role_count("core", 2);
    cps_router_set_role_count("storage", 1);
    if (cps_router_add_node("core:1", NULL) || cps_router_add_remote("core:0") ||
        cps_router_add_remote("storage:0"))
        return -1;
    if (cps_lua_init()) return -1;
    int rc = cps_lua_load("ok.lua");
    if (rc) { fprintf(stderr, "ok.lua: %s\n", cps_errname(rc)); return -1; }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    cps_plugins_fini();       /* drops the scripts' commands and timers */
    cps_rpc_shutdown();
    cps_router_shutdown();
    cps_lua_close();
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop);
    if (rc) fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
    cps_plugins_close();
    cps_config_free(cps_cfg);
    cps_cfg = NULL;
    cps_timers_init(NULL);
    cps_metrics_free();
    return rc ? -1 : 0;
}

/* ---- tests ---- */

static void round_trip(const char *json)
{
    static result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(call("LUA_ECHO", json, &r), 0);
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "");
    /* Compare in canonical form. */
    json_t *in = json_loads(json, JSON_DECODE_ANY, NULL);
    char *want = json_dumps(in, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(in);
    if (!r.value || strcmp(r.value, want) != 0)
        fail_msg("echo of %s gave %s", want, r.value ? r.value : "(none)");
    free(want);
    result_free(&r);
}

static void test_sync_round_trip(void **state)
{
    (void)state;
    round_trip("{\"a\":1,\"s\":\"text\",\"f\":1.5,\"t\":true,\"no\":false}");
    round_trip("[1,\"two\",3.25,false]");
    round_trip("{\"nested\":{\"list\":[{\"x\":[1,[2,[3]]]},{}],\"deep\":{\"er\":{\"est\":\"!\"}}}}");
    round_trip("{\"n\":null,\"l\":[1,null,3]}");
    round_trip("[]");
    round_trip("{}");
    round_trip("{\"e\":[],\"o\":{},\"ee\":[[]]}");
    round_trip("null");
    round_trip("\"just a string\"");
    round_trip("9007199254740993");
    round_trip("{\"utf8\":\"h\\u00e9llo \\u2603\"}");
    /* Values built in Lua: cps.null, cps.array(), {} as an object. */
    static result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(call("LUA_SHAPES", NULL, &r), 0);
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "");
    assert_string_equal(r.value,
        "{\"a\":[1,2,3],\"e\":[],\"f\":false,\"l\":[\"x\",null,3],\"n\":null,"
        "\"nested\":{\"x\":{\"y\":[\"z\",true,1.5]}},\"o\":{},\"s\":\"str\"}");
    result_free(&r);
}

static void test_errors(void **state)
{
    (void)state;
    static result r;
    memset(&r, 0, sizeof r);
    capture c;
    capture_start(&c);
    assert_int_equal(call("LUA_EINVAL", "{}", &r), 0);
    char *log = capture_end(&c);
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "EINVAL");
    assert_null(r.value);
    /* A client's mistake is logged at info, not error (lua/README.md). */
    assert_non_null(strstr(log, "info  [lua] RPC LUA_EINVAL failed: EINVAL"));
    assert_null(strstr(log, "error [lua]"));
    free(log);

    capture_start(&c);
    assert_int_equal(call("LUA_BOOM", "{}", &r), 0);
    log = capture_end(&c);
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "EINTERNAL");
    /* A bug in the script stays an error. */
    assert_non_null(strstr(log, "error [lua] RPC LUA_BOOM failed: "));
    free(log);

    assert_int_equal(call("LUA_CTX_ERROR", "{}", &r), 0);
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "ENOPE");

    /* Unknown command, or the wrong kind: ENOENT, done not called. */
    assert_int_equal(call("LUA_NOPE", "{}", &r), CPS_ENOENT);
    assert_int_equal(r.calls, 0);
    assert_int_equal(call_kind("LUA_ECHO", CPS_RPC_AUTH, "k", "{}", &r), CPS_ENOENT);
    assert_int_equal(r.calls, 0);
    result_free(&r);
}

static void test_budget(void **state)
{
    (void)state;
    static result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(cps_config_int("lua.max_instructions", 0), 100000);
    assert_int_equal(call("LUA_LOOP", NULL, &r), 0);
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "ETIMEDOUT");
    /* The state is still usable afterwards. */
    round_trip("{\"after\":\"loop\"}");
    /* Memory cap: a failed allocation is an error, not a crash. */
    assert_int_equal(call("LUA_HOG", NULL, &r), 0);
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "EINTERNAL");
    round_trip("{\"after\":\"hog\"}");
    result_free(&r);
}

static void test_load_failures(void **state)
{
    (void)state;
    static result r;
    memset(&r, 0, sizeof r);
    /* Syntax error: refused with an error code, nothing registered. */
    int rc = cps_lua_load("syntax.lua");
    assert_true(rc < 0);
    assert_int_equal(call("LUA_SYNTAX", NULL, &r), CPS_ENOENT);
    /* Fails while running: what it registered first is undone. */
    rc = cps_lua_load("load_error.lua");
    assert_true(rc < 0);
    assert_int_equal(call("LUA_LOAD_ERROR", NULL, &r), CPS_ENOENT);
    /* Endless at load: stopped by the budget, undone. */
    rc = cps_lua_load("loop_at_load.lua");
    assert_true(rc < 0);
    assert_int_equal(call("LUA_LOOP_AT_LOAD", NULL, &r), CPS_ENOENT);
    /* Not found. */
    assert_int_equal(cps_lua_load("no_such_script.lua"), CPS_ENOENT);
    assert_int_equal(cps_lua_load("../lua/ok.lua"), CPS_ENOENT);   /* no ".." */
    assert_int_equal(r.calls, 0);
    /* ok.lua is untouched. */
    round_trip("[\"still\",\"there\"]");
    result_free(&r);
}

static void test_duplicate_name(void **state)
{
    (void)state;
    static result r;
    memset(&r, 0, sizeof r);
    capture c;
    capture_start(&c);
    int rc = cps_lua_load("dup.lua");
    char *log = capture_end(&c);
    assert_true(rc < 0);
    /* The Lua error names the command and the reason. */
    assert_non_null(strstr(log, "LUA_DUP"));
    assert_non_null(strstr(log, "EEXIST"));
    free(log);
    /* The script is refused as a whole: its first LUA_DUP is gone too. */
    assert_int_equal(call("LUA_DUP", NULL, &r), CPS_ENOENT);

    /* A name owned by another script: a Lua error the script can catch. */
    assert_int_equal(cps_lua_load("dup_pcall.lua"), 0);
    assert_int_equal(call("LUA_DUP_RESULT", NULL, &r), 0);
    json_t *v = json_loads(r.value, 0, NULL);
    assert_non_null(v);
    assert_true(json_is_false(json_object_get(v, "ok")));
    const char *err = json_string_value(json_object_get(v, "err"));
    assert_non_null(err);
    assert_non_null(strstr(err, "LUA_ECHO"));
    assert_non_null(strstr(err, "EEXIST"));
    json_decref(v);
    /* LUA_ECHO still answers with ok.lua's function. */
    round_trip("{\"owner\":\"ok.lua\"}");
    result_free(&r);
}

static void test_async_reply(void **state)
{
    (void)state;
    static result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(call("LUA_ASYNC", "{\"x\":[1,2]}", &r), 0);
    assert_int_equal(r.calls, 0);            /* answered by the timer, later */
    assert_true(run_until(&r.calls, 3000));
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "");
    assert_string_equal(r.value, "{\"later\":{\"x\":[1,2]}}");
    /* Two in flight at once. */
    static result a;
    memset(&a, 0, sizeof a);
    static result b;
    memset(&b, 0, sizeof b);
    assert_int_equal(call("LUA_ASYNC", "1", &a), 0);
    assert_int_equal(call("LUA_ASYNC", "2", &b), 0);
    assert_true(run_until(&b.calls, 3000));
    assert_true(run_until(&a.calls, 3000));
    assert_string_equal(a.value, "{\"later\":1}");
    assert_string_equal(b.value, "{\"later\":2}");
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    result_free(&r);
    result_free(&a);
    result_free(&b);
}

static void test_config_and_ctx(void **state)
{
    (void)state;
    static result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(call("LUA_PORT", NULL, &r), 0);
    assert_string_equal(r.error, "");
    assert_string_equal(r.value, "4321");
    assert_int_equal(call("LUA_MISSING_CONFIG", NULL, &r), 0);
    assert_string_equal(r.value, "{\"v\":true}");
    assert_int_equal(call_kind("LUA_KEY", CPS_RPC_AUTH, "pubkey+/=", NULL, &r), 0);
    assert_string_equal(r.value, "{\"key\":\"pubkey+/=\",\"name\":\"LUA_KEY\"}");
    /* An auth command is not callable as anon. */
    assert_int_equal(call("LUA_KEY", NULL, &r), CPS_ENOENT);
    result_free(&r);
}


/* ---- admin commands: cps.admin_command, instance_set, helpers ---- */

static void test_admin_api(void **state)
{
    (void)state;
    static result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(cps_lua_load("admin_api.lua"), 0);
    /* an admin command, not callable as another kind */
    assert_int_equal(call("T_ADMIN", "1", &r), CPS_ENOENT);
    assert_int_equal(call_kind("T_ADMIN", CPS_RPC_ADMIN, "k", "{\"x\":[1]}", &r), 0);
    assert_string_equal(r.error, "");
    assert_string_equal(r.value, "{\"b64\":\"hi\",\"b64bad\":true,\"b64enc\":\"aGkhPw==|\",\"bad\":true,"
                                 "\"bytes\":44,\"dec\":[1,{\"a\":2}],"
                                 "\"enc\":\"[1,\\\"x\\\"]\",\"eq\":true,\"hex\":64,\"key\":\"k\","
                                 "\"live\":{\"x\":[1]},\"neq\":false}");
    /* the live value is what C plugins read */
    char *v = json_dumps(cps_config_live("instance.t_flag"), JSON_COMPACT);
    assert_string_equal(v, "{\"x\":[1]}");
    free(v);
    assert_int_equal(json_integer_value(cps_config_live("instance.t_flag.x.0")), 0);
    /* a summary for listings */
    json_t *list = cps_rpc_list();
    size_t i;
    json_t *e;
    bool found = false;
    json_array_foreach(list, i, e)
        if (!strcmp(json_string_value(json_array_get(e, 0)), "T_ADMIN")) {
            found = true;
            assert_int_equal(json_integer_value(json_array_get(e, 1)), CPS_RPC_ADMIN);
            assert_string_equal(json_string_value(json_array_get(e, 2)), "sets a live setting and reports helpers");
        }
    json_decref(list);
    assert_true(found);
    /* null removes the live value; the configuration's shows again */
    assert_int_equal(cps_instance_set(NULL, "t_flag", json_null()), 0);
    assert_null(cps_config_live("instance.t_flag"));
    assert_int_equal(cps_instance_set(NULL, "listen", json_true()), 0);
    assert_true(json_is_true(cps_config_live("instance.listen")));
    assert_int_equal(json_integer_value(cps_config_live("listen.port")), 4321);   /* not under instance. */
    cps_instance_set(NULL, "listen", NULL);
    assert_int_equal(cps_instance_set(NULL, "Bad.Key", json_true()), CPS_EINVAL);
    assert_int_equal(cps_instance_set(NULL, "", json_true()), CPS_EINVAL);
    /* the operator's call, from a script, answers on a later turn */
    assert_int_equal(call_kind("T_NEST", CPS_RPC_ADMIN, NULL, "\"T_ADMIN\"", &r), 0);
    run_until(&r.calls, 2000);
    assert_int_equal(r.calls, 1);
    assert_non_null(strstr(r.value, "\"key\":\"operator\""));
    assert_non_null(strstr(r.value, "\"live\":[\"w\"]"));
    /* a nested command that loops uses up the caller's budget too (so a
    ** script cannot loop over nested calls without bound): the caller fails
    ** or answers its error; either way the state stays usable */
    assert_int_equal(call_kind("T_NEST", CPS_RPC_ADMIN, NULL, "\"T_LOOP\"", &r), 0);
    run_until(&r.calls, 5000);
    assert_int_equal(r.calls, 1);
    assert_true(!strcmp(r.error, "ETIMEDOUT") || (r.value && strstr(r.value, "ETIMEDOUT")));
    static int never;
    run_until(&never, 100);     /* the deferred answer, if the caller failed */
    assert_int_equal(call_kind("T_ADMIN", CPS_RPC_ADMIN, "k", "2", &r), 0);
    assert_string_equal(r.error, "");
    assert_int_equal(call_kind("T_NEST", CPS_RPC_ADMIN, NULL, "\"NO_SUCH\"", &r), 0);
    assert_string_equal(r.value, "{\"refused\":\"ENOENT\"}");
    cps_instance_set(NULL, "t_flag", NULL);
    cps_instance_free();
    result_free(&r);
}

/* ---- nodes: binding and remote registrations ---- */

static void query_done(void *ud, int err, json_t *data) { done(ud, err, data, 0); }

static int query(const char *node, const char *cmd, const char *args_json, result *r)
{
    result_free(r);
    json_t *args = json_loads(args_json, JSON_DECODE_ANY, NULL);
    return cps_router_query(NULL, node, cmd, args, 2000, query_done, r);
}

static void test_bind_any_index(void **state)
{
    (void)state;
    static result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(cps_lua_load("core:bind.lua"), 0);
    /* The command is on core:1, the node this process runs. */
    assert_int_equal(query("core:1", "LUA_BOUND", "{\"x\":1}", &r), 0);
    assert_true(run_until(&r.calls, 3000));
    assert_string_equal(r.error, "");
    assert_string_equal(r.value, "{\"echo\":{\"x\":1},\"from\":\"core:1\",\"node\":\"core:1\"}");
    assert_int_equal(call("LUA_BIND_NODE", NULL, &r), 0);
    assert_string_equal(r.value, "{\"core\":\"core:1\",\"node\":\"core:1\",\"storage\":\"none\"}");

    /* A script for a role this process does not run is not loaded. */
    capture c;
    capture_start(&c);
    assert_int_equal(cps_lua_load("storage:bind_other.lua"), 0);
    char *log = capture_end(&c);
    assert_non_null(strstr(log, "not loaded"));
    assert_non_null(strstr(log, "storage"));
    free(log);
    assert_int_equal(call("LUA_OTHER_LOADED", NULL, &r), CPS_ENOENT);
    /* A role the topology lacks is a configuration error. */
    assert_int_equal(cps_lua_load("nosuchrole:bind_other.lua"), CPS_ENOENT);
    assert_int_equal(call("LUA_OTHER_LOADED", NULL, &r), CPS_ENOENT);
    result_free(&r);
}

static void test_remote_refused(void **state)
{
    (void)state;
    static result r;
    memset(&r, 0, sizeof r);
    capture c;
    capture_start(&c);
    assert_int_equal(cps_lua_load("remote.lua"), 0);
    char *log = capture_end(&c);
    /* the log says which command and which node */
    assert_non_null(strstr(log, "LUA_REMOTE refused: node core:0 is not run by this process"));
    free(log);
    assert_int_equal(call("LUA_REMOTE_RESULT", NULL, &r), 0);
    json_t *v = json_loads(r.value, 0, NULL);
    assert_non_null(v);
    assert_true(json_is_false(json_object_get(v, "ok")));
    const char *err = json_string_value(json_object_get(v, "err"));
    assert_non_null(err);
    assert_non_null(strstr(err, "core:0"));
    assert_non_null(strstr(err, "not run by this process"));
    assert_true(json_is_true(json_object_get(v, "role_ok")));
    assert_true(json_is_false(json_object_get(v, "role")));
    assert_true(json_is_true(json_object_get(v, "by_role")));
    assert_true(json_is_true(json_object_get(v, "by_id")));
    json_decref(v);
    /* Nothing reached the remote nodes' tables; the local ones answer. */
    assert_int_equal(query("core:1", "LUA_LOCAL_ROLE", "null", &r), 0);
    assert_true(run_until(&r.calls, 3000));
    assert_string_equal(r.value, "\"by role\"");
    assert_int_equal(query("core:1", "LUA_LOCAL_ID", "null", &r), 0);
    assert_true(run_until(&r.calls, 3000));
    assert_string_equal(r.value, "\"by id\"");
    assert_int_equal(query("core:1", "LUA_REMOTE", "null", &r), 0);
    assert_true(run_until(&r.calls, 3000));
    assert_string_equal(r.error, "ENOENT");

    /* register_command in a script bound to no node: an error. */
    assert_int_equal(cps_lua_load("unbound.lua"), 0);
    assert_int_equal(call("LUA_UNBOUND_RESULT", NULL, &r), 0);
    assert_non_null(strstr(r.value, "bound to no node"));
    result_free(&r);
}

/* Last: unloads every script. */
static void test_unload_hook(void **state)
{
    (void)state;
    static result r;
    memset(&r, 0, sizeof r);
    int never = 0;
    assert_int_equal(cps_lua_load("unload.lua"), 0);
    assert_int_equal(cps_lua_load("unload_bad.lua"), 0);
    assert_int_equal(cps_lua_load("unload_err.lua"), 0);
    run_until(&never, 40);
    assert_int_equal(call("LUA_TICKS", NULL, &r), 0);
    assert_true(atoi(r.value) > 0);

    capture c;
    capture_start(&c);
    cps_plugins_fini();
    char *log = capture_end(&c);
    assert_non_null(strstr(log, "LUA_UNLOAD_HOOK ran after some ticks"));
    assert_null(strstr(log, "LUA_REPLACED_HOOK"));     /* replaced by the endless one */
    assert_non_null(strstr(log, "unload hook failed: ETIMEDOUT"));
    assert_non_null(strstr(log, "unload hook failed: EBADHOOK"));
    free(log);
    /* Afterwards its registrations are gone and its timer is stopped. */
    assert_int_equal(call("LUA_TICKS", NULL, &r), CPS_ENOENT);
    capture_start(&c);
    run_until(&never, 40);
    log = capture_end(&c);
    assert_null(strstr(log, "LUA_TICK"));
    free(log);
    result_free(&r);
}

/* ---- the converter on its own ---- */

static int l_mark(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    cps_lua_json_mark_array(L, 1);
    return 1;
}

static lua_State *conv_state(void)
{
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    cps_lua_json_init(L);
    cps_lua_json_push_null(L);
    lua_setglobal(L, "null");
    lua_pushcfunction(L, l_mark);
    lua_setglobal(L, "array");
    return L;
}

/* JSON text -> Lua -> JSON text, compared in canonical form. */
static void conv_round_trip(lua_State *L, const char *text)
{
    char err[256];
    json_t *in = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!in) fail_msg("bad test JSON %s", text);
    assert_int_equal(cps_lua_json_push(L, in, err, sizeof err), 0);
    json_t *out = cps_lua_json_from_lua(L, -1, err, sizeof err);
    lua_pop(L, 1);
    if (!out) fail_msg("%s: %s", text, err);
    if (!json_equal(in, out)) {
        char *got = json_dumps(out, JSON_ENCODE_ANY);
        fail_msg("%s came back as %s", text, got);
    }
    /* integers stay integers, reals stay reals */
    if (json_is_real(in)) assert_true(json_is_real(out));
    if (json_is_integer(in)) assert_true(json_is_integer(out));
    json_decref(in);
    json_decref(out);
}

/* `return <expr>` evaluated, then converted: the JSON text, or "!" and the
** error message. */
static char *conv_lua(lua_State *L, const char *expr)
{
    char src[4096], err[256];
    snprintf(src, sizeof src, "%s", expr);
    if (luaL_dostring(L, src) != LUA_OK) fail_msg("%s: %s", expr, lua_tostring(L, -1));
    json_t *v = cps_lua_json_from_lua(L, -1, err, sizeof err);
    lua_settop(L, 0);
    if (!v) {
        char *e = malloc(strlen(err) + 2);
        sprintf(e, "!%s", err);
        return e;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(v);
    return s;
}

static void expect_lua(lua_State *L, const char *expr, const char *want)
{
    char *got = conv_lua(L, expr);
    if (want[0] == '!' ? !strstr(got, want + 1) || got[0] != '!' : strcmp(got, want) != 0)
        fail_msg("%s gave %s, expected %s", expr, got, want);
    free(got);
}

static void test_converter_round_trips(void **state)
{
    (void)state;
    lua_State *L = conv_state();
    const char *docs[] = {
        "{}", "[]", "null", "true", "0", "-1", "1.5", "1.0", "-0.25", "1e300",
        "9223372036854775807", "-9223372036854775808", "\"\"", "\"a\\u0000b\"",
        "\"h\\u00e9llo \\u2603\"", "[null]", "[1,null,3]", "[[],{},[[]],{\"a\":{}}]",
        "{\"a\":[1,2,{\"b\":[true,false,null]}],\"c\":{\"d\":{\"e\":\"f\"}}}",
        "{\"n\":null,\"list\":[{\"x\":[1,[2,[3]]]},{}]}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) conv_round_trip(L, docs[i]);
    /* 64 nested arrays are fine, 65 are not, in either direction */
    char deep[200];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = 0;
    conv_round_trip(L, deep);
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = 0;
    char err[256];
    json_t *v = json_loads(deep, 0, NULL);
    int top = lua_gettop(L);
    assert_int_equal(cps_lua_json_push(L, v, err, sizeof err), -1);
    assert_int_equal(lua_gettop(L), top);            /* nothing left pushed */
    assert_non_null(strstr(err, "nested more than 64 deep"));
    json_decref(v);
    lua_close(L);
}

static void test_converter_lua_side(void **state)
{
    (void)state;
    lua_State *L = conv_state();
    /* shapes */
    expect_lua(L, "return {}", "{}");
    expect_lua(L, "return array({})", "[]");
    expect_lua(L, "return {1, 2, 3}", "[1,2,3]");
    expect_lua(L, "return {a = 1, b = {}}", "{\"a\":1,\"b\":{}}");
    expect_lua(L, "return array({1, null, 3})", "[1,null,3]");
    expect_lua(L, "local a = array({}) a[3] = 'x' return a", "[null,null,\"x\"]");
    expect_lua(L, "return {1, null, 3}", "[1,null,3]");
    expect_lua(L, "return { x = nil, y = null }", "{\"y\":null}");
    expect_lua(L, "return 2^53", "9007199254740992.0");
    expect_lua(L, "return 1 << 62", "4611686018427387904");
    expect_lua(L, "local t = {1} return { a = t, b = t }", "{\"a\":[1],\"b\":[1]}");   /* shared, not a cycle */
    /* errors, each saying where */
    expect_lua(L, "return 0/0", "!NaN or an infinity cannot be JSON");
    expect_lua(L, "return { a = { b = { 1, 1/0 } } }", "!a.b[2]: NaN or an infinity");
    expect_lua(L, "return { 1, 2, x = 3 }", "!mixes list items and named keys");
    expect_lua(L, "return { [1] = 1, [3] = 3 }", "!a list with holes");
    expect_lua(L, "return { [true] = 1 }", "!a key that is boolean cannot be JSON");
    expect_lua(L, "return { [1.5] = 1 }", "!a key that is a number that is not an index");
    expect_lua(L, "local t = {} t.me = { t } return t", "!me[1]: the table contains itself");
    expect_lua(L, "return { f = print }", "!f: a function cannot be JSON");
    expect_lua(L, "return { s = '\\xff' }", "!s: the string is not valid UTF-8");
    expect_lua(L, "return { ['\\xff'] = 1 }", "!the key is not valid UTF-8");
    expect_lua(L, "return array({ 1, x = 2 })", "!has keys that are not indexes");
    expect_lua(L, "local a = array({}) a[1000] = 1 return a", "!index 1000 but only 1 items");
    expect_lua(L, "local t = {} for i = 1, 64 do t = { t } end return t", "!nested more than 64 deep");
    /* one fewer level is fine */
    char *ok = conv_lua(L, "local t = {} for i = 1, 63 do t = { t } end return t");
    assert_int_not_equal(ok[0], '!');
    free(ok);
    assert_int_equal(lua_gettop(L), 0);
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_round_trip),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_load_failures),
        cmocka_unit_test(test_duplicate_name),
        cmocka_unit_test(test_async_reply),
        cmocka_unit_test(test_config_and_ctx),
        cmocka_unit_test(test_bind_any_index),
        cmocka_unit_test(test_remote_refused),
        cmocka_unit_test(test_converter_round_trips),
        cmocka_unit_test(test_converter_lua_side),
        cmocka_unit_test(test_unload_hook),
        cmocka_unit_test(test_admin_api),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
