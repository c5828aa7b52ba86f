/*
** metrics.c - named counters and latency histograms shared host-wide, and
** GET /metrics: the Prometheus text exposition format (HELP and TYPE for
** every family), with process metrics, build info, and the cluster's nodes
** and links.  Counters and histograms live until the host exits.
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

/* ---- latency histograms (docs/operator-guide.md §7.1) ----
** One set of fixed buckets, 1 ms to 10 s, for every histogram: RPC answers,
** appends and history streams range from a cached reply to a walk of a large
** log; slower ones land in +Inf.  Fixed buckets keep histograms of the same
** kind comparable across nodes and plugins.  Counts per bucket are not
** cumulative here; the exposition adds them up, as the format wants. */
static const double hist_le[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                  0.25, 0.5, 1, 2.5, 5, 10 };
#define HIST_LE_N (sizeof hist_le / sizeof hist_le[0])

struct cps_histogram {
    char *name, *help;
    char *owner;                         /* the plugin that created it, NULL for the host */
    uint64_t bucket[HIST_LE_N + 1];      /* the last one: above every bound */
    uint64_t count;
    double sum;
    struct cps_histogram *next;
};

static struct cps_histogram *histograms;   /* singleton list, loop thread only */

/* The first creator's help text stays: the name is what is shared. */
cps_histogram *cps_metrics_histogram(const char *name, const char *help, const char *owner)
{
    if (!name || !*name) return NULL;
    cps_histogram *h = histograms, *last = NULL;
    for (; h; last = h, h = h->next)
        if (strcmp(h->name, name) == 0) return h;
    h = calloc(1, sizeof *h);
    if (!h || !(h->name = strdup(name)) || (help && *help && !(h->help = strdup(help))) ||
        (owner && !(h->owner = strdup(owner))))
        abort();
    /* appended, so families are listed in creation order */
    if (last) last->next = h; else histograms = h;
    return h;
}

void cps_metrics_observe(cps_histogram *h, double seconds)
{
    if (!h) return;
    if (!(seconds >= 0)) seconds = 0;   /* NaN or a clock step back */
    size_t i = 0;
    while (i < HIST_LE_N && seconds > hist_le[i]) i++;
    h->bucket[i]++;
    h->count++;
    h->sum += seconds;
}

void cps_metrics_each_histogram(void (*fn)(const char *name, uint64_t count, double sum, void *ud), void *ud)
{
    for (const cps_histogram *h = histograms; h; h = h->next) fn(h->name, h->count, h->sum, ud);
}

#define RPC_HIST_HELP "Time from an RPC call to its answer (timeouts included)."

void cps_metrics_observe_rpc(double seconds)
{
    cps_metrics_observe(cps_metrics_histogram("rpc_duration_seconds", RPC_HIST_HELP, NULL), seconds);
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

/* HELP text escapes '\\' and newline; a label value also '"' (the format's rules). */
static void put_escaped(buf *b, const char *s, bool label)
{
    for (; s && *s; s++) {
        if (*s == '\\') put(b, "\\\\");
        else if (*s == '\n') put(b, "\\n");
        else if (label && *s == '"') put(b, "\\\"");
        else put(b, "%c", *s);
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

/* ---- which families are listed ----
** Names come from any plugin, so two of them may give one family twice (names
** that differ only in replaced characters, a counter "x_count" beside a
** histogram "x", a plugin's "build_info").  The first one listed wins, in
** this order: the host's own families, histograms, counters. */

static const char *const host_families[] = {
    "cpsd_build_info", "cpsd_node_info", "cpsd_router_queue_depth", "cpsd_router_pending_queries",
    "cpsd_link_up", "cpsd_link_queue_bytes", "cpsd_link_messages_sent_total",
    "cpsd_link_messages_received_total", "cpsd_link_bytes_sent_total", "cpsd_link_bytes_received_total",
};
#define N_HOST_FAMILIES (sizeof host_families / sizeof host_families[0])

/* Whether families a and b share a name: a family's own name, and for a
** histogram its _bucket, _sum and _count samples. */
static bool collide(const char *a, bool a_hist, const char *b, bool b_hist)
{
    static const char *const suffix[] = { "", "_bucket", "_sum", "_count" };
    char x[320], y[320];
    for (int i = 0; i < (a_hist ? 4 : 1); i++)
        for (int j = 0; j < (b_hist ? 4 : 1); j++) {
            snprintf(x, sizeof x, "%s%s", a, suffix[i]);
            snprintf(y, sizeof y, "%s%s", b, suffix[j]);
            if (strcmp(x, y) == 0) return true;
        }
    return false;
}

static bool host_clash(const char *name, bool hist)
{
    for (size_t i = 0; i < N_HOST_FAMILIES; i++)
        if (collide(name, hist, host_families[i], false)) return true;
    return false;
}

static bool histogram_clashes(const cps_histogram *h)
{
    char name[300], other[300];
    metric_name(h->name, name, sizeof name);
    if (host_clash(name, true)) return true;
    for (const cps_histogram *o = histograms; o != h; o = o->next) {
        metric_name(o->name, other, sizeof other);
        if (collide(name, true, other, true)) return true;
    }
    return false;
}

static bool counter_clashes(const cps_counter *c)
{
    char name[300], other[300];
    metric_name(c->name, name, sizeof name);
    if (host_clash(name, false)) return true;
    for (const cps_histogram *h = histograms; h; h = h->next) {
        metric_name(h->name, other, sizeof other);
        if (collide(name, false, other, true)) return true;
    }
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
    put(b, "# HELP %s ", name);
    if (help) put(b, "%s\n", help);
    else {
        put(b, "Counter \"");
        put_escaped(b, c->name, false);
        put(b, "\" of plugin ");
        put_escaped(b, c->owner ? c->owner : "cpsd", false);
        put(b, " (api->counter).\n");
    }
    /* The ABI has one kind of counter; by the Prometheus naming convention
    ** a *_total name only grows, anything else (sessions, users) is a level. */
    put(b, "# TYPE %s %s\n", name, ends_with(c->name, "_total") ? "counter" : "gauge");
    put(b, "%s %lld\n", name, (long long)c->value);
}

/* One renderer for every histogram, the host's and the plugins'. */
static void put_histogram(buf *b, const cps_histogram *h)
{
    char n[300];
    metric_name(h->name, n, sizeof n);
    put(b, "# HELP %s ", n);
    if (h->help) put_escaped(b, h->help, false);
    else {
        put(b, "Histogram \"");
        put_escaped(b, h->name, false);
        put(b, "\" of plugin ");
        put_escaped(b, h->owner ? h->owner : "cpsd", false);
        put(b, " (api->histogram), in seconds.");
    }
    put(b, "\n# TYPE %s histogram\n", n);
    uint64_t cum = 0;
    for (size_t i = 0; i < HIST_LE_N; i++) {
        cum += h->bucket[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", n, hist_le[i], (unsigned long long)cum);
    }
    cum += h->bucket[HIST_LE_N];
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n", n, (unsigned long long)cum);
    put(b, "%s_sum %.6f\n%s_count %llu\n", n, h->sum, n, (unsigned long long)h->count);
}

/* ---- the cluster: local nodes, the router, links to other nodes ---- */

static void put_nodes(buf *b)
{
    const char *id, *role;
    bool remote, any = false;
    for (int i = 0; cps_router_node_at(i, &id, &role, &remote); i++) {
        if (remote) continue;
        if (!any) put(b, "# HELP cpsd_node_info A node this process runs (1 per node).\n"
                         "# TYPE cpsd_node_info gauge\n");
        any = true;
        put(b, "cpsd_node_info{node=\"");
        put_escaped(b, id, true);
        put(b, "\",role=\"");
        put_escaped(b, role, true);
        put(b, "\"} 1\n");
    }
    put(b, "# HELP cpsd_router_queue_depth Messages waiting in the router queue for delivery.\n"
           "# TYPE cpsd_router_queue_depth gauge\ncpsd_router_queue_depth %zu\n", cps_router_queued());
    put(b, "# HELP cpsd_router_pending_queries Inter-node queries waiting for their answer.\n"
           "# TYPE cpsd_router_pending_queries gauge\ncpsd_router_pending_queries %zu\n", cps_router_pending());
}

enum { LF_UP, LF_QUEUE, LF_MSGS_OUT, LF_MSGS_IN, LF_BYTES_OUT, LF_BYTES_IN, LF_N };

static const struct { const char *name, *type, *help; } link_families[LF_N] = {
    [LF_UP] = { "cpsd_link_up", "gauge", "Whether the link to the peer node is up (1) or not (0)." },
    [LF_QUEUE] = { "cpsd_link_queue_bytes", "gauge", "Bytes of messages waiting to be sent on the link." },
    [LF_MSGS_OUT] = { "cpsd_link_messages_sent_total", "counter", "Messages sent to the peer node." },
    [LF_MSGS_IN] = { "cpsd_link_messages_received_total", "counter", "Messages received from the peer node." },
    [LF_BYTES_OUT] = { "cpsd_link_bytes_sent_total", "counter",
                       "Bytes of link frames sent to the peer node (encrypted, handshake excluded)." },
    [LF_BYTES_IN] = { "cpsd_link_bytes_received_total", "counter",
                      "Bytes of link frames received from the peer node (encrypted, handshake excluded)." },
};

static uint64_t link_value(const cps_link_stats *s, int k)
{
    switch (k) {
    case LF_UP: return s->up ? 1 : 0;
    case LF_QUEUE: return s->queue_bytes;
    case LF_MSGS_OUT: return s->msgs_out;
    case LF_MSGS_IN: return s->msgs_in;
    case LF_BYTES_OUT: return s->bytes_out;
    default: return s->bytes_in;
    }
}

/* Listed only in a cluster: a family needs at least one sample. */
static void put_links(buf *b)
{
    cps_link_stats s;
    if (!cps_link_stats_at(0, &s)) return;
    for (int k = 0; k < LF_N; k++) {
        put(b, "# HELP %s %s\n# TYPE %s %s\n", link_families[k].name, link_families[k].help,
            link_families[k].name, link_families[k].type);
        for (int i = 0; cps_link_stats_at(i, &s); i++) {
            put(b, "%s{peer=\"", link_families[k].name);
            put_escaped(b, s.peer, true);
            put(b, "\"} %llu\n", (unsigned long long)link_value(&s, k));
        }
    }
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
    /* The host creates "sessions" when its listener starts and the RPC
    ** histogram at the first call; a process that has not yet (a unit test,
    ** a node before any RPC) still reports both families, so dashboards and
    ** alerts find them on every node. */
    cps_metrics_counter("sessions");
    cps_metrics_histogram("rpc_duration_seconds", RPC_HIST_HELP, NULL);
    put_nodes(&b);
    put_links(&b);
    for (cps_histogram *h = histograms; h; h = h->next)
        if (!histogram_clashes(h)) put_histogram(&b, h);
    for (cps_counter *c = counters; c; c = c->next)
        if (!counter_clashes(c)) put_counter(&b, c);
    put_process(&b);
    if (b.failed) { free(b.s); return NULL; }
    return b.s;
}

void cps_metrics_free(void)
{
    while (histograms) {
        cps_histogram *h = histograms;
        histograms = h->next;
        free(h->name);
        free(h->help);
        free(h->owner);
        free(h);
    }
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
