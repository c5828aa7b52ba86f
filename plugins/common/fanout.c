/*
** fanout.c - group a member list by front node and send one DELIVER each.
*/
#include <string.h>
#include "fanout.h"

size_t cps_fanout(const cps_api *api, cps_plugin *self, json_t *members, const char *except,
                  json_t *msg)
{
    json_t *by_front = json_object();
    size_t i, n = 0;
    json_t *m;
    json_array_foreach(members, i, m) {
        const char *id = json_string_value(json_array_get(m, 0));
        const char *front = json_string_value(json_array_get(m, 1));
        if (!id || !front || (except && strcmp(id, except) == 0)) continue;
        json_t *list = json_object_get(by_front, front);
        if (!list) { list = json_array(); json_object_set_new(by_front, front, list); }
        json_array_append_new(list, json_string(id));
        n++;
    }
    const char *front;
    json_t *users;
    json_object_foreach(by_front, front, users)
        api->send(self, front, "DELIVER", json_pack("{s O s O}", "users", users, "msg", msg));
    json_decref(by_front);
    return n;
}
