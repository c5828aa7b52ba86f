/*
** objserve.h - answer an HTTP GET/HEAD with a stored object (store, key),
** read through the storage backend a chunk at a time (obj_size, then
** obj_read): any backend, any size, bounded memory, single byte ranges.
*/
#ifndef CPS_OBJSERVE_H
#define CPS_OBJSERVE_H

#include <stdbool.h>
#include <stdint.h>
#include "cps.h"

/* Bytes read from the backend per step: one chunk in flight per request.
** 64 KiB measured best with storage-fs (20 clients x 100 MB: least CPU
** and memory; 128 and 256 KiB cost more page faults, no less time). */
#define OBJSERVE_CHUNK (64u * 1024)

typedef struct objserve_opts {
    const char *store, *key;   /* copied */
    json_t *headers;           /* borrowed (copied): Content-Type, caching, CORS... */
    bool ranges;               /* honour a Range header (206, 416) */
    /* Called once, before anything was answered, when the object cannot be
    ** served: CPS_ENOENT (no such object) or another error.  The caller
    ** answers `req` (and must). */
    void (*fail)(cps_http *req, int status, void *ud);
    /* Called once when the request no longer needs the caller: answered
    ** and streamed to the end, aborted, or the client went away.  Never
    ** called after `fail`. */
    void (*end)(void *ud);     /* may be NULL */
    void *ud;
} objserve_opts;

/* Start serving.  CPS_OK: exactly one of fail/end will be called (on a
** later loop turn).  A negative code: nothing was started, nothing will be
** called, the caller answers `req`. */
int objserve(const cps_api *api, cps_plugin *self, const cps_storage_backend *b, cps_http *req,
             const objserve_opts *o);

/* One byte range of an object of `size` bytes from a Range header value:
** 1 and the span to send; 0 to ignore the header (anything but one plain
** range, inverted ones included: the whole object is sent, as RFC 9110
** allows); -1 when it cannot be satisfied (416). */
int objserve_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len);

/* Content-Range for a served span ("bytes a-b/size") or, with len 0, for a
** 416 ("bytes * /size", without the blank).  Returns buf. */
const char *objserve_content_range(char *buf, size_t n, uint64_t off, uint64_t len, uint64_t size);

#endif
