/*
** link.c - authenticated, encrypted websocket links between the nodes of a
** cluster.  Each pair of nodes shares one link, dialled by the node whose id
** sorts after the other's.  The handshake proves knowledge of the shared
** node key in both directions (secretbox over the ids, a timestamp and an
** ephemeral key), refuses replays (a nonce cache and a 30 s window), and
** derives per-direction session keys (crypto_kx); every later frame is a
** secretbox with a counter nonce, so frames cannot be forged, replayed or
** reordered.  Queues are bounded; a lost link is redialled with back-off
** and its pending queries fail at once.
*/
#include <uv.h>
#include <libwebsockets.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include "host.h"

#define MAX_LINKS 64
#define REPLAY_SLOTS 1024
#define WINDOW_MS 30000
#define LINK_PATH "/cpsd-link"
#define CIPHER_AES "aes256gcm"   /* the batch cipher a handshake may agree on (§2.4) */
#define SCRATCH_KEEP (64 * 1024)       /* the send scratch buffer kept up to this size */
#define BATCH_MAX (256 * 1024)   /* plaintext bytes per sealed batch, unless one message is larger */

enum { L_DOWN, L_CONNECTING, L_HANDSHAKE, L_UP };

typedef struct qbuf { struct qbuf *next; size_t len; unsigned char data[]; } qbuf;

typedef struct peer_link {
    char peer[32];
    char host[64];
    int port;
    bool dialer;
    int state;
    struct lws *wsi;
    unsigned char eph_pk[32], eph_sk[32], n1[24];
    unsigned char rx[32], tx[32];
    uint64_t txn, rxn;
    bool offered;             /* dialer: our HELLO offered AES-256-GCM */
    bool aes;                 /* batches sealed with AES-256-GCM, not secretbox */
    crypto_aead_aes256gcm_state tx_st, rx_st;   /* its expanded keys */
    qbuf *head, *tail;        /* plaintext messages waiting for the peer_link */
    size_t qbytes;
    unsigned char *rxbuf;     /* fragment reassembly */
    size_t rxlen, rxcap;
    unsigned backoff_ms;
    cps_timer *redial;
    bool hello_pending;       /* dialer: HELLO not yet written */
    bool want_write;          /* a WRITEABLE callback is asked for */
    char *welcome;            /* listener: WELCOME text to write */
    uint64_t msgs_out, bytes_out, msgs_in, bytes_in;   /* for /metrics, never reset */
} peer_link;

static struct {
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    char me[32];
    unsigned char key[32];
    peer_link links[MAX_LINKS];
    int nlinks;
    struct { unsigned char n[24]; uint64_t at; } seen[REPLAY_SLOTS];
    int seen_next;
    size_t max_queue;
    bool on, stopping;
    bool aes_ok;              /* this CPU has AES-NI and CLMUL: AES-256-GCM offered */
    char *scratch;            /* the message being written (cps_link_send), reused */
    size_t scratch_cap;
    unsigned char *txbuf;     /* one batch being sealed: reused, so a batch costs no */
    size_t txcap;             /* large malloc/free (and no malloc_consolidate) */
    cps_counter *c_up, *c_down, *c_refused, *c_dropped;
    cps_turn flush;           /* writes the batches queued during the turn */
} K;   /* the links singleton */

/* ---- small helpers ---- */

static peer_link *find(const char *peer)
{
    for (int i = 0; i < K.nlinks; i++) if (!strcmp(K.links[i].peer, peer)) return &K.links[i];
    return NULL;
}

static void b64(const unsigned char *in, size_t n, char *out, size_t cap)
{
    sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_ORIGINAL);
}

static bool unb64(const char *in, unsigned char *out, size_t want)
{
    size_t got = 0;
    return in && sodium_base642bin(out, want, in, strlen(in), NULL, &got, NULL,
                                   sodium_base64_VARIANT_ORIGINAL) == 0 && got == want;
}

static bool replayed(const unsigned char n[24], uint64_t now)
{
    for (int i = 0; i < REPLAY_SLOTS; i++)
        if (K.seen[i].at && now - K.seen[i].at < 2 * WINDOW_MS && !memcmp(K.seen[i].n, n, 24)) return true;
    memcpy(K.seen[K.seen_next].n, n, 24);
    K.seen[K.seen_next].at = now;
    K.seen_next = (K.seen_next + 1) % REPLAY_SLOTS;
    return false;
}

static void queue_free(peer_link *l)
{
    while (l->head) { qbuf *b = l->head; l->head = b->next; free(b); }
    l->tail = NULL;
    l->qbytes = 0;
}

/* ---- state changes ---- */

static void dial(peer_link *l);

static void redial_fire(cps_timer *t, void *ud)
{
    (void)t;
    peer_link *l = ud;
    l->redial = NULL;
    if (!K.stopping && l->state == L_DOWN) dial(l);
}

static void went_down(peer_link *l, const char *why)
{
    bool was_up = l->state == L_UP;
    l->state = L_DOWN;
    l->wsi = NULL;
    l->want_write = false;
    l->rxlen = 0;
    free(l->welcome);
    l->welcome = NULL;
    sodium_memzero(l->tx, sizeof l->tx);
    sodium_memzero(l->rx, sizeof l->rx);
    sodium_memzero(&l->tx_st, sizeof l->tx_st);
    sodium_memzero(&l->rx_st, sizeof l->rx_st);
    l->aes = false;
    if (was_up) {
        cps_metrics_add(K.c_down, 1);
        cps_log("link", CPS_LOG_WARN, "link to %s lost (%s)", l->peer, why);
    }
    /* what waited for this link fails now, instead of at its timeout */
    cps_metrics_add(K.c_dropped, (int64_t)(l->head ? 1 : 0));
    queue_free(l);
    cps_router_peer_down(l->peer);
    if (l->dialer && !K.stopping && !l->redial) {
        l->backoff_ms = l->backoff_ms ? (l->backoff_ms * 2 > 10000 ? 10000 : l->backoff_ms * 2) : 200;
        l->redial = cps_timer_start(NULL, l->backoff_ms, 0, redial_fire, l);
    }
}

static void went_up(peer_link *l)
{
    l->state = L_UP;
    l->backoff_ms = 0;
    l->txn = l->rxn = 0;
    cps_metrics_add(K.c_up, 1);
    cps_log("link", CPS_LOG_INFO, "link to %s up (%s)", l->peer, l->aes ? CIPHER_AES : "secretbox");
    if (l->wsi) { l->want_write = true; lws_callback_on_writable(l->wsi); }
    cps_router_peer_up(l->peer);
}

static void dial(peer_link *l)
{
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = K.ctx;
    ci.vhost = K.vhost;
    ci.address = l->host;
    ci.port = l->port;
    ci.path = LINK_PATH;
    ci.host = l->host;
    ci.origin = l->host;
    ci.protocol = "cpsd-link";
    ci.pwsi = &l->wsi;
    ci.opaque_user_data = l;
    l->state = L_CONNECTING;
    crypto_kx_keypair(l->eph_pk, l->eph_sk);
    randombytes_buf(l->n1, sizeof l->n1);
    if (!lws_client_connect_via_info(&ci)) went_down(l, "connect failed");
}

/* ---- the handshake ---- */

/* The batch cipher agreed by the handshake, with its keys expanded once
** (perf of the 2x2x2 cluster: libsodium 6% of all samples with secretbox;
** AES-256-GCM on AES-NI is the cheaper of the two). */
static void set_cipher(peer_link *l, bool aes)
{
    l->aes = aes;
    if (!aes) return;
    crypto_aead_aes256gcm_beforenm(&l->tx_st, l->tx);
    crypto_aead_aes256gcm_beforenm(&l->rx_st, l->rx);
}

/* "cpsd-link|KIND|a|b|time|eph|extra" sealed with the node key. */
static char *seal(const char *kind, const char *a, const char *b, uint64_t t, const unsigned char eph[32],
                  const char *extra, unsigned char nonce[24], const char *cipher)
{
    char ephs[64], text[512], ns[64];
    b64(eph, 32, ephs, sizeof ephs);
    snprintf(text, sizeof text, "cpsd-link|%s|%s|%s|%llu|%s|%s", kind, a, b, (unsigned long long)t, ephs, extra);
    randombytes_buf(nonce, 24);
    size_t tl = strlen(text);
    unsigned char *box = malloc(tl + crypto_secretbox_MACBYTES);
    char *boxs = malloc(2 * (tl + crypto_secretbox_MACBYTES) + 8);
    if (!box || !boxs) { free(box); free(boxs); return NULL; }
    crypto_secretbox_easy(box, (const unsigned char *)text, tl, nonce, K.key);
    b64(box, tl + crypto_secretbox_MACBYTES, boxs, 2 * (tl + crypto_secretbox_MACBYTES) + 8);
    b64(nonce, 24, ns, sizeof ns);
    json_t *msg = json_pack("[s s s I s s s]", kind, a, b, (json_int_t)t, ns, ephs, boxs);
    /* An eighth member names the batch cipher: offered in HELLO (in the
    ** clear, so a node of an earlier version, which reads seven, still
    ** accepts it), chosen in WELCOME, whose sealed text says so (extra): a
    ** choice cannot be forged, and a stripped offer only means secretbox. */
    if (msg && cipher) json_array_append_new(msg, json_string(cipher));
    char *out = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    free(box);
    free(boxs);
    return out;
}

/* Opens and checks a HELLO or WELCOME; fills the sender's ephemeral key and
** nonce.  `extra` must match what the sealer bound in. */
static bool unseal(json_t *m, const char *kind, const char *from, const char *to, const char *extra,
                   unsigned char eph[32], unsigned char nonce[24])
{
    const char *k = json_string_value(json_array_get(m, 0));
    const char *a = json_string_value(json_array_get(m, 1));
    const char *b = json_string_value(json_array_get(m, 2));
    json_int_t t = json_integer_value(json_array_get(m, 3));
    const char *ns = json_string_value(json_array_get(m, 4));
    const char *ephs = json_string_value(json_array_get(m, 5));
    const char *boxs = json_string_value(json_array_get(m, 6));
    if (!k || !a || !b || !ns || !ephs || !boxs || strcmp(k, kind) || (from && strcmp(a, from)) ||
        strcmp(b, to) || !unb64(ns, nonce, 24) || !unb64(ephs, eph, 32))
        return false;
    uint64_t now = cps_now_ms();
    if ((uint64_t)t + WINDOW_MS < now || (uint64_t)t > now + 5000) return false;
    size_t bl = strlen(boxs), got = 0;
    unsigned char *box = malloc(bl), *plain = malloc(bl + 1);
    bool ok = box && plain &&
              sodium_base642bin(box, bl, boxs, bl, NULL, &got, NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
              got > crypto_secretbox_MACBYTES &&
              crypto_secretbox_open_easy(plain, box, got, nonce, K.key) == 0;
    if (ok) {
        char expect[512];
        snprintf(expect, sizeof expect, "cpsd-link|%s|%s|%s|%llu|%s|%s", kind, a, b, (unsigned long long)t, ephs, extra);
        size_t pl = got - crypto_secretbox_MACBYTES;
        ok = pl == strlen(expect) && memcmp(plain, expect, pl) == 0;
    }
    free(box);
    free(plain);
    return ok;
}

/* The claimed name of a refused HELLO is chosen by whoever connects: its
** bytes other than printable ASCII are written \xHH, so it can forge no log
** line and send no terminal escape. */
static void escape_name(const char *in, char *out, size_t n)
{
    size_t at = 0;
    for (; *in && at + 5 <= n; in++) {
        unsigned char c = (unsigned char)*in;
        if (c >= 0x20 && c < 0x7f && c != '\\') out[at++] = (char)c;
        else at += (size_t)snprintf(out + at, n - at, "\\x%02x", c);
    }
    out[at] = 0;
}

/* Refused handshakes are counted (links_refused_total) one by one, but
** logged at most once a second: anyone who reaches the link port can repeat
** them (docs/protocol/cluster.md §2.3).  The next line says how many were
** left out. */
static void log_refused(const char *from)
{
    static uint64_t last;
    static unsigned long suppressed;
    uint64_t now = cps_now_ms();
    if (last && now - last < 1000) { suppressed++; return; }
    char name[32 * 4 + 1];
    escape_name(from, name, sizeof name);
    char more[64] = "";
    if (suppressed) snprintf(more, sizeof more, "; %lu more refused since, not logged", suppressed);
    cps_log("link", CPS_LOG_WARN, "refused a link handshake%s%s (wrong key, unknown node or replay%s)",
            name[0] ? " claiming to be " : "", name, more);
    last = now;
    suppressed = 0;
}

/* Listener: a HELLO from a dialer.  Returns the link, or NULL to refuse. */
static peer_link *accept_hello(const char *text, size_t len)
{
    json_t *m = json_loadb(text, len, 0, NULL);
    char from[32] = "";
    snprintf(from, sizeof from, "%s", json_string_value(json_array_get(m, 1)) ?: "");
    peer_link *l = from[0] ? find(from) : NULL;
    unsigned char eph[32], n1[24];
    bool ok = l && !l->dialer && unseal(m, "HELLO", from, K.me, "", eph, n1) && !replayed(n1, cps_now_ms());
    const char *offer = json_string_value(json_array_get(m, 7));
    bool aes = ok && K.aes_ok && offer && strcmp(offer, CIPHER_AES) == 0;
    json_decref(m);
    if (!ok) {
        cps_metrics_add(K.c_refused, 1);
        log_refused(from);
        return NULL;
    }
    unsigned char pk[32], sk[32], n2[24];
    crypto_kx_keypair(pk, sk);
    char n1s[64], extra[96];
    b64(n1, 24, n1s, sizeof n1s);
    snprintf(extra, sizeof extra, "%s%s", n1s, aes ? "|" CIPHER_AES : "");
    free(l->welcome);
    l->welcome = seal("WELCOME", K.me, l->peer, cps_now_ms(), pk, extra, n2, aes ? CIPHER_AES : NULL);
    if (crypto_kx_server_session_keys(l->rx, l->tx, pk, sk, eph) != 0) { sodium_memzero(sk, 32); return NULL; }
    sodium_memzero(sk, 32);
    set_cipher(l, aes);
    return l;
}

/* Whether the link to `peer` is established (handshake done). */
bool cps_link_is_up(const char *peer)
{
    peer_link *l = find(peer);
    return l && l->state == L_UP && !K.stopping;
}

/* ---- sending ---- */

static int writable(peer_link *l);

/* After the poll phase: each link with queued messages writes one batch,
** unless lws still holds part of an earlier write or a WRITEABLE is asked
** for already; then the rest goes from WRITEABLE. */
static void flush(void)
{
    for (int i = 0; i < K.nlinks; i++) {
        peer_link *l = &K.links[i];
        if (l->state != L_UP || !l->wsi || !l->head || l->want_write) continue;
        if (lws_partial_buffered(l->wsi)) {
            l->want_write = true;
            lws_callback_on_writable(l->wsi);
        } else if (writable(l) < 0) {
            /* lws closes it; CLOSED reports the link down */
            lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        }
    }
}

int cps_link_send(const char *peer, const char *type, uint64_t qid, const char *dest,
                  const char *cmd, int err, json_t *args)
{
    /* Errors travel by name, so a code this node does not know survives. */
    const char *error = err ? cps_errname(err) : NULL;
    peer_link *l = find(peer);
    if (!l || K.stopping) return CPS_ENOENT;
    if (l->state == L_DOWN && !l->dialer) return CPS_EIO;   /* the peer must dial us */
    if (!dest) dest = "";
    if (!cmd) cmd = "";
    /* what json_pack refused before: the peer's parser would refuse it */
    if (!cps_utf8_valid(type, strlen(type)) || !cps_utf8_valid(dest, strlen(dest)) ||
        !cps_utf8_valid(cmd, strlen(cmd)))
        return CPS_EINVAL;
    /* [type, qid, dest, cmd, error|null, args], written into the scratch
    ** buffer kept between sends, then copied into a queue entry of its exact
    ** size: one allocation per message (perf, a storage node of the 2x2x2
    ** cluster: the writer's doubling reallocs ~3% of its samples). */
    cps_jsonw w = { K.scratch, 0, K.scratch_cap, false };
    cps_jsonw_raw(&w, "[", 1);
    cps_jsonw_str(&w, type, strlen(type));
    /* signed, as the reader takes it (a query id past 2^63 reads back the same bits) */
    cps_jsonw_raw(&w, ",", 1);
    cps_jsonw_int(&w, (int64_t)qid);
    cps_jsonw_raw(&w, ",", 1);
    cps_jsonw_str(&w, dest, strlen(dest));
    cps_jsonw_raw(&w, ",", 1);
    cps_jsonw_str(&w, cmd, strlen(cmd));
    cps_jsonw_raw(&w, ",", 1);
    if (error) cps_jsonw_str(&w, error, strlen(error)); else cps_jsonw_raw(&w, "null", 4);
    cps_jsonw_raw(&w, ",", 1);
    cps_jsonw_value(&w, args ? args : json_null());
    cps_jsonw_raw(&w, "]", 1);
    /* the scratch buffer survives unless one message made it large */
    bool bad = w.bad;
    size_t n = w.len;
    qbuf *b = bad || l->qbytes + n > K.max_queue ? NULL : malloc(offsetof(qbuf, data) + n);
    if (b) memcpy(b->data, w.p, n);
    if (w.cap > SCRATCH_KEEP) { free(w.p); w.p = NULL; w.cap = 0; }
    K.scratch = w.p;
    K.scratch_cap = w.cap;
    if (bad) return CPS_ENOMEM;
    if (l->qbytes + n > K.max_queue) {     /* back-pressure: bounded per peer_link */
        cps_metrics_add(K.c_dropped, 1);
        return CPS_EBUSY;
    }
    if (!b) return CPS_ENOMEM;
    bool idle = !l->head;
    b->next = NULL;
    b->len = n;
    if (l->tail) l->tail->next = b; else l->head = b;
    l->tail = b;
    l->qbytes += n;
    /* The batch is written after the loop's poll phase (flush), not from a
    ** WRITEABLE callback: a writable request is a uv_poll_start, which
    ** libuv turns into an epoll_ctl DEL and ADD (perf, a storage node of
    ** the 2x2x2 cluster: 6% of its samples with a request per message).  A
    ** queue that was not empty is in hand already. */
    if (l->state == L_UP && l->wsi && idle) cps_turn_want(&K.flush);
    else if (l->state == L_DOWN && l->dialer && !l->redial) dial(l);
    return 0;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void nonce_of(uint64_t n, unsigned char out[24])
{
    memset(out, 0, 24);
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(n >> (8 * i));
}

/* A batch leaves as one binary websocket frame whose header we write
** (cps_ws_header), and lws sends the bytes as they are (LWS_WRITE_HTTP is
** its raw write).  The dialer is the websocket client and must mask: it uses
** the all-zero key, so no byte is changed on either side.  lws's own client
** framing XORed every byte with a random key one at a time (perf, a storage
** node of the 2x2x2 cluster: 5% of its samples); the batches are sealed
** already, so masking protects nothing here. */

static int writable(peer_link *l)
{
    if (l->hello_pending) {
        l->offered = K.aes_ok;
        char *hello = seal("HELLO", K.me, l->peer, cps_now_ms(), l->eph_pk, "", l->n1,
                           l->offered ? CIPHER_AES : NULL);
        l->hello_pending = false;
        if (!hello) return -1;
        size_t n = strlen(hello);
        unsigned char *buf = malloc(LWS_PRE + n);
        if (!buf) { free(hello); return -1; }
        memcpy(buf + LWS_PRE, hello, n);
        int w = lws_write(l->wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT);
        free(buf);
        free(hello);
        return w < (int)n ? -1 : 0;
    }
    if (l->welcome) {
        size_t n = strlen(l->welcome);
        unsigned char *buf = malloc(LWS_PRE + n);
        if (!buf) return -1;
        memcpy(buf + LWS_PRE, l->welcome, n);
        int w = lws_write(l->wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT);
        free(buf);
        free(l->welcome);
        l->welcome = NULL;
        if (w < (int)n) return -1;
        went_up(l);
        return 0;
    }
    if (l->state != L_UP) return 0;
    if (!l->head) return 0;
    /* Everything queued for the peer since the last write (one loop turn or
    ** more) goes out as one sealed batch: one secretbox and one send instead
    ** of one per message (docs/protocol/cluster.md §2.4).  A batch holds at
    ** least one message and stops before BATCH_MAX unless its first message
    ** alone is larger. */
    size_t total = 0;
    int count = 0;
    for (qbuf *b = l->head; b; b = b->next) {
        if (count && total + 4 + b->len > BATCH_MAX) break;
        total += 4 + b->len;
        count++;
    }
    /* The batch buffer is kept between writes (perf on the 2x2x2 cluster:
    ** malloc/free ~20% of the nodes' samples, malloc_consolidate run by
    ** every large allocation); one larger than BATCH_MAX, made for a single
    ** large message, is given back after it is written. */
    size_t need = CPS_WS_HDR_MAX + crypto_secretbox_MACBYTES + total;
    if (need > K.txcap) {
        unsigned char *nb = realloc(K.txbuf, need);
        if (!nb) return -1;
        K.txbuf = nb;
        K.txcap = need;
    }
    unsigned char *sealed = K.txbuf + CPS_WS_HDR_MAX;
    unsigned char *plain = sealed + crypto_secretbox_MACBYTES, *at = plain;
    for (int i = 0; i < count; i++) {
        qbuf *b = l->head;
        put_u32(at, (uint32_t)b->len);
        memcpy(at + 4, b->data, b->len);
        at += 4 + b->len;
        l->head = b->next;
        if (!l->head) l->tail = NULL;
        l->qbytes -= b->len;
        free(b);
    }
    unsigned char nonce[24];
    nonce_of(l->txn++, nonce);
    /* in place, the 16-byte tag in front: crypto_secretbox_easy allows the
    ** overlap, AES-256-GCM encrypts in place with the tag apart */
    if (l->aes)
        crypto_aead_aes256gcm_encrypt_detached_afternm(plain, sealed, NULL, plain, total, NULL, 0, NULL, nonce,
                                                       &l->tx_st);
    else
        crypto_secretbox_easy(sealed, plain, total, nonce, l->tx);
    size_t n = total + crypto_secretbox_MACBYTES;
    unsigned char hdr[CPS_WS_HDR_MAX];
    size_t h = cps_ws_header(hdr, n, 0x2, l->dialer);      /* binary */
    memcpy(sealed - h, hdr, h);
    int w = lws_write(l->wsi, sealed - h, h + n, LWS_WRITE_HTTP);
    if (K.txcap > CPS_WS_HDR_MAX + crypto_secretbox_MACBYTES + BATCH_MAX) {
        free(K.txbuf);
        K.txbuf = NULL;
        K.txcap = 0;
    }
    n += h;
    if (w < (int)n) return -1;
    l->msgs_out += (uint64_t)count;
    l->bytes_out += n;
    if (l->head && !l->want_write) {      /* more than one batch: the rest from WRITEABLE */
        l->want_write = true;
        lws_callback_on_writable(l->wsi);
    }
    return 0;
}

/* ---- receiving ---- */

/* One message of a batch, handed to the router.  Errors travel by name
** (null for success), so a code this node does not know survives. */
static int record(peer_link *l, const unsigned char *text, size_t len)
{
    cps_link_head h;
    json_t *args = cps_jsonr_link((const char *)text, len, &h);
    if (!args) return -1;
    l->msgs_in++;
    cps_router_incoming(l->peer, h.type, (uint64_t)h.qid, h.dest, h.cmd,
                        h.has_error ? cps_errcode(h.error) : CPS_OK, args);
    return 0;
}

/* Splits an opened batch into its length-prefixed messages.  The whole
** batch is authenticated already; a record that overruns the batch, an
** empty batch or an empty record can only come from a broken peer, and
** closes the link (messages before it have been handed on, in order). */
static int batch_each(peer_link *l, const unsigned char *p, size_t n)
{
    if (n == 0) return -1;
    while (n) {
        if (n < 4) return -1;
        uint32_t len = get_u32(p);
        if (len == 0 || len > n - 4) return -1;
        if (record(l, p + 4, len) != 0) return -1;
        p += 4 + len;
        n -= 4 + len;
    }
    return 0;
}

static int frame(peer_link *l, unsigned char *data, size_t len, bool binary)
{
    if (l->state == L_HANDSHAKE && l->dialer) {
        /* WELCOME, bound to our HELLO's nonce */
        json_t *m = json_loadb((const char *)data, len, 0, NULL);
        unsigned char eph[32], n2[24];
        char n1s[64], extra[96];
        b64(l->n1, 24, n1s, sizeof n1s);
        /* AES-256-GCM only if we offered it; the sealed text must say it too */
        const char *chosen = json_string_value(json_array_get(m, 7));
        bool aes = chosen && strcmp(chosen, CIPHER_AES) == 0;
        snprintf(extra, sizeof extra, "%s%s", n1s, aes ? "|" CIPHER_AES : "");
        bool ok = !binary && (!chosen || (aes && l->offered)) && unseal(m, "WELCOME", l->peer, K.me, extra, eph, n2) &&
                  crypto_kx_client_session_keys(l->rx, l->tx, l->eph_pk, l->eph_sk, eph) == 0;
        json_decref(m);
        if (ok) set_cipher(l, aes);
        sodium_memzero(l->eph_sk, 32);
        if (!ok) {
            cps_metrics_add(K.c_refused, 1);
            cps_log("link", CPS_LOG_WARN, "link to %s: the peer's answer does not prove the node key", l->peer);
            return -1;
        }
        went_up(l);
        return 0;
    }
    if (l->state != L_UP || !binary || len < crypto_secretbox_MACBYTES) return -1;
    unsigned char nonce[24];
    nonce_of(l->rxn++, nonce);
    size_t n = len - crypto_secretbox_MACBYTES;
    /* opened in place (libsodium allows it): the reassembly buffer is not
    ** touched again before this batch is handled, and a malloc per batch is
    ** saved.  Both ciphers put their 16-byte tag first. */
    unsigned char *plain = l->aes ? data + crypto_aead_aes256gcm_ABYTES : data;
    int bad = l->aes ? crypto_aead_aes256gcm_decrypt_detached_afternm(plain, NULL, plain, n, data, NULL, 0,
                                                                       nonce, &l->rx_st)
                     : crypto_secretbox_open_easy(plain, data, len, nonce, l->rx);
    if (bad != 0) {
        cps_log("link", CPS_LOG_WARN, "link to %s: a frame failed authentication, closing", l->peer);
        return -1;
    }
    l->bytes_in += len;
    return batch_each(l, plain, n);
}

static int receive(peer_link *l, struct lws *wsi, const void *in, size_t len)
{
    if (lws_is_first_fragment(wsi)) l->rxlen = 0;
    if (l->rxlen + len > (size_t)cps_config_int("limits.max_frame", 104857600)) return -1;
    if (l->rxlen + len > l->rxcap) {
        size_t cap = l->rxcap ? l->rxcap : 65536;
        while (cap < l->rxlen + len) cap *= 2;
        unsigned char *b = realloc(l->rxbuf, cap);
        if (!b) return -1;
        l->rxbuf = b;
        l->rxcap = cap;
    }
    memcpy(l->rxbuf + l->rxlen, in, len);
    l->rxlen += len;
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi)) return 0;
    size_t n = l->rxlen;
    l->rxlen = 0;
    return frame(l, l->rxbuf, n, lws_frame_is_binary(wsi));
}

/* ---- the lws callback for protocol "cpsd-link" ---- */

int cps_link_callback(struct lws *wsi, int reason, void *user, void *in, size_t len)
{
    peer_link **slot = user;
    peer_link *l = slot ? *slot : NULL;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[64];
        if (!K.on || lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, LINK_PATH))
            return 1;
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:             /* we listen: wait for HELLO */
        if (slot) *slot = NULL;
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        l = lws_get_opaque_user_data(wsi);
        if (!l || !slot) return -1;
        *slot = l;
        l->wsi = wsi;
        l->state = L_HANDSHAKE;
        l->hello_pending = true;
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (!l) {
            /* the first frame of an accepted connection must be a HELLO */
            if (!lws_is_first_fragment(wsi) || !lws_is_final_fragment(wsi) || lws_frame_is_binary(wsi)) return -1;
            peer_link *acc = accept_hello(in, len);
            if (!acc) return -1;
            if (acc->wsi && acc->wsi != wsi) {
                /* a newer connection from that peer replaces the old one */
                lws_set_timeout(acc->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
                struct lws *old = acc->wsi;
                acc->wsi = NULL;
                (void)old;
            }
            *slot = acc;
            acc->wsi = wsi;
            acc->state = L_HANDSHAKE;
            lws_callback_on_writable(wsi);
            return 0;
        }
        return receive(l, wsi, in, len);
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return l ? receive(l, wsi, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!l || l->wsi != wsi) return 0;
        l->want_write = false;
        return writable(l);
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        l = lws_get_opaque_user_data(wsi);
        if (l && (l->wsi == wsi || !l->wsi)) went_down(l, in ? (const char *)in : "connection error");
        return 0;
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (l && l->wsi == wsi) went_down(l, "closed");
        if (slot) *slot = NULL;
        return 0;
    default:
        return 0;
    }
}

/* ---- metrics ---- */

bool cps_link_stats_at(int i, cps_link_stats *out)
{
    if (i < 0 || i >= K.nlinks) return false;
    const peer_link *l = &K.links[i];
    *out = (cps_link_stats){ .peer = l->peer, .up = l->state == L_UP, .queue_bytes = l->qbytes,
                             .msgs_out = l->msgs_out, .bytes_out = l->bytes_out,
                             .msgs_in = l->msgs_in, .bytes_in = l->bytes_in };
    return true;
}

/* ---- setup ---- */

int cps_link_setup(struct lws_context *ctx, struct lws_vhost *vh)
{
    K.ctx = ctx;
    K.vhost = vh;
    return 0;
}

/* cluster = { key = base64, self = "core:1", peers = { ["front:0"] = "host:port", ... } } */
int cps_link_start(void)
{
    json_t *cl = cps_config_path(cps_cfg ? cps_cfg->root : NULL, "cluster");
    json_t *peers = json_object_get(cl, "peers");
    if (!json_is_object(peers) || !json_object_size(peers)) return 0;   /* one process */
    if (sodium_init() < 0) return CPS_EINTERNAL;
    K.aes_ok = crypto_aead_aes256gcm_is_available() && !getenv("CPSD_LINK_NO_AES");
    const char *key = json_string_value(json_object_get(cl, "key"));
    const char *self = json_string_value(json_object_get(cl, "self"));
    if (!unb64(key, K.key, 32) || !self) {
        cps_log("link", CPS_LOG_ERROR, "cluster.key must be 32 bytes of base64 and cluster.self a node id");
        return CPS_EINVAL;
    }
    snprintf(K.me, sizeof K.me, "%s", self);
    K.max_queue = (size_t)cps_config_int("limits.link_queue", 64 << 20);
    K.c_up = cps_metrics_counter("links_up_total");
    K.c_down = cps_metrics_counter("links_lost_total");
    K.c_refused = cps_metrics_counter("links_refused_total");
    K.c_dropped = cps_metrics_counter("link_messages_dropped_total");
    const char *id;
    json_t *addr;
    json_object_foreach(peers, id, addr) {
        if (!strcmp(id, self) || K.nlinks == MAX_LINKS) continue;
        const char *a = json_string_value(addr);
        const char *colon = a ? strrchr(a, ':') : NULL;
        if (!colon) { cps_log("link", CPS_LOG_ERROR, "cluster.peers[%s]: expected \"host:port\"", id); return CPS_EINVAL; }
        peer_link *l = &K.links[K.nlinks++];
        memset(l, 0, sizeof *l);
        snprintf(l->peer, sizeof l->peer, "%s", id);
        snprintf(l->host, sizeof l->host, "%.*s", (int)(colon - a), a);
        l->port = atoi(colon + 1);
        l->dialer = strcmp(self, id) > 0;     /* one link per pair */
        if (!cps_router_is_local(id)) cps_router_add_remote(id);
    }
    K.on = true;
    cps_turn_init(&K.flush, cps_loop(), flush);
    for (int i = 0; i < K.nlinks; i++) if (K.links[i].dialer) dial(&K.links[i]);
    return 0;
}

void cps_link_stop(void)
{
    K.stopping = true;
    for (int i = 0; i < K.nlinks; i++) {
        peer_link *l = &K.links[i];
        if (l->redial) { cps_timer_stop(l->redial); l->redial = NULL; }
        queue_free(l);
        free(l->rxbuf);
        free(l->welcome);
        l->rxbuf = NULL;
        l->welcome = NULL;
        if (l->wsi) lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
    free(K.txbuf);
    K.txbuf = NULL;
    K.txcap = 0;
    free(K.scratch);
    K.scratch = NULL;
    K.scratch_cap = 0;
    cps_turn_stop(&K.flush);
}

#ifdef CPS_LINK_FUZZ
/* Only in the fuzz target (tests/fuzz/fuzz_link.c): this node is `me` with
** the node key `key` and awaits a HELLO from `peer`, without lws or a socket;
** then any bytes go through the listener's HELLO check as they would arrive. */
void cps_link_fuzz_setup(const char *me, const unsigned char key[32], const char *peer)
{
    snprintf(K.me, sizeof K.me, "%s", me);
    memcpy(K.key, key, 32);
    K.nlinks = 1;
    snprintf(K.links[0].peer, sizeof K.links[0].peer, "%s", peer);
    K.links[0].dialer = false;
}

/* A HELLO sealed with the node key: the target builds valid ones too, so
** the checks after the seal are reached. */
char *cps_link_fuzz_seal(const char *from, const char *to, uint64_t t, const char *extra)
{
    unsigned char eph[32], sk[32], nonce[24];
    crypto_kx_keypair(eph, sk);            /* a real point: the key exchange refuses a weak one */
    return seal("HELLO", from, to, t, eph, extra, nonce, NULL);
}

/* The link to the fuzz peer as established, with `rx` as its receiving key
** and the next counter `rxn`; then cps_link_fuzz_frame hands it a binary
** frame as it would arrive (a sealed batch).  Returns what frame() does:
** 0 accepted (its messages queued on the router), -1 the link would close. */
void cps_link_fuzz_up(const unsigned char rx[32], uint64_t rxn)
{
    peer_link *l = &K.links[0];
    l->state = L_UP;
    memcpy(l->rx, rx, 32);
    l->rxn = rxn;
}

/* The fuzz peer's batches sealed with AES-256-GCM (true) or secretbox. */
bool cps_link_fuzz_cipher(bool aes)
{
    if (aes && !crypto_aead_aes256gcm_is_available()) return false;
    set_cipher(&K.links[0], aes);
    return true;
}

int cps_link_fuzz_frame(const unsigned char *data, size_t len)
{
    /* frame() opens a batch in place: the fuzzer's input is read-only */
    unsigned char *copy = malloc(len ? len : 1);
    if (!copy) return -1;
    if (len) memcpy(copy, data, len);
    int rc = frame(&K.links[0], copy, len, true);
    free(copy);
    return rc;
}

/* Only the split of an opened batch into its messages. */
int cps_link_fuzz_batch(const unsigned char *plain, size_t len)
{
    K.links[0].state = L_UP;
    return batch_each(&K.links[0], plain, len);
}

bool cps_link_fuzz_hello(const char *text, size_t len)
{
    peer_link *l = accept_hello(text, len);
    if (!l) return false;
    free(l->welcome);
    l->welcome = NULL;
    return true;
}
#endif
