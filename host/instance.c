/*
** instance.c - live instance settings: values under `instance.` that change
** while the server runs (admin decrees: registration closed, limits, admin
** keys...).  A value set here shadows the configuration's for every reader
** of config_get("instance.<key>") in this process; the host gives no meaning
** to the keys.  Keeping every process of a cluster in step is the job of
** whoever sets them (docs/plugin-guide.md, "Live instance settings").
*/
#include <string.h>
#include "host.h"

#define INSTANCE_MAX_KEYS 256

static struct {
    json_t *live;          /* key -> value, owned */
    uint64_t generation;   /* bumped by every change */
} INST;   /* the live-settings singleton */

static bool valid_key(const char *k)
{
    size_t n = k ? strlen(k) : 0;
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

/* Steals value; NULL (or JSON null) removes the live value, so the
** configuration's shows again. */
int cps_instance_set(cps_plugin *p, const char *key, json_t *value)
{
    (void)p;
    if (!valid_key(key)) { json_decref(value); return CPS_EINVAL; }
    if (!INST.live && !(INST.live = json_object())) { json_decref(value); return CPS_ENOMEM; }
    if (!value || json_is_null(value)) {
        json_decref(value);
        json_object_del(INST.live, key);
    } else {
        if (!json_object_get(INST.live, key) && json_object_size(INST.live) >= INSTANCE_MAX_KEYS) {
            json_decref(value);
            return CPS_EBUSY;
        }
        if (json_object_set_new(INST.live, key, value)) return CPS_ENOMEM;
    }
    INST.generation++;
    return CPS_OK;
}

uint64_t cps_instance_generation(void) { return INST.generation; }

/* A dotted configuration path, with the live values over `instance.`. */
json_t *cps_config_live(const char *path)
{
    if (path && INST.live && !strncmp(path, "instance.", 9)) {
        const char *rest = path + 9;
        char key[80];
        size_t n = strcspn(rest, ".");
        if (n < sizeof key) {
            memcpy(key, rest, n);
            key[n] = 0;
            json_t *v = json_object_get(INST.live, key);
            if (v) return rest[n] ? cps_config_path(v, rest + n + 1) : v;
        }
    }
    return cps_config_path(cps_cfg ? cps_cfg->root : NULL, path);
}

void cps_instance_free(void)
{
    json_decref(INST.live);
    INST.live = NULL;
}
