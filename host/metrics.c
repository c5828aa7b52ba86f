/*
** metrics.c - named counters shared host-wide, rendered as Prometheus text
** at GET /metrics.  Counters live until the host exits.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "host.h"

struct cps_counter {
    char *name;
    int64_t value;
    struct cps_counter *next;
};

static struct cps_counter *counters;  /* singleton list, loop thread only */

cps_counter *cps_metrics_counter(const char *name)
{
    for (cps_counter *c = counters; c; c = c->next)
        if (strcmp(c->name, name) == 0) return c;
    cps_counter *c = calloc(1, sizeof *c);
    if (!c || !(c->name = strdup(name))) { free(c); abort(); }
    c->next = counters;
    counters = c;
    return c;
}

void cps_metrics_add(cps_counter *c, int64_t delta) { if (c) c->value += delta; }

char *cps_metrics_text(void)
{
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    out[0] = 0;
    for (cps_counter *c = counters; c; c = c->next) {
        char line[512];
        int n = snprintf(line, sizeof line, "cpsd_%s %lld\n", c->name, (long long)c->value);
        if (n < 0) continue;
        if (len + (size_t)n + 1 > cap) {
            while (len + (size_t)n + 1 > cap) cap *= 2;
            char *o = realloc(out, cap);
            if (!o) { free(out); return NULL; }
            out = o;
        }
        memcpy(out + len, line, (size_t)n + 1);
        len += (size_t)n;
    }
    return out;
}

void cps_metrics_free(void)
{
    while (counters) {
        cps_counter *c = counters;
        counters = c->next;
        free(c->name);
        free(c);
    }
}
