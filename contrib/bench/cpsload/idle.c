/* cpsload: the `idle` scenario (bench.js's): C connections that IDENT and join
 * a pad of their own, then sit idle; the server tree's RSS before, after and
 * after closing gives the memory cost of an idle connection. */
#include "cpsload.h"
#include <stdio.h>
#include <stdlib.h>

static int C, SETTLE;
static char (*pads)[33];
static long long rss0 = -1, rss1 = -1, rss2 = -1; static int procs1;
static double t0, establish_ms;
static uv_timer_t settle;

static double mib(long long b) { return b < 0 ? -1 : b / 1048576.0; }

static void after_close(uv_timer_t *t)
{
    if (g_server_pid) rss2 = tree_rss_bytes(g_server_pid, NULL);
    int joined = 0; for (int i = 0; i < NU; i++) joined += U[i].joined == 2;
    long long per = (rss0 >= 0 && rss1 >= 0 && joined) ? (rss1 - rss0) / joined : -1;
    res_metric("\"connected_joined\":%d,\"establish_ms\":%.1f,\"establish_per_sec\":%.0f", joined, establish_ms, joined / (establish_ms / 1000));
    if (g_server_pid) {
        res_metric("\"server_processes\":%d,\"rss_before_bytes\":%lld,\"rss_after_bytes\":%lld,\"rss_after_close_bytes\":%lld", procs1, rss0, rss1, rss2);
        if (per >= 0) res_metric("\"bytes_per_conn\":%lld", per); else res_metric("\"bytes_per_conn\":null");
    } else res_metric("\"server_processes\":null,\"rss_before_bytes\":null,\"rss_after_bytes\":null,\"rss_after_close_bytes\":null,\"bytes_per_conn\":null");
    res_human("established %d/%d connections (IDENT + JOIN) in %.0f ms (%.0f/s, %d in flight)", joined, C, establish_ms, joined / (establish_ms / 1000), g_concurrency);
    if (g_server_pid) {
        res_human("server tree RSS (%d processes): before %.1f MiB, after %.1f MiB, after close %.1f MiB", procs1, mib(rss0), mib(rss1), mib(rss2));
        res_human("=> %lld bytes per idle connection", per);
    } else res_human("server RSS: not measured (pass --server-pid)");
    if (joined != C) add_error("idle_incomplete", "%d/%d connections joined", joined, C);
    free(pads);
    finish();
}

static void settled(uv_timer_t *t)
{
    if (g_server_pid) rss1 = tree_rss_bytes(g_server_pid, &procs1);
    for (int i = 0; i < NU; i++) if (!U[i].dead && U[i].c.state != 3 && U[i].c.tcp.type == UV_TCP) conn_close(&U[i].c);
    uv_timer_start(&settle, after_close, (uint64_t)(SETTLE < 3000 ? SETTLE : 3000), 0);
}

static void all_joined(void)
{
    establish_ms = now_ms() - t0;
    uv_timer_start(&settle, settled, (uint64_t)SETTLE, 0);
}

void scen_idle(void)
{
    C = (int)opt_num("conns", 2000, 1, 100000);
    SETTLE = (int)opt_num("settle-ms", 3000, 0, 60000);
    res_param("\"conns\":%d", C);
    NU = C;
    U = calloc((size_t)NU, sizeof *U);
    pads = calloc((size_t)NU, sizeof *pads);
    if (!U || !pads) { fprintf(stderr, "cpsload: out of memory\n"); exit(1); }
    for (int i = 0; i < NU; i++) { random_hex(pads[i], 32); U[i].idx = i; U[i].padid = pads[i]; }
    uv_timer_init(L, &settle);
    if (g_server_pid) rss0 = tree_rss_bytes(g_server_pid, NULL);
    t0 = now_ms();
    setup_pool(0, NU, all_joined);
}
