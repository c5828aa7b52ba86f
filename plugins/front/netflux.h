/*
** netflux.h - parsing of client frames of the netflux protocol
** (spec docs/protocol/netflux.md §2, §4): what the client asked, or why it is invalid.
** Pure functions, unit-tested on their own.
*/
#ifndef CPS_NETFLUX_H
#define CPS_NETFLUX_H
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

enum nf_kind {
    NF_CLOSE = -1,   /* not JSON, not an array: close the connection */
    NF_IGNORE = 0,   /* well-formed but nothing to do (unknown verb, no seq) */
    NF_JOIN, NF_LEAVE, NF_MSG, NF_PING, NF_PONG,
    NF_EINVAL        /* known verb, invalid arguments: answer ERROR EINVAL */
};

typedef struct nf_req {
    int kind;
    json_t *root;        /* the parsed frame; caller json_decref()s it */
    json_t *seq;         /* borrowed from root; normalised to an integer */
    const char *target;  /* JOIN/LEAVE channel, MSG target */
    const char *content; /* MSG content */
    size_t content_len;
} nf_req;

/* The largest frame shape accepted (netflux.md §12): values (commas and
** opening brackets outside strings) and nesting.  Clients send at most 5;
** the value cap is front.max_frame_values, this is its default. */
#define NF_MAX_VALUES 64
#define NF_MAX_DEPTH 4

/* HK content (netflux.md §7.3, rpc.md) carries lists (pins, sizes): a
** larger cap, still bounding the tree to a few MB (front.max_request_values
** is the value cap, this its default). */
#define NF_HK_MAX_VALUES 100000
#define NF_HK_MAX_DEPTH 16

/* false: more values or nesting than the caps (checked before parsing). */
bool nf_shape_within(const char *text, size_t len, size_t max_values, int max_depth);
/* Size of a MSG content once escaped twice, as in a history line. */
size_t nf_content_cost(const char *content, size_t len);

/* Parse one text frame of at most max_values values (NF_CLOSE beyond).
** Always sets out->root (maybe NULL). */
int nf_parse(const char *text, size_t len, size_t max_values, nf_req *out);

#endif
