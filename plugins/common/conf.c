/*
** conf.c - configuration lookups shared by plugins.
*/
#include "conf.h"

uint64_t conf_positive(json_t *section, const char *name, uint64_t def)
{
    json_t *v = json_object_get(section, name);
    return json_is_number(v) && json_number_value(v) > 0 ? (uint64_t)json_number_value(v) : def;
}
