'use strict';
// Frame and message limits (docs/protocol/netflux.md §12, issue 12):
// 1. a frame of millions of tiny values is refused before it is parsed into
//    a tree: RSS grows by a small multiple of its size, other clients keep
//    their answers;
// 2. a MSG that could not fit a send queue as a history line is refused and
//    not stored; one just under the limit is stored and loads; a line over
//    the queue stored earlier (with a larger queue) still loads.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const { startServer, tmpDir } = require('./lib/server');
const C = require('./lib/client');

const servers = [];
const dirs = [];
after(async () => {
    C.closeAll();
    for (const s of servers) { await s.stop(); }
    for (const d of dirs) { Fs.rmSync(d, { recursive: true, force: true }); }
});
const start = async (cfg, opts) => { const s = await startServer(cfg, { single: true, ...opts }); servers.push(s); return s; };
const T = (name, fn) => test(name, { timeout: 120000 }, async (t) => {
    try { await fn(t); } catch (e) {
        e.message += `\n--- server output ---\n${servers.map(s => s.stderr().slice(-3000)).join('\n')}`;
        throw e;
    }
});

const isArr = Array.isArray;
const MiB = 1048576;

const status = (pid, key) => {
    const m = new RegExp(`${key}:\\s+(\\d+)\\s+kB`).exec(Fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
};

T('a frame of millions of tiny values is refused at once, memory bounded, others served', async () => {
    const srv = await start({ limits: { max_frame: 8 * MiB, max_send_queue: 8 * MiB } });   // the defaults
    const good = await C.rawReady(srv.url);
    const bad = await C.rawReady(srv.url);
    await good.ping();
    const hwm0 = status(srv.pid, 'VmHWM');
    const rss0 = status(srv.pid, 'VmRSS');
    const N = 3000000;                              // ~6 MB, 3 million values
    const frame = Buffer.from(`[1,"PING",[${'0,'.repeat(N)}0]]`);
    // another client pings all along
    let stop = false;
    let worst = 0;
    let pings = 0;
    const pinger = (async () => {
        while (!stop) {
            const t0 = Date.now();
            const ack = await good.ping(5000);
            assert.deepEqual(ack.slice(1), ['ACK']);
            worst = Math.max(worst, Date.now() - t0);
            pings++;
            await C.sleep(20);
        }
    })();
    const t0 = Date.now();
    bad.sendBuffer(frame, false);
    const info = await C.withTimeout(bad.closed, 10000, 'close after the frame of tiny values');
    const closeMs = Date.now() - t0;
    await C.sleep(300);
    stop = true;
    await pinger;
    const hwm1 = status(srv.pid, 'VmHWM');
    const rss1 = status(srv.pid, 'VmRSS');
    console.log(`frame ${frame.length} B: closed ${info.code} after ${closeMs} ms; ` +
        `VmHWM +${hwm1 - hwm0} B, VmRSS +${rss1 - rss0} B; ${pings} pings, worst ${worst} ms`);
    assert.equal(info.code, 1003, `closed as a malformed frame (netflux.md §1): ${C.short(info)}`);
    assert.ok(closeMs < 5000, `refused within 5 s (${closeMs} ms)`);
    assert.ok(hwm1 - hwm0 < 4 * frame.length, `peak RSS grew by ${hwm1 - hwm0} B for a ${frame.length} B frame`);
    assert.ok(worst < 1000, `the other client's PING answered within 1 s (worst ${worst} ms)`);
    assert.deepEqual((await good.ping()).slice(1), ['ACK']);

    // the same inside a message to the history keeper (JSON in a string)
    const hk = (await good.join(C.ephemeralId())).members.find(id => id.length === 16);
    const hwm2 = status(srv.pid, 'VmHWM');
    const content = `["x",[${'0,'.repeat(N)}0]]`;
    const t1 = Date.now();
    const reply = await good.request(['MSG', hk, content], 10000);
    const hkMs = Date.now() - t1;
    const hwm3 = status(srv.pid, 'VmHWM');
    console.log(`HK content ${content.length} B: ${C.short(reply.slice(1))} after ${hkMs} ms; VmHWM +${hwm3 - hwm2} B`);
    assert.deepEqual(reply.slice(1), ['ERROR', 'EINVAL', null], 'HK content with millions of values: EINVAL (netflux.md §7.3)');
    assert.ok(hwm3 - hwm2 < 4 * content.length, `peak RSS grew by ${hwm3 - hwm2} B for ${content.length} B of HK content`);
});

// limits.max_send_queue 1 MiB: a content may cost 7/8 of it (917504 bytes).
const QUEUE = MiB;
const MAX_MSG = QUEUE - QUEUE / 8;

const history = async (srv, chan) => {
    const r = await C.rawReady(srv.url);
    const j = await r.join(chan);
    const hk = j.members.find(id => id.length === 16);
    const h = await C.getHistory(r, hk, chan, {}, 30000);
    const msgs = h.items.filter(p => isArr(p) && p[2] === 'MSG').map(p => p[4]);
    return { r, msgs };
};

T('a MSG that could not be delivered is refused; one just under the limit is stored and loads', async () => {
    const srv = await start({ limits: { max_frame: 2 * MiB, max_send_queue: QUEUE } });
    assert.match(srv.stderr(), /limits\.max_frame \(2097152\) is over limits\.max_send_queue/, 'clamp warning');
    const chan = C.padId();
    const w = await C.rawReady(srv.url);
    await w.join(chan);
    const under = 'A'.repeat(MAX_MSG);
    assert.deepEqual((await w.msg(chan, under, 20000)).slice(1), ['ACK'], 'just under the limit: stored');
    assert.deepEqual((await w.msg(chan, 'B'.repeat(MAX_MSG + 1), 20000)).slice(1), ['ERROR'], 'one byte over: refused');
    // quotes are escaped at every level: 200 kB of them cost 1.6 MB
    assert.deepEqual((await w.msg(chan, '"'.repeat(200000), 20000)).slice(1), ['ERROR'], 'escape-heavy: refused');
    assert.deepEqual((await w.msg(chan, 'small', 20000)).slice(1), ['ACK']);
    // a fresh client loads it all without being dropped
    const { r, msgs } = await history(srv, chan);
    assert.deepEqual(msgs.map(m => m.length), [MAX_MSG, 5], 'history: the big message and the small one only');
    assert.equal(msgs[0], under);
    assert.deepEqual((await r.ping()).slice(1), ['ACK'], 'the reader is still connected');
    // over the (clamped) frame limit: 1009, as before
    const big = await C.rawReady(srv.url);
    big.sendText(JSON.stringify([1, 'PING', 'x'.repeat(QUEUE + 1000)]));
    const info = await C.withTimeout(big.closed, 10000, 'close after a frame over the clamped limit');
    assert.equal(info.code, 1009);
});

T('a line over the send queue, stored under a larger queue, still loads', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    const chan = C.padId();
    const LINE = 3 * MiB;
    const a = await start({ limits: { max_frame: 8 * MiB, max_send_queue: 8 * MiB } }, { dir });
    const w = await C.rawReady(a.url);
    await w.join(chan);
    for (let i = 0; i < 5; i++) { await w.msg(chan, `before-${i}`); }
    assert.deepEqual((await w.msg(chan, 'C'.repeat(LINE), 20000)).slice(1), ['ACK']);
    for (let i = 0; i < 5; i++) { await w.msg(chan, `after-${i}`); }
    w.close();
    await a.stop();
    servers.splice(servers.indexOf(a), 1);
    const b = await start({ limits: { max_frame: QUEUE, max_send_queue: QUEUE } }, { dir });
    const { r, msgs } = await history(b, chan);
    assert.equal(msgs.length, 11);
    assert.equal(msgs[5].length, LINE);
    assert.deepEqual((await r.ping()).slice(1), ['ACK'], 'the reader is still connected');
});
