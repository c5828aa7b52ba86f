/*
** test_router.c - the inter-node router on a real libuv loop: delivery on a
** later loop turn, query/reply, async replies, error replies, unknown node
** and command, timeouts, duplicate commands, the queue bound, ordering,
** cancellation by cps_router_forget and at shutdown.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "host.h"
#include "test_util.h"

/* ---- fixture: a loop, two local nodes, one plugin on each ---- */

static uv_loop_t loop;
static cps_plugin *pcore, *pfront;

static int setup(void **state)
{
    const char *cfg = *state;    /* config file, or NULL for the default */
    if (cfg) {
        char *err = NULL;
        cps_cfg = cps_config_load(cfg, &err);
        if (!cps_cfg) { fprintf(stderr, "%s: %s\n", cfg, err); free(err); return -1; }
    }
    if (uv_loop_init(&loop)) return -1;
    cps_timers_init(&loop);
    if (cps_router_init(&loop)) return -1;
    if (cps_router_add_node("core:0", NULL) || cps_router_add_node("front:0", NULL)) return -1;
    pcore = cps_plugin_new("pcore", "", "core:0");
    pfront = cps_plugin_new("pfront", "", "front:0");
    return pcore && pfront ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cps_router_shutdown();
    /* Close the router's handles; nothing else may be left on the loop. */
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop);
    cps_plugin_free(pcore);
    cps_plugin_free(pfront);
    pcore = pfront = NULL;
    cps_config_free(cps_cfg);
    cps_cfg = NULL;
    cps_timers_init(NULL);
    if (rc != 0) fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
    return rc == 0 ? 0 : -1;
}

/* Run the loop until *flag is set or max_ms have passed; returns *flag. */
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
    uv_run(&loop, UV_RUN_NOWAIT);   /* let the close complete */
    return *flag;
}

static void turns(int n) { for (int i = 0; i < n; i++) uv_run(&loop, UV_RUN_NOWAIT); }

/* ---- handlers ---- */

#define MAXREC 128
static struct {
    int count;
    json_int_t vals[MAXREC];
    char from[MAXREC][32];
    cps_call *saved;          /* the last call kept by an async handler */
    cps_call *kept[MAXREC];   /* every call kept, in delivery order */
} H;

static int h_record(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    if (H.count < MAXREC) {
        H.vals[H.count] = json_integer_value(args);
        snprintf(H.from[H.count], sizeof H.from[0], "%s", cps_router_call_from(call));
    }
    H.count++;
    return CPS_OK;
}

static int h_add(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    json_int_t a = json_integer_value(json_object_get(args, "a"));
    json_int_t b = json_integer_value(json_object_get(args, "b"));
    cps_router_reply(call, CPS_OK, json_pack("{s:I,s:s}", "sum", (json_int_t)(a + b),
                                           "from", cps_router_call_from(call)));
    return CPS_OK;
}

static int h_keep(cps_call *call, json_t *args, void *ud)
{
    (void)args; (void)ud;
    H.saved = call;
    if (H.count < MAXREC) H.kept[H.count] = call;
    H.count++;
    return CPS_ASYNC;
}

static int h_fail(cps_call *call, json_t *args, void *ud)
{
    (void)call; (void)args; (void)ud;
    return CPS_EIO;
}

static int h_custom_error(cps_call *call, json_t *args, void *ud)
{
    (void)args; (void)ud;
    cps_router_reply(call, cps_errcode("ENOPE"), json_string("detail"));
    return CPS_OK;
}

static int h_twice(cps_call *call, json_t *args, void *ud)
{
    (void)args; (void)ud;
    cps_router_reply(call, CPS_OK, json_string("first"));
    cps_router_reply(call, CPS_OK, json_string("second"));   /* ignored, logged */
    return CPS_OK;
}

static int h_silent(cps_call *call, json_t *args, void *ud)
{
    (void)call; (void)args; (void)ud;
    return CPS_OK;       /* no reply: the host answers null */
}

/* ---- reply collector ----
** Tests keep their `reply` structs static: if an assertion fails, a query
** still pending is cancelled at teardown and its callback must not write
** into a dead stack frame. */

typedef struct reply {
    int calls;
    char error[32];
    char *data;              /* compact JSON, or NULL */
    uint64_t at;             /* uv_now when it came */
} reply;

static void on_reply(void *ud, int err, json_t *data)
{
    reply *r = ud;
    r->calls++;
    snprintf(r->error, sizeof r->error, "%s", err ? cps_errname(err) : "");
    free(r->data);
    r->data = data ? json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    r->at = uv_now(&loop);
}

static void reply_free(reply *r) { free(r->data); r->data = NULL; }

static void reset(void) { memset(&H, 0, sizeof H); }

/* ---- tests ---- */

static void test_event_next_turn(void **state)
{
    (void)state;
    reset();
    assert_int_equal(cps_router_register(pcore, "EV", h_record, NULL), 0);
    assert_int_equal(cps_router_send(pfront, "core:0", "EV", json_integer(42)), 0);
    /* Not delivered synchronously. */
    assert_int_equal(H.count, 0);
    assert_int_equal(cps_router_queued(), 1);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(H.count, 1);
    assert_int_equal(H.vals[0], 42);
    assert_string_equal(H.from[0], "front:0");
    assert_int_equal(cps_router_queued(), 0);
    /* An event for a command nobody registered is dropped quietly. */
    assert_int_equal(cps_router_send(pfront, "core:0", "NOBODY", json_integer(1)), 0);
    turns(2);
    assert_int_equal(H.count, 1);
    /* NULL args are fine (delivered as null). */
    assert_int_equal(cps_router_send(pcore, "core:0", "EV", NULL), 0);
    turns(1);
    assert_int_equal(H.count, 2);
    assert_string_equal(H.from[1], "core:0");
}

static void test_send_errors(void **state)
{
    (void)state;
    assert_int_equal(cps_router_send(pfront, "storage:3", "EV", json_integer(1)), CPS_ENOENT);
    assert_int_equal(cps_router_send(pfront, NULL, "EV", json_integer(1)), CPS_ENOENT);
    assert_int_equal(cps_router_send(pfront, "core:0", NULL, json_integer(1)), CPS_EINVAL);
    assert_int_equal(cps_router_queued(), 0);
    /* Node ids are checked. */
    assert_int_equal(cps_router_add_node("core:0", NULL), CPS_EEXIST);
    assert_int_equal(cps_router_add_node("nocolon", NULL), CPS_EINVAL);
    assert_int_equal(cps_router_add_node(":0", NULL), CPS_EINVAL);
    assert_int_equal(cps_router_add_node("core:", NULL), CPS_EINVAL);
}

static void test_query_round_trip(void **state)
{
    (void)state;
    static reply r;
    memset(&r, 0, sizeof r);
    assert_int_equal(cps_router_register(pcore, "ADD", h_add, NULL), 0);
    int rc = cps_router_query(pfront, "core:0", "ADD", json_pack("{s:i,s:i}", "a", 2, "b", 40),
                              1000, on_reply, &r);
    assert_int_equal(rc, 0);
    assert_int_equal(r.calls, 0);           /* never synchronously */
    assert_true(run_until(&r.calls, 2000));
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "");
    assert_string_equal(r.data, "{\"from\":\"front:0\",\"sum\":42}");
    turns(3);
    assert_int_equal(r.calls, 1);           /* exactly once */
    reply_free(&r);

    /* A handler that returns OK without replying: success, no data. */
    static reply s;
    memset(&s, 0, sizeof s);
    assert_int_equal(cps_router_register(pcore, "SILENT", h_silent, NULL), 0);
    assert_int_equal(cps_router_query(pfront, "core:0", "SILENT", NULL, 1000, on_reply, &s), 0);
    assert_true(run_until(&s.calls, 2000));
    assert_string_equal(s.error, "");
    assert_true(s.data == NULL || strcmp(s.data, "null") == 0);
    reply_free(&s);

    /* A second reply in the handler is ignored. */
    static reply t;
    memset(&t, 0, sizeof t);
    assert_int_equal(cps_router_register(pcore, "TWICE", h_twice, NULL), 0);
    assert_int_equal(cps_router_query(pfront, "core:0", "TWICE", NULL, 1000, on_reply, &t), 0);
    assert_true(run_until(&t.calls, 2000));
    turns(3);
    assert_int_equal(t.calls, 1);
    assert_string_equal(t.data, "\"first\"");
    reply_free(&t);
}

static void test_async_reply(void **state)
{
    (void)state;
    reset();
    static reply r;
    memset(&r, 0, sizeof r);
    assert_int_equal(cps_router_register(pcore, "KEEP", h_keep, NULL), 0);
    assert_int_equal(cps_router_query(pfront, "core:0", "KEEP", json_integer(1), 5000, on_reply, &r), 0);
    assert_true(run_until(&H.count, 2000));
    turns(5);
    assert_non_null(H.saved);
    assert_int_equal(r.calls, 0);           /* the handler has not answered yet */
    cps_router_reply(H.saved, CPS_OK, json_string("later"));
    H.saved = NULL;
    assert_int_equal(r.calls, 0);           /* delivered on a later turn */
    assert_true(run_until(&r.calls, 2000));
    assert_string_equal(r.error, "");
    assert_string_equal(r.data, "\"later\"");
    reply_free(&r);
}

static void test_error_replies(void **state)
{
    (void)state;
    static reply r;
    memset(&r, 0, sizeof r);
    assert_int_equal(cps_router_register(pcore, "FAIL", h_fail, NULL), 0);
    assert_int_equal(cps_router_query(pfront, "core:0", "FAIL", NULL, 1000, on_reply, &r), 0);
    assert_true(run_until(&r.calls, 2000));
    assert_string_equal(r.error, "EIO");
    assert_null(r.data);
    reply_free(&r);

    static reply s;
    memset(&s, 0, sizeof s);
    assert_int_equal(cps_router_register(pcore, "CUSTOM", h_custom_error, NULL), 0);
    assert_int_equal(cps_router_query(pfront, "core:0", "CUSTOM", NULL, 1000, on_reply, &s), 0);
    assert_true(run_until(&s.calls, 2000));
    assert_string_equal(s.error, "ENOPE");
    assert_string_equal(s.data, "\"detail\"");
    reply_free(&s);
}

static void test_unknown_node_and_command(void **state)
{
    (void)state;
    static reply r;
    memset(&r, 0, sizeof r);
    static reply s;
    memset(&s, 0, sizeof s);
    /* Unknown node: query returns 0 and the callback gets ENOENT later. */
    int rc = cps_router_query(pfront, "storage:7", "ANY", json_integer(1), 1000, on_reply, &r);
    assert_int_equal(rc, 0);
    assert_int_equal(r.calls, 0);
    assert_true(run_until(&r.calls, 2000));
    assert_string_equal(r.error, "ENOENT");
    assert_null(r.data);
    /* Unknown command on a known node. */
    assert_int_equal(cps_router_query(pfront, "core:0", "NOPE", NULL, 1000, on_reply, &s), 0);
    assert_int_equal(s.calls, 0);
    assert_true(run_until(&s.calls, 2000));
    assert_string_equal(s.error, "ENOENT");
    turns(3);
    assert_int_equal(r.calls, 1);
    assert_int_equal(s.calls, 1);
    reply_free(&r);
    reply_free(&s);
}

/* A link down fails every query pending on it once, EUNAVAILABLE, in the
** order they were asked (one scan and a sort since issue 12: it was a scan
** per query), and leaves queries to other nodes pending. */
static int down_order[100], down_n, down_bad;
static void on_down(void *ud, int err, json_t *data)
{
    (void)data;
    if (err != CPS_EUNAVAILABLE) down_bad++;
    if (down_n < 100) down_order[down_n++] = (int)(intptr_t)ud;
}

static void test_peer_down_order(void **state)
{
    (void)state;
    reset();
    down_n = down_bad = 0;
    static reply other;
    memset(&other, 0, sizeof other);
    assert_int_equal(cps_router_register(pcore, "HOLD", h_keep, NULL), 0);
    assert_int_equal(cps_router_register(pfront, "HOLD2", h_keep, NULL), 0);
    for (int i = 0; i < 100; i++) {
        if (i == 50) assert_int_equal(cps_router_query(pcore, "front:0", "HOLD2", NULL, 60000, on_reply, &other), 0);
        assert_int_equal(cps_router_query(pfront, "core:0", "HOLD", json_integer(i), 60000, on_down, (void *)(intptr_t)i), 0);
    }
    turns(5);
    assert_int_equal(H.count, 101);
    cps_router_peer_down("core:0");
    assert_int_equal(down_n, 100);
    assert_int_equal(down_bad, 0);
    for (int i = 0; i < 100; i++) assert_int_equal(down_order[i], i);
    assert_int_equal(other.calls, 0);          /* front:0's query still pending */
    cps_router_peer_down("core:0");            /* nothing left to fail */
    assert_int_equal(down_n, 100);
    /* the late replies to the failed queries are dropped; front:0 answers */
    for (int i = 0; i < 101 && i < MAXREC; i++) cps_router_reply(H.kept[i], CPS_OK, NULL);
    turns(5);
    assert_int_equal(down_n, 100);
    assert_int_equal(other.calls, 1);
    reply_free(&other);
}

static void test_timeout(void **state)
{
    (void)state;
    reset();
    static reply r;
    memset(&r, 0, sizeof r);
    assert_int_equal(cps_router_register(pcore, "SINK", h_keep, NULL), 0);
    uv_update_time(&loop);
    uint64_t t0 = uv_now(&loop);
    assert_int_equal(cps_router_query(pfront, "core:0", "SINK", json_integer(1), 50, on_reply, &r), 0);
    assert_true(run_until(&r.calls, 3000));
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "ETIMEDOUT");
    assert_null(r.data);
    assert_true(r.at - t0 >= 50);
    /* A late reply to the timed-out query is dropped, the callback is not
    ** called again. */
    assert_non_null(H.saved);
    cps_router_reply(H.saved, CPS_OK, json_string("too late"));
    H.saved = NULL;
    turns(3);
    assert_int_equal(r.calls, 1);
    reply_free(&r);
}

static void test_duplicate_command(void **state)
{
    (void)state;
    cps_plugin *other = cps_plugin_new("pother", "", "core:0");
    cps_plugin *loose = cps_plugin_new("ploose", "", NULL);
    assert_non_null(other);
    assert_int_equal(cps_router_register(pcore, "DUP", h_record, NULL), 0);
    assert_int_equal(cps_router_register(pcore, "DUP", h_record, NULL), CPS_EEXIST);
    capture c;
    capture_start(&c);
    int rc = cps_router_register(other, "DUP", h_record, NULL);
    char *log = capture_end(&c);
    assert_int_equal(rc, CPS_EEXIST);
    assert_non_null(strstr(log, "DUP"));
    assert_non_null(strstr(log, "pcore"));
    assert_non_null(strstr(log, "pother"));
    free(log);
    /* The same name on another node is another command. */
    assert_int_equal(cps_router_register(pfront, "DUP", h_record, NULL), 0);
    /* A plugin that serves no node cannot register; bad arguments. */
    assert_int_equal(cps_router_register(loose, "X", h_record, NULL), CPS_EINVAL);
    assert_int_equal(cps_router_register(pcore, "", h_record, NULL), CPS_EINVAL);
    assert_int_equal(cps_router_register(pcore, "Y", NULL, NULL), CPS_EINVAL);
    cps_plugin_free(other);
    cps_plugin_free(loose);
}

static void test_queue_bound(void **state)
{
    (void)state;
    reset();
    assert_int_equal(cps_config_int("limits.router_queue", 0), 16);
    assert_int_equal(cps_router_register(pcore, "EV", h_record, NULL), 0);
    for (int i = 0; i < 16; i++)
        assert_int_equal(cps_router_send(pfront, "core:0", "EV", json_integer(i)), 0);
    assert_int_equal(cps_router_queued(), 16);
    assert_int_equal(cps_router_send(pfront, "core:0", "EV", json_integer(99)), CPS_EBUSY);
    /* A query on a full queue: the callback gets EBUSY, later. */
    static reply r;
    memset(&r, 0, sizeof r);
    assert_int_equal(cps_router_query(pfront, "core:0", "EV", NULL, 1000, on_reply, &r), 0);
    assert_int_equal(r.calls, 0);
    assert_true(run_until(&r.calls, 2000));
    assert_string_equal(r.error, "EBUSY");
    turns(3);
    assert_int_equal(H.count, 16);         /* the refused event was not queued */
    for (int i = 0; i < 16; i++) assert_int_equal(H.vals[i], i);
    /* Room again. */
    assert_int_equal(cps_router_send(pfront, "core:0", "EV", json_integer(16)), 0);
    turns(1);
    assert_int_equal(H.count, 17);
    reply_free(&r);
}

/* With every pending slot in use (limits.pending_queries) a query is still
** answered through its callback, EBUSY, on a later turn: a caller that
** ignored the return used to lose its answer (a client's MSG got no reply).
** At shutdown such an answer still owed is cancelled, not dropped. */
static void test_pending_bound(void **state)
{
    (void)state;
    reset();
    assert_int_equal(cps_config_int("limits.pending_queries", 0), 16);
    assert_int_equal(cps_router_register(pcore, "EV", h_record, NULL), 0);
    static reply r[18];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 17; i++)
        assert_int_equal(cps_router_query(pfront, "core:0", "EV", json_integer(i), 1000, on_reply, &r[i]), 0);
    assert_int_equal(cps_router_pending(), 16);
    assert_int_equal(r[16].calls, 0);            /* never synchronously */
    assert_true(run_until(&r[16].calls, 2000));
    assert_string_equal(r[16].error, "EBUSY");
    for (int i = 0; i < 16; i++) {
        assert_true(run_until(&r[i].calls, 2000));
        assert_string_equal(r[i].error, "");
    }
    turns(3);
    for (int i = 0; i < 17; i++) assert_int_equal(r[i].calls, 1);   /* exactly once */
    assert_int_equal(H.count, 16);              /* the refused one never ran */
    /* full again, one more refused, then shutdown before its turn */
    memset(r, 0, sizeof r);
    for (int i = 0; i < 18; i++)
        assert_int_equal(cps_router_query(pfront, "core:0", "EV", NULL, 1000, on_reply, &r[i]), 0);
    cps_router_shutdown();
    for (int i = 0; i < 18; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_string_equal(r[i].error, "ECANCELED");
    }
}

static void test_order_preserved(void **state)
{
    (void)state;
    reset();
    assert_int_equal(cps_router_register(pcore, "EV", h_record, NULL), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(cps_router_send(pfront, "core:0", "EV", json_integer(i)), 0);
    assert_int_equal(H.count, 0);
    for (int i = 0; i < 10 && H.count < 100; i++) uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(H.count, 100);
    for (int i = 0; i < 100; i++) assert_int_equal(H.vals[i], i);
    /* cps_router_drain delivers everything without the loop. */
    reset();
    for (int i = 0; i < 10; i++)
        assert_int_equal(cps_router_send(pfront, "core:0", "EV", json_integer(i)), 0);
    cps_router_drain();
    assert_int_equal(H.count, 10);
    for (int i = 0; i < 10; i++) assert_int_equal(H.vals[i], i);
    assert_int_equal(cps_router_queued(), 0);
}

static void test_forget_cancels(void **state)
{
    (void)state;
    reset();
    static reply r;
    memset(&r, 0, sizeof r);
    static reply other;
    memset(&other, 0, sizeof other);
    assert_int_equal(cps_router_register(pcore, "SINK", h_keep, NULL), 0);
    assert_int_equal(cps_router_register(pcore, "ADD", h_add, NULL), 0);
    /* pfront's query waits in SINK. */
    assert_int_equal(cps_router_query(pfront, "core:0", "SINK", NULL, 10000, on_reply, &r), 0);
    /* pcore's own query, to itself, must survive pfront's unload. */
    assert_int_equal(cps_router_query(pcore, "core:0", "SINK", NULL, 10000, on_reply, &other), 0);
    assert_true(run_until(&H.count, 2000));
    turns(3);
    assert_int_equal(H.count, 2);
    cps_call *front_call = H.kept[0], *core_call = H.kept[1];
    assert_string_equal(cps_router_call_from(front_call), "front:0");
    assert_string_equal(cps_router_call_from(core_call), "core:0");
    cps_router_forget(pfront);
    turns(2);
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "ECANCELED");
    assert_null(r.data);
    assert_int_equal(other.calls, 0);
    /* Answering both calls now: pfront's is dropped, pcore's delivered. */
    cps_router_reply(front_call, CPS_OK, json_integer(6));
    cps_router_reply(core_call, CPS_OK, json_integer(7));
    assert_true(run_until(&other.calls, 2000));
    turns(3);
    assert_string_equal(other.error, "");
    assert_string_equal(other.data, "7");
    assert_int_equal(other.calls, 1);
    assert_int_equal(r.calls, 1);
    /* Forgetting pcore drops its commands: ADD is gone. */
    static reply s;
    memset(&s, 0, sizeof s);
    cps_router_forget(pcore);
    assert_int_equal(cps_router_query(pfront, "core:0", "ADD", NULL, 1000, on_reply, &s), 0);
    assert_true(run_until(&s.calls, 2000));
    assert_string_equal(s.error, "ENOENT");
    reply_free(&r);
    reply_free(&other);
    reply_free(&s);
}

static void test_shutdown_cancels(void **state)
{
    (void)state;
    reset();
    static reply r;
    memset(&r, 0, sizeof r);
    assert_int_equal(cps_router_register(pcore, "EV", h_record, NULL), 0);
    assert_int_equal(cps_router_query(pfront, "core:0", "EV", NULL, 1000, on_reply, &r), 0);
    /* Queued, not yet delivered: shutdown cancels the query and frees the
    ** queue (ASan checks the envelopes are freed). */
    assert_int_equal(cps_router_send(pfront, "core:0", "EV", json_pack("{s:[i,i]}", "x", 1, 2)), 0);
    cps_router_shutdown();
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.error, "ECANCELED");
    assert_int_equal(H.count, 0);
    assert_int_equal(cps_router_queued(), 0);
    /* After shutdown nothing is accepted. */
    assert_int_equal(cps_router_send(pfront, "core:0", "EV", json_integer(1)), CPS_ECANCELED);
    static reply s;
    memset(&s, 0, sizeof s);
    assert_int_equal(cps_router_query(pfront, "core:0", "EV", NULL, 1000, on_reply, &s), CPS_ECANCELED);
    assert_int_equal(s.calls, 0);
    reply_free(&r);
}

int main(void)
{
    static const char small[] = TEST_DATA_DIR "/config/router_small.lua";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_event_next_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_node_and_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_command, setup, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_queue_bound, setup, teardown, (void *)small),
        cmocka_unit_test_prestate_setup_teardown(test_pending_bound, setup, teardown, (void *)small),
        cmocka_unit_test_setup_teardown(test_order_preserved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_down_order, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cps_metrics_free();
    return rc;
}
