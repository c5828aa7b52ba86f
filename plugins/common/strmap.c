/*
** strmap.c - chained hash map with power-of-two buckets, grown at load 1.
*/
#include <stdlib.h>
#include <string.h>
#include "strmap.h"

typedef struct entry { struct entry *next; void *val; size_t hash; char key[]; } entry;

struct strmap { entry **b; size_t nb, count; };

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603ULL;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

strmap *strmap_new(void)
{
    strmap *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->nb = 16;
    m->b = calloc(m->nb, sizeof *m->b);
    if (!m->b) { free(m); return NULL; }
    return m;
}

void strmap_free(strmap *m, void (*free_val)(void *))
{
    if (!m) return;
    for (size_t i = 0; i < m->nb; i++) {
        entry *e = m->b[i];
        while (e) {
            entry *n = e->next;
            if (free_val) free_val(e->val);
            free(e);
            e = n;
        }
    }
    free(m->b);
    free(m);
}

static entry **slot(const strmap *m, const char *key, size_t h)
{
    entry **pp = &m->b[h & (m->nb - 1)];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0)) pp = &(*pp)->next;
    return pp;
}

void *strmap_get(const strmap *m, const char *key)
{
    entry *e = *slot(m, key, hash(key));
    return e ? e->val : NULL;
}

static void grow(strmap *m)
{
    size_t nb = m->nb * 2;
    entry **b = calloc(nb, sizeof *b);
    if (!b) return;            /* keep working with longer chains */
    for (size_t i = 0; i < m->nb; i++) {
        entry *e = m->b[i];
        while (e) {
            entry *n = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = n;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

int strmap_put(strmap *m, const char *key, void *val)
{
    size_t h = hash(key);
    entry **pp = slot(m, key, h);
    if (*pp) { (*pp)->val = val; return 0; }
    size_t kl = strlen(key);
    entry *e = malloc(sizeof *e + kl + 1);
    if (!e) return -1;
    memcpy(e->key, key, kl + 1);
    e->hash = h;
    e->val = val;
    e->next = NULL;
    *pp = e;
    if (++m->count > m->nb) grow(m);
    return 0;
}

void *strmap_del(strmap *m, const char *key)
{
    entry **pp = slot(m, key, hash(key));
    entry *e = *pp;
    if (!e) return NULL;
    void *v = e->val;
    *pp = e->next;
    free(e);
    m->count--;
    return v;
}

size_t strmap_count(const strmap *m) { return m ? m->count : 0; }

void strmap_each(const strmap *m, void (*fn)(const char *, void *, void *), void *ud)
{
    for (size_t i = 0; i < m->nb; i++)
        for (entry *e = m->b[i]; e; e = e->next) fn(e->key, e->val, ud);
}
