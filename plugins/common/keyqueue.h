/*
** keyqueue.h - one FIFO of operations per string key (a user's key, a
** channel): the operations of one key run one at a time, in arrival order,
** the next when the running one is done; a key with nothing queued is
** forgotten.  Bounded per key: a full key refuses with CPS_EBUSY.
*/
#ifndef CPS_KEYQUEUE_H
#define CPS_KEYQUEUE_H
#include <stddef.h>

typedef struct keyqueue keyqueue;
/* Start `item` (the head of its key).  It ends, now or later, with exactly
** one keyqueue_done on its key. */
typedef void (*keyqueue_run_fn)(void *item, void *ud);

keyqueue *keyqueue_new(size_t max_per_key, keyqueue_run_fn run, void *ud);
/* Frees the queue; items still queued are the caller's (drain first). */
void keyqueue_free(keyqueue *q);
/* Queue `item` behind the others of `key` (copied); an idle key runs it
** before this returns.  CPS_OK, CPS_EBUSY (max_per_key waiting, the
** running one included) or CPS_ENOMEM; on error `item` is not kept. */
int keyqueue_push(keyqueue *q, const char *key, void *item);
/* The running item of `key` is done: the next one runs, or the key is
** forgotten.  Safe to call from inside run (no recursion builds up). */
void keyqueue_done(keyqueue *q, const char *key);
/* Keys with something queued or running. */
size_t keyqueue_keys(const keyqueue *q);

#endif
