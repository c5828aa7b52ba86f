/*
** fuzz_config.c - libFuzzer target: any text as the configuration file is
** loaded (Lua without its libraries, bounded in instructions), merged over
** the default and checked, or refused with errors, without a crash or leak.
*/
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

bool cps_config_fuzz_text(const char *src, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cps_config_fuzz_text((const char *)data, size);
    return 0;
}
