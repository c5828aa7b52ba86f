/*
** fakehost.h - the part of a fake host table that the plugin fuzz targets
** (fuzz_auth, fuzz_blob) share: an empty configuration, silent logs, a fixed
** clock, no storage role, and HTTP requests whose body comes from the input
** and whose one answer is counted.  Each target adds the members it needs
** (routes, owner, query) after fakehost_fill.
*/
#ifndef CPS_FAKEHOST_H
#define CPS_FAKEHOST_H
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include "cps.h"

/* A request: the body, the answer's status and how many answers it got;
** path and auth (the Authorization header) for targets that route on them. */
struct cps_http {
    const char *body;
    size_t len;
    int status;
    int answers;
    const char *path;
    const char *auth;
};

static json_t *fake_empty;

static json_t *fake_config(cps_plugin *p) { (void)p; return fake_empty; }
static json_t *fake_config_get(cps_plugin *p, const char *path) { (void)p; (void)path; return NULL; }
static void fake_log(cps_plugin *p, int level, const char *fmt, ...) { (void)p; (void)level; (void)fmt; }
static int fake_register_role_command(cps_plugin *p, const char *role, const char *name, cps_command_fn fn, void *ud)
{
    (void)p; (void)role; (void)name; (void)fn; (void)ud;
    return CPS_ENOENT;                   /* no storage role in this process */
}
static uint64_t fake_now_ms(void) { return 1790000000000ULL; }
static const char *fake_errname(int code) { (void)code; return "E_FUZZ"; }
static const char *fake_http_body(cps_http *r, size_t *len) { *len = r->len; return r->body; }
static int fake_http_respond(cps_http *r, int status, json_t *headers, const char *body, size_t len)
{
    (void)body; (void)len; (void)headers;   /* borrowed */
    r->status = status;
    r->answers++;
    return CPS_OK;
}

/* The shared members of `api`; the target sets the rest before init. */
static void fakehost_fill(cps_api *api)
{
    fake_empty = json_object();
    api->size = sizeof *api;
    api->major = CPS_ABI_MAJOR;
    api->minor = CPS_ABI_MINOR;
    api->config = fake_config;
    api->config_get = fake_config_get;
    api->log = fake_log;
    api->register_role_command = fake_register_role_command;
    api->now_ms = fake_now_ms;
    api->errname = fake_errname;
    api->http_body = fake_http_body;
    api->http_respond = fake_http_respond;
}
#endif
