/* cpsload: the `history` scenario (bench.js's): one writer stores N messages
 * in a fresh pad, ACK-paced, then K fresh readers join and send GET_HISTORY at
 * the same time.  Reports the server's MiB/s and its CPU per MiB served. */
#include "cpsload.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HK_DEFAULT "0123456789abcdef"

static int N, K, SIZE, WIN, TIMEOUT;
static char pad[33];
static char *fill;
static double tw0, write_ms, tr0, scpu0, ccpu0;
static int readers_done;
static uv_timer_t timeout_timer;
static char *ubuf; static size_t ubuf_cap;
static samples times;

static void finish_history(void);

static void send_get_history(user *u)
{
    char content[256];
    snprintf(u->txid, sizeof u->txid, "%08x%x", (unsigned)(rand() & 0x7fffffff), (unsigned)u->idx);
    int n = snprintf(content, sizeof content, "[\\\"GET_HISTORY\\\",\\\"%s\\\",{\\\"txid\\\":\\\"%s\\\",\\\"metadata\\\":{}}]", pad, u->txid);
    u->hist = 1; u->hist_t0 = now_ms();
    if (user_msg(u, u->hk[0] ? u->hk : HK_DEFAULT, content, (size_t)n) < 0) { u->hist = 3; add_error("history_failed", "user%d: cannot send", u->idx); }
}

static void write_next(user *w)
{
    char buf[4096];
    int h = snprintf(buf, sizeof buf, "h|%d|", w->sent);
    size_t fl = (size_t)SIZE > (size_t)h ? (size_t)SIZE - (size_t)h : 0;
    char *c = (size_t)h + fl <= sizeof buf ? buf : malloc((size_t)h + fl);
    if (!c) return;
    if (c != buf) memcpy(c, buf, (size_t)h);
    memcpy(c + h, fill, fl);
    if (user_msg(w, pad, c, (size_t)h + fl) >= 0) { w->sent++; w->inflight++; }
    else add_error("write_failed", "message %d", w->sent);
    if (c != buf) free(c);
}

static void readers_joined(void);

static void on_ack(user *u, long long seq)
{
    /* readers' ACKs are for GET_HISTORY, and so is the writer's before it
    ** starts writing (first_seq is set then, and seq starts at 1): counting
    ** that one as a write ACK sent a message before the end of history */
    if (u->idx != 0 || u->first_seq == 0 || seq < u->first_seq) return;
    u->inflight--; u->acked++;
    if (u->sent < N) { write_next(u); return; }
    if (u->acked == N) {
        write_ms = now_ms() - tw0;
        setup_pool(1, K, readers_joined);
    }
}

static void on_error(user *u, long long seq, const char *frame, size_t len)
{
    if (u->idx == 0) { add_error("write_failed", "%.120s", frame); finish_history(); return; }
    if (u->hist == 1) { u->hist = 3; add_error("history_failed", "reader%d: %.100s", u->idx - 1, frame); if (++readers_done == K) finish_history(); }
}

static void start_writing(user *w)
{
    w->first_seq = w->c.seq;
    tw0 = now_ms();
    for (int i = 0; i < WIN && w->sent < N; i++) write_next(w);
}

/* [0,HK,"MSG",me,text]: text is a history line [txid,sender,"MSG",pad,content,time],
 * the end marker {"state":1,...}, an error object, or the channel's metadata */
static void on_direct(user *u, const nf_frame *f)
{
    if (f->type[4] != NF_STR || u->hist != 1) return;
    if (f->len[4] + 1 > ubuf_cap) {
        size_t cap = f->len[4] + 1024;
        char *nb = realloc(ubuf, cap);
        if (!nb) return;
        ubuf = nb; ubuf_cap = cap;
    }
    size_t n = nf_unescape(f->p[4], f->len[4], ubuf);
    u->hist_bytes += n;
    if (n && ubuf[0] == '[') {
        nf_frame in;
        if (nf_scan(ubuf, n, &in) != 0 || in.n < 5) return;
        if (!nf_is(&in, 0, u->txid) || !nf_is(&in, 3, pad)) return;   /* someone else's */
        char head[32];
        int h = snprintf(head, sizeof head, "h|%ld|", u->hist_count);
        if (in.type[4] != NF_STR || in.len[4] != (size_t)SIZE || memcmp(in.p[4], head, (size_t)h) != 0) u->hist_bad++;
        u->hist_count++;
        return;
    }
    if (n && ubuf[0] == '{') {
        ubuf[n] = 0;
        if (!strstr(ubuf, pad)) return;
        if (strstr(ubuf, u->txid) == NULL && strstr(ubuf, "\"txid\"")) return;
        if (strstr(ubuf, "\"error\"")) {
            u->hist = 3; add_error("history_failed", "user%d: %.100s", u->idx, ubuf);
        } else if (strstr(ubuf, "\"state\":1")) {
            u->hist = 2; u->hist_t1 = now_ms();
        } else { u->hist_meta++; return; }
        if (u->idx == 0) {
            if (u->hist == 2 && u->hist_count) add_error("history_not_empty", "fresh pad returned %ld messages", u->hist_count);
            if (u->hist == 2) { u->hist = 0; u->hist_count = 0; u->hist_bytes = 0; start_writing(u); }
            else finish_history();
            return;
        }
        if (++readers_done == K) finish_history();
    }
}

static void on_closed(user *u, const char *why)
{
    add_error("unexpected_disconnect", "user%d: %s", u->idx, why);
    if (u->idx == 0) { finish_history(); return; }
    if (u->hist == 1) { u->hist = 3; if (++readers_done == K) finish_history(); }
}

static void on_timeout(uv_timer_t *t)
{
    for (int i = 1; i <= K; i++) if (U[i].hist == 1) add_error("history_failed", "reader%d: no end of history within %d ms", i - 1, TIMEOUT);
    finish_history();
}

static void hooks_on(void) { H.ack = on_ack; H.error = on_error; H.direct = on_direct; H.closed = on_closed; H.joined = NULL; }

static void readers_joined(void)
{
    hooks_on();
    for (int i = 1; i <= K; i++) if (U[i].joined == 2 && strcmp(U[i].hk[0] ? U[i].hk : HK_DEFAULT, U[0].hk[0] ? U[0].hk : HK_DEFAULT) != 0)
        add_error("history_keeper_id", "reader%d saw %s, writer saw %s", i - 1, U[i].hk, U[0].hk);
    tr0 = now_ms();
    scpu0 = g_server_pid ? tree_cpu_s(g_server_pid) : -1;
    ccpu0 = self_cpu_s();
    uv_timer_start(&timeout_timer, on_timeout, (uint64_t)TIMEOUT, 0);
    for (int i = 1; i <= K; i++) {
        if (U[i].joined != 2) { readers_done++; continue; }
        send_get_history(&U[i]);
        if (U[i].hist == 3) readers_done++;
    }
    if (readers_done == K) finish_history();
}

static void writer_joined(void)
{
    hooks_on();
    if (U[0].joined != 2) { add_error("writer_failed", "the writer could not join"); finish(); return; }
    send_get_history(&U[0]);
}

void scen_history(void)
{
    N = (int)opt_num("history-messages", 2000, 1, 1000000);
    K = (int)opt_num("readers", 20, 1, 20000);
    SIZE = (int)opt_num("size", 300, 24, 1000000);
    WIN = (int)opt_num("write-window", 1, 1, 1000);
    TIMEOUT = (int)opt_num("history-timeout-ms", 60000, 100, 600000);
    res_param("\"history_messages\":%d,\"readers\":%d,\"size\":%d,\"write_window\":%d", N, K, SIZE, WIN);
    random_hex(pad, 32);
    fill = malloc((size_t)SIZE + 1);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < SIZE; i++) fill[i] = b64[(i * 37 + 11) % 64];
    fill[SIZE] = 0;
    NU = 1 + K;
    U = calloc((size_t)NU, sizeof *U);
    if (!U || !fill) { fprintf(stderr, "cpsload: out of memory\n"); exit(1); }
    for (int i = 0; i < NU; i++) { U[i].idx = i; U[i].padid = pad; }
    uv_timer_init(L, &timeout_timer);
    setup_pool(0, 1, writer_joined);
}

static void finish_history(void)
{
    static int done;
    if (done) return;
    done = 1;
    uv_timer_stop(&timeout_timer);
    double scpu1 = g_server_pid ? tree_cpu_s(g_server_pid) : -1;
    double ccpu1 = self_cpu_s();
    double last = tr0;
    uint64_t bytes = 0; int ok = 0;
    for (int i = 1; i <= K; i++) {
        user *u = &U[i];
        if (u->hist != 2) continue;
        if (u->hist_t1 > last) last = u->hist_t1;
        samples_add(&times, (float)(u->hist_t1 - u->hist_t0));
        bytes += u->hist_bytes;
        if (u->hist_count != N) add_error("history_count", "reader%d got %ld of %d messages", i - 1, u->hist_count, N);
        if (u->hist_bad) add_error("history_content", "reader%d: %ld entries differ from what was written (order or content)", i - 1, u->hist_bad);
        if (!u->hist_bad && u->hist_count == N) ok++;
    }
    double wall = last - tr0;
    char tj[256]; samples_json(&times, tj, sizeof tj);
    double mib = bytes / 1048576.0;
    double scpu = (scpu0 >= 0 && scpu1 >= 0 && tr0 > 0) ? scpu1 - scpu0 : -1, ccpu = ccpu1 - ccpu0;
    res_metric("\"write_ms\":%.1f,\"write_msgs_per_sec\":%.0f,\"readers_ok\":%d,\"history_ms\":%s,\"wall_ms\":%.1f",
               write_ms, write_ms > 0 ? U[0].acked / (write_ms / 1000) : 0, ok, tj, wall);
    res_metric("\"history_bytes\":%llu,\"history_bytes_per_sec\":%.0f,\"history_msgs_per_sec\":%.0f,\"history_mib_per_sec\":%.2f",
               (unsigned long long)bytes, wall > 0 ? bytes / (wall / 1000) : 0, wall > 0 ? (double)ok * N / (wall / 1000) : 0, wall > 0 ? mib / (wall / 1000) : 0);
    if (scpu >= 0) res_metric("\"server_cpu_read_s\":%.2f,\"server_cpu_s_per_mib\":%.4f", scpu, mib > 0 ? scpu / mib : 0);
    else res_metric("\"server_cpu_read_s\":null,\"server_cpu_s_per_mib\":null");
    res_metric("\"client_cpu_read_s\":%.2f", ccpu);
    res_human("write %d messages of ~%d B: %.0f ms (%.0f msgs/s, window %d)", U[0].acked, SIZE, write_ms, write_ms > 0 ? U[0].acked / (write_ms / 1000) : 0, WIN);
    res_human("%d concurrent GET_HISTORY: p50 %.1f ms  p99 %.1f ms  max %.1f ms  (all done in %.0f ms)", K,
              samples_pct(&times, 50), samples_pct(&times, 99), times.n ? times.v[times.n - 1] : -1.0, wall);
    res_human("history payload: %llu B => %.2f MiB/s, %.0f msgs/s", (unsigned long long)bytes, wall > 0 ? mib / (wall / 1000) : 0, wall > 0 ? (double)ok * N / (wall / 1000) : 0);
    if (scpu >= 0) res_human("server CPU while reading: %.2f s = %.3f s per MiB served; cpsload %.2f s", scpu, mib > 0 ? scpu / mib : 0, ccpu);
    res_human("readers with complete, in-order history: %d/%d", ok, K);
    samples_free(&times); free(fill); free(ubuf); fill = NULL; ubuf = NULL; ubuf_cap = 0;
    finish();
}
