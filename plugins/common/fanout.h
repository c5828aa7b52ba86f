/*
** fanout.h - relaying one message to the members of a channel: one DELIVER
** event per front node, carrying the member ids it holds.  Used by every
** role that relays (core for broadcasts, storage for its notices).
*/
#ifndef CPS_FANOUT_H
#define CPS_FANOUT_H
#include "cps.h"

/* members: [[user id, front node], ...]; `except` (or NULL) is skipped;
** msg is borrowed and sent to each front as is.  Returns recipients. */
size_t cps_fanout(const cps_api *api, cps_plugin *self, json_t *members, const char *except,
                  json_t *msg);

/* The same with the message as its JSON text, valid UTF-8 (a stored
** line, serialised already): a front queues it as the frame, without
** parsing it nor writing it again (docs/protocol/cluster.md §3.4). */
size_t cps_fanout_text(const cps_api *api, cps_plugin *self, json_t *members, const char *except,
                       const char *text, size_t len);

#endif
