/*
** cps_errors.h - the one error vocabulary of cpsd (included by cps.h).
**
** In C an error is always a negative int.  Each code has exactly one wire
** name, the string that travels between nodes and to clients; the table
** below is the only place where the two are paired.  api->errname(code)
** gives the name and api->errcode(name) the code, so any error survives a
** trip through another node or a Lua script unchanged:
**
**   - codes in this table map to and from their names;
**   - a name that is not in the table (a plugin's own error, or one coming
**     from a newer node) is given a code of its own, below
**     CPS_ERR_DYNAMIC_BASE, the first time it is seen; the same name always
**     gets the same code in one process;
**   - a negative code that is in no table is named "E<code>" (e.g. "E-777")
**     and errcode("E-777") gives -777 back.
**
** The host's own codes come first.  The protocol codes after them are the
** names CryptPad clients expect (docs/protocol/rpc.md, docs/protocol/history.md, docs/protocol/http.md);
** the host gives them no meaning, it only names them once for every plugin.
** Codes are part of the ABI: a code keeps its number forever; new codes are
** appended (and bump the ABI minor).
*/
#ifndef CPS_ERRORS_H
#define CPS_ERRORS_H

/* Codes the host itself returns.  X(NAME, code): C name CPS_NAME, wire name
** "NAME". */
#define CPS_HOST_ERRORS(X) \
    X(EINVAL,        -1)  /* bad argument */                                   \
    X(ENOENT,        -2)  /* no such node, command, session, object */         \
    X(EEXIST,        -3)  /* duplicate registration */                         \
    X(ENOMEM,        -4)                                                       \
    X(EBUSY,         -5)  /* a bounded queue is full */                        \
    X(ETIMEDOUT,     -6)  /* a query or handler ran out of time */             \
    X(ECANCELED,     -7)  /* shutting down, or the plugin is being unloaded */ \
    X(EVERSION,      -8)  /* ABI mismatch */                                   \
    X(EINTERNAL,     -9)  /* a handler failed (Lua error, C bug) */            \
    X(EIO,           -10) /* storage or network error */                       \
    X(ECLOSED,       -11) /* the session or link is gone */                    \
    X(EUNAVAILABLE,  -12) /* the node that would answer is unreachable */      \
    X(EFORBIDDEN,    -13) /* the caller may not do this */                     \
    X(EUNKNOWN,      -14) /* an error without a better name */

/* Protocol names used by the bundled plugins.  X(NAME, code): C name
** CPS_ERR_NAME, wire name "NAME". */
#define CPS_PROTOCOL_ERRORS(X) \
    X(ERROR,                           -100) \
    X(EEXISTS,                         -101) \
    X(EDELETED,                        -102) \
    X(EEXPIRED,                        -103) \
    X(EXPIRED,                         -104) \
    X(ERESTRICTED,                     -105) \
    X(ESELFDESTRUCT,                   -106) \
    X(ENOTMEMBER,                      -107) \
    X(EINVAL_ID,                       -108) \
    X(E_INVALID,                       -109) \
    X(E_INTERNAL,                      -110) \
    X(E_UNAVAILABLE,                   -111) \
    X(E_RESTRICTED,                    -112) \
    X(E_OVER_LIMIT,                    -113) \
    X(E_NO_OWNERS,                     -114) \
    X(E_NO_KEY,                        -115) \
    X(E_UNLINK,                        -116) \
    X(E_BADKEY,                        -117) \
    X(E_BAD_MESSAGE,                   -118) \
    X(E_COULD_NOT_VERIFY,              -119) \
    X(E_INVALID_BLOCK,                 -120) \
    X(E_INVALID_KEY,                   -121) \
    X(E_INVALID_SIGNATURE,             -122) \
    X(E_INVALID_SIZE,                  -123) \
    X(E_NO_RECOVERY_KEY,               -124) \
    X(E_WRONG_RECOVERY_KEY,            -125) \
    X(INVALID_RPC_CALL,                -126) \
    X(INVALID_ANON_RPC_COMMAND,        -127) \
    X(INVALID_ARGS,                    -128) \
    X(INVALID_ARGUMENTS,               -129) \
    X(INVALID_ARG_FORMAT,              -130) \
    X(INSUFFICIENT_ARGS,               -131) \
    X(INSUFFICIENT_PERMISSIONS,        -132) \
    X(INVALID_CHAN,                    -133) \
    X(INVALID_CHAN_LENGTH,             -134) \
    X(INVALID_COMMAND,                 -135) \
    X(INVALID_CONFIGURATION,           -136) \
    X(INVALID_CONTACT,                 -137) \
    X(INVALID_COOKIE,                  -138) \
    X(INVALID_FILESIZE,                -139) \
    X(INVALID_ID,                      -140) \
    X(INVALID_JSON,                    -141) \
    X(INVALID_KEY,                     -142) \
    X(INVALID_LIST,                    -143) \
    X(INVALID_MESSAGE,                 -144) \
    X(INVALID_MESSAGE_OR_PUBLIC_KEY,   -145) \
    X(INVALID_OTP,                     -146) \
    X(INVALID_PIN_LIST,                -147) \
    X(INVALID_SAFEKEY,                 -148) \
    X(INVALID_SIGNATURE_OR_PUBLIC_KEY, -149) \
    X(INVALID_ANCESTOR,                -150) \
    X(MISSING_ANCESTOR,                -151) \
    X(HASH_NOT_FOUND,                  -152) \
    X(HK_INVALID_KEY,                  -153) \
    X(FAILED_VALIDATION,               -154) \
    X(NO_COOKIE,                       -155) \
    X(NO_TXID,                         -156) \
    X(NO_BLOCK,                        -157) \
    X(NO_MFA_CONFIGURED,               -158) \
    X(MFA_ERROR,                       -159) \
    X(NOT_ALLOWED,                     -160) \
    X(NOT_IN_CHAN,                     -161) \
    X(NOT_IMPLEMENTED,                 -162) \
    X(NOT_READY,                       -163) \
    X(NOT_ENOUGH_SPACE,                -164) \
    X(TOO_LARGE,                       -165) \
    X(UNSUPPORTED_COMMAND,             -166) \
    X(UNSPECIFIED_COUNT,               -167) \
    X(UNEXPECTED_ERROR,                -168) \
    X(STORAGE_FAILURE,                 -169) \
    X(BLOCK_WRITE_ERROR,               -170) \
    X(METADATA_ERR,                    -171) \
    X(RENAME_ERR,                      -172) \
    X(RPC_EARGS,                       -173) \
    X(BAD_MESSAGE,                     -174) \
    X(STORAGE_LOST,                    -175) \
    X(enoent,                          -176) /* netflux: MSG to an unknown user */ \
    X(DECODE_BUFFER,                   -177) \
    X(ECLEARED,                        -178)

#define CPS_ERR_ENUM_HOST_(name, code) CPS_##name = (code),
#define CPS_ERR_ENUM_PROTO_(name, code) CPS_ERR_##name = (code),
enum {
    CPS_OK    = 0,
    CPS_ASYNC = 1,   /* handler return: "I will answer later" (not an error) */
    CPS_HOST_ERRORS(CPS_ERR_ENUM_HOST_)
    CPS_PROTOCOL_ERRORS(CPS_ERR_ENUM_PROTO_)
    /* Names met at run time that are in neither table get codes from here
    ** down (bounded: see api->errcode). */
    CPS_ERR_DYNAMIC_BASE = -10000
};
#undef CPS_ERR_ENUM_HOST_
#undef CPS_ERR_ENUM_PROTO_

#endif /* CPS_ERRORS_H */
