/*
** test_watch.c - descriptors watched on the loop for plugins (host/watch.c,
** api->watch_start/watch_set/watch_stop, ABI 2.4), on pipes and a real loop.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "host.h"
#include "test_util.h"

static uv_loop_t loop;
/* A plugin pointer to own watches: the host only compares it. */
static cps_plugin *const OWNER = (cps_plugin *)&loop;

typedef struct seen {
    int calls, status, events;
    bool stop_inside;          /* watch_stop from within the callback */
} seen;

static void on_ready(cps_watch *w, int status, int events, void *ud)
{
    seen *s = ud;
    s->calls++;
    s->status = status;
    s->events = events;
    if (s->stop_inside) cps_watch_stop(w);
}

static void turns(int n)
{
    for (int i = 0; i < n; i++) uv_run(&loop, UV_RUN_NOWAIT);
}

static int setup(void **state)
{
    (void)state;
    uv_loop_init(&loop);
    cps_timers_init(&loop);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cps_watches_forget(NULL);
    uv_run(&loop, UV_RUN_DEFAULT);   /* the close callbacks free the handles */
    int rc = uv_loop_close(&loop);
    cps_timers_init(NULL);
    return rc == 0 ? 0 : -1;
}

static void test_read_write_pause(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    seen r = { 0 }, wr = { 0 };
    cps_watch *rw = cps_watch_start(OWNER, p[0], CPS_WATCH_READ, on_ready, &r);
    cps_watch *ww = cps_watch_start(OWNER, p[1], CPS_WATCH_WRITE, on_ready, &wr);
    assert_non_null(rw);
    assert_non_null(ww);
    turns(3);
    assert_int_equal(r.calls, 0);                 /* nothing to read yet */
    assert_true(wr.calls > 0);                    /* an empty pipe is writable */
    assert_int_equal(wr.status, CPS_OK);
    assert_int_equal(wr.events, CPS_WATCH_WRITE);
    assert_int_equal(cps_watch_set(ww, 0), CPS_OK);   /* paused */
    int before = wr.calls;
    turns(3);
    assert_int_equal(wr.calls, before);

    assert_int_equal(write(p[1], "x", 1), 1);
    turns(2);
    assert_true(r.calls > 0);
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.events, CPS_WATCH_READ);
    /* level-triggered: still readable, called again */
    before = r.calls;
    turns(2);
    assert_true(r.calls > before);
    /* paused: not called though readable; resumed: called */
    assert_int_equal(cps_watch_set(rw, 0), CPS_OK);
    before = r.calls;
    turns(3);
    assert_int_equal(r.calls, before);
    assert_int_equal(cps_watch_set(rw, CPS_WATCH_READ), CPS_OK);
    turns(2);
    assert_true(r.calls > before);

    /* bad bits refused, the watch unchanged */
    assert_int_equal(cps_watch_set(rw, 4), CPS_EINVAL);
    assert_int_equal(cps_watch_set(NULL, CPS_WATCH_READ), CPS_EINVAL);

    /* stopped: never called again, and the descriptor may be closed */
    cps_watch_stop(rw);
    cps_watch_stop(ww);
    cps_watch_stop(NULL);
    before = r.calls;
    turns(3);
    assert_int_equal(r.calls, before);
    close(p[0]);
    close(p[1]);
}

static void test_stop_inside_callback(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    seen r = { .stop_inside = true };
    assert_non_null(cps_watch_start(OWNER, p[0], CPS_WATCH_READ, on_ready, &r));
    assert_int_equal(write(p[1], "xy", 2), 2);
    turns(4);
    assert_int_equal(r.calls, 1);                 /* stopped by its callback */
    close(p[0]);
    close(p[1]);
}

static void test_refused(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    seen r = { 0 };
    assert_null(cps_watch_start(OWNER, p[0], CPS_WATCH_READ, NULL, &r));
    assert_null(cps_watch_start(OWNER, -1, CPS_WATCH_READ, on_ready, &r));
    assert_null(cps_watch_start(OWNER, p[0], 8, on_ready, &r));
    /* a regular file cannot be polled */
    char path[] = "/tmp/cps_watch_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_null(cps_watch_start(OWNER, fd, CPS_WATCH_READ, on_ready, &r));
    close(fd);
    close(p[0]);
    close(p[1]);
    turns(1);
}

/* At unload the host stops the plugin's watches (after fini), not others'. */
static void test_forget(void **state)
{
    (void)state;
    int a[2], b[2];
    assert_int_equal(pipe(a), 0);
    assert_int_equal(pipe(b), 0);
    seen mine = { 0 }, other = { 0 };
    cps_plugin *const OTHER = (cps_plugin *)&mine;
    assert_non_null(cps_watch_start(OWNER, a[0], CPS_WATCH_READ, on_ready, &mine));
    cps_watch *ow = cps_watch_start(OTHER, b[0], CPS_WATCH_READ, on_ready, &other);
    assert_non_null(ow);
    cps_watches_forget(OWNER);
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "x", 1), 1);
    turns(3);
    assert_int_equal(mine.calls, 0);
    assert_true(other.calls > 0);
    cps_watch_stop(ow);
    turns(1);
    close(a[0]); close(a[1]);
    close(b[0]); close(b[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_write_pause),
        cmocka_unit_test(test_stop_inside_callback),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_forget),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
