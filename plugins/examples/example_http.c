/*
** example_http.c - an HTTP route written in C, to copy.
**
** Any method on /example/echo answers a JSON description of the request:
**   curl -d hi 'http://127.0.0.1:3000/example/echo/x?y=1'
**   {"method":"POST","path":"/example/echo/x","query":"y=1","body":"hi",...}
** and GET /example/file/<name> streams a file of the data directory's
** `example/` folder (names of [a-z0-9._-], no "..").  Bodies are limited to
** 64 KiB by the route; the host answers 413 beyond.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cps.h"

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
    json_t *headers = json_pack("{s s}", "content-type", "application/octet-stream");
    int rc = api->http_respond_file(req, 200, headers, path, 0, UINT64_MAX);
    json_decref(headers);
    return rc;     /* CPS_ENOENT: the host answers 404 */
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
