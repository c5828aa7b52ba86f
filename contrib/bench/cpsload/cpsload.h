/* cpsload: a C load generator for netflux websocket servers (cpsd, chainpad-server,
 * the lwsbare reference).  Shared declarations: the client connection (raw TCP on
 * libuv with a minimal websocket client framing), the netflux frame scanner, stats. */
#ifndef CPSLOAD_H
#define CPSLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* ---- netflux frame scanner (nfscan.c) ---------------------------------
 * A server frame is one JSON array; we only need the spans of its first
 * elements.  Strings are kept escaped (span excludes the quotes). */
#define NF_MAX_EL 8
enum { NF_NUM = 1, NF_STR, NF_NULL, NF_OTHER };
typedef struct {
    int n;                              /* elements found (<= NF_MAX_EL) */
    int type[NF_MAX_EL];
    const char *p[NF_MAX_EL];
    size_t len[NF_MAX_EL];
} nf_frame;
int nf_scan(const char *s, size_t len, nf_frame *f);       /* 0 ok, -1 not an array */
int nf_is(const nf_frame *f, int i, const char *lit);      /* element i is the string lit */
long long nf_num(const nf_frame *f, int i);                /* element i as integer (or -1) */
size_t nf_unescape(const char *s, size_t len, char *out);  /* JSON string body -> bytes */

/* ---- a client connection (conn.c) ------------------------------------ */
typedef struct conn conn;
typedef void (*conn_open_cb)(conn *c);                      /* websocket upgraded */
typedef void (*conn_frame_cb)(conn *c, const char *msg, size_t len);   /* one text message */
typedef void (*conn_close_cb)(conn *c, const char *why);

struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    int state;                 /* 0 connecting, 1 http, 2 open, 3 closed */
    char *in; size_t in_len, in_cap;   /* partial input kept between reads */
    size_t pending_writes;     /* uv_write requests in flight */
    conn_open_cb on_open;
    conn_frame_cb on_frame;
    conn_close_cb on_close;
    void *user;
    long long seq;             /* next netflux seq */
    int target;                /* index in g_targets */
};
/* the servers' websocket endpoints (several fronts of one cluster: clients are spread over them) */
#define MAX_TARGETS 16
typedef struct { char host[64], path[256]; int port; } target;
extern target g_targets[MAX_TARGETS]; extern int g_ntargets;
extern uint64_t g_bytes_in, g_frames_in;
int conn_start(uv_loop_t *loop, conn *c);                   /* begins connect + upgrade */
int conn_send_text(conn *c, const char *msg, size_t len);   /* one masked text frame */
void conn_close(conn *c);
void conn_free_buffers(conn *c);
void conn_set_read_buffer(size_t size);

/* ---- stats and /proc (stats.c) --------------------------------------- */
double now_ms(void);                       /* monotonic, ms */
double self_cpu_s(void);                   /* user+system of this process */
double tree_cpu_s(int pid);                /* pid and its descendants, -1 if gone */
long long tree_rss_bytes(int pid, int *procs);
typedef struct { size_t n, cap; float *v; } samples;
void samples_add(samples *s, float x);
void samples_json(samples *s, char *out, size_t cap);   /* {"n":..,"p50":..} sorted in place */
double samples_pct(samples *s, double p);               /* after samples_json/sort */
void samples_sort(samples *s);
void samples_free(samples *s);

#endif

/* ---- netflux users and the run (cpsload.c) ----------------------------- */
typedef struct user {
    conn c;
    int idx, pad, u;            /* index, pad index, index inside the pad */
    const char *padid;          /* channel to join */
    char id[33];                /* our user id, from IDENT */
    char hk[17];                /* history keeper id, from its JOIN */
    int joined;                 /* 0 no, 1 JACK seen, 2 own JOIN seen (join done) */
    int members_seen;           /* JOIN events of other users */
    int dead;                   /* closed or failed */
    /* broadcast / scale */
    int sent, acked, inflight, stopped;
    long long first_seq;        /* ACKs below this seq are not for our MSGs */
    uint32_t *recv; uint32_t nrecv, caprecv;   /* codes su*M+si in arrival order */
    int32_t *last_from; uint8_t *seen;
    /* history */
    char txid[24]; int hist;    /* 0 idle, 1 asked, 2 done, 3 failed */
    long hist_count, hist_bad, hist_meta; uint64_t hist_bytes; double hist_t0, hist_t1;
} user;

typedef struct {
    void (*joined)(user *u);
    void (*ack)(user *u, long long seq);
    void (*error)(user *u, long long seq, const char *frame, size_t len);
    void (*chan_msg)(user *u, const nf_frame *f);
    void (*direct)(user *u, const nf_frame *f);
    void (*closed)(user *u, const char *why);
} hooks;

extern uv_loop_t *L;
extern hooks H;
extern user *U; extern int NU;           /* all users of the run */
extern double g_origin;                  /* now_ms() at start: message timestamps are relative */
extern int g_server_pid;
extern int g_concurrency, g_connect_timeout_ms;

const char *opt_str(const char *key, const char *def);
double opt_num(const char *key, double def, double min, double max);
void add_error(const char *kind, const char *fmt, ...);
int error_count(void);
void add_note(const char *fmt, ...);
void random_hex(char *out, int nhex);          /* nhex chars + NUL */
int user_send(user *u, const char *frame, size_t len);
long long user_msg(user *u, const char *target, const char *content, size_t clen);  /* returns seq */
/* connect + IDENT + JOIN for users [first, first + n) with at most
 * g_concurrency in flight; `done` runs once all of them joined or failed */
void setup_pool(int first, int n, void (*done)(void));
void finish(void);                       /* stop the run: the scenario fills the result */

/* result: the scenario appends its JSON members and human lines */
void res_param(const char *fmt, ...);    /* e.g. "\"pads\":%d" */
void res_metric(const char *fmt, ...);
void res_human(const char *fmt, ...);

/* ---- scenarios (broadcast.c, history.c, idle.c) ------------------------ */
void scen_broadcast(void);
void scen_history(void);
void scen_idle(void);
void scen_scale(void);
