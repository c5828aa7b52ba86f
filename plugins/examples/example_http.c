/*
** example_http.c - an HTTP route written in C, to copy.
**
** Any method on /example/echo answers a JSON description of the request:
**   curl -d hi 'http://127.0.0.1:3000/example/echo/x?y=1'
**   {"method":"POST","path":"/example/echo/x","query":"y=1","body":"hi",...}
** and GET /example/file/<name> streams a file of the data directory's
** `example/` folder (names of [a-z0-9._-], no ".."), honouring one byte
** range (206, or 416 when it cannot be satisfied; other Range values get
** the whole file, as RFC 9110 allows).  Bodies are limited to 64 KiB by the
** route; the host answers 413 beyond.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cps.h"
#include "objserve.h"

static const cps_api *api;

static int echo(cps_http *req, void *ud)
{
    (void)ud;
    size_t len;
    const char *body = api->http_body(req, &len);
    const char *ua = api->http_header(req, "user-agent");
    json_t *out = json_pack("{s s s s s s s s% s i s s?}", "method", api->http_method(req),
                            "path", api->http_path(req), "query", api->http_query(req),
                            "body", body, len, "port", api->http_port(req), "user_agent", ua);
    char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (!text) return CPS_EINVAL;     /* e.g. a body that is not UTF-8: 400 */
    json_t *headers = json_pack("{s s}", "content-type", "application/json");
    api->http_respond(req, 200, headers, text, strlen(text));
    json_decref(headers);
    free(text);
    return CPS_OK;
}

static int file(cps_http *req, void *ud)
{
    (void)ud;
    const char *name = api->http_path(req) + strlen("/example/file/");
    if (!*name || strstr(name, "..") || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789._-") != strlen(name))
        return CPS_EINVAL;
    char path[4096];
    snprintf(path, sizeof path, "%s/example/%s", api->data_dir(NULL), name);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return CPS_ENOENT;   /* the host answers 404 */
    uint64_t size = (uint64_t)st.st_size, off = 0, len = size;
    const char *range = api->http_header(req, "range");
    int r = range ? objserve_range(range, size, &off, &len) : 0;
    char cr[64];
    if (r < 0) {
        snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
        json_t *h = json_pack("{s s}", "content-range", cr);
        api->http_respond(req, 416, h, "", 0);
        json_decref(h);
        return CPS_OK;
    }
    json_t *headers = json_pack("{s s s s}", "content-type", "application/octet-stream", "accept-ranges", "bytes");
    if (r > 0) {
        snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)off,
                 (unsigned long long)(off + len - 1), (unsigned long long)size);
        json_object_set_new(headers, "content-range", json_string(cr));
    }
    int rc = api->http_respond_file(req, r > 0 ? 206 : 200, headers, path, off, len);
    json_decref(headers);
    return rc;     /* CPS_ENOENT (removed meanwhile): the host answers 404 */
}

static int plugin_init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    api = a;
    int rc = api->register_http(self, "*", "/example/echo", 65536, echo, NULL);
    if (!rc) rc = api->register_http(self, "GET", "/example/file/", 0, file, NULL);
    return rc;
}

CPS_PLUGIN_DEFINE("example_http", "1.0.0", plugin_init, NULL);
