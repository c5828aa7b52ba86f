/*
** metrics.c - named counters shared host-wide, and GET /metrics: the
** Prometheus text exposition format (HELP and TYPE for every family), with
** process metrics and build info.  Counters live until the host exits.
*/
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "host.h"

struct cps_counter {
    char *name;
    char *owner;        /* the plugin that created it, NULL for the host */
    int64_t value;
    struct cps_counter *next;
};

static struct cps_counter *counters;  /* singleton list, loop thread only */

/* ---- the RPC latency histogram (docs/operator-guide.md §7.1) ----
** Fixed buckets, 1 ms to 10 s: RPC answers range from a cached reply to a
** disk walk of a large pin log, and rpc_timeout_ms (30 s) answers the rest
** (they land in +Inf).  Counts per bucket are not cumulative here; the
** exposition adds them up, as the format wants. */
static const double rpc_le[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25, 0.5, 1, 2.5, 5, 10 };
#define RPC_LE_N (sizeof rpc_le / sizeof rpc_le[0])

static struct {
    uint64_t bucket[RPC_LE_N + 1];     /* the last one: above every bound */
    uint64_t count;
    double sum;
} rpc_hist;   /* singleton, loop thread only */

void cps_metrics_observe_rpc(double seconds)
{
    if (!(seconds >= 0)) seconds = 0;   /* NaN or a clock step back */
    size_t i = 0;
    while (i < RPC_LE_N && seconds > rpc_le[i]) i++;
    rpc_hist.bucket[i]++;
    rpc_hist.count++;
    rpc_hist.sum += seconds;
}

cps_counter *cps_metrics_counter_of(const char *name, const char *owner)
{
    for (cps_counter *c = counters; c; c = c->next)
        if (strcmp(c->name, name) == 0) return c;
    cps_counter *c = calloc(1, sizeof *c);
    if (!c || !(c->name = strdup(name)) || (owner && !(c->owner = strdup(owner)))) abort();
    c->next = counters;
    counters = c;
    return c;
}

cps_counter *cps_metrics_counter(const char *name) { return cps_metrics_counter_of(name, NULL); }

void cps_metrics_add(cps_counter *c, int64_t delta) { if (c) c->value += delta; }

/* ---- an output buffer ---- */

typedef struct buf { char *s; size_t len, cap; bool failed; } buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...)
{
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) { b->failed = true; return; }
        if ((size_t)n < b->cap - b->len) { b->len += (size_t)n; return; }
        size_t cap = b->cap * 2 + (size_t)n;
        char *s = realloc(b->s, cap);
        if (!s) { b->failed = true; return; }
        b->s = s;
        b->cap = cap;
    }
}

/* ---- the host's own counters: HELP texts ---- */

static const struct { const char *name, *help; } host_help[] = {
    { "sessions", "Open client connections (websocket sessions)." },
    { "frames_in_total", "Websocket messages received from clients." },
    { "frames_out_total", "Websocket messages sent to clients." },
    { "sessions_dropped_slow_total", "Clients dropped because their send queue was full." },
    { "http_requests_total", "HTTP requests answered." },
    { "router_messages_total", "Messages routed between nodes." },
    { "router_query_timeouts_total", "Inter-node queries that timed out." },
    { "router_queue_full_total", "Messages refused because the router queue was full." },
    { "rpc_calls_total", "RPC calls handled." },
    { "rpc_errors_total", "RPC calls answered with an error." },
    { "links_up_total", "Links to other nodes established." },
    { "links_lost_total", "Links to other nodes lost." },
    { "links_refused_total", "Link attempts refused (bad key or handshake)." },
    { "link_messages_dropped_total", "Messages dropped because a link queue was full." },
};

static const char *help_of(const cps_counter *c)
{
    if (!c->owner)
        for (size_t i = 0; i < sizeof host_help / sizeof host_help[0]; i++)
            if (strcmp(host_help[i].name, c->name) == 0) return host_help[i].help;
    return NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A counter name may come from any plugin: characters the format does not
** allow in a metric name become '_' (names are [a-zA-Z_:][a-zA-Z0-9_:]*,
** and the "cpsd_" prefix makes the first character valid). */
static void metric_name(const char *name, char *out, size_t n)
{
    snprintf(out, n, "cpsd_%s", name);
    for (char *p = out; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == ':'))
            *p = '_';
}

/* Two names that differ only in replaced characters, or a plugin's
** "build_info", would give one family twice: the first one listed wins. */
static bool clashes(const cps_counter *c)
{
    char name[300], other[300];
    metric_name(c->name, name, sizeof name);
    if (strcmp(name, "cpsd_build_info") == 0) return true;
    /* the histogram's family and its _bucket/_sum/_count samples */
    if (strncmp(name, "cpsd_rpc_duration_seconds", 25) == 0) return true;
    for (const cps_counter *o = counters; o != c; o = o->next) {
        metric_name(o->name, other, sizeof other);
        if (strcmp(name, other) == 0) return true;
    }
    return false;
}

static void put_counter(buf *b, const cps_counter *c)
{
    char name[300];
    metric_name(c->name, name, sizeof name);
    const char *help = help_of(c);
    if (help) put(b, "# HELP %s %s\n", name, help);
    else put(b, "# HELP %s Counter \"%s\" of plugin %s (api->counter).\n", name, c->name,
             c->owner ? c->owner : "cpsd");
    /* The ABI has one kind of counter; by the Prometheus naming convention
    ** a *_total name only grows, anything else (sessions, users) is a level. */
    put(b, "# TYPE %s %s\n", name, ends_with(c->name, "_total") ? "counter" : "gauge");
    put(b, "%s %lld\n", name, (long long)c->value);
}

/* The histogram family is always listed (zero counts before any call), so
** dashboards and alerts find it on every node. */
static void put_rpc_histogram(buf *b)
{
    const char *n = "cpsd_rpc_duration_seconds";
    put(b, "# HELP %s Time from an RPC call to its answer (timeouts included).\n"
           "# TYPE %s histogram\n", n, n);
    uint64_t cum = 0;
    for (size_t i = 0; i < RPC_LE_N; i++) {
        cum += rpc_hist.bucket[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", n, rpc_le[i], (unsigned long long)cum);
    }
    cum += rpc_hist.bucket[RPC_LE_N];
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n", n, (unsigned long long)cum);
    put(b, "%s_sum %.6f\n%s_count %llu\n", n, rpc_hist.sum, n, (unsigned long long)rpc_hist.count);
}

/* ---- process metrics, from getrusage and /proc/self ---- */

static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double resident_bytes(void)
{
    long pages_total = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages_total, &resident) != 2) resident = 0;
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

static double open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 0;
    long n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL; )
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return (double)(n - 1);   /* not the descriptor opendir itself holds */
}

/* Boot time (/proc/stat btime) plus the process's start in clock ticks
** since boot (field 22 of /proc/self/stat, counted after the ")" that ends
** the command name, which may itself hold spaces). */
static double start_time(void)
{
    char line[1024];
    double btime = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lf", &btime) == 1) break;
    fclose(f);
    f = fopen("/proc/self/stat", "r");
    if (!f) return 0;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *p = strrchr(line, ')');
    if (!p) return 0;
    unsigned long long ticks = 0;
    /* after ")": state is field 3, so starttime is the 20th field from here */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
               &ticks) != 1)
        return 0;
    return btime + (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

static void put_process(buf *b)
{
    put(b, "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
           "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.6f\n", cpu_seconds());
    put(b, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
           "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %.0f\n",
        resident_bytes());
    put(b, "# HELP process_open_fds Number of open file descriptors.\n"
           "# TYPE process_open_fds gauge\nprocess_open_fds %.0f\n", open_fds());
    put(b, "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
           "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n", start_time());
}

char *cps_metrics_text(void)
{
    buf b = { malloc(4096), 0, 4096, false };
    if (!b.s) return NULL;
    b.s[0] = 0;
    put(&b, "# HELP cpsd_build_info The cpsd release and plugin ABI of this process.\n"
            "# TYPE cpsd_build_info gauge\ncpsd_build_info{version=\"%s\",abi=\"%d.%d\"} 1\n",
        CPS_VERSION, CPS_ABI_MAJOR, CPS_ABI_MINOR);
    /* The host creates "sessions" when its listener starts; a process that
    ** has not (a unit test) still reports the family. */
    cps_metrics_counter("sessions");
    for (cps_counter *c = counters; c; c = c->next)
        if (!clashes(c)) put_counter(&b, c);
    put_rpc_histogram(&b);
    put_process(&b);
    if (b.failed) { free(b.s); return NULL; }
    return b.s;
}

void cps_metrics_free(void)
{
    memset(&rpc_hist, 0, sizeof rpc_hist);
    while (counters) {
        cps_counter *c = counters;
        counters = c->next;
        free(c->name);
        free(c->owner);
        free(c);
    }
}

/* A counter's value by name, 0 if there is none (for the Lua admin
** statistics; does not create it). */
int64_t cps_metrics_value(const char *name)
{
    for (cps_counter *c = counters; c; c = c->next)
        if (strcmp(c->name, name) == 0) return c->value;
    return 0;
}
