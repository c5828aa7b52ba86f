/*
** test_log.c - log.c: the JSON record format (every line parses, whatever
** bytes a message holds), the text format, levels, and a log file that
** cps_log_reopen replaces after a rename (SIGHUP, docs/operator-guide.md §7).
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include "host.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/cps_log_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cps_log_close();
    cps_log_set_format("text");
    cps_log_set_level(CPS_LOG_INFO);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *s = calloc(1, 65536);
    size_t n = fread(s, 1, 65535, f);
    s[n] = 0;
    fclose(f);
    return s;
}

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static void test_json_lines_parse(void **state)
{
    (void)state;
    char path[128], err[256];
    path_of(path, sizeof path, "json.log");
    assert_int_equal(cps_log_set_format("json"), 0);
    assert_int_equal(cps_log_open(path, err, sizeof err), 0);
    cps_log("storage", CPS_LOG_WARN, "quote \" backslash \\ newline \n tab \t bell \a é \xff\xfe end");
    cps_log(NULL, CPS_LOG_INFO, "plain");
    cps_log(NULL, CPS_LOG_DEBUG, "not shown at info");
    char *text = slurp(path);
    assert_non_null(text);
    char *second = strchr(text, '\n');
    assert_non_null(second);
    *second++ = 0;
    json_error_t je;
    json_t *a = json_loads(text, 0, &je);
    if (!a) fail_msg("line 1 is not JSON (%s): %s", je.text, text);
    assert_string_equal(json_string_value(json_object_get(a, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(a, "who")), "storage");
    assert_string_equal(json_string_value(json_object_get(a, "msg")),
                        "quote \" backslash \\ newline \n tab \t bell \a é \xef\xbf\xbd\xef\xbf\xbd end");
    const char *t = json_string_value(json_object_get(a, "time"));
    assert_non_null(t);
    assert_int_equal(strlen(t), 24);   /* 2026-01-02T03:04:05.678Z */
    assert_int_equal(t[23], 'Z');
    json_decref(a);
    json_t *b = json_loads(second, JSON_DISABLE_EOF_CHECK, &je);
    assert_non_null(b);
    assert_string_equal(json_string_value(json_object_get(b, "who")), "cpsd");
    assert_string_equal(json_string_value(json_object_get(b, "msg")), "plain");
    json_decref(b);
    assert_null(strstr(second, "not shown"));
    assert_int_equal(strchr(second, '\n')[1], 0);   /* two records, two lines */
    free(text);
}

static void test_long_message_stays_json(void **state)
{
    (void)state;
    char path[128], err[256];
    path_of(path, sizeof path, "long.log");
    cps_log_set_format("json");
    assert_int_equal(cps_log_open(path, err, sizeof err), 0);
    char big[4000];
    memset(big, 1, sizeof big - 1);   /* each byte escapes to \u0001 */
    big[sizeof big - 1] = 0;
    cps_log(big, CPS_LOG_ERROR, "%s", big);
    char *text = slurp(path);
    json_error_t je;
    json_t *a = json_loads(text, JSON_DISABLE_EOF_CHECK, &je);
    if (!a) fail_msg("a long record is not JSON: %s", je.text);
    json_decref(a);
    free(text);
}

static void test_text_and_reopen(void **state)
{
    (void)state;
    char path[128], moved[128], err[256];
    path_of(path, sizeof path, "text.log");
    path_of(moved, sizeof moved, "text.log.1");
    assert_int_equal(cps_log_set_format("text"), 0);
    assert_int_equal(cps_log_set_format("xml"), -1);
    assert_int_equal(cps_log_open(path, err, sizeof err), 0);
    assert_string_equal(cps_log_path(), path);
    cps_log("http", CPS_LOG_INFO, "before");
    assert_int_equal(rename(path, moved), 0);
    cps_log("http", CPS_LOG_INFO, "still the old file");
    assert_int_equal(cps_log_reopen(err, sizeof err), 0);
    cps_log("http", CPS_LOG_INFO, "after");
    char *old = slurp(moved), *fresh = slurp(path);
    assert_non_null(old);
    assert_non_null(fresh);
    assert_non_null(strstr(old, "Z info  [http] before\n"));
    assert_non_null(strstr(old, "still the old file"));
    assert_null(strstr(old, "after"));
    assert_non_null(strstr(fresh, "[http] after\n"));
    assert_null(strstr(fresh, "before"));
    free(old);
    free(fresh);
}

static void test_open_failure(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(cps_log_open("/nonexistent-dir/x.log", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent-dir/x.log"));
    assert_null(cps_log_path());
    assert_int_equal(cps_log_reopen(err, sizeof err), 0);   /* stderr: nothing to reopen */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_lines_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message_stays_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
