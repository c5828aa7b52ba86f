/*
** fuzz_http.c - libFuzzer target for what cpsd itself reads of an HTTP
** request (lws parses the request line and headers): the body framing
** (Content-Length, Transfer-Encoding) and a Range header against a size.
*/
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "host.h"
#include "objserve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9) return 0;
    uint64_t fsize;
    memcpy(&fsize, data, 8);
    if (data[8] & 1) fsize %= 4096;       /* small files too, where ranges clamp */
    bool te = data[8] & 2;
    char *s = malloc(size - 9 + 1);
    if (!s) return 0;
    memcpy(s, data + 9, size - 9);
    s[size - 9] = 0;
    size_t n = strlen(s);

    /* Framing: 0 exactly for 1 to 19 digits without Transfer-Encoding. */
    int st = cps_http_framing(te, s, (int)n);
    bool digits = n > 0 && n <= 19 && strspn(s, "0123456789") == n;
    if (te && st != (n ? 400 : 411)) abort();
    if (!te && n && (st == 0) != digits) abort();

    /* A satisfiable range stays inside the file. */
    uint64_t off = 0, len = 0;
    int r = objserve_range(s, fsize, &off, &len);
    if (r == 1 && (len == 0 || off >= fsize || len > fsize - off)) abort();
    if (r == 1 && strspn(s + 6, "0123456789-") != strlen(s + 6)) abort();
    free(s);
    return 0;
}
