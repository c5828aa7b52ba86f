/*
** test_config.c - configuration: the embedded default, deep merge of a file,
** and the error messages (key, expected type, file and line) for wrong
** types, out-of-range values, unknown keys, Lua errors, a file that does not
** return a table, a missing file, several errors at once; dotted lookup;
** sections of plugins named in `plugins`.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "host.h"
#include "test_util.h"

#define CFG(name) TEST_DATA_DIR "/config/" name

static int64_t ival(cps_config *c, const char *path)
{
    json_t *v = cps_config_path(c->root, path);
    if (!json_is_integer(v)) fail_msg("%s is not an integer", path);
    return (int64_t)json_integer_value(v);
}

static const char *sval(cps_config *c, const char *path)
{
    json_t *v = cps_config_path(c->root, path);
    if (!json_is_string(v)) fail_msg("%s is not a string", path);
    return json_string_value(v);
}

/* Loads a file that must fail; returns the error text (malloc'd). */
static char *load_fails(const char *file)
{
    char *err = (char *)1;
    cps_config *c = cps_config_load(file, &err);
    if (c) { cps_config_free(c); fail_msg("%s loaded, expected errors", file ? file : "(default)"); }
    assert_non_null(err);
    assert_true(strlen(err) > 0);
    print_message("  errors for %s:\n%s", file, err);
    return err;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) if (*s == '\n') n++;
    return n;
}

static void test_default(void **state)
{
    (void)state;
    char *err = (char *)1;
    cps_config *c = cps_config_load(NULL, &err);
    assert_non_null(c);
    assert_null(err);
    assert_null(c->file);
    assert_int_equal(ival(c, "listen.port"), 3000);
    assert_string_equal(sval(c, "listen.host"), "127.0.0.1");
    assert_string_equal(sval(c, "data_dir"), "./data");
    assert_string_equal(sval(c, "websocket_path"), "/cryptpad_websocket");
    assert_int_equal(ival(c, "limits.router_queue"), 100000);
    assert_int_equal(ival(c, "limits.max_frame"), 104857600);
    assert_int_equal(ival(c, "topology.storage"), 1);
    assert_int_equal(ival(c, "front.ping_after_ms"), 15000);
    assert_string_equal(sval(c, "log.level"), "info");
    json_t *nodes = cps_config_path(c->root, "nodes");
    assert_true(json_is_array(nodes));
    assert_int_equal(json_array_size(nodes), 3);
    assert_string_equal(json_string_value(json_array_get(nodes, 1)), "core:0");
    /* Empty Lua tables: an object with no keys. */
    assert_int_equal(json_object_size(cps_config_path(c->root, "core")), 0);
    cps_config_free(c);
}

static void test_file_merges(void **state)
{
    (void)state;
    char *err = (char *)1;
    cps_config *c = cps_config_load(CFG("override.lua"), &err);
    if (!c) { print_error("%s\n", err); free(err); fail_msg("override.lua refused"); }
    assert_null(err);
    assert_string_equal(c->file, CFG("override.lua"));
    /* Overridden. */
    assert_int_equal(ival(c, "listen.port"), 4000);
    assert_int_equal(ival(c, "limits.router_queue"), 50);
    assert_int_equal(ival(c, "front.ping_after_ms"), 1000);
    /* Kept from the default, next to the overridden keys (deep merge). */
    assert_string_equal(sval(c, "listen.host"), "127.0.0.1");
    assert_int_equal(ival(c, "limits.max_frame"), 104857600);
    assert_int_equal(ival(c, "limits.pending_queries"), 100000);
    assert_int_equal(ival(c, "front.drop_after_ms"), 60000);
    assert_string_equal(sval(c, "data_dir"), "./data");
    /* Lists are replaced, not merged. */
    json_t *nodes = cps_config_path(c->root, "nodes");
    assert_int_equal(json_array_size(nodes), 1);
    assert_string_equal(json_string_value(json_array_get(nodes, 0)), "core:0");
    cps_config_free(c);
}

static void test_empty_table_keeps_defaults(void **state)
{
    (void)state;
    /* default.lua: "tables are merged, lists and values replaced": an empty
    ** table over a table of the default changes nothing. */
    char *err = NULL;
    cps_config *c = cps_config_load(CFG("empty_table.lua"), &err);
    if (!c) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", err ? err : "");
        free(err);
        fail_msg("empty_table.lua refused: %s", msg);
    }
    assert_int_equal(ival(c, "limits.max_frame"), 104857600);
    assert_int_equal(ival(c, "front.ping_after_ms"), 15000);
    cps_config_free(c);
}

static void test_wrong_type(void **state)
{
    (void)state;
    char *err = load_fails(CFG("bad_type.lua"));
    assert_non_null(strstr(err, "listen.port"));
    assert_non_null(strstr(err, "expected an integer"));
    assert_non_null(strstr(err, "got a string"));
    /* file:line of the key: port is on line 4. */
    assert_non_null(strstr(err, CFG("bad_type.lua") ":4:"));
    assert_int_equal(count_lines(err), 1);
    free(err);
}

static void test_out_of_range(void **state)
{
    (void)state;
    char *err = load_fails(CFG("range.lua"));
    assert_non_null(strstr(err, "limits.max_frame"));
    assert_non_null(strstr(err, "-5"));
    assert_non_null(strstr(err, "from 1024"));
    assert_non_null(strstr(err, ":2:"));
    free(err);

    /* Same through a temporary file: a port above 65535. */
    char path[64];
    write_temp(path, sizeof path, ".lua", "return { listen = { port = 70000 } }\n");
    err = load_fails(path);
    unlink(path);
    assert_non_null(strstr(err, "listen.port"));
    assert_non_null(strstr(err, "70000"));
    assert_non_null(strstr(err, ":1:"));
    free(err);
}

static void test_unknown_key(void **state)
{
    (void)state;
    char *err = load_fails(CFG("unknown.lua"));
    assert_non_null(strstr(err, "bogus_key"));
    assert_non_null(strstr(err, "unknown key"));
    assert_non_null(strstr(err, ":3:"));
    assert_int_equal(count_lines(err), 1);
    free(err);
}

static void test_lua_syntax_error(void **state)
{
    (void)state;
    char *err = load_fails(CFG("syntax.lua"));
    /* Names the file (Lua may shorten a long path from the left). */
    assert_non_null(strstr(err, "syntax.lua"));
    free(err);
    err = load_fails(CFG("runtime_error.lua"));
    assert_non_null(strstr(err, "runtime_error.lua"));
    free(err);
}

static void test_not_a_table(void **state)
{
    (void)state;
    char *err = load_fails(CFG("not_table.lua"));
    assert_non_null(strstr(err, "not_table.lua"));
    assert_non_null(strstr(err, "must return a table"));
    free(err);
    err = load_fails(CFG("list.lua"));
    assert_non_null(strstr(err, "list.lua"));
    assert_non_null(strstr(err, "named keys"));
    free(err);
}

static void test_missing_file(void **state)
{
    (void)state;
    char *err = load_fails(CFG("no_such_file.lua"));
    assert_non_null(strstr(err, "no_such_file.lua"));
    assert_non_null(strstr(err, "cannot read"));
    free(err);
}

static void test_several_errors(void **state)
{
    (void)state;
    char *err = load_fails(CFG("multi.lua"));
    assert_non_null(strstr(err, "listen.port"));
    assert_non_null(strstr(err, "limits.max_frame"));
    assert_non_null(strstr(err, "bogus_key"));
    assert_non_null(strstr(err, "log.level"));
    assert_int_equal(count_lines(err), 4);
    /* Each with its own line number. */
    assert_non_null(strstr(err, "multi.lua:2: listen.port"));
    assert_non_null(strstr(err, "multi.lua:3: limits.max_frame"));
    assert_non_null(strstr(err, "multi.lua:4: bogus_key"));
    assert_non_null(strstr(err, "multi.lua:5: log.level"));
    free(err);
}

static void test_path_lookup(void **state)
{
    (void)state;
    char *err = NULL;
    cps_config *c = cps_config_load(NULL, &err);
    assert_non_null(c);
    assert_true(json_is_object(cps_config_path(c->root, "listen")));
    assert_int_equal(json_integer_value(cps_config_path(c->root, "listen.port")), 3000);
    assert_int_equal(json_integer_value(cps_config_path(c->root, "lua.max_instructions")), 10000000);
    assert_null(cps_config_path(c->root, "listen.nope"));
    assert_null(cps_config_path(c->root, "nope.port"));
    assert_null(cps_config_path(c->root, "listen.port.deeper"));
    assert_null(cps_config_path(NULL, "listen.port"));
    assert_null(cps_config_path(c->root, NULL));
    char longp[400];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    assert_null(cps_config_path(c->root, longp));

    /* The singleton accessors. */
    cps_config *saved = cps_cfg;
    cps_cfg = NULL;
    assert_int_equal(cps_config_int("listen.port", 7), 7);
    assert_string_equal(cps_config_str("data_dir", "dflt"), "dflt");
    cps_cfg = c;
    assert_int_equal(cps_config_int("listen.port", 7), 3000);
    assert_int_equal(cps_config_int("listen.host", 7), 7);        /* wrong type: default */
    assert_string_equal(cps_config_str("data_dir", "dflt"), "./data");
    assert_string_equal(cps_config_str("listen.port", "dflt"), "dflt");
    cps_cfg = saved;
    cps_config_free(c);
}

static void test_plugin_section(void **state)
{
    (void)state;
    char *err = NULL;
    cps_config *c = cps_config_load(CFG("plugin_section.lua"), &err);
    if (!c) { print_error("%s\n", err); free(err); fail_msg("plugin_section.lua refused"); }
    assert_int_equal(ival(c, "myplug.a"), 1);
    assert_int_equal(json_array_size(cps_config_path(c->root, "myplug.list")), 2);
    /* "?optplug" (optional plugin) also gets a section. */
    assert_int_equal(ival(c, "optplug.b"), 2);
    cps_config_free(c);

    err = load_fails(CFG("plugin_section_bad.lua"));
    assert_non_null(strstr(err, "myplug"));
    assert_non_null(strstr(err, "must be a table"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default),
        cmocka_unit_test(test_file_merges),
        cmocka_unit_test(test_empty_table_keeps_defaults),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_lua_syntax_error),
        cmocka_unit_test(test_not_a_table),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_several_errors),
        cmocka_unit_test(test_path_lookup),
        cmocka_unit_test(test_plugin_section),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
