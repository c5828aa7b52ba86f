/*
** conf.h - reading a plugin's configuration section: a positive number
** with a default, the one shape every plugin's limits take.
*/
#ifndef CPS_CONF_H
#define CPS_CONF_H
#include <stdint.h>
#include <jansson.h>

/* section.name if it is a number > 0, else def. */
uint64_t conf_positive(json_t *section, const char *name, uint64_t def);

#endif
