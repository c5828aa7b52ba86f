/*
** keyqueue.c - per-key FIFOs over strmap: a key's list lives while it has
** items, and a drain loop (not recursion) starts the next item when one
** finishes synchronously.
*/
#include <stdbool.h>
#include <stdlib.h>
#include "cps_errors.h"
#include "keyqueue.h"
#include "strmap.h"

typedef struct kq_node { void *item; struct kq_node *next; } kq_node;

typedef struct kq_key {
    kq_node *head, *tail;
    size_t n;
    bool running;              /* the head has started and is not done */
    bool draining;             /* drain() is on the stack for this key */
} kq_key;

struct keyqueue {
    strmap *keys;              /* key -> kq_key */
    size_t max;
    keyqueue_run_fn run;
    void *ud;
};

keyqueue *keyqueue_new(size_t max_per_key, keyqueue_run_fn run, void *ud)
{
    keyqueue *q = calloc(1, sizeof *q);
    if (!q || !(q->keys = strmap_new())) { free(q); return NULL; }
    q->max = max_per_key ? max_per_key : 1;
    q->run = run;
    q->ud = ud;
    return q;
}

static void key_free(void *v)
{
    kq_key *k = v;
    while (k->head) { kq_node *n = k->head->next; free(k->head); k->head = n; }
    free(k);
}

void keyqueue_free(keyqueue *q)
{
    if (!q) return;
    strmap_free(q->keys, key_free);
    free(q);
}

/* Start heads until one stays running or the key is empty; then forget an
** empty key.  A done() from inside run only pops: this loop goes on. */
static void drain(keyqueue *q, const char *key, kq_key *k)
{
    if (k->draining) return;
    k->draining = true;
    while (k->head && !k->running) {
        k->running = true;
        q->run(k->head->item, q->ud);
    }
    k->draining = false;
    if (!k->head) free(strmap_del(q->keys, key));
}

int keyqueue_push(keyqueue *q, const char *key, void *item)
{
    kq_key *k = strmap_get(q->keys, key);
    if (k && k->n >= q->max) return CPS_EBUSY;
    kq_node *n = calloc(1, sizeof *n);
    bool fresh = !k;
    if (fresh) k = calloc(1, sizeof *k);
    if (!n || !k || (fresh && strmap_put(q->keys, key, k))) {
        free(n);
        if (fresh) free(k);
        return CPS_ENOMEM;
    }
    n->item = item;
    if (k->tail) k->tail->next = n; else k->head = n;
    k->tail = n;
    k->n++;
    drain(q, key, k);
    return CPS_OK;
}

void keyqueue_done(keyqueue *q, const char *key)
{
    kq_key *k = strmap_get(q->keys, key);
    if (!k || !k->head || !k->running) return;
    kq_node *n = k->head;
    k->head = n->next;
    if (!k->head) k->tail = NULL;
    k->n--;
    k->running = false;
    free(n);
    drain(q, key, k);
}

size_t keyqueue_keys(const keyqueue *q) { return q ? strmap_count(q->keys) : 0; }
