/*
** web.h - what the two halves of the `web` plugin share: the settings read
** at start-up, the response headers of docs/protocol/http.md §4, and the static tree.
*/
#ifndef CPS_WEB_H
#define CPS_WEB_H
#include <stdbool.h>
#include <regex.h>
#include "cps.h"

typedef struct web_state {
    const cps_api *api;
    cps_plugin *self;
    char *main_origin, *sandbox_origin;
    char *acao;                 /* Access-Control-Allow-Origin value */
    char *csp, *csp_office;     /* the two policies of §4.2 */
    /* the same with embedding allowed: ENABLE_EMBEDDING changes at run time */
    char *acao_embed, *csp_embed, *csp_office_embed;
    char *root;                 /* realpath of the CryptPad checkout, or NULL */
    char *data_dir;
    bool dev_mode, embedding;
    regex_t re_office[4], re_api, re_ver, re_fonts;
    bool re_ok;
} web_state;

extern web_state W;

/* The §4.1 headers for a request (raw path, query without '?', Origin
** header or NULL), CSP included unless `no_csp`.  A new object. */
json_t *web_headers(const char *path, const char *query, const char *origin, bool no_csp);

/* The static file route and /api/logo (static.c).  Both answer later, from
** the thread pool's result. */
int web_static(cps_http *req, void *ud);
int web_logo(cps_http *req);
/* logo.c: /api/logo, the uploaded logo through the storage backend first. */
int web_api_logo(const cps_api *api, cps_plugin *self, cps_http *req);
/* The page `/` shows when no checkout is configured. */
int web_no_root(cps_http *req);
/* Decode a request path (path.c): NULL for a path that must be a 400. */
char *web_clean_path(const char *raw);

#endif
