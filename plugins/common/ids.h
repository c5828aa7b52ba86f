/*
** ids.h - identifiers of the CryptPad protocol shared by the role plugins:
** the history keeper's id, what kind of channel or object an id names (the
** one place that knows the lengths, docs/protocol/netflux.md §3), public keys and their
** "safe" form, user ids.
*/
#ifndef CPS_IDS_H
#define CPS_IDS_H
#include <stdbool.h>
#include <stddef.h>

/* The history keeper pseudo-member: 16 characters, as scalable-server. */
#define CPS_HK_ID "0123456789abcdef"

/* Lengths of the kinds below, for buffers (char safe[IDS_KEY_LEN + 1]). */
#define IDS_PAD_LEN 32
#define IDS_ADMIN_LEN 33
#define IDS_EPHEMERAL_LEN 34
#define IDS_BLOB_LEN 48
#define IDS_KEY_LEN 44             /* base64 of a 32-byte Ed25519 public key */
#define IDS_KEY_BYTES 32

/* The node that keeps the server's curve key pair (docs/protocol/history.md, the
** encrypted proofs of /api/broadcast): one fixed node, so every storage node
** and the web plugin agree on one pair without configuration; the other
** storage nodes ask it for the secret at load. */
#define IDS_CURVE_NODE "storage:0"

/* What an id names in the protocol (docs/protocol/netflux.md §3, docs/protocol/storage.md 2). */
enum ids_kind {
    IDS_OTHER = 0,     /* none of these */
    IDS_PAD,           /* 32 lowercase hex: a pad channel, stored, may have metadata */
    IDS_ADMIN,         /* 33 lowercase hex: the admin broadcast channel, written
                       ** through RPC by admins only, no member list */
    IDS_EPHEMERAL,     /* 34 lowercase hex: relayed, never stored */
    IDS_BLOB,          /* 48 lowercase hex: a blob (RPC and HTTP, not netflux) */
    IDS_KEY            /* 44 characters of base64 in either alphabet (+/ or
                       ** '-' for '/'): a public key, unsafe or safe form */
};

enum ids_kind ids_classify(const char *id);
/* The kind an id would have from its length alone, for ids whose
** characters another check covers (docs/protocol/storage.md 2: [A-Za-z0-9+=-]). */
enum ids_kind ids_kind_of_len(size_t n);

static inline bool ids_is_pad(const char *id) { return ids_classify(id) == IDS_PAD; }
static inline bool ids_is_admin(const char *id) { return ids_classify(id) == IDS_ADMIN; }
static inline bool ids_is_ephemeral(const char *id) { return ids_classify(id) == IDS_EPHEMERAL; }
static inline bool ids_is_blob(const char *id) { return ids_classify(id) == IDS_BLOB; }
static inline bool ids_is_key(const char *id) { return ids_classify(id) == IDS_KEY; }
/* A channel whose history is stored: a pad or the admin channel. */
static inline bool ids_is_stored_channel(const char *id)
{
    enum ids_kind k = ids_classify(id);
    return k == IDS_PAD || k == IDS_ADMIN;
}

/* Lowercase hex of exactly len characters. */
bool ids_is_hex(const char *s, size_t len);
/* ^[a-f0-9]{32,34}$ (docs/protocol/netflux.md §3): a pad, admin or ephemeral channel. */
bool ids_valid_channel(const char *s);

/* The one safe-key rule (docs/protocol/netflux.md §3): a public key (IDS_KEY) with '/'
** written '-', as file names, URLs and placement use it.  False, `safe`
** untouched, if `key` is not a key. */
bool ids_safe_key(const char *key, char safe[IDS_KEY_LEN + 1]);
/* n characters of [A-Za-z0-9+=-]: what safe keys, tokens and the ids a
** backend turns into file names are written with (docs/protocol/storage.md 2). */
bool ids_safe_chars(const char *s, size_t n);
/* A key already in safe form (no '/'). */
bool ids_is_safe_key(const char *key);
/* Any text that decodes (leniently, as Node reads base64) to 32 bytes,
** rewritten in its canonical forms: `unsafe` (standard padded base64, as
** owners lists hold it) and `safe`.  Every way of writing one key gives the
** same names. */
bool ids_key_norm(const char *key, char unsafe[IDS_KEY_LEN + 1], char safe[IDS_KEY_LEN + 1]);

/* 32 lowercase hex characters from the system's CSPRNG; out has 33 bytes. */
void ids_random_user(char out[33]);

#endif
