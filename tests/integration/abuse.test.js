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
