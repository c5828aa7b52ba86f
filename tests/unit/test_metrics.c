/*
** test_metrics.c - metrics.c: histograms through the ABI (shared by name,
** fixed cumulative buckets, one renderer for the host's and the plugins'),
** which family wins when names clash, and HELP and label escaping.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "host.h"


static int teardown(void **state)
{
    (void)state;
    cps_metrics_free();
    return 0;
}

/* The number of lines of `text` that start with `prefix`. */
static int lines_with(const char *text, const char *prefix)
{
    int n = 0;
    size_t m = strlen(prefix);
    for (const char *p = text; p && *p; ) {
        if (strncmp(p, prefix, m) == 0) n++;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return n;
}

static void test_histogram_shared_and_cumulative(void **state)
{
    (void)state;
    const cps_api *api = &cps_host_api;
    assert_true(CPS_API_HAS(api, histogram_observe));
    cps_histogram *h = api->histogram(NULL, "t_append_seconds", "Append time.");
    assert_non_null(h);
    /* the same name is the same histogram; the first help stays */
    assert_ptr_equal(api->histogram(NULL, "t_append_seconds", "Other."), h);
    assert_null(api->histogram(NULL, "", "x"));
    assert_null(api->histogram(NULL, NULL, "x"));
    api->histogram_observe(NULL, 1);   /* ignored */
    api->histogram_observe(h, 0.0005);  /* le 0.001 */
    api->histogram_observe(h, 0.003);   /* le 0.005 */
    api->histogram_observe(h, 60);      /* only +Inf */
    api->histogram_observe(h, -1);      /* a clock step back counts as 0 */

    char *t = cps_metrics_text();
    assert_non_null(t);
    assert_non_null(strstr(t, "# HELP cpsd_t_append_seconds Append time.\n"
                              "# TYPE cpsd_t_append_seconds histogram\n"
                              "cpsd_t_append_seconds_bucket{le=\"0.001\"} 2\n"
                              "cpsd_t_append_seconds_bucket{le=\"0.0025\"} 2\n"
                              "cpsd_t_append_seconds_bucket{le=\"0.005\"} 3\n"));
    assert_non_null(strstr(t, "cpsd_t_append_seconds_bucket{le=\"10\"} 3\n"
                              "cpsd_t_append_seconds_bucket{le=\"+Inf\"} 4\n"
                              "cpsd_t_append_seconds_sum 60.003500\n"
                              "cpsd_t_append_seconds_count 4\n"));
    assert_int_equal(lines_with(t, "cpsd_t_append_seconds_bucket"), 14);
    /* the host's RPC histogram is rendered by the same code, always listed */
    assert_non_null(strstr(t, "# TYPE cpsd_rpc_duration_seconds histogram\n"));
    assert_int_equal(lines_with(t, "cpsd_rpc_duration_seconds_bucket"), 14);
    free(t);
}

static void test_clashes(void **state)
{
    (void)state;
    const cps_api *api = &cps_host_api;
    api->histogram(NULL, "lat", NULL);
    cps_metrics_add(cps_metrics_counter_of("lat_count", "p"), 5);   /* a histogram's sample */
    cps_metrics_add(cps_metrics_counter_of("lat", "p"), 5);         /* its family */
    cps_metrics_add(cps_metrics_counter_of("build_info", "p"), 5);  /* a host family */
    cps_metrics_add(cps_metrics_counter_of("link_up", "p"), 5);
    api->histogram(NULL, "node_info", NULL);                        /* a host family */
    api->histogram(NULL, "la-t", NULL);                             /* "lat" once replaced */
    cps_metrics_add(cps_metrics_counter_of("kept_total", "p"), 5);

    char *t = cps_metrics_text();
    assert_non_null(t);
    assert_int_equal(lines_with(t, "# TYPE cpsd_lat "), 1);
    assert_int_equal(lines_with(t, "# TYPE cpsd_lat histogram"), 1);
    assert_int_equal(lines_with(t, "cpsd_lat_count "), 1);
    assert_int_equal(lines_with(t, "cpsd_lat 5"), 0);
    assert_int_equal(lines_with(t, "# TYPE cpsd_build_info "), 1);
    assert_int_equal(lines_with(t, "cpsd_build_info 5"), 0);
    assert_int_equal(lines_with(t, "# TYPE cpsd_link_up"), 0);   /* no link in this process */
    assert_int_equal(lines_with(t, "cpsd_node_info_bucket"), 0);
    assert_int_equal(lines_with(t, "cpsd_kept_total 5"), 1);
    /* a histogram without help names itself and its plugin */
    assert_non_null(strstr(t, "# HELP cpsd_lat Histogram \"lat\" of plugin cpsd (api->histogram), in seconds.\n"));
    free(t);
}

static void test_escaping(void **state)
{
    (void)state;
    cps_host_api.histogram(NULL, "esc_seconds", "a \\ and a\nnewline");
    /* a node id is configuration: its label value is escaped */
    assert_int_equal(cps_router_add_node("we\"ird\\:0", NULL), 0);
    char *t = cps_metrics_text();
    assert_non_null(t);
    assert_non_null(strstr(t, "# HELP cpsd_esc_seconds a \\\\ and a\\nnewline\n"));
    assert_non_null(strstr(t, "cpsd_node_info{node=\"we\\\"ird\\\\:0\",role=\"we\\\"ird\\\\\"} 1\n"));
    assert_non_null(strstr(t, "# TYPE cpsd_router_queue_depth gauge\ncpsd_router_queue_depth 0\n"));
    assert_non_null(strstr(t, "# TYPE cpsd_router_pending_queries gauge\ncpsd_router_pending_queries 0\n"));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_histogram_shared_and_cumulative, teardown),
        cmocka_unit_test_teardown(test_clashes, teardown),
        cmocka_unit_test_teardown(test_escaping, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
