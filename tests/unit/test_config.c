/*
** test_config.c - configuration: the embedded default, deep merge of a file,
** and the error messages (key, expected type, file and line) for wrong
** types, out-of-range values, unknown keys, Lua errors, a file that does not
** return a table, a missing file, several errors at once; dotted lookup;
** sections of plugins named in `plugins`; unknown keys inside sections;
** the list edits (plugins_add, ..._remove); plugins and scripts not found.
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
    assert_int_equal(ival(c, "limits.max_frame"), 8388608);
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
    assert_int_equal(ival(c, "limits.max_frame"), 8388608);
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
    assert_int_equal(ival(c, "limits.max_frame"), 8388608);
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

static void test_empty_key(void **state)
{
    (void)state;
    char *err = load_fails(CFG("empty_key.lua"));
    assert_non_null(strstr(err, "unknown key"));
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

/* Loads `text` from a temporary file; the config, or NULL with *err set. */
static cps_config *load_text(const char *text, char **err)
{
    char path[64];
    write_temp(path, sizeof path, ".lua", text);
    *err = NULL;
    cps_config *c = cps_config_load(path, err);
    unlink(path);
    if (*err) print_message("  errors:\n%s", *err);
    return c;
}

static bool has_entry(cps_config *c, const char *list, const char *name)
{
    size_t i;
    json_t *x;
    json_array_foreach(cps_config_path(c->root, list), i, x)
        if (strcmp(json_string_value(x), name) == 0) return true;
    return false;
}

static void test_default_has_no_examples(void **state)
{
    (void)state;
    char *err = NULL;
    cps_config *c = cps_config_load(NULL, &err);
    assert_non_null(c);
    assert_true(has_entry(c, "plugins", "rpc-pin"));
    assert_false(has_entry(c, "plugins", "example_rpc"));
    assert_false(has_entry(c, "plugins", "example_note"));
    assert_false(has_entry(c, "plugins", "example_http"));
    assert_int_equal(json_array_size(cps_config_path(c->root, "lua_scripts")), 0);
    cps_config_free(c);
}

static void test_unknown_nested_keys(void **state)
{
    (void)state;
    char *err;
    cps_config *c = load_text("return {\n"
                              "  listen = { prot = 1 },\n"
                              "  limits = { max_fram = 2048 },\n"
                              "  web = { admin_emial = \"a@b\" },\n"
                              "  [\"rpc-pin\"] = { max_cache_keys = 3 },\n"
                              "  cluster = { sefl = \"core:0\" },\n"
                              "}\n", &err);
    assert_null(c);
    assert_non_null(err);
    /* Each named in full, on its own line, with the nearest known key. */
    assert_non_null(strstr(err, ":2: unknown key listen.prot (did you mean listen.port?)"));
    assert_non_null(strstr(err, ":3: unknown key limits.max_fram (did you mean limits.max_frame?)"));
    assert_non_null(strstr(err, ":4: unknown key web.admin_emial (did you mean web.admin_email?)"));
    assert_non_null(strstr(err, ":5: unknown key rpc-pin.max_cache_keys"));
    assert_non_null(strstr(err, ":6: unknown key cluster.sefl"));
    assert_int_equal(count_lines(err), 5);
    free(err);

    /* Optional keys (no default value) and the keys of the default pass;
    ** the section of a plugin this host does not know is not checked. */
    c = load_text("return {\n"
                  "  web = { cryptpad_root = \"/srv\", admin_email = \"a@b\" },\n"
                  "  admin = { keys = { \"[a@b/AdminKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=]\" } },\n"
                  "  blob = { cache_control = \"no-cache\" },\n"
                  "  storage = { max_queue_per_channel = 5 },\n"
                  "  front = { ping_after_ms = 100 },\n"
                  "  plugins_add = { \"outoftree\" },\n"
                  "  outoftree = { anything = 1 },\n"
                  "}\n", &err);
    assert_null(err);
    assert_non_null(c);
    cps_config_free(c);

    /* A key far from every known one gets no suggestion. */
    c = load_text("return { log = { zzzzzzzz = 1 } }\n", &err);
    assert_null(c);
    assert_non_null(strstr(err, "unknown key log.zzzzzzzz\n"));
    free(err);
}

static void test_list_edits(void **state)
{
    (void)state;
    char *err;
    cps_config *c = load_text("return {\n"
                              "  plugins_add = { \"example_rpc\", \"blob\", \"?extra\" },\n"
                              "  plugins_remove = { \"auth\", \"?web\" },\n"
                              "  lua_scripts_add = { \"examples/example_rpc.lua\" },\n"
                              "}\n", &err);
    assert_null(err);
    assert_non_null(c);
    json_t *p = cps_config_path(c->root, "plugins");
    /* The default's list, edited: appended in order, "blob" not twice. */
    const char *want[] = { "storage-fs", "rpc-channel", "rpc-pin", "blob", "example_rpc", "?extra" };
    assert_int_equal(json_array_size(p), 6);
    for (size_t i = 0; i < 6; i++) assert_string_equal(json_string_value(json_array_get(p, i)), want[i]);
    assert_true(has_entry(c, "lua_scripts", "examples/example_rpc.lua"));
    /* The edit keys are consumed: not in the effective configuration. */
    assert_null(cps_config_path(c->root, "plugins_add"));
    assert_null(cps_config_path(c->root, "lua_scripts_add"));
    cps_config_free(c);

    /* A replacement and an edit in one file: the edit applies to the new list. */
    c = load_text("return { plugins = { \"a\", \"?b\" }, plugins_add = { \"c\", \"b\" },\n"
                  "  plugins_remove = { \"a\" }, lua_scripts = {}, lua_scripts_add = { \"x.lua\" } }\n", &err);
    assert_null(err);
    p = cps_config_path(c->root, "plugins");
    assert_int_equal(json_array_size(p), 2);
    assert_string_equal(json_string_value(json_array_get(p, 0)), "?b");
    assert_string_equal(json_string_value(json_array_get(p, 1)), "c");
    assert_int_equal(json_array_size(cps_config_path(c->root, "lua_scripts")), 1);
    cps_config_free(c);

    /* A node's overlay (from a topology) edits too, under the file. */
    json_t *overlay = json_pack("{s[s]}", "plugins_add", "example_note");
    char path[64];
    write_temp(path, sizeof path, ".lua", "return { plugins_remove = { \"blob\" } }\n");
    c = cps_config_load_with(path, overlay, &err);
    unlink(path);
    json_decref(overlay);
    assert_non_null(c);
    assert_true(has_entry(c, "plugins", "example_note"));
    assert_false(has_entry(c, "plugins", "blob"));
    cps_config_free(c);
}

static void test_remove_absent(void **state)
{
    (void)state;
    char *err;
    cps_config *c = load_text("return {\n"
                              "  plugins_remove = { \"nope\" },\n"
                              "  lua_scripts_remove = { \"none.lua\" },\n"
                              "  plugins_add = \"blob\",\n"
                              "  limits = { max_fram = 2048 },\n"
                              "}\n", &err);
    assert_null(c);
    assert_non_null(strstr(err, ":2: plugins_remove: \"nope\" is not in plugins"));
    assert_non_null(strstr(err, ":3: lua_scripts_remove: \"none.lua\" is not in lua_scripts"));
    assert_non_null(strstr(err, ":4: plugins_add: expected a list of names"));
    /* A bad edit does not hide the other errors. */
    assert_non_null(strstr(err, ":5: unknown key limits.max_fram"));
    assert_int_equal(count_lines(err), 4);
    free(err);
}

static void test_missing_files(void **state)
{
    (void)state;
    char text[1024], *err;
    /* The built plugins are beside cpsd, not beside this test: point
    ** plugin_dirs at them, as the loader would find them there. */
    snprintf(text, sizeof text, "return {\n"
             "  plugin_dirs = { \"%s\" },\n"
             "  plugins_add = { \"example_rpc\", \"no_such_plugin\", \"?optional_gone\" },\n"
             "  lua_scripts_add = { \"examples/example_rpc.lua\", \"no_such.lua\", \"?opt.lua\" },\n"
             "}\n", BUILD_PLUGIN_DIR);
    char path[64];
    write_temp(path, sizeof path, ".lua", text);   /* kept: errors give lines */
    cps_config *c = cps_config_load(path, &err);
    assert_non_null(c);
    int n = cps_config_check_files(c, &err);
    unlink(path);
    assert_int_equal(n, 2);
    print_message("  file errors:\n%s", err);
    assert_non_null(strstr(err, ":3: plugins: no plugin no_such_plugin.so"));
    assert_non_null(strstr(err, ":4: lua_scripts: no script no_such.lua"));
    assert_null(strstr(err, "optional_gone"));
    assert_null(strstr(err, "opt.lua"));
    free(err);
    cps_config_free(c);

    /* Everything found: no error, no text. */
    snprintf(text, sizeof text, "return { plugin_dirs = { \"%s\" } }\n", BUILD_PLUGIN_DIR);
    c = load_text(text, &err);
    assert_non_null(c);
    err = (char *)1;
    assert_int_equal(cps_config_check_files(c, &err), 0);
    assert_null(err);
    cps_config_free(c);

    /* A role without a plugin, and a name the loader would refuse. */
    snprintf(text, sizeof text, "return { plugin_dirs = { \"%s\" }, nodes = { \"nosuchrole:0\" },\n"
             "  topology = { nosuchrole = 1 }, plugins = { \"../x\" } }\n", BUILD_PLUGIN_DIR);
    c = load_text(text, &err);
    assert_non_null(c);
    assert_int_equal(cps_config_check_files(c, &err), 2);
    assert_non_null(strstr(err, "nodes: no plugin nosuchrole.so"));
    assert_non_null(strstr(err, "\"../x\" is not a plugin name"));
    free(err);
    cps_config_free(c);
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
        cmocka_unit_test(test_empty_key),
        cmocka_unit_test(test_lua_syntax_error),
        cmocka_unit_test(test_not_a_table),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_several_errors),
        cmocka_unit_test(test_path_lookup),
        cmocka_unit_test(test_plugin_section),
        cmocka_unit_test(test_default_has_no_examples),
        cmocka_unit_test(test_unknown_nested_keys),
        cmocka_unit_test(test_list_edits),
        cmocka_unit_test(test_remove_absent),
        cmocka_unit_test(test_missing_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
