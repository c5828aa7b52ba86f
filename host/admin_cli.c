/*
** admin_cli.c - `cpsd admin`: the client of the control socket (control.c).
** Finds the socket from the server's configuration, sends one command, and
** prints the answer as a table or key/value lines (or raw JSON with --json).
** Exit status: 0 ok, 1 the command failed, 2 usage, 3 no server reachable.
*/
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include "host.h"

enum { EXIT_OK = 0, EXIT_COMMAND = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

#define ANSWER_MAX (64u << 20)   /* bytes of one answer line */
#define ANSWER_TIMEOUT_S 120     /* commands time out on the server well before */

static const char usage[] =
    "usage: cpsd admin [--config FILE] [--json] [--socket PATH] COMMAND [ARGS...]\n"
    "       cpsd admin --topology FILE [--role ROLE --index N] [--json] COMMAND [ARGS...]\n"
    "Runs an admin command on the running server through its control socket\n"
    "(<data_dir>/cpsd.sock of the configuration; a topology's node, default core 0).\n"
    "`cpsd admin help` lists the commands.  Exit status: 0 ok, 1 the command\n"
    "failed, 2 usage (unknown command, bad arguments), 3 no server reachable.\n";

/* ---- rendering ---- */

typedef struct { char *p; size_t len, cap; bool oom; } sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap : 256);
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

static void pad(sbuf *b, size_t n) { while (n--) put(b, " ", 1); }

/* A cell: strings as they are, null as "-", anything else compact JSON.
** Control characters become '?' so an answer cannot drive the terminal. */
static char *cell(json_t *v)
{
    char *s;
    if (json_is_string(v)) s = strdup(json_string_value(v));
    else if (!v || json_is_null(v)) s = strdup("-");
    else s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    for (char *p = s; p && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return s ? s : strdup("?");
}

/* Columns as a terminal shows them: UTF-8 continuation bytes take none. */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++) if (((unsigned char)*s & 0xc0) != 0x80) w++;
    return w;
}

static bool all_objects(json_t *a)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) if (!json_is_object(v)) return false;
    return json_array_size(a) > 0;
}

static void render_table(sbuf *b, json_t *rows)
{
    json_t *cols = json_array();           /* keys in first-seen order */
    size_t i, j;
    json_t *row, *col;
    json_array_foreach(rows, i, row) {
        const char *k;
        json_t *v;
        json_object_foreach(row, k, v) {
            bool seen = false;
            json_array_foreach(cols, j, col) if (!strcmp(json_string_value(col), k)) seen = true;
            if (!seen) json_array_append_new(cols, json_string(k));
        }
    }
    size_t nc = json_array_size(cols), nr = json_array_size(rows);
    size_t *w = calloc(nc ? nc : 1, sizeof *w);
    char **cells = calloc((nr + 1) * (nc ? nc : 1), sizeof *cells);
    if (!w || !cells) { b->oom = true; free(w); free(cells); json_decref(cols); return; }
    json_array_foreach(cols, j, col) {
        char *h = strdup(json_string_value(col));
        for (char *p = h; p && *p; p++) if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 32);
        cells[j] = h ? h : strdup("?");
    }
    json_array_foreach(rows, i, row)
        json_array_foreach(cols, j, col)
            cells[(i + 1) * nc + j] = cell(json_object_get(row, json_string_value(col)));
    for (i = 0; i <= nr; i++)
        for (j = 0; j < nc; j++)
            if (cells[i * nc + j] && width(cells[i * nc + j]) > w[j]) w[j] = width(cells[i * nc + j]);
    for (i = 0; i <= nr; i++) {
        for (j = 0; j < nc; j++) {
            const char *c = cells[i * nc + j] ? cells[i * nc + j] : "?";
            puts_(b, c);
            if (j + 1 < nc) pad(b, w[j] - width(c) + 2);   /* the last column is not padded */
        }
        puts_(b, "\n");
    }
    for (i = 0; i < (nr + 1) * nc; i++) free(cells[i]);
    free(cells);
    free(w);
    json_decref(cols);
}

static void render_object(sbuf *b, json_t *o)
{
    size_t w = 0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) if (width(k) > w) w = width(k);
    json_object_foreach(o, k, v) {
        char *c = cell(v);
        char *kc = strdup(k);
        for (char *p = kc; p && *p; p++) if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
        puts_(b, kc ? kc : "?");
        pad(b, w - width(kc ? kc : "?") + 2);
        puts_(b, c ? c : "?");
        puts_(b, "\n");
        free(kc);
        free(c);
    }
}

char *cps_admin_render(json_t *v, bool as_json)
{
    sbuf b = { 0 };
    if (as_json) {
        char *s = json_dumps(v ? v : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
        if (s) { puts_(&b, s); puts_(&b, "\n"); }
        free(s);
    } else if (!v || json_is_null(v)) {
        puts_(&b, "ok\n");
    } else if (json_is_array(v) && all_objects(v)) {
        render_table(&b, v);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        if (!json_array_size(v)) puts_(&b, "(none)\n");
        json_array_foreach(v, i, x) { char *c = cell(x); puts_(&b, c ? c : "?"); puts_(&b, "\n"); free(c); }
    } else if (json_is_object(v)) {
        if (!json_object_size(v)) puts_(&b, "(empty)\n");
        render_object(&b, v);
    } else {
        char *c = cell(v);
        puts_(&b, c ? c : "?");
        puts_(&b, "\n");
        free(c);
    }
    if (b.oom) { free(b.p); return NULL; }
    return b.p ? b.p : strdup("");
}

/* ---- talking to the server ---- */

/* Connect to `path`; on failure say why (and what to do) and return -1. */
static int dial(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof a.sun_path) {
        fprintf(stderr, "cpsd admin: socket path too long for a unix socket: %s\n", path);
        return -1;
    }
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { fprintf(stderr, "cpsd admin: socket: %s\n", strerror(errno)); return -1; }
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        struct timeval tv = { .tv_sec = ANSWER_TIMEOUT_S };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        return fd;
    }
    int e = errno;
    close(fd);
    struct stat st;
    if (e == EACCES || e == EPERM) {
        if (stat(path, &st) == 0)
            fprintf(stderr, "cpsd admin: permission denied on %s: the control socket is owner-only "
                    "(uid %u); run cpsd admin as that user or root\n", path, (unsigned)st.st_uid);
        else
            fprintf(stderr, "cpsd admin: permission denied reaching %s: run cpsd admin as the "
                    "server's user or root\n", path);
    } else if (e == ENOENT || e == ECONNREFUSED) {
        fprintf(stderr, "cpsd admin: no server is listening on %s (%s); is cpsd running with this "
                "configuration?\n", path, strerror(e));
    } else {
        fprintf(stderr, "cpsd admin: cannot connect to %s: %s\n", path, strerror(e));
    }
    return -1;
}

static int send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One line from the server (malloc'd, without its newline), or NULL. */
static char *read_line(int fd, const char **why)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    *why = "out of memory";
    while (buf) {
        char *nl = memchr(buf, '\n', len);
        if (nl) { *nl = 0; return buf; }
        if (len + 1 >= cap) {
            if (cap >= ANSWER_MAX) { *why = "answer too long"; break; }
            char *p = realloc(buf, cap * 2);
            if (!p) break;
            buf = p;
            cap *= 2;
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) { *why = "the server closed the connection without an answer"; break; }
        if (r < 0) {
            *why = errno == EAGAIN || errno == EWOULDBLOCK ? "no answer in time" : strerror(errno);
            break;
        }
        len += (size_t)r;
    }
    free(buf);
    return NULL;
}

/* The socket path from --socket, the topology node's or the configuration's
** data_dir; an exit status if it cannot be known. */
static int find_socket(const char *sock, const char *config, const char *topology, const char *role,
                       int index, char *out, size_t n)
{
    if (sock) {
        if (snprintf(out, n, "%s", sock) >= (int)n) { fprintf(stderr, "cpsd admin: --socket: path too long\n"); return EXIT_USAGE; }
        return EXIT_OK;
    }
    char *errors = NULL;
    if (topology) {
        if (cps_topology_main(topology, role ? role : "core", index, false, config) >= 0) return EXIT_USAGE;
    } else {
        cps_cfg = cps_config_load(config, &errors);
        if (!cps_cfg) {
            fprintf(stderr, "cpsd admin: configuration errors:\n%s", errors ? errors : "(unknown)\n");
            free(errors);
            return EXIT_USAGE;
        }
    }
    int rc = cps_control_socket_path(cps_config_str("data_dir", "./data"), out, n);
    cps_config_free(cps_cfg);
    cps_cfg = NULL;
    if (rc) { fprintf(stderr, "cpsd admin: the socket path under data_dir is too long\n"); return EXIT_USAGE; }
    return EXIT_OK;
}

/* Print the answer line; the exit status it means. */
static int show(const char *cmd, const char *line, bool as_json)
{
    json_error_t je;
    json_t *m = json_loads(line, 0, &je);
    json_t *err = json_object_get(m, "error");
    if (!json_is_object(m) || (!json_object_get(m, "ok") && !json_is_string(err))) {
        fprintf(stderr, "cpsd admin: the server sent an answer this client does not understand\n");
        json_decref(m);
        return EXIT_COMMAND;
    }
    int rc = EXIT_OK;
    if (err) {
        const char *msg = json_string_value(json_object_get(m, "message"));
        fprintf(stderr, "cpsd admin: %s (%s)\n", msg ? msg : cmd, json_string_value(err));
        rc = json_is_true(json_object_get(m, "refused")) ? EXIT_UNREACHABLE
           : json_is_true(json_object_get(m, "usage")) ? EXIT_USAGE : EXIT_COMMAND;
    } else {
        char *text = cps_admin_render(json_object_get(m, "ok"), as_json);
        if (text) fputs(text, stdout);
        else { fprintf(stderr, "cpsd admin: out of memory\n"); rc = EXIT_COMMAND; }
        free(text);
        json_t *un = json_object_get(m, "unreachable"), *v;
        size_t i;
        json_array_foreach(un, i, v)
            fprintf(stderr, "cpsd admin: warning: node %s did not answer; its commands are missing\n",
                    json_string_value(v));
    }
    json_decref(m);
    return rc;
}

int cps_admin_main(int argc, char **argv)
{
    const char *config = NULL, *topology = NULL, *role = NULL, *sock = NULL;
    int index = 0, i = 2;
    bool as_json = false;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *o = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) { fputs(usage, stdout); return EXIT_OK; }
        else if (!strcmp(o, "--json")) as_json = true;
        else if (!strcmp(o, "--config") && has) config = argv[++i];
        else if (!strcmp(o, "--topology") && has) topology = argv[++i];
        else if (!strcmp(o, "--role") && has) role = argv[++i];
        else if (!strcmp(o, "--index") && has) index = atoi(argv[++i]);
        else if (!strcmp(o, "--socket") && has) sock = argv[++i];
        else if (!strcmp(o, "--")) { i++; break; }
        else { fprintf(stderr, "cpsd admin: unknown or incomplete option '%s'\n%s", o, usage); return EXIT_USAGE; }
    }
    if (i >= argc) { fprintf(stderr, "cpsd admin: no command given\n%s", usage); return EXIT_USAGE; }
    if ((role || index) && !topology) { fprintf(stderr, "cpsd admin: --role/--index need --topology FILE\n"); return EXIT_USAGE; }
    if (argc - i - 1 > CPS_CONTROL_MAX_ARGS) {
        fprintf(stderr, "cpsd admin: at most %d arguments\n", CPS_CONTROL_MAX_ARGS);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i];
    json_t *args = json_array();
    for (int k = i + 1; k < argc; k++) json_array_append_new(args, json_string(argv[k]));
    json_t *req = json_pack("{s:s, s:o}", "cmd", cmd, "args", args);
    char *line = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!line) { fprintf(stderr, "cpsd admin: the arguments must be UTF-8 text\n"); return EXIT_USAGE; }
    size_t n = strlen(line);
    if (n + 1 > CPS_CONTROL_MAX_REQUEST) {
        fprintf(stderr, "cpsd admin: the command line is too long (%zu bytes, at most %d)\n", n, CPS_CONTROL_MAX_REQUEST - 1);
        free(line);
        return EXIT_USAGE;
    }
    char path[PATH_MAX];
    int rc = find_socket(sock, config, topology, role, index, path, sizeof path);
    if (rc) { free(line); return rc; }
    int fd = dial(path);
    if (fd < 0) { free(line); return EXIT_UNREACHABLE; }
    line[n] = '\n';   /* over the NUL: sent by length */
    /* A refusal may be written and the connection closed before the request
    ** is sent: read whatever came even if sending failed. */
    int sent = send_all(fd, line, n + 1), send_errno = errno;
    const char *why = NULL;
    char *answer = read_line(fd, &why);
    if (!answer && sent) why = strerror(send_errno);
    free(line);
    close(fd);
    if (!answer) {
        fprintf(stderr, "cpsd admin: %s: %s\n", path, why);
        return EXIT_UNREACHABLE;
    }
    rc = show(cmd, answer, as_json);
    free(answer);
    return rc;
}
