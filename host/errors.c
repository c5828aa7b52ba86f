/*
** errors.c - the wire names of error codes (api/cps_errors.h): the static
** table both ways, and the names met at run time that are in no table,
** each given a code of its own so it survives a round trip unchanged.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "host.h"

#define DYNAMIC_MAX 1024   /* bounded: names come from plugins and peers */

typedef struct { int code; const char *name; } err_name;

#define ROW_(name, code) { code, #name },
static const err_name table[] = {
    CPS_HOST_ERRORS(ROW_)
    CPS_PROTOCOL_ERRORS(ROW_)
};
#undef ROW_

static char *dynamic[DYNAMIC_MAX];   /* code CPS_ERR_DYNAMIC_BASE - i */
static int ndynamic;

const char *cps_errname(int code)
{
    if (code == CPS_OK) return "OK";
    if (code == CPS_ASYNC) return "ASYNC";
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (table[i].code == code) return table[i].name;
    int d = CPS_ERR_DYNAMIC_BASE - code;
    if (d >= 0 && d < ndynamic) return dynamic[d];
    /* A code in no table: name it by its number, which errcode reads
    ** back.  A small ring per thread keeps the string valid long enough to
    ** be copied into a reply. */
    static _Thread_local char ring[8][24];
    static _Thread_local unsigned next;
    char *buf = ring[next++ % 8];
    snprintf(buf, sizeof ring[0], "E%d", code);
    return buf;
}

/* "E-777" -> -777; 0 if `name` is not of that form. */
static int numeric(const char *name)
{
    if (name[0] != 'E' || name[1] != '-' || !name[2]) return 0;
    char *end;
    long v = strtol(name + 1, &end, 10);
    return *end || v >= 0 || v < -2147483647L ? 0 : (int)v;
}

int cps_errcode(const char *name)
{
    if (!name || !*name) return CPS_EUNKNOWN;
    if (!strcmp(name, "OK")) return CPS_OK;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (!strcmp(table[i].name, name)) return table[i].code;
    int n = numeric(name);
    if (n) return n;
    for (int i = 0; i < ndynamic; i++)
        if (!strcmp(dynamic[i], name)) return CPS_ERR_DYNAMIC_BASE - i;
    if (ndynamic == DYNAMIC_MAX || strlen(name) > 64) {
        static unsigned warned;   /* a flood of new names logs a few lines only */
        if (warned++ < 8)
            cps_log("errors", CPS_LOG_WARN, "error name '%.64s' not recorded (table full or too long); "
                    "it becomes EUNKNOWN", name);
        return CPS_EUNKNOWN;
    }
    char *copy = strdup(name);
    if (!copy) return CPS_EUNKNOWN;
    dynamic[ndynamic] = copy;
    return CPS_ERR_DYNAMIC_BASE - ndynamic++;
}

void cps_errors_reset(void)
{
    for (int i = 0; i < ndynamic; i++) free(dynamic[i]);
    ndynamic = 0;
}
