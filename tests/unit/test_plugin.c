/*
** test_plugin.c - the .so loader: ABI checks, refusal with rollback of what
** the plugin registered, duplicate RPC names, failing init, missing file,
** fini at unload.  Uses tests/unit/plugins/tp.c built once per variant.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "host.h"
#include "test_util.h"

#define TP(name) TEST_PLUGIN_DIR "/tp_" name ".so"

typedef struct result { int calls; char *error; char *value; } result;

static void done(void *ud, int err, json_t *value, unsigned flags)
{
    (void)flags;
    result *r = ud;
    r->calls++;
    free(r->error);
    free(r->value);
    r->error = err ? strdup(cps_errname(err)) : NULL;
    r->value = value ? json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
}

static void result_clear(result *r) { free(r->error); free(r->value); memset(r, 0, sizeof *r); }

/* Calls an anonymous RPC with {"x":[1,"two"]}; returns cps_rpc_call's code. */
static int call(const char *name, result *r)
{
    result_clear(r);
    json_t *args = json_pack("{s:[i,s]}", "x", 1, "two");
    return cps_rpc_call(NULL, name, CPS_RPC_ANON, NULL, NULL, args, done, r);
}

static void test_good_loads_and_answers(void **state)
{
    (void)state;
    result r = { 0 };
    assert_int_equal(call("TP_CMD", &r), CPS_ENOENT);   /* not yet */
    assert_int_equal(r.calls, 0);
    assert_int_equal(cps_plugin_load_path("tp_good", TP("good"), NULL), 0);
    assert_int_equal(call("TP_CMD", &r), 0);
    assert_int_equal(r.calls, 1);
    assert_null(r.error);
    assert_string_equal(r.value, "{\"x\":[1,\"two\"]}");
    /* Registered as anonymous: another kind does not find it. */
    result_clear(&r);
    assert_int_equal(cps_rpc_call(NULL, "TP_CMD", CPS_RPC_AUTH, "key", NULL, json_null(), done, &r),
                     CPS_ENOENT);
    assert_int_equal(r.calls, 0);
    result_clear(&r);
}

static void test_old_minor_loads(void **state)
{
    (void)state;
    result r = { 0 };
    assert_int_equal(cps_plugin_load_path("tp_old_minor", TP("old_minor"), NULL), 0);
    assert_int_equal(call("TP_OLD_CMD", &r), 0);
    assert_int_equal(r.calls, 1);
    assert_null(r.error);
    assert_string_equal(r.value, "{\"x\":[1,\"two\"]}");
    result_clear(&r);
}

/* Loads a variant that the host must refuse before running any of its
** code; the log names the plugin and contains `want`. */
static void expect_refused(const char *name, const char *path, const char *want)
{
    result r = { 0 };
    capture c;
    capture_start(&c);
    int rc = cps_plugin_load_path(name, path, NULL);
    char *log = capture_end(&c);
    assert_int_equal(rc, CPS_EVERSION);
    assert_non_null(strstr(log, name));
    assert_non_null(strstr(log, "refused"));
    if (!strstr(log, want)) fprintf(stderr, "log lacks '%s':\n%s", want, log);
    assert_non_null(strstr(log, want));
    free(log);
    /* Its init never ran: nothing registered. */
    assert_int_equal(call("TP_BAD_CMD", &r), CPS_ENOENT);
    assert_int_equal(r.calls, 0);
    /* And the good plugin is untouched. */
    assert_int_equal(call("TP_CMD", &r), 0);
    assert_null(r.error);
    result_clear(&r);
}

static void test_bad_major_refused(void **state)
{
    (void)state;
    char want[64];
    snprintf(want, sizeof want, "built for ABI %d.0", CPS_ABI_MAJOR + 1);
    expect_refused("tp_bad_major", TP("bad_major"), want);
}

static void test_new_minor_refused(void **state)
{
    (void)state;
    /* The message says which ABI it wanted and which one the host has. */
    char want[96];
    snprintf(want, sizeof want, "built for ABI %d.%d, this host provides %d.%d", CPS_ABI_MAJOR,
             CPS_ABI_MINOR + 1, CPS_ABI_MAJOR, CPS_ABI_MINOR);
    expect_refused("tp_new_minor", TP("new_minor"), want);
}

static void test_bad_descriptors_refused(void **state)
{
    (void)state;
    expect_refused("tp_big_table", TP("big_table"), "without a minor bump");
    expect_refused("tp_small_def", TP("small_def"), "descriptor is");
    char want[64];
    snprintf(want, sizeof want, "built for ABI 1.x");
    expect_refused("tp_v1", TP("v1"), want);
}

static void test_dup_refused(void **state)
{
    (void)state;
    result r = { 0 };
    capture c;
    capture_start(&c);
    int rc = cps_plugin_load_path("tp_dup", TP("dup"), NULL);
    char *log = capture_end(&c);
    assert_int_equal(rc, CPS_EEXIST);
    /* One log line names the command and both plugins. */
    char *line = strstr(log, "TP_CMD");
    assert_non_null(line);
    char *eol = strchr(line, '\n');
    if (eol) *eol = 0;
    assert_non_null(strstr(line, "tp_good"));
    assert_non_null(strstr(line, "tp_dup"));
    free(log);
    /* Its other registration is rolled back... */
    assert_int_equal(call("TP_DUP_OTHER", &r), CPS_ENOENT);
    /* ...and TP_CMD still belongs to, and works for, the good plugin. */
    assert_int_equal(call("TP_CMD", &r), 0);
    assert_int_equal(r.calls, 1);
    assert_null(r.error);
    assert_string_equal(r.value, "{\"x\":[1,\"two\"]}");
    result_clear(&r);
}

static int host_cmd(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)args; (void)ud;
    cps_rpc_reply(rpc, json_string("host"));
    return CPS_OK;
}

static void test_fail_refused(void **state)
{
    (void)state;
    result r = { 0 };
    capture c;
    capture_start(&c);
    int rc = cps_plugin_load_path("tp_fail", TP("fail"), NULL);
    char *log = capture_end(&c);
    assert_int_equal(rc, CPS_EINVAL);
    assert_non_null(strstr(log, "tp_fail"));
    assert_non_null(strstr(log, "EINVAL"));
    free(log);
    assert_int_equal(call("TP_FAIL_CMD", &r), CPS_ENOENT);
    assert_int_equal(r.calls, 0);
    /* The name is free again: another plugin can register it. */
    assert_int_equal(cps_rpc_register(cps_plugins_host(), "TP_FAIL_CMD", CPS_RPC_ANON, host_cmd, NULL), 0);
    assert_int_equal(call("TP_FAIL_CMD", &r), 0);
    assert_string_equal(r.value, "\"host\"");
    /* rpc_describe (2.1): the summary shows in the listing; unknown names refused. */
    assert_int_equal(cps_rpc_describe(cps_plugins_host(), "NO_SUCH_CMD", "x"), CPS_ENOENT);
    assert_int_equal(cps_rpc_describe(cps_plugins_host(), "TP_FAIL_CMD", "one line"), CPS_OK);
    json_t *list = cps_rpc_list();
    char *ls = json_dumps(list, JSON_COMPACT);
    assert_non_null(strstr(ls, "[\"TP_FAIL_CMD\",0,\"one line\"]"));
    free(ls);
    json_decref(list);
    cps_rpc_forget(cps_plugins_host());
    assert_int_equal(call("TP_FAIL_CMD", &r), CPS_ENOENT);
    result_clear(&r);
}

static void test_missing_file(void **state)
{
    (void)state;
    capture c;
    capture_start(&c);
    int rc = cps_plugin_load_path("tp_missing", TEST_PLUGIN_DIR "/no_such_plugin.so", NULL);
    char *log = capture_end(&c);
    assert_true(rc < 0);
    assert_int_equal(rc, CPS_ENOENT);
    assert_non_null(strstr(log, "no_such_plugin.so"));
    free(log);
    /* A file that is not a shared object at all. */
    capture_start(&c);
    rc = cps_plugin_load_path("tp_text", TEST_DATA_DIR "/test_plugin.c", NULL);
    log = capture_end(&c);
    assert_true(rc < 0);
    free(log);
    /* cps_plugin_load by name: invalid name, and a name found nowhere. */
    capture_start(&c);
    int r1 = cps_plugin_load("Bad/Name", NULL, true);
    int r2 = cps_plugin_load("no_such_plugin_xyz", NULL, true);
    int r3 = cps_plugin_load("no_such_plugin_xyz", NULL, false);  /* optional: logged only */
    log = capture_end(&c);
    assert_int_equal(r1, CPS_EINVAL);
    assert_int_equal(r2, CPS_ENOENT);
    assert_int_equal(r3, 0);
    assert_non_null(strstr(log, "no_such_plugin_xyz"));
    free(log);
}

static void test_fini_unregisters(void **state)
{
    (void)state;
    result r = { 0 };
    capture c;
    capture_start(&c);
    cps_plugins_fini();
    char *log = capture_end(&c);
    /* GOOD's fini ran, with its state. */
    assert_non_null(strstr(log, "tp fini called, state=tp-state"));
    free(log);
    assert_int_equal(call("TP_CMD", &r), CPS_ENOENT);
    assert_int_equal(call("TP_OLD_CMD", &r), CPS_ENOENT);
    /* A second fini does not call fini twice. */
    capture_start(&c);
    cps_plugins_fini();
    log = capture_end(&c);
    assert_null(strstr(log, "tp fini called"));
    free(log);
    cps_plugins_close();
    result_clear(&r);
}

int main(void)
{
    /* The tests run in order and share the loaded plugins. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_loads_and_answers),
        cmocka_unit_test(test_old_minor_loads),
        cmocka_unit_test(test_bad_major_refused),
        cmocka_unit_test(test_new_minor_refused),
        cmocka_unit_test(test_bad_descriptors_refused),
        cmocka_unit_test(test_dup_refused),
        cmocka_unit_test(test_fail_refused),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_fini_unregisters),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cps_plugins_fini();
    cps_plugins_close();
    cps_rpc_shutdown();
    cps_metrics_free();
    return rc;
}
