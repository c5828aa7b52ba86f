/*
** log.c - one-line log records on stderr: time, level, who, message.
** Plugins log through api->log, which names the plugin as `who`.
*/
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "host.h"

static int log_level = CPS_LOG_INFO;
static const char *level_names[] = { "error", "warn", "info", "debug" };

void cps_log_set_level(int level) { log_level = level; }

int cps_log_level_from_name(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && strcasecmp(name, level_names[i]) == 0) return i;
    return -1;
}

void cps_logv(const char *who, int level, const char *fmt, va_list ap)
{
    if (level > log_level) return;
    if (level < 0) level = 0;
    if (level > 3) level = 3;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    /* One fprintf per record so lines from one process never interleave. */
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] %s\n",
            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
            tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], who ? who : "cpsd", msg);
}

void cps_log(const char *who, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cps_logv(who, level, fmt, ap);
    va_end(ap);
}
