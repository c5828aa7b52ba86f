/*
** test_control.c - the control socket's request parser (every malformed
** request refused with a message, nothing half-parsed) and how `cpsd admin`
** renders answers: tables, key/value lines, scalars, null, --json.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "host.h"
#include "test_util.h"

static int parse(const char *line, char **cmd, json_t **args, char *err)
{
    return cps_control_parse(line, strlen(line), cmd, args, err, 256);
}

static void test_parse_ok(void **state)
{
    (void)state;
    char *cmd, err[256];
    json_t *args;
    assert_int_equal(parse("{\"cmd\":\"quota\",\"args\":[\"get\",\"abc\"]}", &cmd, &args, err), 0);
    assert_string_equal(cmd, "quota");
    assert_int_equal(json_array_size(args), 2);
    assert_string_equal(json_string_value(json_array_get(args, 1)), "abc");
    free(cmd);
    json_decref(args);
    /* args may be left out */
    assert_int_equal(parse("{\"cmd\":\"install-link\"}", &cmd, &args, err), 0);
    assert_string_equal(cmd, "install-link");
    assert_int_equal(json_array_size(args), 0);
    free(cmd);
    json_decref(args);
}

static void test_parse_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "", "not json", "[1,2]", "\"help\"", "{}", "{\"cmd\":1}", "{\"cmd\":\"\"}",
        "{\"cmd\":\"a b\"}", "{\"cmd\":\"../x\"}",
        "{\"cmd\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
        "{\"cmd\":\"stats\",\"args\":\"x\"}", "{\"cmd\":\"stats\",\"args\":[1]}",
        "{\"cmd\":\"stats\",\"args\":[null]}", "{\"cmd\":\"stats\",\"extra\":true}",
        "{\"cmd\":\"a\",\"cmd\":\"b\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *cmd = (char *)1, err[256] = "";
        json_t *args = (json_t *)1;
        assert_int_equal(parse(bad[i], &cmd, &args, err), CPS_EINVAL);
        assert_null(cmd);
        assert_null(args);
        assert_true(strlen(err) > 0);
    }
    /* the argument count is bounded */
    json_t *a = json_array();
    for (int i = 0; i <= CPS_CONTROL_MAX_ARGS; i++) json_array_append_new(a, json_string("x"));
    json_t *req = json_pack("{s:s, s:o}", "cmd", "stats", "args", a);
    char *text = json_dumps(req, JSON_COMPACT), *cmd, err[256];
    json_t *args;
    assert_int_equal(parse(text, &cmd, &args, err), CPS_EINVAL);
    assert_non_null(strstr(err, "at most"));
    free(text);
    json_decref(req);
}

static void expect_render(const char *json, bool as_json, const char *want)
{
    json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    char *out = cps_admin_render(v, as_json);
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
    json_decref(v);
}

static void test_render(void **state)
{
    (void)state;
    /* an array of objects: a table, columns in first-seen order */
    expect_render("[{\"command\":\"help\",\"description\":\"list\"},{\"command\":\"flush-cache\",\"extra\":[1,2]}]",
                  false,
                  "COMMAND      DESCRIPTION  EXTRA\n"
                  "help         list         -\n"
                  "flush-cache  -            [1,2]\n");
    /* an object: aligned key/value lines, nested values compact JSON */
    expect_render("{\"sessions\":3,\"node\":\"core:0\",\"nested\":{\"a\":true}}", false,
                  "sessions  3\nnode      core:0\nnested    {\"a\":true}\n");
    expect_render("null", false, "ok\n");
    expect_render("\"done\"", false, "done\n");
    expect_render("42", false, "42\n");
    expect_render("[]", false, "(none)\n");
    expect_render("[\"a\",2]", false, "a\n2\n");
    /* no terminal control through an answer */
    expect_render("\"a\\u001b[2Jb\"", false, "a?[2Jb\n");
    /* --json: the value as it came */
    expect_render("{\"a\":[1,null]}", true, "{\"a\":[1,null]}\n");
    expect_render("null", true, "null\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_refused),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
