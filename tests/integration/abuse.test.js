'use strict';
// Abuses from issue 12, each bounded in count and time, one server per case
// on loopback:
//   - signed-RPC session flood (docs/protocol/rpc.md §3.3, §3.4);
//   - HTTP framing abuses over raw sockets (docs/protocol/http.md);
//   - absurd history counts (docs/protocol/history.md).

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const Net = require('node:net');
const Crypto = require('node:crypto');
const { startServer, withLog } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');

const servers = [];
after(async () => {
    C.closeAll();
    for (const s of servers) { await s.stop(); }
});
const start = async (cfg) => {
    const s = await startServer(cfg);
    servers.push(s);
    return s;
};
const rnd = (n) => Crypto.randomBytes(n).toString('base64');

// ------------------------------------------------------------ signed RPC

// COOKIE calls with random keys and bad signatures must create no session
// (docs/protocol/rpc.md §3.3): with the table limited to 1000, 3000 of them
// would otherwise fill it and a real client would get an empty cookie, then
// NO_COOKIE on every call.
test('a COOKIE flood with random keys and bad signatures locks nobody out', { timeout: 120000 }, async () => {
    const srv = await start({ core: { max_sessions: 1000 } });
    await withLog(() => srv, async () => {
        const r = await C.rawReady(srv.url);
        const hk = await R.learnHk(r);
        const FLOOD = 3000; const BATCH = 100;
        for (let i = 0; i < FLOOD; i += BATCH) {
            const calls = [];
            for (let j = 0; j < BATCH; j++) {
                calls.push(R.send(r, hk, [rnd(64), rnd(32), null, 'COOKIE', '']));
            }
            for (const { reply } of await Promise.all(calls)) {
                assert.deepEqual(reply.slice(1), ['ERROR', 'INVALID_SIGNATURE_OR_PUBLIC_KEY']);
            }
        }
        // A real client: its COOKIE gets a cookie, and a signed command works.
        const keys = R.keyPair();
        const rpc = R.client(r, hk, keys);
        const { reply } = await rpc.cookieOnce();
        assert.ok(R.isCookie(reply[1]), `COOKIE answered ${C.short(reply)}`);
        const limit = await rpc.call('GET_LIMIT');
        assert.equal(typeof limit[0], 'number');
        assert.equal(rpc.retries, 0, 'no NO_COOKIE recovery was needed');
        r.close();
    })();
});

// ------------------------------------------------------------ HTTP framing

// One raw HTTP exchange: everything the server sends until it closes (or
// `ms` passes: then `timedOut`).  `hold` keeps our side open after writing.
const rawHttp = (port, text, { ms = 3000 } = {}) => new Promise((resolve) => {
    const s = Net.connect(port, '127.0.0.1');
    let out = '';
    const t = setTimeout(() => { s.destroy(); resolve({ out, timedOut: true }); }, ms);
    s.on('data', (d) => { out += d; });
    s.on('error', () => { /* a reset counts as closed */ });
    s.on('close', () => { clearTimeout(t); resolve({ out, timedOut: false }); });
    s.write(text);
});
const statusOf = (out) => (/^HTTP\/1\.1 (\d{3})/.exec(out) || [])[1];
const BLOB = 'ab' + 'c'.repeat(46);

// docs/protocol/http.md §12: a POST whose body never comes, then a close,
// must not leak its body buffer (the server exits under ASan's leak check).
test('a header-only POST then a close leaks nothing', { timeout: 60000 }, async () => {
    const srv = await start({});
    await withLog(() => srv, async () => {
        for (let i = 0; i < 5; i++) {
            await new Promise((resolve) => {
                const s = Net.connect(srv.port, '127.0.0.1', () => {
                    s.end(`POST /upload-blob/${BLOB.slice(0, 2)}/${BLOB} HTTP/1.1\r\nHost: x\r\n` +
                        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n');
                });
                s.on('error', () => {});
                s.on('close', resolve);
                setTimeout(() => s.destroy(), 300);
            });
        }
        const code = await srv.stop();
        assert.doesNotMatch(srv.stderr(), /LeakSanitizer|AddressSanitizer/);
        assert.equal(code, 0);
    })();
});

// docs/operator-guide.md (Limits, http_body_total): bodies announced and never
// sent are held for every connection together up to the limit; past it a
// request gets 503 and is closed, and the room comes back when they go.
test('request bodies held by many connections are bounded in total: 503 past limits.http_body_total', { timeout: 60000 }, async () => {
    const srv = await start({ limits: { http_body_total: 1000000 } });
    await withLog(() => srv, async () => {
        const head = `POST /upload-blob/${BLOB.slice(0, 2)}/${BLOB} HTTP/1.1\r\nHost: x\r\n` +
            'Content-Type: application/json\r\nContent-Length: 400000\r\n\r\n';
        const holders = [];
        for (let i = 0; i < 2; i++) {         // 2 x 400 kB held: under 1 MB
            const s = Net.connect(srv.port, '127.0.0.1');
            s.on('error', () => {});
            await new Promise((resolve) => s.once('connect', resolve));
            s.write(head);
            holders.push(s);
        }
        await new Promise((r) => setTimeout(r, 300));
        const third = await rawHttp(srv.port, head, { ms: 3000 });
        assert.equal(statusOf(third.out), '503', `a third body over the total: ${third.out.slice(0, 80)}`);
        assert.equal(third.timedOut, false, 'the refused connection is closed');
        for (const s of holders) s.destroy();
        await new Promise((r) => setTimeout(r, 300));
        const again = await rawHttp(srv.port, head, { ms: 1000 });
        assert.notEqual(statusOf(again.out), '503', 'room again once the holders left');
        // A healthy client is served all along.
        const res = await fetch(`http://127.0.0.1:${srv.port}/api/config`);
        assert.equal(res.status, 200);
    })();
});

// docs/protocol/http.md §12, RFC 9112 §6.1: Content-Length with
// Transfer-Encoding is refused with 400 and the connection closed, so the
// request smuggled after the body is never answered.
test('Content-Length with Transfer-Encoding: 400, closed, nothing smuggled', { timeout: 60000 }, async () => {
    const srv = await start({});
    await withLog(() => srv, async () => {
        const { out, timedOut } = await rawHttp(srv.port,
            `POST /upload-blob/${BLOB.slice(0, 2)}/${BLOB} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n` +
            'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/config HTTP/1.1\r\nHost: x\r\n\r\n');
        assert.equal(timedOut, false, 'the server closes the connection');
        assert.equal(statusOf(out), '400', out);
        assert.equal((out.match(/HTTP\/1\.1 /g) || []).length, 1, `one answer only: ${out}`);
    })();
});

// docs/protocol/http.md §12, RFC 9112 §6.3: a Content-Length that is not one
// decimal number (two of them, a sign, junk) is 400 and closed; a POST with
// none has an empty body and is answered at once, not left hanging.
test('bad or missing Content-Length: 400 and closed, or an empty body', { timeout: 60000 }, async () => {
    const srv = await start({});
    await withLog(() => srv, async () => {
        for (const cl of ['Content-Length: 2\r\nContent-Length: 30', 'Content-Length: -1', 'Content-Length: 2x']) {
            const { out, timedOut } = await rawHttp(srv.port, `POST /api/auth HTTP/1.1\r\nHost: x\r\n${cl}\r\n\r\n{}`);
            assert.equal(timedOut, false, `${cl}: closed`);
            assert.equal(statusOf(out), '400', `${cl}: ${out}`);
        }
        const { out } = await rawHttp(srv.port, 'POST /api/auth HTTP/1.1\r\nHost: x\r\n\r\n', { ms: 2000 });
        assert.ok(statusOf(out), `no Content-Length: answered (${out})`);
    })();
});

// docs/protocol/http.md §12: a chunked request body gets 411 with a body,
// not a hang or a bare close.
test('a chunked request body: 411 Length Required with a body', { timeout: 60000 }, async () => {
    const srv = await start({});
    await withLog(() => srv, async () => {
        const { out, timedOut } = await rawHttp(srv.port,
            'POST /api/auth HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
        assert.equal(timedOut, false, 'the server closes the connection');
        assert.equal(statusOf(out), '411', out);
        const [, body] = out.split('\r\n\r\n');
        assert.match(body || '', /411/);
    })();
});

// docs/protocol/http.md §12: a request target over 8 KiB is answered 414 and
// headers over 16 KiB 431 (then closed); a head beyond lws's 32 KiB arena
// is closed without an answer (lws 4.1 gives up before any callback); the
// server lives on.
test('over-long URL and headers: 414 and 431, a bare close past the arena', { timeout: 60000 }, async () => {
    const srv = await start({});
    await withLog(() => srv, async () => {
        for (const [text, status] of [
            [`GET /${'a'.repeat(9000)} HTTP/1.1\r\nHost: x\r\n\r\n`, '414'],
            [`GET /api/config?q=${'a'.repeat(20000)} HTTP/1.1\r\nHost: x\r\n\r\n`, '414'],
            [`GET /api/config HTTP/1.1\r\nHost: x\r\nUser-Agent: ${'b'.repeat(20000)}\r\n\r\n`, '431'],
            [`GET /${'a'.repeat(40000)} HTTP/1.1\r\nHost: x\r\n\r\n`, undefined],
            [`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(40000)}\r\n\r\n`, undefined],
        ]) {
            const { out, timedOut } = await rawHttp(srv.port, text);
            assert.equal(timedOut, false, 'closed');
            assert.equal(statusOf(out), status, `${text.slice(0, 40)}...: ${out.slice(0, 80)}`);
        }
        // just below the limits: served
        const { out: fine } = await rawHttp(srv.port,
            `GET /api/config?q=${'a'.repeat(7000)} HTTP/1.1\r\nHost: x\r\nUser-Agent: ${'b'.repeat(12000)}\r\nConnection: close\r\n\r\n`);
        assert.equal(statusOf(fine), '200', fine.slice(0, 80));
        const { out } = await rawHttp(srv.port, 'GET /api/config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        assert.equal(statusOf(out), '200', out);
        // a client's over-long head is its mistake, not a server error (issue 12 item 7)
        const errors = srv.stderr().split('\n').filter(l => / error \[lws\]/.test(l) || /"level":"error","who":"lws"/.test(l));
        assert.deepEqual(errors, [], 'lws lines at error level');
    })();
});

// ------------------------------------------------------------ history numbers

// docs/protocol/history.md §6, §5.4: a count, cpCount or expire far outside
// any integer range is clamped before conversion (converting it is undefined
// behaviour, which UBSan turns into a crash): the server answers and lives.
test('GET_HISTORY_RANGE count 1e300 / cpCount -1e300 and expire 1e300 are answered', { timeout: 60000 }, async () => {
    const srv = await start({});
    await withLog(() => srv, async () => {
        const P = C.padId();
        const a = await C.rawReady(srv.url);
        const j = await a.join(P);
        const hk = j.members.find(id => id.length === 16);
        for (let i = 0; i < 3; i++) { assert.deepEqual((await a.msg(P, `m${i}|${rnd(30)}`)).slice(1), ['ACK']); }
        for (const cfg of [{ count: 1e300, cpCount: -1e300 }, { count: -1e300, cpCount: 1e300 }]) {
            const res = await C.getHistoryRange(a, hk, P, { ...cfg, txid: 'big' });
            assert.deepEqual(res.reply, [res.seq, 'ACK'], C.short(cfg));
            assert.deepEqual(res.end, ['HISTORY_RANGE_END', 'big', P]);
        }
        // expire: seconds from now, on creation by the first member
        const Q = C.padId();
        await a.join(Q);
        for (const expire of [1e300, -1e300]) {
            const res = await C.getHistory(a, hk, Q, { txid: 'exp', metadata: { expire } });
            assert.ok(res.items.length > 0, `GET_HISTORY expire ${expire} answered`);
        }
        assert.ok(srv.alive(), 'the server lives');
        assert.doesNotMatch(srv.stderr(), /runtime error/);
        a.close();
    })();
});
