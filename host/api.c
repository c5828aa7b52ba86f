/*
** api.c - the cps_api table handed to every plugin: thin wrappers that bind
** each ABI function to the host subsystem that implements it.  Append only:
** a new function goes last, with a CPS_ABI_MINOR bump (api/cps.h).
*/
#include <stdio.h>
#include <string.h>
#include "host.h"

static const char *api_self_node(cps_plugin *p) { return p ? p->node : NULL; }

static json_t *api_config(cps_plugin *p)
{
    static json_t *empty;
    json_t *v = NULL;
    if (p && cps_cfg) {
        char role[64];
        const char *name = p->name;
        if (p->node) {           /* a role plugin reads the role's section */
            snprintf(role, sizeof role, "%.*s", (int)strcspn(p->node, ":"), p->node);
            name = role;
        }
        v = json_object_get(cps_cfg->root, name);
    }
    if (json_is_object(v)) return v;
    if (!empty) empty = json_object();   /* never freed: one per process */
    return empty;
}

static json_t *api_config_get(cps_plugin *p, const char *path)
{
    (void)p;
    return cps_config_live(path);
}

static const char *api_data_dir(cps_plugin *p)
{
    (void)p;
    return cps_config_str("data_dir", "./data");
}

static void api_log(cps_plugin *p, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cps_logv(p ? p->name : "?", level, fmt, ap);
    va_end(ap);
}

/* The owner names the plugin in the counter's HELP line at /metrics. */
static cps_counter *api_counter(cps_plugin *p, const char *name)
{
    return cps_metrics_counter_of(name, p ? p->name : NULL);
}

static int api_register_command(cps_plugin *p, const char *name, cps_command_fn fn, void *ud)
{
    return cps_router_register(p, name, fn, ud);
}

static const char *api_owner(cps_plugin *p, const char *role, const char *key, char *buf, size_t n)
{
    (void)p;
    return cps_router_owner(role, key, buf, n);
}

static const char *api_owner_live(cps_plugin *p, const char *role, const char *key, char *buf, size_t n)
{
    (void)p;
    return cps_router_owner_live(role, key, buf, n);
}

static bool api_node_is_up(cps_plugin *p, const char *node)
{
    (void)p;
    return cps_router_node_is_up(node);
}

static int api_role_count(cps_plugin *p, const char *role) { (void)p; return cps_router_role_count(role); }

static int api_session_handler(cps_plugin *p, const cps_session_handler *h, void *ud)
{
    return cps_server_set_handler(p, h, ud);
}

static const cps_storage_backend *api_storage(cps_plugin *p, const char *name)
{
    (void)p;
    return cps_storage_get(name);
}

static bool api_node_is_local(cps_plugin *p, const char *node)
{
    (void)p;
    return node && cps_router_is_local(node);
}

static cps_histogram *api_histogram(cps_plugin *p, const char *name, const char *help)
{
    return cps_metrics_histogram(name, help, p ? p->name : NULL);
}

const cps_api cps_host_api = {
    .size = sizeof(cps_api),
    .major = CPS_ABI_MAJOR,
    .minor = CPS_ABI_MINOR,
    .self_node = api_self_node,
    .config = api_config,
    .config_get = api_config_get,
    .data_dir = api_data_dir,
    .log = api_log,
    .counter = api_counter,
    .counter_add = cps_metrics_add,
    .register_command = api_register_command,
    .send = cps_router_send,
    .query = cps_router_query,
    .reply = cps_router_reply,
    .call_from = cps_router_call_from,
    .owner = api_owner,
    .role_count = api_role_count,
    .register_rpc = cps_rpc_register,
    .rpc_call = cps_rpc_call,
    .rpc_kind = cps_rpc_kind,
    .rpc_reply = cps_rpc_reply,
    .rpc_error = cps_rpc_error,
    .rpc_key = cps_rpc_key,
    .rpc_name = cps_rpc_name,
    .rpc_caller = cps_rpc_caller,
    .rpc_end_session = cps_rpc_end_session,
    .session_handler = api_session_handler,
    .session_send = cps_session_send,
    .session_close = cps_session_close,
    .session_id = cps_session_id,
    .session_set_data = cps_session_set_data,
    .session_data = cps_session_data,
    .session_peer = cps_session_peer,
    .session_queued = cps_session_queued,
    .frame_new = cps_frame_new,
    .frame_json = cps_frame_json,
    .frame_ref = cps_frame_ref,
    .frame_unref = cps_frame_unref,
    .timer_start = cps_timer_start,
    .timer_stop = cps_timer_stop,
    .work = cps_work,
    .now_ms = cps_now_ms,
    .errname = cps_errname,
    .errcode = cps_errcode,
    .register_storage = cps_storage_register,
    .storage = api_storage,
    .session_on_drain = cps_session_on_drain,
    .register_role_command = cps_router_register_role,
    .register_http = cps_http_register,
    .http_method = cps_http_method,
    .http_path = cps_http_path,
    .http_query = cps_http_query,
    .http_header = cps_http_header,
    .http_body = cps_http_body,
    .http_port = cps_http_port,
    .http_respond = cps_http_respond,
    .http_respond_file = cps_http_respond_file,
    .on_peer_down = cps_router_on_peer_down,
    .node_is_local = api_node_is_local,
    .http_respond_stream = cps_http_respond_stream,
    .http_write = cps_http_write,
    .rpc_describe = cps_rpc_describe,
    .histogram = api_histogram,
    .histogram_observe = cps_metrics_observe,
    .instance_set = cps_instance_set,
    .on_peer_up = cps_router_on_peer_up,
    .node_is_up = api_node_is_up,
    .owner_live = api_owner_live,
    .session_pause = cps_session_pause,
    .watch_start = cps_watch_start,
    .watch_set = cps_watch_set,
    .watch_stop = cps_watch_stop,
};
