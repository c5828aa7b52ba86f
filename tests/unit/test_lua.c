/*
** test_lua.c - the Lua host: scripts under tests/unit/lua register RPC
** commands with cps.register_rpc; they are called through cps_rpc_call as
** the dispatcher plugin would.  JSON round trips, error codes, the
** instruction budget, the memory cap, load failures rolled back, async
** replies from cps.timer, duplicate names, cps.config.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "host.h"
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
    assert_int_equal(call("LUA_EINVAL", "{}", &r), 0);
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "EINVAL");
    assert_null(r.value);

    assert_int_equal(call("LUA_BOOM", "{}", &r), 0);
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "EINTERNAL");

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
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
