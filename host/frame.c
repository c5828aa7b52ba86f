/*
** frame.c - immutable refcounted text frames with the LWS_PRE headroom that
** libwebsockets writes its header into, so one serialisation is shared by
** every session a broadcast reaches.
*/
#include <uv.h>
#include <libwebsockets.h>
#include <stdlib.h>
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

cps_frame *cps_frame_json(json_t *v)
{
    if (!v) return NULL;
    size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    if (n == 0) return NULL;
    cps_frame *f = malloc(sizeof *f + LWS_PRE + n + 1);
    if (!f) return NULL;
    f->refs = 1;
    f->len = json_dumpb(v, (char *)f->buf + LWS_PRE, n, JSON_COMPACT | JSON_ENCODE_ANY);
    f->buf[LWS_PRE + f->len] = 0;
    return f;
}

cps_frame *cps_frame_ref(cps_frame *f) { if (f) f->refs++; return f; }

void cps_frame_unref(cps_frame *f)
{
    if (f && --f->refs == 0) free(f);
}

unsigned char *cps_frame_payload(cps_frame *f) { return f->buf + LWS_PRE; }
