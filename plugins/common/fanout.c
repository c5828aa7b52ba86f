/*
** fanout.c - group a member list by front node and send one DELIVER each,
** carrying the message as a value (msg) or as its JSON text (text).
*/
#include <string.h>
#include "fanout.h"

#define MAX_FRONTS 64   /* a cluster has at most this many nodes (host/link.c MAX_LINKS) */

/* The fronts are gathered in a small table, and the member ids are shared
** with the member list, not copied: a jansson object and a string per
** member for every relayed message were most of cps_fanout's cost (perf, a
** storage node of the 2x2x2 cluster: ~7% of its samples, mostly malloc). */
static size_t group_send(const cps_api *api, cps_plugin *self, json_t *members, const char *except,
                         const char *key, json_t *payload)
{
    struct { const char *front; json_t *users; } by[MAX_FRONTS];
    size_t nby = 0, i, n = 0;
    json_t *m;
    json_array_foreach(members, i, m) {
        json_t *id = json_array_get(m, 0);
        const char *front = json_string_value(json_array_get(m, 1));
        if (!json_is_string(id) || !front || (except && strcmp(json_string_value(id), except) == 0)) continue;
        size_t k = 0;
        while (k < nby && strcmp(by[k].front, front) != 0) k++;
        if (k == nby) {
            if (nby == MAX_FRONTS) continue;   /* more fronts than a cluster has nodes: not a front */
            by[nby].front = front;
            by[nby].users = json_array();
            nby++;
        }
        if (json_array_append(by[k].users, id) == 0) n++;
    }
    for (size_t k = 0; k < nby; k++)
        api->send(self, by[k].front, "DELIVER", json_pack("{s o s O}", "users", by[k].users, key, payload));
    return n;
}

size_t cps_fanout(const cps_api *api, cps_plugin *self, json_t *members, const char *except,
                  json_t *msg)
{
    return group_send(api, self, members, except, "msg", msg);
}

size_t cps_fanout_text(const cps_api *api, cps_plugin *self, json_t *members, const char *except,
                       const char *text, size_t len)
{
    json_t *t = json_stringn_nocheck(text, len);
    if (!t) return 0;
    size_t n = group_send(api, self, members, except, "text", t);
    json_decref(t);
    return n;
}
