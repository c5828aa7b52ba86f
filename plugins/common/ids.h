/*
** ids.h - identifiers of the CryptPad protocol shared by the role plugins:
** the history keeper's id, channel id rules, user ids.
*/
#ifndef CPS_IDS_H
#define CPS_IDS_H
#include <stdbool.h>
#include <stddef.h>

/* The history keeper pseudo-member: 16 characters, as scalable-server. */
#define CPS_HK_ID "0123456789abcdef"

/* Lowercase hex of exactly len characters. */
bool ids_is_hex(const char *s, size_t len);
/* ^[a-f0-9]{32,34}$ (netflux.md §3). */
bool ids_valid_channel(const char *s);
/* 32 lowercase hex characters from the system's CSPRNG; out has 33 bytes. */
void ids_random_user(char out[33]);

#endif
