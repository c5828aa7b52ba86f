/*
** logo.c - /api/logo: the logo an admin uploaded (UPLOAD_LOGO, store "logo" of
** the storage backend, docs/protocol/admin.md) read through the backend a chunk
** at a time, so it is served whatever the backend; else the checkout's default
** (static.c's web_logo).
*/
#include <stdio.h>
#include <stdlib.h>
#include "objserve.h"
#include "web.h"

static const char *const EXTS[] = { "png", "jpg", "jpeg", "svg", "gif", "webp" };
static const char *const TYPES[] = { "image/png", "image/jpeg", "image/jpeg", "image/svg+xml", "image/gif",
                                     "image/webp" };
#define NEXTS (sizeof EXTS / sizeof *EXTS)

typedef struct probe {
    const cps_api *api;
    cps_plugin *self;
    cps_http *req;
    size_t i;                 /* the extension being looked for */
    char key[16];
} probe;

/* No uploaded logo (or it could not be served): the default one. */
static void fallback(probe *p)
{
    int rc = web_logo(p->req);
    if (rc < 0 && rc != CPS_ASYNC) p->api->http_respond(p->req, 500, NULL, "", 0);
    free(p);
}

static void served(void *ud) { free(ud); }

static void not_served(cps_http *req, int status, void *ud)
{
    (void)req;
    (void)status;
    fallback(ud);
}

static void next(probe *p);

static void sized(void *ud, int status, uint64_t size)
{
    probe *p = ud;
    (void)size;
    if (status != CPS_OK) { p->i++; next(p); return; }
    const cps_storage_backend *b = p->api->storage(p->self, NULL);
    json_t *h = json_pack("{s s s s}", "Content-Type", TYPES[p->i], "Cache-Control", "no-cache");
    objserve_opts o = { .store = "logo", .key = p->key, .headers = h, .ranges = false,
                        .fail = not_served, .end = served, .ud = p };
    int rc = b ? objserve(p->api, p->self, b, p->req, &o) : CPS_ENOENT;
    json_decref(h);
    if (rc != CPS_OK) fallback(p);
}

static void next(probe *p)
{
    const cps_storage_backend *b = p->api->storage(p->self, NULL);
    for (; p->i < NEXTS; p->i++) {
        snprintf(p->key, sizeof p->key, "logo.%s", EXTS[p->i]);
        if (b && b->obj_size && b->obj_size(b->state, "logo", p->key, sized, p) == CPS_OK) return;
    }
    fallback(p);
}

int web_api_logo(const cps_api *api, cps_plugin *self, cps_http *req)
{
    const cps_storage_backend *b = api->storage(self, NULL);
    if (!b || !b->obj_size) return web_logo(req);   /* a process without storage */
    probe *p = calloc(1, sizeof *p);
    if (!p) return CPS_ENOMEM;
    p->api = api;
    p->self = self;
    p->req = req;
    next(p);
    return CPS_ASYNC;
}
