'use strict';
// Server keep-alive (docs/protocol/netflux.md §10) with short timers:
// ping after 600 ms of silence, drop after 2500 ms, checked every 200 ms.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, withLog } = require('./lib/server');
const C = require('./lib/client');

let srv;
const T = (name, fn, opts = {}) => test(name, { timeout: 30000, ...opts }, (t) => srv.guard(fn)(t));

const PING_AFTER = 600;
const DROP_AFTER = 2500;

before(withLog(() => srv, async () => {
    srv = await startServer({ front: { ping_after_ms: PING_AFTER, drop_after_ms: DROP_AFTER, check_every_ms: 200 } });
}));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
});

const isPing = (f) => Array.isArray(f) && f[0] === 0 && f[2] === 'PING';

T('an idle client receives [0,"","PING",<number>] within ~2 s', async () => {
    const a = await C.rawReady(srv.url, { autoPong: false });
    const t0 = Date.now();
    const f = await a.next(isPing, 2000, 'server PING');
    const dt = Date.now() - t0;
    assert.equal(f.length, 4, `PING frame ${C.short(f)}`);
    assert.equal(f[1], '');
    assert.equal(typeof f[3], 'number');
    assert.ok(Math.abs(f[3] - Date.now()) < 60000, `PING timestamp ${f[3]} is a time in ms`);
    assert.ok(dt >= PING_AFTER - 300, `not pinged too early (${dt} ms)`);
    // one PING outstanding at a time: no second PING before an answer
    await a.none(isPing, 600, 'second PING while one is outstanding');
    a.close();
});

T('answering every PING with PONG keeps the connection open past 3 s', async () => {
    const a = await C.rawReady(srv.url, { autoPong: true });   // answers [0,"","PONG",ts]
    await C.sleep(3500);
    assert.ok(a.isOpen(), `connection still open (close: ${C.short(a.closeInfo)})`);
    const pings = a.log.filter(isPing);
    assert.ok(pings.length >= 2, `several PINGs received (${pings.length})`);
    // PONGs got no reply
    const others = a.log.filter(f => !isPing(f) && !(Array.isArray(f) && f[2] === 'IDENT'));
    assert.deepEqual(others, [], 'no reply to PONG');
    const ack = await a.ping();
    assert.deepEqual(ack.slice(1), ['ACK'], 'still usable');
    a.close();
});

T('a client that never answers is dropped after drop_after_ms and its LEAVE reaches the others', async () => {
    const chan = C.padId();
    const keeper = await C.rawReady(srv.url, { autoPong: true });
    await keeper.join(chan);
    const silent = await C.rawReady(srv.url, { autoPong: false });
    await silent.join(chan);
    const tLast = Date.now();   // the silent client's last frame (JOIN)
    await keeper.next(f => Array.isArray(f) && f[2] === 'JOIN' && f[1] === silent.id, 5000, 'JOIN of the silent client');

    const info = await C.withTimeout(silent.closed, DROP_AFTER + 5000, 'server closes the silent connection');
    const dt = Date.now() - tLast;
    assert.ok(dt >= DROP_AFTER - 500, `not dropped too early (${dt} ms after its last frame, close ${C.short(info)})`);
    assert.ok(silent.log.some(isPing), 'it was pinged before being dropped');
    const ev = await keeper.next(f => Array.isArray(f) && f[2] === 'LEAVE', 3000, 'LEAVE of the dropped client');
    assert.deepEqual(ev, [0, silent.id, 'LEAVE', chan]);
    assert.ok(keeper.isOpen(), 'the answering member is still connected');
    assert.deepEqual((await keeper.ping()).slice(1), ['ACK']);
    keeper.close();
});

T('server exits 0 on SIGTERM', async () => {
    C.closeAll();
    const code = await srv.stop();
    assert.equal(code, 0, 'exit code after SIGTERM');
});
