/*
** fuzz_netflux.c - libFuzzer target: any bytes as a client frame must be
** classified without a crash, a leak or reading out of bounds.
*/
#include <stdint.h>
#include <stddef.h>
#include "netflux.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nf_req q;
    nf_parse((const char *)data, size, NF_MAX_VALUES, &q);
    json_decref(q.root);
    return 0;
}
