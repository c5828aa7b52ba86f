/*
** web.c - the web side of cpsd (docs/protocol/http.md §1, §4, §5): the two origins,
** the headers every response carries, and the configuration endpoints the
** CryptPad web app loads (/api/config, /api/broadcast, /api/instance,
** /extensions.js, /api/logo).  Static files are in static.c.
*/
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sodium.h>
#include "ids.h"
#include "text.h"
#include "web.h"

web_state W;

static struct {
    json_t *config_rest;      /* /api/config members after requireConf */
    json_t *instance;         /* /api/instance object */
    json_t *maintenance;      /* {start, end} or NULL */
    char *version, *fresh_key;
    char *curve_public;       /* base64 */
    int curve_tries;          /* asks to storage:0 so far */
    bool closing;             /* fini ran: late answers are dropped */
    char *last_broadcast_hash, *survey_url;
    char *extensions_js;
} S;

/* ---- JSON as JavaScript's JSON.stringify(v, null, '\t') writes it ----- */

/* Clients slice /api/config at fixed offsets and some compare it with what
** Node sends, so the layout follows Node's: tab indentation, ": " after
** keys, empty containers as {} and []. */
static void js_json(tbuf *b, json_t *v, int depth)
{
    char num[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (!json_object_size(v)) { tbuf_adds(b, "{}"); return; }
        tbuf_adds(b, "{");
        const char *k;
        json_t *x;
        bool first = true;
        json_object_foreach(v, k, x) {
            tbuf_adds(b, first ? "\n" : ",\n");
            first = false;
            for (int i = 0; i <= depth; i++) tbuf_adds(b, "\t");
            tbuf_json_str(b, k, strlen(k));
            tbuf_adds(b, ": ");
            js_json(b, x, depth + 1);
        }
        tbuf_adds(b, "\n");
        for (int i = 0; i < depth; i++) tbuf_adds(b, "\t");
        tbuf_adds(b, "}");
        return;
    }
    case JSON_ARRAY: {
        if (!json_array_size(v)) { tbuf_adds(b, "[]"); return; }
        tbuf_adds(b, "[");
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            tbuf_adds(b, i ? ",\n" : "\n");
            for (int d = 0; d <= depth; d++) tbuf_adds(b, "\t");
            js_json(b, x, depth + 1);
        }
        tbuf_adds(b, "\n");
        for (int d = 0; d < depth; d++) tbuf_adds(b, "\t");
        tbuf_adds(b, "]");
        return;
    }
    case JSON_STRING:
        tbuf_json_str(b, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        tbuf_adds(b, num);
        return;
    case JSON_REAL: {
        double d = json_real_value(v);
        /* JavaScript writes integral numbers without a fraction */
        if (d == (double)(long long)d && d > -1e15 && d < 1e15) snprintf(num, sizeof num, "%lld", (long long)d);
        else snprintf(num, sizeof num, "%.17g", d);
        tbuf_adds(b, num);
        return;
    }
    case JSON_TRUE: tbuf_adds(b, "true"); return;
    case JSON_FALSE: tbuf_adds(b, "false"); return;
    default: tbuf_adds(b, "null"); return;
    }
}

/* ---- headers (§4) ------------------------------------------------------ */

static bool re_match(regex_t *re, const char *s) { return regexec(re, s, 0, NULL, 0) == 0; }

json_t *web_headers(const char *path, const char *query, const char *origin, bool no_csp)
{
    /* CryptPad tests its patterns against req.url: path and query, raw */
    size_t n = strlen(path) + strlen(query) + 2;
    char *url = malloc(n);
    if (!url) return NULL;
    snprintf(url, n, "%s%s%s", path, *query ? "?" : "", query);
    bool office = false;
    for (int i = 0; i < 4 && !office; i++) office = re_match(&W.re_office[i], url);
    json_t *h = json_object();
    json_object_set_new(h, "X-XSS-Protection", json_string("1; mode=block"));
    json_object_set_new(h, "X-Content-Type-Options", json_string("nosniff"));
    /* the main origin may load OnlyOffice fonts from itself (headers.js) */
    /* an ENABLE_EMBEDDING decree switches the policies at once */
    bool embed = json_is_true(W.api->config_get(W.self, "instance.enable_embedding"));
    const char *acao = embed ? W.acao_embed : W.acao;
    if (!embed && origin && *origin &&
        !strcmp(origin, W.main_origin) && re_match(&W.re_fonts, url))
        acao = W.main_origin;
    json_object_set_new(h, "Access-Control-Allow-Origin", json_string(acao));
    json_object_set_new(h, "Referrer-Policy", json_string("same-origin"));
    json_object_set_new(h, "Permissions-policy", json_string("interest-cohort=()"));
    if (!no_csp && (office || !re_match(&W.re_api, url)))
        json_object_set_new(h, "Content-Security-Policy", json_string(office ? (embed ? W.csp_office_embed : W.csp_office)
                                                                             : (embed ? W.csp_embed : W.csp)));
    json_object_set_new(h, "Cross-Origin-Resource-Policy", json_string("cross-origin"));
    json_object_set_new(h, "Cross-Origin-Embedder-Policy", json_string("require-corp"));
    json_object_set_new(h, "Cache-Control", json_string(re_match(&W.re_ver, url) ? "max-age=31536000" : "no-cache"));
    free(url);
    return h;
}

/* ---- configuration endpoints (§5) -------------------------------------- */

static bool is_path(cps_http *req, const char *want)
{
    /* Express routes also take a trailing slash */
    const char *p = W.api->http_path(req);
    size_t n = strlen(want);
    return !strncmp(p, want, n) && (!p[n] || (p[n] == '/' && !p[n + 1]));
}

static int respond_js(cps_http *req, char *text, bool oom)
{
    if (!text || oom) { free(text); return CPS_ENOMEM; }
    json_t *h = web_headers(W.api->http_path(req), W.api->http_query(req),
                            W.api->http_header(req, "origin"), false);
    json_object_set_new(h, "Content-Type", json_string("text/javascript"));
    W.api->http_respond(req, 200, h, text, strlen(text));
    json_decref(h);
    free(text);
    return CPS_OK;
}

/* define(function(){;\nreturn <JSON>;\n});  - clients cut the JSON out
** with slice(27, -5), so these bytes never change. */
static int respond_module(cps_http *req, json_t *obj)
{
    tbuf b = { 0 };
    tbuf_adds(&b, "define(function(){;\nreturn ");
    js_json(&b, obj, 0);
    tbuf_adds(&b, ";\n});");
    tbuf_add(&b, "", 1);
    json_decref(obj);
    return respond_js(req, b.s, b.oom);
}

/* ---- live settings (admin decrees, docs/protocol/admin.md §4.6) ------- */

static json_t *live(const char *key)
{
    char path[96];
    snprintf(path, sizeof path, "instance.%s", key);
    json_t *v = W.api->config_get(W.self, path);
    return json_is_null(v) ? NULL : v;
}

static void live_set(json_t *o, const char *name, const char *key, json_type type)
{
    json_t *v = live(key);
    if (v && (json_typeof(v) == type || (type == JSON_TRUE && json_is_boolean(v)) ||
              (type == JSON_INTEGER && json_is_number(v))))
        json_object_set(o, name, v);
}

/* The /api/config members an admin changes at run time, read at each
** request so that the answer after a decree already shows it. */
static void live_config(json_t *o)
{
    json_t *admins = live("admin_keys");
    json_object_set_new(o, "adminKeys", json_is_array(admins) ? json_copy(admins) : json_array());
    live_set(o, "restrictRegistration", "restrict_registration", JSON_TRUE);
    live_set(o, "enableEmbedding", "enable_embedding", JSON_TRUE);
    live_set(o, "restrictSsoRegistration", "restrict_sso_registration", JSON_TRUE);
    live_set(o, "listMyInstance", "list_my_instance", JSON_TRUE);
    live_set(o, "enforceMFA", "enforce_mfa", JSON_TRUE);
    live_set(o, "appsToDisable", "apps_to_disable", JSON_ARRAY);
    live_set(o, "adminEmail", "admin_email", JSON_STRING);
    live_set(o, "inactiveTime", "inactive_time", JSON_INTEGER);
    live_set(o, "supportMailbox", "support_mailbox", JSON_STRING);
    live_set(o, "supportMailboxKey", "support_mailbox_key", JSON_STRING);
    live_set(o, "defaultStorageLimit", "default_storage_limit", JSON_INTEGER);
    live_set(o, "maxUploadSize", "max_upload_size", JSON_INTEGER);
    if (json_is_true(live("remove_donate_button"))) json_object_set_new(o, "removeDonateButton", json_true());
    json_t *mods = live("moderator_keys");
    if (json_is_array(mods)) json_object_set(o, "moderatorKeys", mods);
    json_t *prem = live("premium_upload_size"), *max = json_object_get(o, "maxUploadSize");
    if (json_is_number(prem))
        json_object_set_new(o, "premiumUploadSize", json_number_value(prem) >= json_number_value(max)
                                                    ? json_copy(prem) : json_false());
}

static void live_text(json_t *inst, const char *name, const char *key)
{
    json_t *v = live(key);
    if (json_is_object(v) && json_object_size(v)) json_object_set_new(inst, name, json_deep_copy(v));
}

static void live_instance(json_t *inst)
{
    if (!inst) return;
    live_set(inst, "color", "accent_color", JSON_STRING);
    live_text(inst, "name", "instance_name");
    live_text(inst, "description", "instance_description");
    live_text(inst, "location", "instance_jurisdiction");
    live_text(inst, "notice", "instance_notice");
}

static int api_config(cps_http *req, void *ud)
{
    (void)ud;
    if (!is_path(req, "/api/config")) return web_static(req, NULL);
    char args[256];
    /* FLUSH_CACHE bumps the live fresh key (docs/protocol/admin.md §3.1) */
    const char *fk = json_string_value(W.api->config_get(W.self, "instance.fresh_key"));
    if (!fk) fk = S.fresh_key;
    if (W.dev_mode) snprintf(args, sizeof args, "ver=%s-%s-%llu", S.version, fk,
                             (unsigned long long)W.api->now_ms());
    else snprintf(args, sizeof args, "ver=%s%s%s", S.version, *fk ? "-" : "", fk);
    json_t *o = json_pack("{s{s i s s}}", "requireConf", "waitSeconds", 600, "urlArgs", args);
    json_object_update(o, S.config_rest);
    live_config(o);
    return respond_module(req, o);
}

static int api_broadcast(cps_http *req, void *ud)
{
    (void)ud;
    if (!is_path(req, "/api/broadcast")) return web_static(req, NULL);
    json_t *o = json_pack("{s s s s}", "curvePublic", S.curve_public, "lastBroadcastHash", S.last_broadcast_hash);
    /* the broadcast decrees (docs/protocol/admin.md §4.6) win over the configuration */
    json_t *lbh = W.api->config_get(W.self, "instance.last_broadcast_hash");
    if (lbh && !json_is_null(lbh)) json_object_set(o, "lastBroadcastHash", lbh);
    json_t *survey = W.api->config_get(W.self, "instance.survey_url");
    if (survey && !json_is_null(survey)) json_object_set(o, "surveyURL", survey);
    else if (S.survey_url) json_object_set_new(o, "surveyURL", json_string(S.survey_url));
    json_t *m = W.api->config_get(W.self, "instance.maintenance");
    if (!m || json_is_null(m)) m = S.maintenance;
    /* a maintenance window is announced until it has ended */
    json_t *end = json_object_get(m, "end");
    if (m && !(json_is_number(end) && json_number_value(end) < (double)W.api->now_ms()))
        json_object_set(o, "maintenance", m);
    return respond_module(req, o);
}

static int api_instance(cps_http *req, void *ud)
{
    (void)ud;
    if (!is_path(req, "/api/instance")) return web_static(req, NULL);
    /* a plain AMD module (never sliced), written like Node's Define() */
    tbuf b = { 0 };
    json_t *inst = json_deep_copy(S.instance);
    live_instance(inst);
    tbuf_adds(&b, "define(function (){\n    return ");
    js_json(&b, inst, 0);
    json_decref(inst);
    tbuf_adds(&b, ";\n});");
    tbuf_add(&b, "", 1);
    return respond_js(req, b.s, b.oom);
}

static int extensions_js(cps_http *req, void *ud)
{
    (void)ud;
    if (!is_path(req, "/extensions.js")) return web_static(req, NULL);
    return respond_js(req, strdup(S.extensions_js), false);
}

static int api_logo(cps_http *req, void *ud)
{
    (void)ud;
    if (!is_path(req, "/api/logo")) return web_static(req, NULL);
    return web_logo(req);
}

/* ---- settings ---------------------------------------------------------- */

static json_t *conf(const char *key) { return json_object_get(W.api->config(W.self), key); }

/* A setting shared with the plugins that enforce it (the `instance`
** section), so /api/config tells clients the limits the server applies. */
static json_t *shared(const char *key)
{
    char path[96];
    snprintf(path, sizeof path, "instance.%s", key);
    return W.api->config_get(W.self, path);
}

static bool shared_bool(const char *key) { return json_is_true(shared(key)); }

static const char *shared_str(const char *key)
{
    json_t *v = shared(key);
    if (v && !json_is_string(v)) W.api->log(W.self, CPS_LOG_WARN, "instance.%s: expected a string, ignored", key);
    return json_string_value(v);
}

static const char *conf_str(const char *key)
{
    json_t *v = conf(key);
    if (v && !json_is_string(v)) W.api->log(W.self, CPS_LOG_WARN, "web.%s: expected a string, ignored", key);
    return json_string_value(v);
}

static bool conf_bool(const char *key, bool def)
{
    json_t *v = conf(key);
    if (!v) return def;
    if (!json_is_boolean(v)) { W.api->log(W.self, CPS_LOG_WARN, "web.%s: expected a boolean, ignored", key); return def; }
    return json_is_true(v);
}

static json_t *conf_num(const char *key, json_int_t def)
{
    json_t *v = conf(key);
    if (json_is_integer(v)) return json_integer(json_integer_value(v));
    if (json_is_real(v)) return json_real(json_real_value(v));
    if (v) W.api->log(W.self, CPS_LOG_WARN, "web.%s: expected a number, ignored", key);
    return json_integer(def);
}

/* A list of strings; Lua gives an empty table as {} (an object). */
static json_t *conf_list(const char *key)
{
    json_t *v = conf(key), *out = json_array();
    size_t i;
    json_t *x;
    if (v && !json_is_array(v) && !(json_is_object(v) && !json_object_size(v)))
        W.api->log(W.self, CPS_LOG_WARN, "web.%s: expected a list of strings, ignored", key);
    json_array_foreach(v, i, x)
        if (json_is_string(x)) json_array_append(out, x);
    return out;
}

/* "http://example.org/" -> "http://example.org" (as canonicalizeOrigin) */
static char *origin_dup(const char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    char *o = strdup(s);
    if (!o) return NULL;
    size_t n = strlen(o);
    while (n && (o[n - 1] == '/' || o[n - 1] == ' ' || o[n - 1] == '\t')) o[--n] = 0;
    return o;
}

static char *default_origin(int port)
{
    const char *host = json_string_value(W.api->config_get(W.self, "listen.host"));
    if (!host || !*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "::")) host = "localhost";
    char buf[300];
    snprintf(buf, sizeof buf, "http://%s:%d", host, port);
    return strdup(buf);
}

/* Instance texts are {"default": text, "<lang>": text}; a string is the
** default text. */
static json_t *translations(const char *key)
{
    json_t *v = conf(key);
    if (json_is_string(v)) return json_pack("{s O}", "default", v);
    if (json_is_object(v)) return json_deep_copy(v);
    return json_object();
}

/* The OnlyOffice builds installed in the checkout: the client enables the
** office apps only when its current version is among them. */
static json_t *onlyoffice(void)
{
    json_t *v = conf("onlyoffice_versions");
    if (json_is_false(v)) return json_false();
    if (json_is_array(v)) return json_pack("{s O}", "availableVersions", v);
    if (!W.root) return json_false();
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/www/common/onlyoffice/dist", W.root);
    DIR *d = opendir(dir);
    if (!d) return json_false();
    json_t *list = json_array();
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[PATH_MAX + 256];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == 'v' && stat(p, &st) == 0 && S_ISDIR(st.st_mode))
            json_array_append_new(list, json_string(e->d_name));
    }
    closedir(d);
    if (!json_array_size(list)) { json_decref(list); return json_false(); }
    return json_pack("{s o}", "availableVersions", list);
}

/* package.json's "version" of the checkout: it is what CryptPad puts in
** every asset URL (?ver=...). */
static char *checkout_version(void)
{
    const char *v = conf_str("version");
    if (v) return strdup(v);
    if (W.root) {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/package.json", W.root);
        json_t *pkg = json_load_file(p, 0, NULL);
        const char *pv = json_string_value(json_object_get(pkg, "version"));
        char *out = pv ? strdup(pv) : NULL;
        json_decref(pkg);
        if (out) return out;
    }
    return strdup("0.0.0");
}

static void set_opt_str(json_t *o, const char *name, const char *key)
{
    const char *v = conf_str(key);
    if (v) json_object_set_new(o, name, json_string(v));
}

static int build_config(void)
{
    json_t *o = S.config_rest = json_object();
    if (!o) return CPS_ENOMEM;
    json_object_set_new(o, "removeDonateButton", json_boolean(conf_bool("remove_donate_button", false)));
    set_opt_str(o, "accounts_api", "accounts_api");
    const char *ws = json_string_value(W.api->config_get(W.self, "websocket_path"));
    const char *wsx = conf_str("websocket_url");   /* a public URL in front of a proxy */
    if (wsx) json_object_set_new(o, "websocketPath", json_string(wsx));
    else if (ws && strcmp(ws, "/cryptpad_websocket")) json_object_set_new(o, "websocketPath", json_string(ws));
    json_object_set_new(o, "httpUnsafeOrigin", json_string(W.main_origin));
    if (json_is_false(conf("admin_email"))) json_object_set_new(o, "adminEmail", json_false());
    else set_opt_str(o, "adminEmail", "admin_email");
    json_object_set_new(o, "adminKeys", json_array());   /* live: admin.keys and decrees */
    json_object_set_new(o, "moderatorKeys", conf_list("moderator_keys"));
    json_object_set_new(o, "inactiveTime", conf_num("inactive_time", 90));
    set_opt_str(o, "supportMailbox", "support_mailbox");
    set_opt_str(o, "supportMailboxKey", "support_mailbox_key");
    /* the quota rpc-pin and blob enforce */
    json_t *dsl = shared("default_storage_limit");
    json_object_set_new(o, "defaultStorageLimit", json_is_number(dsl) ? json_copy(dsl) : json_integer(52428800));
    json_t *bmax = shared("max_upload_size");
    json_t *max = json_is_number(bmax) ? json_copy(bmax) : json_integer(20971520);
    json_object_set_new(o, "maxUploadSize", max);
    json_t *prem = shared("premium_upload_size");
    /* as lib/env.js: only a premium size at least the normal one counts */
    if (json_is_number(prem) && json_number_value(prem) >= json_number_value(max))
        json_object_set_new(o, "premiumUploadSize", json_copy(prem));
    else
        json_object_set_new(o, "premiumUploadSize", json_false());
    json_object_set_new(o, "restrictRegistration", json_boolean(shared_bool("restrict_registration")));
    json_object_set_new(o, "restrictSsoRegistration", json_boolean(conf_bool("restrict_sso_registration", false)));
    json_object_set_new(o, "appsToDisable", conf_list("apps_to_disable"));
    json_object_set_new(o, "httpSafeOrigin", json_string(W.sandbox_origin));
    json_object_set_new(o, "enableEmbedding", json_boolean(shared_bool("enable_embedding")));
    set_opt_str(o, "fileHost", "file_host");
    json_object_set_new(o, "listMyInstance", json_boolean(conf_bool("list_my_instance", false)));
    json_object_set_new(o, "sso", json_false());
    if (conf("enforce_mfa")) json_object_set_new(o, "enforceMFA", json_boolean(conf_bool("enforce_mfa", false)));
    json_object_set_new(o, "onlyOffice", onlyoffice());

    S.instance = json_object();
    set_opt_str(S.instance, "color", "accent_color");
    json_object_set_new(S.instance, "name", translations("instance_name"));
    json_object_set_new(S.instance, "description", translations("instance_description"));
    json_object_set_new(S.instance, "location", translations("instance_jurisdiction"));
    json_object_set_new(S.instance, "notice", translations("instance_notice"));

    const char *lbh = conf_str("last_broadcast_hash"), *survey = conf_str("survey_url");
    S.last_broadcast_hash = strdup(lbh ? lbh : "");
    S.survey_url = survey ? strdup(survey) : NULL;
    json_t *m = conf("maintenance");
    if (json_is_object(m) && json_object_size(m)) S.maintenance = json_deep_copy(m);

    /* the plugin loader of front/worker.js, with this server's lists */
    json_t *ext = conf_list("extensions"), *sty = conf_list("styles");
    char *e = json_dumps(ext, JSON_COMPACT), *s = json_dumps(sty, JSON_COMPACT);
    json_decref(ext);
    json_decref(sty);
    tbuf b = { 0 };
    tbuf_adds(&b, "let extensions = ");
    tbuf_adds(&b, e ? e : "[]");
    tbuf_adds(&b, ";\nlet styles = ");
    tbuf_adds(&b, s ? s : "[]");
    tbuf_adds(&b, ";\n"
        "let lang = window.cryptpadLanguage;\n"
        "let paths = [];\n"
        "extensions.forEach(name => {\n"
        "    paths.push(`optional!/${name}/extensions.js`);\n"
        "    paths.push(`optional!json!/${name}/translations/messages.json`);\n"
        "    const l = lang === \"en\" ? '' : `${lang}.`;\n"
        "    paths.push(`optional!json!/${name}/translations/messages.${l}json`);\n"
        "});\n"
        "styles.forEach(name => {\n"
        "    paths.push(`optional!less!/${name}/style.less`);\n"
        "});\n"
        "define(paths, function () {\n"
        "    let args = Array.prototype.slice.apply(arguments);\n"
        "    return args;\n"
        "}, function () {\n"
        "    // ignore missing files\n"
        "});");
    tbuf_add(&b, "", 1);
    free(e);
    free(s);
    if (b.oom) { tbuf_free(&b); return CPS_ENOMEM; }
    S.extensions_js = b.s;
    return CPS_OK;
}

/* §4.2: directives joined with "; ", runs of whitespace collapsed (so an
** empty sandbox or accounts origin leaves a single space, as in Node). */
static char *make_csp(bool office, bool embed)
{
    const char *d = W.main_origin;
    const char *s = strcmp(W.sandbox_origin, d) ? W.sandbox_origin : "";
    const char *a = conf_str("accounts_api");
    if (!a) a = "";
    char ws[512];
    if (!strncmp(d, "https://", 8)) snprintf(ws, sizeof ws, "wss://%s", d + 8);
    else if (!strncmp(d, "http://", 7)) snprintf(ws, sizeof ws, "ws://%s", d + 7);
    else snprintf(ws, sizeof ws, "%s", d);
    char ancestors[600];
    if (embed) {
        const char *colon = strchr(d, ':');
        snprintf(ancestors, sizeof ancestors, "frame-ancestors 'self' %.*s vector:",
                 colon ? (int)(colon - d + 1) : 0, d);
    } else {
        snprintf(ancestors, sizeof ancestors, "frame-ancestors 'self' %s", d);
    }
    size_t n = 4096 + 8 * strlen(d) + strlen(s) + strlen(a) + strlen(ws);
    char *raw = malloc(n);
    if (!raw) return NULL;
    snprintf(raw, n,
             "default-src 'none'; style-src 'unsafe-inline' 'self' %s; font-src 'self' data: %s; "
             "child-src %s; frame-src 'self' blob: %s; connect-src 'self' blob: %s %s %s %s; "
             "img-src 'self' data: blob: %s; media-src blob:; %s; worker-src 'self'; "
             "script-src 'self' %sresource: %s",
             d, d, d, s, d, s, a, ws, d, ancestors, office ? "'unsafe-eval' 'unsafe-inline' " : "", d);
    char *w = raw;
    for (char *r = raw; *r; r++) {
        bool sp = *r == ' ' || *r == '\t' || *r == '\n' || *r == '\r';
        if (sp && w > raw && w[-1] == ' ') continue;
        *w++ = sp ? ' ' : *r;
    }
    *w = 0;
    return raw;
}

/* ---- the server's curve key (docs/protocol/history.md §9.6) ------------------------- */

/* storage:0 keeps the one key pair whose secret opens DELETE_MAILBOX_MESSAGE
** proofs on every storage node; it may load after this plugin or, in a
** cluster, be reachable only once the link is up, so ask until it answers
** (bounded: a deployment without it keeps the stand-in key). */
#define CURVE_RETRY_MS 500
#define CURVE_TRIES 240

static void curve_ask(cps_timer *t, void *ud);

static void curve_got(void *ud, int error, json_t *data)
{
    (void)ud;
    const char *pub = json_string_value(json_object_get(data, "public"));
    if (S.closing || error == CPS_ECANCELED) return;   /* unloading */
    if (!error && pub && ids_is_key(pub)) {
        char *c = strdup(pub);
        if (c) { free(S.curve_public); S.curve_public = c; }
        return;
    }
    if (++S.curve_tries < CURVE_TRIES) W.api->timer_start(W.self, CURVE_RETRY_MS, 0, curve_ask, NULL);
    else W.api->log(W.self, CPS_LOG_WARN, "%s did not tell the server curve key (%s): /api/broadcast "
                    "publishes a key that opens no proof", IDS_CURVE_NODE, error ? W.api->errname(error) : "bad answer");
}

static void curve_ask(cps_timer *t, void *ud)
{
    (void)t; (void)ud;
    W.api->query(W.self, IDS_CURVE_NODE, "SERVER_CURVE_PUBLIC", json_object(), 5000, curve_got, NULL);
}

/* ---- lifecycle --------------------------------------------------------- */

static void fini(cps_plugin *self, void *state)
{
    (void)self;
    (void)state;
    json_decref(S.config_rest);
    json_decref(S.instance);
    json_decref(S.maintenance);
    free(S.version);
    free(S.fresh_key);
    free(S.curve_public);
    free(S.last_broadcast_hash);
    free(S.survey_url);
    free(S.extensions_js);
    S.closing = true;
    free(W.main_origin);
    free(W.sandbox_origin);
    free(W.acao);
    free(W.csp);
    free(W.csp_office);
    free(W.acao_embed);
    free(W.csp_embed);
    free(W.csp_office_embed);
    free(W.root);
    free(W.data_dir);
    if (W.re_ok) {
        for (int i = 0; i < 4; i++) regfree(&W.re_office[i]);
        regfree(&W.re_api);
        regfree(&W.re_ver);
        regfree(&W.re_fonts);
    }
    memset(&S, 0, sizeof S);
    memset(&W, 0, sizeof W);
    /* A query still pending is answered ECANCELED after this (api/cps.h
    ** OWNERSHIP): curve_got must see that we are gone. */
    S.closing = true;
}

static int compile_patterns(void)
{
    /* http-server/headers.js, as POSIX extended expressions */
    static const char *office[4] = {
        "^/common/onlyoffice/.*\\.html.*",
        "^/common/onlyoffice/dist/.*/sdkjs/common/spell/spell/spell.js.*",
        "^/(sheet|presentation|doc)/inner\\.html.*",
        "^/unsafeiframe/inner\\.html.*$",
    };
    int rc = 0, i = 0;
    for (; i < 4 && !rc; i++) rc = regcomp(&W.re_office[i], office[i], REG_EXTENDED | REG_NOSUB);
    if (rc) { while (--i > 0) regfree(&W.re_office[i - 1]); return CPS_EINTERNAL; }
    rc = regcomp(&W.re_api, "^/api/(broadcast|config)", REG_EXTENDED | REG_NOSUB);
    if (!rc) {
        /* ',' too: the host joins query arguments with it (lws) */
        rc = regcomp(&W.re_ver, "[?&,]ver=[^/]+$", REG_EXTENDED | REG_NOSUB);
        if (rc) regfree(&W.re_api);
    }
    if (!rc) {
        rc = regcomp(&W.re_fonts, "^/common/onlyoffice/dist/.*/fonts/.*", REG_EXTENDED | REG_NOSUB);
        if (rc) { regfree(&W.re_api); regfree(&W.re_ver); }
    }
    if (rc) { for (i = 0; i < 4; i++) regfree(&W.re_office[i]); return CPS_EINTERNAL; }
    W.re_ok = true;
    return CPS_OK;
}

static int setup(void)
{
    int port = (int)json_integer_value(W.api->config_get(W.self, "listen.port"));
    json_t *extra = W.api->config_get(W.self, "listen.extra_ports");
    const char *mo = shared_str("main_origin"), *so = shared_str("sandbox_origin");
    W.main_origin = mo ? origin_dup(mo) : default_origin(port);
    /* the sandbox is the first extra port, as CryptPad's httpSafePort */
    W.sandbox_origin = so ? origin_dup(so)
                          : json_array_size(extra) ? default_origin((int)json_integer_value(json_array_get(extra, 0)))
                          : strdup(W.main_origin);
    if (!W.main_origin || !W.sandbox_origin) return CPS_ENOMEM;
    const char *pe = shared_str("permitted_embedders");
    W.acao = strdup(shared_bool("enable_embedding") ? "*" : pe && *pe ? pe : W.sandbox_origin);
    W.acao_embed = strdup("*");
    W.csp = make_csp(false, shared_bool("enable_embedding"));
    W.csp_office = make_csp(true, shared_bool("enable_embedding"));
    W.csp_embed = make_csp(false, true);
    W.csp_office_embed = make_csp(true, true);
    W.data_dir = strdup(W.api->data_dir(W.self));
    W.dev_mode = conf_bool("dev_mode", false);
    W.embedding = shared_bool("enable_embedding");
    if (!W.acao || !W.csp || !W.csp_office || !W.data_dir || !W.acao_embed || !W.csp_embed || !W.csp_office_embed)
        return CPS_ENOMEM;

    const char *root = conf_str("cryptpad_root");
    if (root) {
        char rp[PATH_MAX], www[PATH_MAX + 8];
        struct stat st;
        if (!realpath(root, rp)) {
            W.api->log(W.self, CPS_LOG_ERROR, "web.cryptpad_root: %s: no such directory", root);
            return CPS_EINVAL;
        }
        snprintf(www, sizeof www, "%s/www", rp);
        if (stat(www, &st) != 0 || !S_ISDIR(st.st_mode)) {
            W.api->log(W.self, CPS_LOG_ERROR, "web.cryptpad_root: %s is not a CryptPad checkout (no www/)", rp);
            return CPS_EINVAL;
        }
        if (!(W.root = strdup(rp))) return CPS_ENOMEM;
    }

    S.version = checkout_version();
    /* FRESH mode of lib/env.js: a new key per start flushes browser caches */
    const char *fk = conf_str("fresh_key");
    char now[32];
    snprintf(now, sizeof now, "%llu", (unsigned long long)W.api->now_ms());
    S.fresh_key = strdup(fk ? fk : now);
    if (!S.version || !S.fresh_key) return CPS_ENOMEM;

    /* a stand-in for the server's curve key until storage:0 tells it */
    unsigned char pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES];
    if (sodium_init() < 0) return CPS_EINTERNAL;
    crypto_box_keypair(pk, sk);
    sodium_memzero(sk, sizeof sk);
    if (!(S.curve_public = b64_encode_dup(pk, sizeof pk))) return CPS_ENOMEM;

    int rc = compile_patterns();
    if (!rc) rc = build_config();
    return rc;
}

static int plugin_init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    memset(&W, 0, sizeof W);
    memset(&S, 0, sizeof S);
    W.api = a;
    W.self = self;
    int rc = setup();
    static const struct { const char *prefix; cps_http_fn fn; } routes[] = {
        { "/api/config", api_config }, { "/api/broadcast", api_broadcast },
        { "/api/instance", api_instance }, { "/extensions.js", extensions_js },
        { "/api/logo", api_logo }, { "/", web_static },
    };
    for (size_t i = 0; !rc && i < sizeof routes / sizeof routes[0]; i++)
        rc = a->register_http(self, "GET", routes[i].prefix, 0, routes[i].fn, NULL);
    /* on the first loop turn, when every plugin is loaded */
    if (!rc && a->role_count(self, "storage") > 0 && !a->timer_start(self, 0, 0, curve_ask, NULL)) rc = CPS_ENOMEM;
    if (!rc)
        a->log(self, CPS_LOG_INFO, "web: main origin %s, sandbox origin %s, %s%s", W.main_origin,
               W.sandbox_origin, W.root ? "serving " : "no cryptpad_root (only the API)", W.root ? W.root : "");
    else
        fini(self, NULL);
    return rc;
}

CPS_PLUGIN_DEFINE("web", "1.0.0", plugin_init, fini);
