/* cpsload: clocks, CPU and RSS of a process tree read from /proc (as bench.js
 * does: the server may be a cluster of processes under one parent), and
 * latency samples with the same percentile rule as bench.js. */
#include "cpsload.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

double now_ms(void) { return (double)uv_hrtime() / 1e6; }

double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* pids of `root` and all its descendants; returns count (<= cap) */
static int tree_pids(int root, int *out, int cap)
{
    enum { MAXP = 65536 };
    static int pid[MAXP], ppid[MAXP];
    int n = 0;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < MAXP) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t r = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[r] = 0;
        char *rp = strrchr(buf, ')');
        if (!rp) continue;
        int pp = 0; char st;
        if (sscanf(rp + 2, "%c %d", &st, &pp) != 2) continue;
        pid[n] = atoi(de->d_name); ppid[n] = pp; n++;
    }
    closedir(d);
    int k = 0;
    out[k++] = root;
    for (int i = 0; i < k && k < cap; i++)
        for (int j = 0; j < n && k < cap; j++)
            if (ppid[j] == out[i]) out[k++] = pid[j];
    return k;
}

static int read_stat(int pid, unsigned long long *ticks)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t r = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[r] = 0;
    char *rp = strrchr(buf, ')');
    if (!rp) return -1;
    /* after ") ": state(3) ppid ... utime is field 14, stime 15 */
    unsigned long long ut = 0, stt = 0;
    char *p = rp + 2; int field = 3;
    while (*p && field < 14) { if (*p == ' ') field++; p++; }
    if (sscanf(p, "%llu %llu", &ut, &stt) != 2) return -1;
    *ticks = ut + stt;
    return 0;
}

double tree_cpu_s(int root)
{
    int pids[4096];
    unsigned long long t, sum = 0;
    if (read_stat(root, &t) != 0) return -1;
    int n = tree_pids(root, pids, 4096);
    for (int i = 0; i < n; i++) if (read_stat(pids[i], &t) == 0) sum += t;
    return (double)sum / (double)sysconf(_SC_CLK_TCK);
}

long long tree_rss_bytes(int root, int *procs)
{
    int pids[4096];
    int n = tree_pids(root, pids, 4096), alive = 0;
    long long kb = 0;
    for (int i = 0; i < n; i++) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        alive++;
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "VmRSS:", 6) == 0) { kb += atoll(line + 6); break; }
        fclose(f);
    }
    if (procs) *procs = alive;
    return alive ? kb * 1024 : -1;
}

void samples_add(samples *s, float x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        float *v = realloc(s->v, cap * sizeof *v);
        if (!v) return;               /* a lost sample, not a crash */
        s->v = v; s->cap = cap;
    }
    s->v[s->n++] = x;
}

static int fcmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

void samples_sort(samples *s) { if (s->n) qsort(s->v, s->n, sizeof *s->v, fcmp); }

/* bench.js: index ceil(p/100 * n) - 1, clamped */
double samples_pct(samples *s, double p)
{
    if (!s->n) return -1;
    long i = (long)((p / 100.0) * (double)s->n + 0.999999999) - 1;
    if (i < 0) i = 0;
    if (i >= (long)s->n) i = (long)s->n - 1;
    return s->v[i];
}

void samples_json(samples *s, char *out, size_t cap)
{
    if (!s->n) { snprintf(out, cap, "{\"n\":0,\"p50\":null,\"p90\":null,\"p99\":null,\"max\":null,\"mean\":null}"); return; }
    samples_sort(s);
    double sum = 0;
    for (size_t i = 0; i < s->n; i++) sum += s->v[i];
    snprintf(out, cap, "{\"n\":%zu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f,\"mean\":%.3f}",
             s->n, samples_pct(s, 50), samples_pct(s, 90), samples_pct(s, 99), s->v[s->n - 1], sum / (double)s->n);
}

void samples_free(samples *s) { free(s->v); s->v = NULL; s->n = s->cap = 0; }
