/*
** fuzz_jscan.c - libFuzzer target: the scanner that recovers the signed
** text of an RPC must never read past its input, whatever the input.
*/
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy without a terminator: reads past `size` are caught */
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    size_t n = 0;
    free(jscan_signed_text(buf, size, &n));
    jscan_value(buf, buf + size);
    free(buf);
    return 0;
}
