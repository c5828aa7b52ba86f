/*
** frame.c - immutable refcounted text frames with the LWS_PRE headroom that
** libwebsockets writes its header into, so one serialisation is shared by
** every session a broadcast reaches.
*/
#include <uv.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include "host.h"

size_t cps_frame_pre(void) { return LWS_PRE; }

cps_frame *cps_frame_new(const char *text, size_t len)
{
    cps_frame *f = malloc(sizeof *f + LWS_PRE + len + 1);
    if (!f) return NULL;
    f->refs = 1;
    f->len = len;
    if (len) memcpy(f->buf + LWS_PRE, text, len);
    f->buf[LWS_PRE + len] = 0;
    return f;
}

/* One pass of the links' writer (jsonw.c) straight into the frame, its
** header and headroom reserved in front: json_dumpb dumped twice (once to
** size the frame) through a callback per run of characters, and was the
** fronts' json_dumpb per DELIVER (8% of the cluster's CPU on its profile).
** The text is the same compact JSON. */
cps_frame *cps_frame_json(json_t *v)
{
    if (!v) return NULL;
    size_t head = offsetof(cps_frame, buf) + LWS_PRE;
    cps_jsonw w = { 0 };
    w.p = malloc(head + 512);       /* a small-bin size: most frames fit */
    if (!w.p) return NULL;
    w.cap = head + 512;
    w.len = head;
    cps_jsonw_value(&w, v);
    cps_jsonw_raw(&w, "", 1);       /* room for the NUL */
    if (w.bad) { free(w.p); return NULL; }
    if (w.cap - w.len > 1024) {     /* a large frame may sit in send queues: no slack */
        char *fit = realloc(w.p, w.len);
        if (fit) w.p = fit;
    }
    cps_frame *f = (cps_frame *)(void *)w.p;   /* malloc'd: aligned for any type */
    f->refs = 1;
    f->len = w.len - head - 1;
    f->buf[LWS_PRE + f->len] = 0;
    return f;
}

cps_frame *cps_frame_ref(cps_frame *f) { if (f) f->refs++; return f; }

void cps_frame_unref(cps_frame *f)
{
    if (f && --f->refs == 0) free(f);
}

unsigned char *cps_frame_payload(cps_frame *f) { return f->buf + LWS_PRE; }
