/*
** timer.c - plugin timers and thread-pool work on the host's libuv loop.
** The host tracks both per plugin, so unloading a plugin stops its timers
** and turns its pending work completions into CPS_ECANCELED.
*/
#include <stdlib.h>
#include <sys/time.h>
#include "host.h"

struct cps_timer {
    uv_timer_t h;
    cps_plugin *owner;
    cps_timer_fn fn;
    void *ud;
    bool repeat;
    bool stopped;
    struct cps_timer *prev, *next;
};

typedef struct work_req {
    uv_work_t req;
    cps_plugin *owner;
    cps_work_fn work;
    cps_after_work_fn after;
    void *ud;
} work_req;

static uv_loop_t *loop;        /* the host's one loop */
static cps_timer *timers;      /* live timers, all plugins */
static size_t work_inflight;   /* queued + running jobs, bounded by limits.work_queue */

int cps_timers_init(uv_loop_t *l) { loop = l; return 0; }
uv_loop_t *cps_loop(void) { return loop; }

uint64_t cps_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static void timer_closed(uv_handle_t *h) { free(h->data); }

static void timer_unlink(cps_timer *t)
{
    if (t->prev) t->prev->next = t->next; else timers = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

void cps_timer_stop(cps_timer *t)
{
    if (!t || t->stopped) return;
    t->stopped = true;
    timer_unlink(t);
    uv_timer_stop(&t->h);
    uv_close((uv_handle_t *)&t->h, timer_closed);
}

static void timer_fire(uv_timer_t *h)
{
    cps_timer *t = h->data;
    if (t->stopped) return;
    t->fn(t, t->ud);
    /* A one-shot timer is freed after its callback, unless it stopped itself. */
    if (!t->repeat) cps_timer_stop(t);
}

cps_timer *cps_timer_start(cps_plugin *p, uint64_t after, uint64_t repeat,
                           cps_timer_fn fn, void *ud)
{
    if (!fn || !loop) return NULL;
    cps_timer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    uv_timer_init(loop, &t->h);
    t->h.data = t;
    t->owner = p;
    t->fn = fn;
    t->ud = ud;
    t->repeat = repeat > 0;
    t->next = timers;
    if (timers) timers->prev = t;
    timers = t;
    uv_timer_start(&t->h, timer_fire, after, repeat);
    return t;
}

void cps_timers_forget(cps_plugin *p)
{
    cps_timer *t = timers;
    while (t) {
        cps_timer *n = t->next;
        if (!p || t->owner == p) cps_timer_stop(t);
        t = n;
    }
}

static void work_run(uv_work_t *req)
{
    work_req *w = req->data;
    w->work(w->ud);
}

static void work_after(uv_work_t *req, int status)
{
    work_req *w = req->data;
    bool cancel = status != 0 || (w->owner && w->owner->unloading);
    work_inflight--;
    if (w->after) w->after(w->ud, cancel ? CPS_ECANCELED : CPS_OK);
    free(w);
}

int cps_work(cps_plugin *p, cps_work_fn work, cps_after_work_fn after, void *ud)
{
    if (!work) return CPS_EINVAL;
    if (work_inflight >= (size_t)cps_config_int("limits.work_queue", 10000)) return CPS_EBUSY;
    work_req *w = calloc(1, sizeof *w);
    if (!w) return CPS_ENOMEM;
    w->req.data = w;
    w->owner = p;
    w->work = work;
    w->after = after;
    w->ud = ud;
    if (uv_queue_work(loop, &w->req, work_run, work_after) != 0) {
        free(w);
        return CPS_EBUSY;
    }
    work_inflight++;
    return CPS_OK;
}
