/*
** static.c - the CryptPad web application from a checkout (docs/protocol/http.md §3):
** the lookup order over customize/www, www (+ .gz), src/common, customize/
** and customize.dist/, directory redirects, conditional and range requests,
** the 404 page.  Lookups run on the thread pool; files go out through
** api->http_respond_file, so nothing is read on the loop.
*/
#define _GNU_SOURCE   /* strptime, timegm */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include "objserve.h"
#include "web.h"

enum { R_NONE, R_FILE, R_REDIRECT, R_404, R_ERROR };

typedef struct job {
    cps_http *req;
    bool logo;             /* /api/logo rather than a static path */
    char *rel;             /* decoded, normalised path, starting with '/' */
    char *path, *query;    /* raw, for headers and redirects */
    char *origin, *inm, *ims, *range;
    bool gzip_ok;
    /* the result, filled on the pool */
    int result;
    char file[PATH_MAX];   /* resolved path of what to send */
    char type_name[256];   /* the name the content type comes from */
    bool gz, vary, inline_disp;
    uint64_t size;
    struct timespec mtime;
    char location[PATH_MAX + 16];
} job;

static void job_free(job *j)
{
    free(j->rel);
    free(j->path);
    free(j->query);
    free(j->origin);
    free(j->inm);
    free(j->ims);
    free(j->range);
    free(j);
}

/* The host gives "" for some absent headers: the same as none here. */
static char *dup_or_null(const char *s) { return s && *s ? strdup(s) : NULL; }

/* ---- content types ---- */

static const char *mime_of(const char *name)
{
    static const struct { const char *ext, *type; } types[] = {
        { "html", "text/html; charset=UTF-8" }, { "htm", "text/html; charset=UTF-8" },
        { "js", "application/javascript; charset=UTF-8" }, { "mjs", "application/javascript; charset=UTF-8" },
        { "css", "text/css; charset=UTF-8" }, { "less", "text/less; charset=UTF-8" },
        { "json", "application/json; charset=UTF-8" }, { "map", "application/json; charset=UTF-8" },
        { "webmanifest", "application/manifest+json; charset=UTF-8" },
        { "svg", "image/svg+xml" }, { "png", "image/png" }, { "jpg", "image/jpeg" }, { "jpeg", "image/jpeg" },
        { "gif", "image/gif" }, { "ico", "image/x-icon" }, { "webp", "image/webp" }, { "avif", "image/avif" },
        { "bmp", "image/bmp" }, { "woff", "font/woff" }, { "woff2", "font/woff2" }, { "ttf", "font/ttf" },
        { "otf", "font/otf" }, { "eot", "application/vnd.ms-fontobject" }, { "wasm", "application/wasm" },
        { "txt", "text/plain; charset=UTF-8" }, { "md", "text/markdown; charset=UTF-8" },
        { "csv", "text/csv; charset=UTF-8" }, { "xml", "application/xml" }, { "pdf", "application/pdf" },
        { "mp3", "audio/mpeg" }, { "ogg", "audio/ogg" }, { "wav", "audio/wav" }, { "mp4", "video/mp4" },
        { "webm", "video/webm" }, { "zip", "application/zip" }, { "gz", "application/gzip" },
        { "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" },
        { "docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document" },
        { "pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation" },
    };
    const char *slash = strrchr(name, '/'), *dot = strrchr(name, '.');
    if (!dot || (slash && dot < slash)) return "application/octet-stream";
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcasecmp(dot + 1, types[i].ext)) return types[i].type;
    return "application/octet-stream";
}

/* ---- request path ---- */

/* Accept-Encoding names gzip (or *) without q=0. */
static bool accepts_gzip(const char *ae)
{
    if (!ae) return false;
    const char *p = ae;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        const char *tok = p;
        while (*p && *p != ',' && *p != ';' && *p != ' ') p++;
        size_t tl = (size_t)(p - tok);
        double q = 1;
        while (*p && *p != ',') {
            if (*p == ';') {
                const char *x = p + 1;
                while (*x == ' ') x++;
                if ((x[0] == 'q' || x[0] == 'Q') && x[1] == '=') q = strtod(x + 2, NULL);
            }
            p++;
        }
        if (((tl == 4 && !strncasecmp(tok, "gzip", 4)) || (tl == 1 && *tok == '*')) && q > 0) return true;
    }
    return false;
}

/* ---- lookup (thread pool) ---- */

/* `p` resolves to a place inside the checkout: written to `out`. */
static bool inside(const char *p, char *out)
{
    if (!realpath(p, out)) return false;
    size_t n = strlen(W.root);
    return !strncmp(out, W.root, n) && (out[n] == '/' || out[n] == 0);
}

static bool regular(const char *p, struct stat *st)
{
    return stat(p, st) == 0 && S_ISREG(st->st_mode);
}

static bool take(job *j, const char *p, const char *type_name, bool gz, const struct stat *st)
{
    if (!inside(p, j->file)) return false;
    snprintf(j->type_name, sizeof j->type_name, "%s", type_name);
    j->gz = gz;
    j->size = (uint64_t)st->st_size;
    j->mtime = st->st_mtim;
    j->result = R_FILE;
    return true;
}

/* A file, or its .gz sibling when the tree has them and the client takes
** gzip (connect-gzip-static). */
static bool try_file(job *j, const char *p, bool gz_tree)
{
    struct stat st;
    const char *base = strrchr(p, '/');
    if (gz_tree) {
        char gz[PATH_MAX + 4];
        snprintf(gz, sizeof gz, "%s.gz", p);
        if (regular(gz, &st)) {
            j->vary = true;
            if (j->gzip_ok && take(j, gz, base ? base + 1 : p, true, &st)) return true;
        }
    }
    return regular(p, &st) && take(j, p, base ? base + 1 : p, false, &st);
}

/* Look for `sub` (starting with '/', or empty for the tree itself) in
** root/tree, as express.static does: a directory without its trailing
** slash is redirected, one with it serves its index.html. */
static bool try_tree(job *j, const char *tree, const char *sub, bool gz_tree)
{
    char p[PATH_MAX];
    size_t n = strlen(sub);
    if (snprintf(p, sizeof p, "%s/%s%s", W.root, tree, sub) >= (int)sizeof p - 16) return false;
    if (n && sub[n - 1] == '/') {
        strcat(p, "index.html");
        return try_file(j, p, gz_tree);
    }
    struct stat st;
    char real[PATH_MAX];
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (!inside(p, real)) return false;
        /* leading slashes collapsed: "//host" would leave the site */
        const char *raw = j->path;
        while (raw[0] == '/' && raw[1] == '/') raw++;
        snprintf(j->location, sizeof j->location, "%s/%s%s", raw, *j->query ? "?" : "", j->query);
        j->result = R_REDIRECT;
        return true;
    }
    return try_file(j, p, gz_tree);
}

static bool single_segment(const char *rel) { return !strchr(rel + 1, '/'); }

static bool under(const char *rel, const char *dir, const char **sub)
{
    size_t n = strlen(dir);
    if (strncmp(rel, dir, n) || (rel[n] && rel[n] != '/')) return false;
    *sub = rel + n;
    return true;
}

static void lookup(job *j)
{
    const char *r = j->rel, *sub;
    if (try_tree(j, "customize/www", r, false)) return;
    if (try_tree(j, "www", r, true)) return;
    /* modules moved out of www/common */
    if (!strncmp(r, "/common/", 8) && try_tree(j, "src/common", r + 7, false)) return;
    if (under(r, "/customize", &sub)) {
        if (try_tree(j, "customize", sub, false) || try_tree(j, "customize.dist", sub, false)) return;
    } else if (under(r, "/customize.dist", &sub)) {
        if (try_tree(j, "customize.dist", sub, false)) return;
    } else if (single_segment(r)) {
        /* "/", the main pages, favicon.ico ... (also covers §3 step 4) */
        if (try_tree(j, "customize", r, false) || try_tree(j, "customize.dist", r, false)) return;
    }
    j->result = R_404;
    j->file[0] = 0;
    char p[PATH_MAX];
    static const char *pages[] = { "customize/404.html", "customize.dist/404.html" };
    for (int i = 0; i < 2; i++) {
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", W.root, pages[i]);
        if (regular(p, &st) && inside(p, j->file)) return;
        j->file[0] = 0;
    }
}

/* /api/logo: an uploaded logo (docs/protocol/storage.md §10), else the default one of
** the checkout, sent inline (main server), else a redirect (scalable). */
static void lookup_logo(job *j)
{
    static const char *exts[] = { "png", "jpg", "jpeg", "svg", "gif", "webp" };
    struct stat st;
    char p[PATH_MAX];
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        snprintf(p, sizeof p, "%s/logo/logo.%s", W.data_dir, exts[i]);
        if (regular(p, &st) && realpath(p, j->file)) {
            snprintf(j->type_name, sizeof j->type_name, "logo.%s", exts[i]);
            j->size = (uint64_t)st.st_size;
            j->mtime = st.st_mtim;
            j->result = R_FILE;
            return;
        }
    }
    if (W.root && (try_tree(j, "customize", "/CryptPad_logo_hero.svg", false) ||
                   try_tree(j, "customize.dist", "/CryptPad_logo_hero.svg", false)) && j->result == R_FILE) {
        j->inline_disp = true;
        return;
    }
    j->result = R_REDIRECT;
    snprintf(j->location, sizeof j->location, "/customize/CryptPad_logo_hero.svg");
}

static void work(void *ud)
{
    job *j = ud;
    if (j->logo) lookup_logo(j);
    else lookup(j);
}

/* ---- answers (loop) ---- */

static void http_date(time_t t, char *buf, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static int respond_text(cps_http *req, int status, json_t *h, const char *body)
{
    json_object_set_new(h, "Content-Type", json_string("text/html; charset=utf-8"));
    return W.api->http_respond(req, status, h, body, strlen(body));
}

/* If-None-Match (a list, or *), else If-Modified-Since, says the client's
** copy is current. */
static bool not_modified(job *j, const char *etag)
{
    if (j->inm) {
        if (!strcmp(j->inm, "*")) return true;
        const char *p = j->inm;
        size_t n = strlen(etag);
        while ((p = strstr(p, etag + 2))) {   /* compare weakly: W/ optional */
            if (p[n - 2] == 0 || p[n - 2] == ',' || p[n - 2] == ' ') return true;
            p++;
        }
        return false;
    }
    if (j->ims) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *end = strptime(j->ims, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        if (end && timegm(&tm) >= j->mtime.tv_sec) return true;
    }
    return false;
}

static void answer_file(job *j, json_t *h)
{
    char buf[128], etag[80];
    json_object_set_new(h, "Content-Type", json_string(mime_of(j->type_name)));
    if (j->gz) json_object_set_new(h, "Content-Encoding", json_string("gzip"));
    if (j->vary) json_object_set_new(h, "Vary", json_string("Accept-Encoding"));
    if (j->inline_disp) json_object_set_new(h, "Content-Disposition", json_string("inline"));
    uint64_t ms = (uint64_t)j->mtime.tv_sec * 1000 + (uint64_t)j->mtime.tv_nsec / 1000000;
    snprintf(etag, sizeof etag, "W/\"%llx-%llx\"", (unsigned long long)j->size, (unsigned long long)ms);
    json_object_set_new(h, "ETag", json_string(etag));
    http_date(j->mtime.tv_sec, buf, sizeof buf);
    json_object_set_new(h, "Last-Modified", json_string(buf));
    if (not_modified(j, etag)) { W.api->http_respond(j->req, 304, h, "", 0); return; }
    uint64_t off = 0, len = UINT64_MAX;
    int status = 200;
    if (!j->gz) {
        /* ranges are of the stored bytes; a compressed answer has none */
        json_object_set_new(h, "Accept-Ranges", json_string("bytes"));
        int rr = objserve_range(j->range, j->size, &off, &len);
        if (rr < 0) {
            snprintf(buf, sizeof buf, "bytes */%llu", (unsigned long long)j->size);
            json_object_set_new(h, "Content-Range", json_string(buf));
            respond_text(j->req, 416, h, "Range Not Satisfiable");
            return;
        }
        if (rr > 0) {
            status = 206;
            snprintf(buf, sizeof buf, "bytes %llu-%llu/%llu", (unsigned long long)off,
                     (unsigned long long)(off + len - 1), (unsigned long long)j->size);
            json_object_set_new(h, "Content-Range", json_string(buf));
        }
    }
    if (W.api->http_respond_file(j->req, status, h, j->file, off, len) != CPS_OK) {
        /* gone since the lookup */
        json_t *h2 = web_headers(j->path, j->query, j->origin, false);
        respond_text(j->req, 404, h2, "Not Found");
        json_decref(h2);
    }
}

static void done(void *ud, int status)
{
    job *j = ud;
    if (status != CPS_OK) { job_free(j); return; }   /* shutting down */
    json_t *h = web_headers(j->path, j->query, j->origin, false);
    switch (j->result) {
    case R_FILE:
        answer_file(j, h);
        break;
    case R_REDIRECT: {
        json_object_set_new(h, "Location", json_string(j->location));
        respond_text(j->req, j->logo ? 302 : 301, h, "Redirecting");
        break;
    }
    case R_404:
        json_object_set_new(h, "Content-Type", json_string("text/html; charset=utf-8"));
        if (!j->file[0] || W.api->http_respond_file(j->req, 404, h, j->file, 0, UINT64_MAX) != CPS_OK)
            respond_text(j->req, 404, h, "<!DOCTYPE html><title>404</title><p>Not Found</p>\n");
        break;
    default:
        respond_text(j->req, 500, h, "Internal Server Error");
        break;
    }
    json_decref(h);
    job_free(j);
}

static int start(cps_http *req, job *j)
{
    const cps_api *api = W.api;
    j->req = req;
    j->path = strdup(api->http_path(req));
    j->query = strdup(api->http_query(req));
    j->origin = dup_or_null(api->http_header(req, "origin"));
    j->inm = dup_or_null(api->http_header(req, "if-none-match"));
    j->ims = dup_or_null(api->http_header(req, "if-modified-since"));
    j->range = dup_or_null(api->http_header(req, "range"));
    j->gzip_ok = accepts_gzip(api->http_header(req, "accept-encoding"));
    if (!j->path || !j->query) { job_free(j); return CPS_ENOMEM; }
    if (api->work(W.self, work, done, j) != CPS_OK) { job_free(j); return CPS_EBUSY; }
    return CPS_ASYNC;
}

int web_static(cps_http *req, void *ud)
{
    (void)ud;
    if (!W.root) return web_no_root(req);
    char *rel = web_clean_path(W.api->http_path(req));
    if (!rel) {
        json_t *h = web_headers(W.api->http_path(req), W.api->http_query(req), NULL, false);
        respond_text(req, 400, h, "Bad Request");
        json_decref(h);
        return CPS_OK;
    }
    job *j = calloc(1, sizeof *j);
    if (!j) { free(rel); return CPS_ENOMEM; }
    j->rel = rel;
    return start(req, j);
}

int web_logo(cps_http *req)
{
    job *j = calloc(1, sizeof *j);
    if (!j) return CPS_ENOMEM;
    j->logo = true;
    return start(req, j);
}

int web_no_root(cps_http *req)
{
    static const char page[] =
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>cpsd</title></head><body>\n"
        "<h1>cpsd is running</h1>\n"
        "<p>This is a CryptPad server.  It serves the CryptPad web application from a checkout of\n"
        "<a href=\"https://github.com/cryptpad/cryptpad\">cryptpad/cryptpad</a> (with its\n"
        "<code>www/components</code> installed): name it in the configuration,</p>\n"
        "<pre>web = { cryptpad_root = \"/path/to/cryptpad\" }</pre>\n"
        "<p>and restart.  The websocket (<code>/cryptpad_websocket</code>) and the API\n"
        "(<code>/api/config</code>) answer already.</p>\n</body></html>\n";
    const char *p = W.api->http_path(req);
    json_t *h = web_headers(p, W.api->http_query(req), NULL, false);
    if (!strcmp(p, "/") || !strcmp(p, "/index.html")) respond_text(req, 200, h, page);
    else respond_text(req, 404, h, "<!DOCTYPE html><title>404</title><p>Not Found</p>\n");
    json_decref(h);
    return CPS_OK;
}
