/*
** log.c - one log record per line, as text (time, level, who, message) or
** as one JSON object, on stderr or in a file that SIGHUP reopens (for
** logrotate).  Plugins log through api->log, which names the plugin as `who`.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include "host.h"

static struct {
    int level;
    bool json;
    int fd;          /* 2, or the log file (kept at the same number across reopens) */
    char *path;      /* the log file, NULL for stderr */
} L = { CPS_LOG_INFO, false, 2, NULL };

static const char *level_names[] = { "error", "warn", "info", "debug" };

void cps_log_set_level(int level) { L.level = level; }

int cps_log_level_from_name(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && strcasecmp(name, level_names[i]) == 0) return i;
    return -1;
}

int cps_log_set_format(const char *name)
{
    if (!name || (strcmp(name, "text") && strcmp(name, "json"))) return -1;
    L.json = strcmp(name, "json") == 0;
    return 0;
}

static int open_file(const char *path, char *err, size_t n)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) snprintf(err, n, "cannot open log file %s: %s", path, strerror(errno));
    return fd;
}

int cps_log_open(const char *path, char *err, size_t n)
{
    int fd = open_file(path, err, n);
    if (fd < 0) return -1;
    char *p = strdup(path);
    if (!p) { close(fd); snprintf(err, n, "out of memory"); return -1; }
    cps_log_close();
    L.fd = fd;
    L.path = p;
    return 0;
}

/* dup2 puts the new file under the descriptor number writers use, in one
** step: a record written meanwhile (from any thread) goes to the old file
** or the new one, never to a closed descriptor. */
int cps_log_reopen(char *err, size_t n)
{
    if (!L.path) return 0;
    int fd = open_file(L.path, err, n);
    if (fd < 0) return -1;
    if (dup2(fd, L.fd) < 0) {
        snprintf(err, n, "cannot reopen log file %s: %s", L.path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

const char *cps_log_path(void) { return L.path; }

void cps_log_close(void)
{
    if (L.path) close(L.fd);
    free(L.path);
    L.path = NULL;
    L.fd = 2;
}

/* ---- records ---- */

/* Big enough for the worst case, every byte of a 2 KiB message and a 64-byte
** `who` escaped as \uXXXX, so a JSON record is never cut. */
typedef struct line { char s[16384]; size_t len; } line;

static void add(line *o, const char *s, size_t n)
{
    if (n > sizeof o->s - 2 - o->len) n = sizeof o->s - 2 - o->len;   /* room for "\n" */
    memcpy(o->s + o->len, s, n);
    o->len += n;
}

static void adds(line *o, const char *s) { add(o, s, strlen(s)); }

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return n;
}

/* A JSON string; bytes that are not UTF-8 become U+FFFD, so every line
** parses whatever a plugin logged. */
static void add_json_string(line *o, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    adds(o, "\"");
    while (*s) {
        char esc[8];
        if (*s == '"' || *s == '\\') { esc[0] = '\\'; esc[1] = (char)*s; add(o, esc, 2); s++; }
        else if (*s < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", *s); adds(o, esc); s++; }
        else if (*s < 0x80) { add(o, (const char *)s, 1); s++; }
        else {
            size_t n = utf8_len(s);
            if (n) { add(o, (const char *)s, n); s += n; }
            else { adds(o, "\\ufffd"); s++; }
        }
    }
    adds(o, "\"");
}

static void timestamp(char *out, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    /* Fields narrowed to what they can hold, so the length is known (a
    ** Release build's -Wformat-truncation proves it). */
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, (int)(ts.tv_nsec / 1000000) % 1000);
}

static void format_json(line *o, const char *time, const char *level, const char *who, const char *msg)
{
    adds(o, "{\"time\":\"");
    adds(o, time);
    adds(o, "\",\"level\":\"");
    adds(o, level);
    adds(o, "\",\"who\":");
    add_json_string(o, who);
    adds(o, ",\"msg\":");
    add_json_string(o, msg);
    adds(o, "}");
}

void cps_logv(const char *who, int level, const char *fmt, va_list ap)
{
    if (level > L.level) return;
    if (level < 0) level = 0;
    if (level > 3) level = 3;
    char msg[2048], time[40], name[64];
    vsnprintf(msg, sizeof msg, fmt, ap);
    snprintf(name, sizeof name, "%s", who ? who : "cpsd");
    timestamp(time, sizeof time);
    line o = { .len = 0 };
    if (L.json) {
        format_json(&o, time, level_names[level], name, msg);
    } else {
        int n = snprintf(o.s, sizeof o.s - 1, "%s %-5s [%s] %s", time, level_names[level],
                         name, msg);
        o.len = n < 0 ? 0 : (size_t)n < sizeof o.s - 1 ? (size_t)n : sizeof o.s - 2;
    }
    o.s[o.len++] = '\n';
    /* One write per record (O_APPEND for a file): lines from one process,
    ** or from the nodes of a cluster sharing a file, never interleave. */
    ssize_t w = write(L.fd, o.s, o.len);
    (void)w;
}

void cps_log(const char *who, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cps_logv(who, level, fmt, ap);
    va_end(ap);
}
