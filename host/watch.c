/*
** watch.c - descriptors a plugin owns, watched on the host's libuv loop
** (api->watch_start, ABI 2.4): a library with a non-blocking API (libpq) is
** driven from the loop without a thread.  Tracked per plugin, like timers.
*/
#include <stdlib.h>
#include "host.h"

struct cps_watch {
    uv_poll_t h;
    cps_plugin *owner;
    cps_watch_fn fn;
    void *ud;
    bool stopped;
    struct cps_watch *prev, *next;
};

static cps_watch *watches;     /* live watches, all plugins */

static int uv_events(int events)
{
    return (events & CPS_WATCH_READ ? UV_READABLE : 0) | (events & CPS_WATCH_WRITE ? UV_WRITABLE : 0);
}

static void watch_fire(uv_poll_t *h, int status, int uvev)
{
    cps_watch *w = h->data;
    if (w->stopped) return;
    int events = (uvev & UV_READABLE ? CPS_WATCH_READ : 0) | (uvev & UV_WRITABLE ? CPS_WATCH_WRITE : 0);
    w->fn(w, status < 0 ? CPS_EIO : CPS_OK, status < 0 ? 0 : events, w->ud);
}

static void watch_closed(uv_handle_t *h) { free(h->data); }

cps_watch *cps_watch_start(cps_plugin *p, int fd, int events, cps_watch_fn fn, void *ud)
{
    uv_loop_t *loop = cps_loop();
    if (!fn || fd < 0 || !loop || (events & ~(CPS_WATCH_READ | CPS_WATCH_WRITE))) return NULL;
    cps_watch *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    /* uv_poll_init refuses what epoll cannot watch (a regular file: EPERM) */
    if (uv_poll_init(loop, &w->h, fd) != 0) { free(w); return NULL; }
    w->h.data = w;
    w->owner = p;
    w->fn = fn;
    w->ud = ud;
    w->next = watches;
    if (watches) watches->prev = w;
    watches = w;
    if (events && uv_poll_start(&w->h, uv_events(events), watch_fire) != 0) {
        cps_watch_stop(w);
        return NULL;
    }
    return w;
}

int cps_watch_set(cps_watch *w, int events)
{
    if (!w || w->stopped || (events & ~(CPS_WATCH_READ | CPS_WATCH_WRITE))) return CPS_EINVAL;
    if (!events) return uv_poll_stop(&w->h) == 0 ? CPS_OK : CPS_EIO;
    return uv_poll_start(&w->h, uv_events(events), watch_fire) == 0 ? CPS_OK : CPS_EIO;
}

/* uv_poll_stop takes the descriptor out of epoll at once, so the plugin may
** close it right after; the handle itself is freed once libuv closed it. */
void cps_watch_stop(cps_watch *w)
{
    if (!w || w->stopped) return;
    w->stopped = true;
    if (w->prev) w->prev->next = w->next; else watches = w->next;
    if (w->next) w->next->prev = w->prev;
    w->prev = w->next = NULL;
    uv_poll_stop(&w->h);
    uv_close((uv_handle_t *)&w->h, watch_closed);
}

void cps_watches_forget(cps_plugin *p)
{
    cps_watch *w = watches;
    while (w) {
        cps_watch *n = w->next;
        if (!p || w->owner == p) cps_watch_stop(w);
        w = n;
    }
}
