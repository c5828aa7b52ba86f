/*
** turn.c - work done once per loop turn, after the poll phase: the server
** writes its clients' queued frames there and the links their batches, one
** write per burst instead of a writable request (an epoll_ctl DEL and ADD)
** each.  A caller that queues outside the poll phase (from an idle handle or
** a timer) asks with cps_turn_want, which also keeps that turn's poll from
** blocking until some unrelated I/O event.
*/
#include <uv.h>
#include "host.h"

static void kick_noop(uv_idle_t *h) { (void)h; }

static void on_check(uv_check_t *h)
{
    cps_turn *t = h->data;
    if (!t->wanted) return;
    t->wanted = false;
    uv_idle_stop(&t->kick);
    t->fn();
}

void cps_turn_init(cps_turn *t, uv_loop_t *loop, void (*fn)(void))
{
    t->fn = fn;
    t->wanted = false;
    uv_check_init(loop, &t->check);
    t->check.data = t;
    uv_check_start(&t->check, on_check);
    uv_unref((uv_handle_t *)&t->check);     /* never what keeps the loop alive */
    uv_idle_init(loop, &t->kick);
    uv_unref((uv_handle_t *)&t->kick);
    t->on = true;
}

void cps_turn_want(cps_turn *t)
{
    if (t->wanted || !t->on) return;
    t->wanted = true;
    uv_idle_start(&t->kick, kick_noop);
}

void cps_turn_stop(cps_turn *t)
{
    if (!t->on) return;
    uv_check_stop(&t->check);
    uv_close((uv_handle_t *)&t->check, NULL);
    uv_idle_stop(&t->kick);
    uv_close((uv_handle_t *)&t->kick, NULL);
    t->on = t->wanted = false;
}
