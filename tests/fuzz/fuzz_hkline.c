/*
** fuzz_hkline.c - libFuzzer target: any bytes as a stored log (lines of a
** channel) must scan and index without a crash or out-of-bounds read.
*/
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "hkindex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hk_line l;
    hk_scan_line((const char *)data, size, &l);
    char id[64];
    hk_checkpoint_prefix((const char *)data, size, id, sizeof id);
    hk_index x;
    hk_index_init(&x);
    hk_index_feed(&x, (const char *)data, size, 0);
    uint64_t off;
    if (size >= HK_HASH_LEN) {
        char h[HK_HASH_LEN + 1];
        memcpy(h, data, HK_HASH_LEN);
        h[HK_HASH_LEN] = 0;
        hk_index_find(&x, h, &off);
    }
    hk_index_start(&x);
    hk_index_free(&x);
    return 0;
}
