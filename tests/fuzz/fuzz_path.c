/*
** fuzz_path.c - libFuzzer target: any request path is cleaned for the
** static tree or refused, and what is kept can never climb out of it.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "web.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *raw = malloc(size + 1);
    if (!raw) return 0;
    memcpy(raw, data, size);
    raw[size] = 0;
    char *p = web_clean_path(raw);
    if (p) {
        /* absolute, no empty, "." or ".." segment */
        if (p[0] != '/' || strstr(p, "//") || strstr(p, "/../") || strstr(p, "/./")) abort();
        size_t n = strlen(p);
        if ((n >= 3 && !strcmp(p + n - 3, "/..")) || (n >= 2 && !strcmp(p + n - 2, "/."))) abort();
        free(p);
    }
    free(raw);
    return 0;
}
