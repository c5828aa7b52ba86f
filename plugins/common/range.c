/*
** range.c - parse one Range header against a file's size.  Only plain
** digits are numbers: strtoull alone would also take a sign or blanks
** ("bytes=0--7" was read as the whole file).
*/
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "range.h"

/* Digits up to the end or `stop`; false for none, anything else, or more
** than 19 of them (no overflow). */
static int number(const char *p, char stop, unsigned long long *v, const char **end)
{
    size_t n = 0;
    unsigned long long x = 0;
    while (isdigit((unsigned char)p[n])) {
        if (n == 19) return 0;
        x = x * 10 + (unsigned)(p[n] - '0');
        n++;
    }
    if (!n || p[n] != stop) return 0;
    *v = x;
    *end = p + n;
    return 1;
}

int http_byte_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
    if (!h || strncmp(h, "bytes=", 6) != 0) return 0;
    const char *p = h + 6, *e;
    unsigned long long a, b = UINT64_MAX;
    if (*p == '-') {                           /* the last n bytes */
        if (!number(p + 1, 0, &a, &e)) return 0;
        if (a == 0 || size == 0) return -1;
        if (a > size) a = size;
        *off = size - a;
        *len = a;
        return 1;
    }
    if (!number(p, '-', &a, &e)) return 0;
    if (e[1] && (!number(e + 1, 0, &b, &e) || b < a)) return 0;
    if (a >= size) return -1;
    if (b >= size) b = size - 1;
    *off = a;
    *len = b - a + 1;
    return 1;
}
