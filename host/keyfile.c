/*
** keyfile.c - the cluster node key kept in a file (docs/operator-guide.md,
** "The cluster key"): 32 random bytes as one line of base64, mode 0600.
** `cpsd keygen FILE` and a topology's `key_file` create and read it here.
*/
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "host.h"

/* The key is the base64 text itself (what cluster.key holds): check that
** it decodes to exactly 32 bytes. */
static bool key_valid(const char *b64)
{
    unsigned char raw[32];
    size_t got = 0;
    bool ok = sodium_base642bin(raw, sizeof raw, b64, strlen(b64), NULL, &got, NULL,
                                sodium_base64_VARIANT_ORIGINAL) == 0 && got == sizeof raw;
    sodium_memzero(raw, sizeof raw);
    return ok;
}

bool cps_key_valid(const char *b64) { return b64 && sodium_init() >= 0 && key_valid(b64); }

int cps_keyfile_create(const char *path, char *err, size_t errlen)
{
    if (sodium_init() < 0) { snprintf(err, errlen, "libsodium failed to start"); return -1; }
    /* Written whole to a temporary file, then linked into place: a node
    ** starting meanwhile never reads a half-written key, and link() never
    ** replaces an existing key (every node of the cluster shares it). */
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= sizeof tmp) {
        snprintf(err, errlen, "%s: %s", path, strerror(ENAMETOOLONG));
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    unsigned char raw[32];
    char line[CPS_KEY_B64_MAX + 1];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(line, sizeof line - 1, raw, sizeof raw, sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(raw, sizeof raw);
    strcat(line, "\n");
    size_t len = strlen(line);
    /* fchmod: the umask may take bits off 0600, never add the ones it lacks */
    bool ok = fchmod(fd, 0600) == 0 && write(fd, line, len) == (ssize_t)len && fsync(fd) == 0;
    int saved = errno;
    sodium_memzero(line, sizeof line);
    if (close(fd) != 0 && ok) { ok = false; saved = errno; }
    if (ok && link(tmp, path) != 0) { ok = false; saved = errno; }
    unlink(tmp);
    if (!ok) {
        snprintf(err, errlen, "%s: %s%s", path, strerror(saved),
                 saved == EEXIST ? " (refusing to overwrite a key)" : "");
        return -1;
    }
    return 0;
}

int cps_keyfile_read(const char *path, char *out, size_t n, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
    char line[256] = "";
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    line[strcspn(line, " \t\r\n")] = 0;
    int rc = 0;
    if (!got || !cps_key_valid(line)) {
        snprintf(err, errlen, "%s: expected one line of base64 for 32 bytes (make one with `cpsd keygen FILE`)", path);
        rc = -1;
    } else if (strlen(line) >= n) {
        snprintf(err, errlen, "%s: key too long", path);
        rc = -1;
    } else {
        memcpy(out, line, strlen(line) + 1);
    }
    sodium_memzero(line, sizeof line);
    return rc;
}
