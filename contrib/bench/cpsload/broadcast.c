/* cpsload: the channel-message scenarios.  `broadcast` is bench.js's: P pads x
 * U users, each sends M messages, the next one after the ACK, with the same
 * checks (lost, duplicated, out of order, echoed, wrong sender, order differing
 * between members).  `scale` spreads C users over P pads, each sending one
 * message every I ms for D seconds, and measures delivery rate and latency. */
#include "cpsload.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int P, UU, M, SIZE, WIN, DRAIN, SCALE;
static double INTERVAL, DURATION;
static char (*pads)[33];
static char *fill; static size_t fill_len;
static double t_setup0, setup_ms, t0, t_acked, t_last_recv;
static long long received, expected, sent_total, skipped;
static int users_done, send_errors, sending;
static samples lat;
static uv_timer_t tick;
static double scpu0, ccpu0;
static long long rss_setup; static int rss_procs;

static void make_fill(int size)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fill_len = size > 24 ? (size_t)(size - 24) : 0;
    fill = malloc(fill_len + 1);
    unsigned char r[64];
    for (size_t i = 0; i < fill_len; i++) {
        if (i % 64 == 0) random_hex((char *)r, 63);
        fill[i] = b64[(r[i % 64] * 7 + i) % 64];
    }
    fill[fill_len] = 0;
}

static void finish_broadcast(void);
static void finish_scale(void);
static void user_finished(user *u);
static void drain_tick(uv_timer_t *t);

static void send_one(user *u)
{
    char buf[128];
    size_t need = fill_len + 64;
    char *content = need <= sizeof buf ? buf : malloc(need);
    if (!content) return;
    int h = snprintf(content, need, "%d|%d|%.3f|", u->u, u->sent, now_ms() - g_origin);
    memcpy(content + h, fill, fill_len);
    long long seq = user_msg(u, u->padid, content, (size_t)h + fill_len);
    if (content != buf) free(content);
    if (seq < 0) { send_errors++; add_error("send_failed", "pad%d user%d msg%d: connection gone", u->pad, u->u, u->sent);
        if (!SCALE && !u->stopped) { u->stopped = 1; user_finished(u); }
        return;
    }
    u->sent++; u->inflight++; sent_total++;
}


static void maybe_done(void)
{
    if (sending != 2) return;
    if (received >= expected) { uv_timer_stop(&tick); SCALE ? finish_scale() : finish_broadcast(); }
}

static void user_finished(user *u)
{
    if (++users_done == NU) {
        t_acked = now_ms(); sending = 2;
        uv_timer_start(&tick, drain_tick, 20, 20);     /* bounded wait for the last receipts */
        maybe_done();
    }
}

static void on_ack(user *u, long long seq)
{
    if (seq < u->first_seq || u->inflight <= 0) return;
    u->inflight--; u->acked++;
    if (SCALE) return;
    if (u->stopped) return;
    if (u->sent < M) { send_one(u); return; }
    if (u->inflight == 0) { u->stopped = 1; user_finished(u); }
}

static void on_error(user *u, long long seq, const char *frame, size_t len)
{
    if (seq < u->first_seq) { add_error("server_error", "%.120s", frame); return; }
    send_errors++;
    add_error("send_failed", "pad%d user%d: %.100s", u->pad, u->u, frame);
    if (u->inflight > 0) u->inflight--;
    if (!SCALE && !u->stopped) { u->stopped = 1; user_finished(u); }
}

static void on_closed(user *u, const char *why)
{
    add_error("unexpected_disconnect", "pad%d user%d: %s", u->pad, u->u, why);
    if (!SCALE && sending && !u->stopped) { u->stopped = 1; user_finished(u); }
}

/* content "u|i|t|filler" (bench.js) */
static void on_msg(user *u, const nf_frame *f)
{
    double t = now_ms();
    const char *p = f->p[4], *e = p + f->len[4];
    if (f->type[4] != NF_STR || f->type[3] != NF_STR || f->len[3] != strlen(u->padid) || memcmp(f->p[3], u->padid, f->len[3]) != 0) {
        add_error("foreign_message", "%.80s", f->p[0]); return;
    }
    long su = 0, si = 0; double st = 0;
    int bars = 0;
    const char *q = p;
    while (q < e && *q >= '0' && *q <= '9') su = su * 10 + (*q++ - '0');
    if (q < e && *q == '|') { bars++; q++; }
    while (q < e && *q >= '0' && *q <= '9') si = si * 10 + (*q++ - '0');
    if (q < e && *q == '|') { bars++; q++; }
    { long ip = 0; double frac = 0, sc = 0.1;
      while (q < e && *q >= '0' && *q <= '9') ip = ip * 10 + (*q++ - '0');
      if (q < e && *q == '.') { q++; while (q < e && *q >= '0' && *q <= '9') { frac += (*q++ - '0') * sc; sc /= 10; } }
      st = (double)ip + frac; }
    if (q < e && *q == '|') bars++;
    if (bars != 3 || su >= UU || (!SCALE && si >= M)) { add_error("foreign_message", "%.80s", p); return; }
    samples_add(&lat, (float)((t - g_origin) - st));
    received++;
    t_last_recv = t;
    if (SCALE) {
        if (su == u->u) add_error("self_echo", "pad%d user%d", u->pad, u->u);
        if (sending == 2) maybe_done();
        return;
    }
    uint32_t code = (uint32_t)(su * M + si);
    if (u->nrecv < u->caprecv) u->recv[u->nrecv++] = code;
    user *sender = &U[u->pad * UU + su];
    if (su == u->u) return;                                 /* counted as self_echo at the end */
    if (f->len[1] != 32 || memcmp(f->p[1], sender->id, 32) != 0) add_error("wrong_sender", "pad%d user%d from %ld", u->pad, u->u, su);
    if (sending == 2) maybe_done();
}

static void start_sending(void)
{
    H.ack = on_ack; H.error = on_error; H.closed = on_closed; H.chan_msg = on_msg; H.joined = NULL;
    setup_ms = now_ms() - t_setup0;
    if (g_server_pid) rss_setup = tree_rss_bytes(g_server_pid, &rss_procs);
    t0 = now_ms();
    scpu0 = g_server_pid ? tree_cpu_s(g_server_pid) : -1;
    ccpu0 = self_cpu_s();
    sending = 1;
    for (int i = 0; i < NU; i++) {
        user *u = &U[i];
        u->first_seq = u->c.seq;
        if (u->dead || u->joined != 2) { u->stopped = 1; if (!SCALE) user_finished(u); continue; }
        if (!SCALE) for (int w = 0; w < WIN && u->sent < M; w++) send_one(u);
    }
}

static int member_wait;
static void check_members(uv_timer_t *t)
{
    int incomplete = 0;
    for (int i = 0; i < NU; i++) if (U[i].joined == 2 && U[i].members_seen < UU - 1) incomplete++;
    if (incomplete && member_wait++ < 1) return;    /* JOIN notices in flight: one 200 ms grace, as bench.js */
    uv_timer_stop(&tick);
    for (int i = 0; i < NU; i++)
        if (U[i].joined == 2 && U[i].members_seen < UU - 1) add_error("userlist_incomplete", "pad%d user%d saw %d of %d", U[i].pad, U[i].u, U[i].members_seen, UU - 1);
    start_sending();
}

static void drain_tick(uv_timer_t *t)
{
    if (sending != 2) return;
    if (now_ms() > t_acked + DRAIN) { uv_timer_stop(&tick); SCALE ? finish_scale() : finish_broadcast(); }
}

static void all_joined(void)
{
    member_wait = 0;
    uv_timer_start(&tick, check_members, 0, 200);
}

static void common_setup(void)
{
    size_t cap = (size_t)NU;
    U = calloc(cap, sizeof *U);
    pads = calloc((size_t)P, sizeof *pads);
    if (!U || !pads) { fprintf(stderr, "cpsload: out of memory\n"); exit(1); }
    for (int p = 0; p < P; p++) random_hex(pads[p], 32);
    for (int i = 0; i < NU; i++) { U[i].idx = i; U[i].pad = i / UU; U[i].u = i % UU; U[i].padid = pads[i / UU]; }
    make_fill(SIZE);
    uv_timer_init(L, &tick);
    t_setup0 = now_ms();
}

static void lat_json(char *out, size_t cap) { samples_json(&lat, out, cap); }

void scen_broadcast(void)
{
    P = (int)opt_num("pads", 20, 1, 20000);
    UU = (int)opt_num("users", 5, 2, 1000);
    M = (int)opt_num("messages", 200, 1, 100000);
    SIZE = (int)opt_num("size", 128, 16, 1000000);
    DRAIN = (int)opt_num("drain-ms", 10000, 0, 120000);
    WIN = (int)opt_num("window", 1, 1, 1000);
    if ((double)P * UU * M * (UU - 1) > 50e6) { fprintf(stderr, "cpsload: error: broadcast: P*U*M*(U-1) above 50M receipts\n"); exit(2); }
    res_param("\"pads\":%d,\"users\":%d,\"messages\":%d,\"size\":%d,\"window\":%d", P, UU, M, SIZE, WIN);
    NU = P * UU;
    expected = (long long)P * UU * M * (UU - 1);
    common_setup();
    for (int i = 0; i < NU; i++) {
        U[i].caprecv = (uint32_t)((UU - 1) * M + 16);
        U[i].recv = malloc(U[i].caprecv * sizeof *U[i].recv);
        if (!U[i].recv) { fprintf(stderr, "cpsload: out of memory\n"); exit(1); }
    }
    setup_pool(0, NU, all_joined);
}


static void finish_broadcast(void)
{
    double scpu1 = g_server_pid ? tree_cpu_s(g_server_pid) : -1;
    double ccpu1 = self_cpu_s();
    double elapsed = (received ? t_last_recv : now_ms()) - t0;
    double send_ms = t_acked - t0;
    /* ---- correctness, as bench.js */
    long long missing = 0, dup = 0, ooo = 0, self_echo = 0, mismatch = 0;
    int32_t *last = malloc((size_t)UU * sizeof *last);
    uint8_t *seen = malloc((size_t)UU * M);
    uint32_t *fa = malloc(((size_t)(UU - 1) * M + 16) * sizeof *fa), *fb = malloc(((size_t)(UU - 1) * M + 16) * sizeof *fb);
    for (int p = 0; p < P && last && seen && fa && fb; p++) {
        for (int k = 0; k < UU; k++) {
            user *r = &U[p * UU + k];
            for (int s = 0; s < UU; s++) last[s] = -1;
            memset(seen, 0, (size_t)UU * M);
            for (uint32_t j = 0; j < r->nrecv; j++) {
                uint32_t code = r->recv[j]; int su = (int)(code / (uint32_t)M), si = (int)(code % (uint32_t)M);
                if (su == r->u) { self_echo++; continue; }
                if (seen[code]) { dup++; continue; }
                seen[code] = 1;
                if (si != last[su] + 1) ooo++;
                last[su] = si;
            }
            for (int su = 0; su < UU; su++) if (su != r->u) for (int si = 0; si < M; si++) if (!seen[su * M + si]) missing++;
        }
        for (int a = 0; a < UU; a++) for (int b = a + 1; b < UU; b++) {
            user *ra = &U[p * UU + a], *rb = &U[p * UU + b];
            uint32_t na = 0, nb = 0;
            for (uint32_t j = 0; j < ra->nrecv; j++) { int s = (int)(ra->recv[j] / (uint32_t)M); if (s != a && s != b) fa[na++] = ra->recv[j]; }
            for (uint32_t j = 0; j < rb->nrecv; j++) { int s = (int)(rb->recv[j] / (uint32_t)M); if (s != a && s != b) fb[nb++] = rb->recv[j]; }
            if (na != nb || memcmp(fa, fb, na * sizeof *fa) != 0) mismatch++;
        }
    }
    free(last); free(seen); free(fa); free(fb);
    if (missing) add_error("lost_messages", "%lld of %lld receipts missing after %d ms drain", missing, expected, DRAIN);
    if (dup) add_error("duplicate_messages", "%lld duplicate receipts", dup);
    if (ooo) add_error("out_of_order", "%lld receipts out of per-sender order", ooo);
    if (self_echo) add_error("self_echo", "%lld messages echoed back to their sender", self_echo);
    if (mismatch) add_error("order_mismatch", "%lld member pairs saw a different order", mismatch);
    long long acked = 0; for (int i = 0; i < NU; i++) acked += U[i].acked;
    char lj[256]; lat_json(lj, sizeof lj);
    double scpu = (scpu0 >= 0 && scpu1 >= 0) ? scpu1 - scpu0 : -1, ccpu = ccpu1 - ccpu0;
    res_metric("\"setup_ms\":%.1f,\"messages_sent\":%lld,\"receipts\":%lld,\"receipts_expected\":%lld", setup_ms, acked, received, expected);
    res_metric("\"elapsed_ms\":%.1f,\"send_phase_ms\":%.1f,\"delivered_per_sec\":%.0f,\"sent_per_sec\":%.0f", elapsed, send_ms,
               received / (elapsed / 1000), acked / (send_ms / 1000));
    res_metric("\"latency_ms\":%s", lj);
    res_metric("\"lost\":%lld,\"duplicates\":%lld,\"out_of_order\":%lld,\"order_mismatch_pairs\":%lld,\"send_errors\":%d", missing, dup, ooo, mismatch, send_errors);
    if (scpu >= 0) res_metric("\"server_cpu_send_s\":%.2f,\"server_us_per_delivery\":%.2f", scpu, received ? scpu * 1e6 / received : 0);
    else res_metric("\"server_cpu_send_s\":null,\"server_us_per_delivery\":null");
    res_metric("\"client_cpu_send_s\":%.2f,\"client_us_per_delivery\":%.2f", ccpu, received ? ccpu * 1e6 / received : 0);
    res_human("setup (connect+join %d users): %.0f ms", NU, setup_ms);
    res_human("messages sent/ACKed: %lld in %.0f ms (%.0f/s)", acked, send_ms, acked / (send_ms / 1000));
    res_human("receipts: %lld/%lld in %.0f ms => %.0f delivered msgs/s", received, expected, elapsed, received / (elapsed / 1000));
    res_human("latency send->receive ms: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f", samples_pct(&lat, 50), samples_pct(&lat, 90), samples_pct(&lat, 99), lat.n ? lat.v[lat.n - 1] : -1.0);
    res_human("lost %lld, duplicates %lld, out-of-order %lld, order-mismatch pairs %lld", missing, dup, ooo, mismatch);
    if (scpu >= 0) res_human("send phase cpu: server %.2f s = %.2f us/delivery; cpsload %.2f s = %.2f us/delivery", scpu, received ? scpu * 1e6 / received : 0, ccpu, received ? ccpu * 1e6 / received : 0);
    else res_human("send phase cpu: cpsload %.2f s = %.2f us/delivery", ccpu, received ? ccpu * 1e6 / received : 0);
    samples_free(&lat); free(pads); free(fill);
    finish();
}

/* ---------------------------------------------------------------- scale */
static long long slot;            /* next send slot: user slot % NU at t0 + slot * I / NU */
static double t_end;

static void scale_tick(uv_timer_t *t)
{
    double now = now_ms();
    if (sending == 1) {
        for (;;) {
            double ts = t0 + (double)slot * INTERVAL / NU;
            if (ts > now || ts >= t_end) break;
            user *u = &U[slot % NU];
            slot++;
            if (u->dead || u->joined != 2) continue;
            if (u->inflight) { skipped++; continue; }     /* previous not ACKed yet: a client waits */
            send_one(u);
        }
        if (now >= t_end) {
            sending = 2; t_acked = now;
            expected = sent_total * (UU - 1);
            maybe_done();
        }
    } else if (sending == 2) {
        if (now > t_acked + DRAIN) { uv_timer_stop(&tick); finish_scale(); }
    }
}

static void scale_members(uv_timer_t *t)
{
    int incomplete = 0;
    for (int i = 0; i < NU; i++) if (U[i].joined == 2 && U[i].members_seen < UU - 1) incomplete++;
    if (incomplete && member_wait++ < 10) return;
    for (int i = 0; i < NU; i++)
        if (U[i].joined == 2 && U[i].members_seen < UU - 1) add_error("userlist_incomplete", "pad%d user%d saw %d of %d", U[i].pad, U[i].u, U[i].members_seen, UU - 1);
    start_sending();
    t_end = t0 + DURATION * 1000;
    expected = (long long)1 << 62;   /* known once sending stops */
    uv_timer_start(&tick, scale_tick, 5, 5);
}

static void scale_joined(void) { member_wait = 0; uv_timer_start(&tick, scale_members, 0, 200); }

void scen_scale(void)
{
    SCALE = 1;
    int C = (int)opt_num("conns", 10000, 2, 100000);
    P = (int)opt_num("pads", 1000, 1, 50000);
    UU = C / P;
    if (UU < 2) { fprintf(stderr, "cpsload: error: scale: --conns must be at least 2 x --pads\n"); exit(2); }
    INTERVAL = opt_num("interval-ms", 2000, 10, 600000);
    DURATION = opt_num("duration", 60, 1, 3600);
    SIZE = (int)opt_num("size", 128, 24, 100000);
    DRAIN = (int)opt_num("drain-ms", 10000, 0, 120000);
    M = 1 << 30;
    NU = P * UU;
    res_param("\"conns\":%d,\"pads\":%d,\"users_per_pad\":%d,\"interval_ms\":%.0f,\"duration_s\":%.0f,\"size\":%d", NU, P, UU, INTERVAL, DURATION, SIZE);
    common_setup();
    setup_pool(0, NU, scale_joined);
}

static void finish_scale(void)
{
    double scpu1 = g_server_pid ? tree_cpu_s(g_server_pid) : -1;
    double ccpu1 = self_cpu_s();
    long long rss_end = g_server_pid ? tree_rss_bytes(g_server_pid, NULL) : -1;
    double elapsed = (received ? t_last_recv : now_ms()) - t0;
    long long acked = 0; for (int i = 0; i < NU; i++) acked += U[i].acked;
    long long lost = expected > received ? expected - received : 0;
    if (lost) add_error("lost_messages", "%lld of %lld receipts missing after %d ms drain", lost, expected, DRAIN);
    if (skipped) add_note("%lld send slots skipped because the previous message was not ACKed yet", skipped);
    char lj[256]; lat_json(lj, sizeof lj);
    double scpu = (scpu0 >= 0 && scpu1 >= 0) ? scpu1 - scpu0 : -1, ccpu = ccpu1 - ccpu0;
    int joined = 0; for (int i = 0; i < NU; i++) joined += U[i].joined == 2;
    res_metric("\"setup_ms\":%.1f,\"connected_joined\":%d,\"messages_sent\":%lld,\"messages_acked\":%lld,\"skipped_slots\":%lld", setup_ms, joined, sent_total, acked, skipped);
    res_metric("\"receipts\":%lld,\"receipts_expected\":%lld,\"elapsed_ms\":%.1f,\"offered_per_sec\":%.0f,\"delivered_per_sec\":%.0f",
               received, expected, elapsed, sent_total / DURATION, received / (elapsed / 1000));
    res_metric("\"latency_ms\":%s,\"lost\":%lld,\"send_errors\":%d", lj, lost, send_errors);
    if (scpu >= 0) res_metric("\"server_cpu_send_s\":%.2f,\"server_cpu_pct\":%.1f,\"server_us_per_delivery\":%.2f,\"server_rss_after_setup_bytes\":%lld,\"server_rss_end_bytes\":%lld",
                              scpu, 100 * scpu / (elapsed / 1000), received ? scpu * 1e6 / received : 0, rss_setup, rss_end);
    res_metric("\"client_cpu_send_s\":%.2f", ccpu);
    res_human("setup (connect+join %d users on %d pads): %.0f ms, %d joined", NU, P, setup_ms, joined);
    res_human("sent %lld (%.0f/s offered, %lld slots skipped), receipts %lld/%lld in %.0f ms => %.0f delivered msgs/s", sent_total, sent_total / DURATION, skipped, received, expected, elapsed, received / (elapsed / 1000));
    res_human("latency send->receive ms: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f", samples_pct(&lat, 50), samples_pct(&lat, 90), samples_pct(&lat, 99), lat.n ? lat.v[lat.n - 1] : -1.0);
    if (scpu >= 0) res_human("server: %.2f s CPU in the send phase (%.1f%% of one core), %.2f us/delivery, RSS %.1f MiB after setup", scpu, 100 * scpu / (elapsed / 1000), received ? scpu * 1e6 / received : 0, rss_setup / 1048576.0);
    res_human("cpsload: %.2f s CPU in the send phase", ccpu);
    samples_free(&lat); free(pads); free(fill);
    finish();
}
