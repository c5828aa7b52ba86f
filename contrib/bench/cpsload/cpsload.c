/* cpsload: the C load generator of contrib/bench.  Same scenarios and JSON
 * output as bench.js (broadcast, history, idle) plus `scale`, from one libuv
 * loop, so that the figures measure the server and not the client.
 * This file: options, the netflux client state machine, setup, the result. */
#include "cpsload.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/resource.h>

static const char HELP[] =
"usage: cpsload --url ws://127.0.0.1:PORT/cryptpad_websocket --scenario NAME [options]\n"
"\n"
"common options (as bench.js)\n"
"  --url URL[,URL...]    websocket URL, loopback only (127.0.0.0/8, localhost, ::1);\n"
"                        several (the fronts of a cluster): clients are spread over them\n"
"  --scenario NAME       broadcast | history | idle | scale\n"
"  --json                also print one JSON line with the results (last line of stdout)\n"
"  --label TEXT          name of the server under test (copied into the JSON)\n"
"  --server-pid PID      server pid (alias --pid): CPU and RSS of it and its descendants\n"
"  --max-seconds S       hard watchdog for the whole run (default 150)\n"
"  --connect-timeout MS  per-connection connect/join timeout (default 15000)\n"
"  --concurrency N       connections opened in parallel during setup (default 100)\n"
"\n"
"broadcast   P pads x U users; each user sends M messages, the next one after the ACK\n"
"  --pads P (20) --users U (5) --messages M (200) --size BYTES (128) --drain-ms MS (10000)\n"
"  --window W (1)        messages a user keeps in flight (1 = bench.js and CryptPad)\n"
"history     one writer stores N messages in one pad, then K fresh clients join and\n"
"            ask GET_HISTORY at the same time (server MiB/s and CPU per MiB)\n"
"  --history-messages N (2000) --readers K (20) --size BYTES (300) --write-window W (1)\n"
"idle        C connections that IDENT and join a distinct pad each, then sit idle\n"
"  --conns C (2000, at most 100000) --settle-ms MS (3000)\n"
"scale       C connections on P pads, each user sends a message every I ms for D s\n"
"  --conns C (10000) --pads P (1000) --interval-ms I (2000) --duration S (60)\n"
"  --size BYTES (128) --drain-ms MS (10000)\n"
"\n"
"Raises its own RLIMIT_NOFILE soft limit to the hard limit. Exit status 0 when the\n"
"run passed its correctness checks, 1 when not, 2 on bad usage, 3 on watchdog.\n";

uv_loop_t *L;
hooks H;
user *U; int NU;
double g_origin;
int g_server_pid;
int g_concurrency = 100, g_connect_timeout_ms = 15000;

static int g_argc; static char **g_argv;
static int g_json;
static const char *g_scenario, *g_url, *g_label;

/* ---------------------------------------------------------------- options */
const char *opt_str(const char *key, const char *def)
{
    size_t kl = strlen(key);
    for (int i = 1; i < g_argc; i++) {
        const char *a = g_argv[i];
        if (a[0] != '-' || a[1] != '-' || strncmp(a + 2, key, kl) != 0) continue;
        if (a[2 + kl] == '=') return a + 3 + kl;
        if (a[2 + kl] == 0) return (i + 1 < g_argc && strncmp(g_argv[i + 1], "--", 2) != 0) ? g_argv[i + 1] : "";
    }
    return def;
}

double opt_num(const char *key, double def, double min, double max)
{
    const char *s = opt_str(key, NULL);
    if (!s) return def;
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || v < min || v > max) {
        fprintf(stderr, "cpsload: error: --%s must be a number in [%g, %g]\n", key, min, max);
        exit(2);
    }
    return v;
}

/* ---------------------------------------------------------------- errors, notes, result */
#define MAX_KINDS 32
static struct { char kind[48]; long count; char examples[5][160]; int nex; } g_err[MAX_KINDS];
static int g_nerr;
static char g_notes[8][200]; static int g_nnotes;
static char g_params[2048], g_metrics[8192], g_human[8192];
static size_t g_params_len, g_metrics_len, g_human_len;

void add_error(const char *kind, const char *fmt, ...)
{
    int i;
    for (i = 0; i < g_nerr; i++) if (strcmp(g_err[i].kind, kind) == 0) break;
    if (i == g_nerr) {
        if (g_nerr == MAX_KINDS) return;
        snprintf(g_err[i].kind, sizeof g_err[i].kind, "%s", kind);
        g_nerr++;
    }
    g_err[i].count++;
    if (g_err[i].nex < 5 && fmt) {
        va_list ap; va_start(ap, fmt);
        vsnprintf(g_err[i].examples[g_err[i].nex++], 160, fmt, ap);
        va_end(ap);
    }
}

int error_count(void) { long n = 0; for (int i = 0; i < g_nerr; i++) n += g_err[i].count; return (int)n; }

void add_note(const char *fmt, ...)
{
    if (g_nnotes == 8) return;
    va_list ap; va_start(ap, fmt);
    vsnprintf(g_notes[g_nnotes++], 200, fmt, ap);
    va_end(ap);
}

static void append(char *buf, size_t cap, size_t *len, const char *sep, const char *fmt, va_list ap)
{
    if (*len && sep && *len + 1 < cap) { buf[(*len)++] = *sep; buf[*len] = 0; }
    if (*len < cap) {
        int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
        if (n > 0) *len = (*len + (size_t)n < cap) ? *len + (size_t)n : cap - 1;
    }
}
void res_param(const char *fmt, ...) { va_list ap; va_start(ap, fmt); append(g_params, sizeof g_params, &g_params_len, ",", fmt, ap); va_end(ap); }
void res_metric(const char *fmt, ...) { va_list ap; va_start(ap, fmt); append(g_metrics, sizeof g_metrics, &g_metrics_len, ",", fmt, ap); va_end(ap); }
void res_human(const char *fmt, ...) { va_list ap; va_start(ap, fmt); append(g_human, sizeof g_human, &g_human_len, "\n", fmt, ap); va_end(ap); }

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

/* ---------------------------------------------------------------- helpers */
void random_hex(char *out, int nhex)
{
    unsigned char b[64];
    int nb = (nhex + 1) / 2;
    if (getrandom(b, (size_t)nb, 0) != nb) { for (int i = 0; i < nb; i++) b[i] = (unsigned char)rand(); }
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < nhex; i++) out[i] = hx[(b[i / 2] >> ((i & 1) ? 0 : 4)) & 15];
    out[nhex] = 0;
}

int user_send(user *u, const char *frame, size_t len)
{
    if (u->dead) return -1;
    return conn_send_text(&u->c, frame, len);
}

/* [seq,"MSG",target,"content"]: content must need no JSON escaping, or be escaped already */
long long user_msg(user *u, const char *target, const char *content, size_t clen)
{
    char stackbuf[2048];
    size_t cap = clen + 96;
    char *b = cap <= sizeof stackbuf ? stackbuf : malloc(cap);
    if (!b) return -1;
    long long seq = u->c.seq++;
    int h = snprintf(b, cap, "[%lld,\"MSG\",\"%s\",\"", seq, target);
    memcpy(b + h, content, clen);
    memcpy(b + h + clen, "\"]", 2);
    int r = user_send(u, b, (size_t)h + clen + 2);
    if (b != stackbuf) free(b);
    return r == 0 ? seq : -1;
}

/* ---------------------------------------------------------------- netflux dispatch */
static void on_frame(conn *c, const char *msg, size_t len)
{
    user *u = (user *)c->user;
    nf_frame f;
    if (nf_scan(msg, len, &f) != 0 || f.n < 2) { add_error("foreign_frame", "%.80s", msg); return; }
    long long seq = nf_num(&f, 0);
    if (seq != 0) {                         /* a reply */
        if (nf_is(&f, 1, "ACK")) { if (H.ack) H.ack(u, seq); }
        else if (nf_is(&f, 1, "JACK")) { if (u->joined == 0) u->joined = 1; }
        else if (nf_is(&f, 1, "ERROR")) {
            if (H.error) H.error(u, seq, msg, len);
            else add_error("server_error", "%.120s", msg);
        }
        return;
    }
    if (f.n < 4) return;
    if (nf_is(&f, 2, "MSG") && f.n >= 5) {
        if (f.type[3] == NF_STR && f.len[3] == 32 && memcmp(f.p[3], u->id, 32) == 0) { if (H.direct) H.direct(u, &f); }
        else if (H.chan_msg) H.chan_msg(u, &f);
    } else if (nf_is(&f, 2, "JOIN")) {
        if (f.type[1] != NF_STR) return;
        if (f.len[1] == 32 && memcmp(f.p[1], u->id, 32) == 0) {
            if (u->joined < 2) { u->joined = 2; if (H.joined) H.joined(u); }
        } else if (f.len[1] == 16) {
            memcpy(u->hk, f.p[1], 16); u->hk[16] = 0;
        } else u->members_seen++;
    } else if (nf_is(&f, 2, "IDENT")) {
        if (f.type[3] != NF_STR || f.len[3] != 32) { add_error("bad_ident", "%.80s", msg); return; }
        memcpy(u->id, f.p[3], 32); u->id[32] = 0;
        char j[128];
        int n = snprintf(j, sizeof j, "[%lld,\"JOIN\",\"%s\"]", u->c.seq++, u->padid);
        user_send(u, j, (size_t)n);
    } else if (nf_is(&f, 2, "PING")) {
        char p[96];
        int n = snprintf(p, sizeof p, "[0,\"\",\"PONG\",%.*s]", (int)(f.len[3] < 40 ? f.len[3] : 40), f.p[3]);
        user_send(u, p, (size_t)n);
    }
}

static void on_close(conn *c, const char *why)
{
    user *u = (user *)c->user;
    u->dead = 1;
    if (H.closed) H.closed(u, why);
    else add_error("unexpected_disconnect", "user%d: %s", u->idx, why);
}

/* ---------------------------------------------------------------- setup pool */
static void (*g_pool_done)(void);
static int g_pool_n, g_pool_next, g_pool_settled;
static uv_timer_t g_pool_timer;
static double *g_pool_started;

static void pool_start_one(void);
static void pool_settle(user *u)
{
    g_pool_settled++;
    if (g_pool_next < g_pool_n) pool_start_one();
    if (g_pool_settled == g_pool_n) {
        uv_timer_stop(&g_pool_timer);
        void (*d)(void) = g_pool_done; g_pool_done = NULL;
        if (d) d();
    }
}

static void pool_joined(user *u) { pool_settle(u); }
static void pool_closed(user *u, const char *why)
{
    add_error("connect_failed", "user%d: %s", u->idx, why);
    if (u->joined < 2) { u->joined = -1; pool_settle(u); }
}

static void pool_start_one(void)
{
    int i = g_pool_next++;
    user *u = &U[i];
    u->c.target = i % g_ntargets;
    u->c.user = u; u->c.on_frame = on_frame; u->c.on_close = on_close; u->c.on_open = NULL;
    g_pool_started[i] = now_ms();
    if (conn_start(L, &u->c) != 0) { u->dead = 1; u->joined = -1; add_error("connect_failed", "user%d: cannot start", i); pool_settle(u); }
}

/* joins that take longer than --connect-timeout are failures, like bench.js */
static void pool_tick(uv_timer_t *t)
{
    double now = now_ms();
    for (int i = 0; i < g_pool_next; i++) {
        user *u = &U[i];
        if (u->joined >= 2 || u->joined < 0 || u->dead) continue;
        if (now - g_pool_started[i] > g_connect_timeout_ms) {
            add_error("join_timeout", "user%d after %d ms", i, g_connect_timeout_ms);
            u->joined = -1; conn_close(&u->c); u->dead = 1;
            pool_settle(u);
            if (!g_pool_done) return;
        }
    }
}

void setup_pool(int first, int n, void (*done)(void))
{
    H.joined = pool_joined; H.closed = pool_closed;
    g_pool_done = done; g_pool_n = first + n; g_pool_next = first; g_pool_settled = first;
    free(g_pool_started);
    g_pool_started = calloc((size_t)(NU ? NU : 1), sizeof *g_pool_started);
    uv_timer_start(&g_pool_timer, pool_tick, 500, 500);
    for (int k = 0; k < g_concurrency && g_pool_next < g_pool_n; k++) pool_start_one();
    if (n == 0) { uv_timer_stop(&g_pool_timer); g_pool_done = NULL; done(); }
}

/* ---------------------------------------------------------------- run */
static uv_timer_t g_watchdog;
static int g_finished, g_watchdog_fired;

static void close_walk(uv_handle_t *h, void *arg) { if (!uv_is_closing(h)) uv_close(h, NULL); }

void finish(void)
{
    if (g_finished) return;
    g_finished = 1;
    uv_stop(L);
}

static void on_watchdog(uv_timer_t *t)
{
    g_watchdog_fired = 1;
    add_error("watchdog", "run exceeded --max-seconds");
    finish();
}

/* ws://HOST:PORT/PATH with a loopback HOST; appended to g_targets */
static int loopback_url(const char *url, size_t len)
{
    char u[400], host[64], path[256];
    if (len >= sizeof u || g_ntargets == MAX_TARGETS) return -1;
    memcpy(u, url, len); u[len] = 0;
    if (strncmp(u, "ws://", 5) != 0) return -1;
    const char *h = u + 5, *colon, *slash = strchr(h, '/');
    if (*h == '[') {
        const char *rb = strchr(h, ']');
        if (!rb) return -1;
        colon = rb[1] == ':' ? rb + 1 : NULL;
        snprintf(host, sizeof host, "%.*s", (int)(rb - h - 1), h + 1);
    } else {
        colon = strchr(h, ':');
        if (colon && slash && colon > slash) colon = NULL;
        size_t hl = (size_t)((colon ? colon : (slash ? slash : h + strlen(h))) - h);
        snprintf(host, sizeof host, "%.*s", (int)hl, h);
    }
    snprintf(path, sizeof path, "%s", slash ? slash : "/");
    if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    int a, b, cc, d;
    if (!(strcmp(host, "::1") == 0 || (sscanf(host, "%d.%d.%d.%d", &a, &b, &cc, &d) == 4 && a == 127))) return -2;
    target *t = &g_targets[g_ntargets++];
    memcpy(t->host, host, sizeof host); memcpy(t->path, path, sizeof path);
    t->port = colon ? atoi(colon + 1) : 80;
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    g_argc = argc; g_argv = argv;
    if (opt_str("help", NULL) || opt_str("h", NULL)) { fputs(HELP, stdout); return 0; }
    g_json = opt_str("json", NULL) != NULL;
    g_label = opt_str("label", NULL);
    g_url = opt_str("url", NULL);
    g_scenario = opt_str("scenario", "broadcast");
    if (!g_url || !*g_url) { fputs(HELP, stderr); fprintf(stderr, "cpsload: error: --url is required\n"); return 2; }
    int lr = 0;
    for (const char *p = g_url; lr == 0 && *p; ) {      /* a cluster: comma-separated fronts, as bench.js */
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        lr = loopback_url(p, n);
        p += n + (e ? 1 : 0);
    }
    if (!g_ntargets && lr == 0) lr = -1;
    if (lr == -1) { fprintf(stderr, "cpsload: error: --url must be ws://HOST:PORT/PATH\n"); return 2; }
    if (lr == -2) { fprintf(stderr, "cpsload: error: refusing a non-loopback host; use 127.0.0.1, localhost or ::1\n"); return 2; }
    void (*scen)(void) = NULL;
    if (!strcmp(g_scenario, "broadcast")) scen = scen_broadcast;
    else if (!strcmp(g_scenario, "history")) scen = scen_history;
    else if (!strcmp(g_scenario, "idle")) scen = scen_idle;
    else if (!strcmp(g_scenario, "scale")) scen = scen_scale;
    else { fprintf(stderr, "cpsload: error: --scenario must be broadcast, history, idle or scale\n"); return 2; }
    const char *pid = opt_str("server-pid", opt_str("pid", NULL));
    if (pid) { g_server_pid = atoi(pid); if (g_server_pid <= 0) { fprintf(stderr, "cpsload: error: --server-pid must be a pid\n"); return 2; } }
    double max_s = opt_num("max-seconds", 150, 5, 7200);
    g_connect_timeout_ms = (int)opt_num("connect-timeout", 15000, 100, 600000);
    g_concurrency = (int)opt_num("concurrency", 100, 1, 20000);
    raise_nofile();

    static uv_loop_t loop;
    L = &loop;
    uv_loop_init(L);
    uv_timer_init(L, &g_watchdog);
    uv_timer_init(L, &g_pool_timer);
    uv_timer_start(&g_watchdog, on_watchdog, (uint64_t)(max_s * 1000), 0);
    g_origin = now_ms();
    time_t started = time(NULL);
    double cpu0 = g_server_pid ? tree_cpu_s(g_server_pid) : -1;
    if (g_server_pid && cpu0 < 0) { fprintf(stderr, "cpsload: error: process %d not found in /proc\n", g_server_pid); return 2; }
    double ccpu0 = self_cpu_s();
    double t0 = now_ms();
    double load0[3] = {0}; getloadavg(load0, 3);

    scen();
    uv_run(L, UV_RUN_DEFAULT);

    double cpu1 = g_server_pid ? tree_cpu_s(g_server_pid) : -1;
    double ccpu1 = self_cpu_s();
    if (cpu0 >= 0 && cpu1 >= 0) res_metric("\"server_cpu_s\":%.2f", cpu1 - cpu0); else res_metric("\"server_cpu_s\":null");
    res_metric("\"client_cpu_s\":%.2f", ccpu1 - ccpu0);
    res_metric("\"client_bytes_in\":%llu,\"client_frames_in\":%llu", (unsigned long long)g_bytes_in, (unsigned long long)g_frames_in);

    int ok = g_nerr == 0;
    /* human output */
    printf("== %s%s%s%s @ %s\n", g_scenario, g_label ? " [" : "", g_label ? g_label : "", g_label ? "]" : "", g_url);
    printf("params: %s\n", g_params);
    if (g_human_len) printf("%s\n", g_human);
    if (cpu0 >= 0 && cpu1 >= 0) printf("cpu: server tree %.2f s, cpsload client %.2f s; load avg before %.2f %.2f %.2f\n", cpu1 - cpu0, ccpu1 - ccpu0, load0[0], load0[1], load0[2]);
    else printf("cpu: server tree n/a (no --server-pid), cpsload client %.2f s\n", ccpu1 - ccpu0);
    for (int i = 0; i < g_nnotes; i++) printf("note: %s\n", g_notes[i]);
    for (int i = 0; i < g_nerr; i++) {
        printf("ERROR %s x%ld", g_err[i].kind, g_err[i].count);
        for (int k = 0; k < g_err[i].nex; k++) printf("%s%s", k ? " | " : ": ", g_err[i].examples[k]);
        printf("\n");
    }
    printf("result: %s\n", ok ? "OK" : "FAILED");
    if (g_json) {
        char ts[32]; struct tm tm; gmtime_r(&started, &tm); strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
        double load1[3] = {0}; getloadavg(load1, 3);
        printf("{\"ok\":%s,\"scenario\":", ok ? "true" : "false"); json_str(stdout, g_scenario);
        printf(",\"label\":"); if (g_label) json_str(stdout, g_label); else printf("null");
        printf(",\"url\":"); json_str(stdout, g_url);
        printf(",\"client\":\"cpsload\",\"started_at\":\"%s\",\"duration_ms\":%.1f", ts, now_ms() - t0);
        printf(",\"host\":{\"nproc\":%ld,\"loadavg_before\":[%.2f,%.2f,%.2f],\"loadavg_after\":[%.2f,%.2f,%.2f]}",
               sysconf(_SC_NPROCESSORS_ONLN), load0[0], load0[1], load0[2], load1[0], load1[1], load1[2]);
        printf(",\"params\":{%s},\"metrics\":{%s},\"errors\":[", g_params, g_metrics);
        for (int i = 0; i < g_nerr; i++) {
            printf("%s{\"kind\":", i ? "," : ""); json_str(stdout, g_err[i].kind);
            printf(",\"count\":%ld,\"examples\":[", g_err[i].count);
            for (int k = 0; k < g_err[i].nex; k++) { if (k) printf(","); json_str(stdout, g_err[i].examples[k]); }
            printf("]}");
        }
        printf("],\"notes\":[");
        for (int i = 0; i < g_nnotes; i++) { if (i) printf(","); json_str(stdout, g_notes[i]); }
        printf("]}\n");
    }
    fflush(stdout);

    /* tear down: close every handle, let the closes run, free */
    for (int i = 0; i < NU; i++) if (!U[i].dead && U[i].c.state != 3 && U[i].c.tcp.type == UV_TCP) conn_close(&U[i].c);
    uv_walk(L, close_walk, NULL);
    uv_run(L, UV_RUN_DEFAULT);
    uv_loop_close(L);
    for (int i = 0; i < NU; i++) { conn_free_buffers(&U[i].c); free(U[i].recv); free(U[i].last_from); free(U[i].seen); }
    free(U); free(g_pool_started);
    if (g_watchdog_fired) return 3;
    return ok ? 0 : 1;
}
