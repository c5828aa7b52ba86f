'use strict';
// Bounded send queue (cps.h session_send, limits.max_send_queue): a member
// that stops reading is dropped instead of making the server buffer without
// bound; the other members are unaffected and the server's RSS stays flat.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, withLog } = require('./lib/server');
const C = require('./lib/client');

let srv;
const T = (name, fn, opts = {}) => test(name, { timeout: 90000, ...opts }, (t) => srv.guard(fn)(t));

const MAX_SEND_QUEUE = 1048576;
const MSG_SIZE = 64 * 1024;
const SENDERS = 3;
const PER_SENDER = 200;          // 600 messages in total, ~37.5 MiB towards the paused client
const RUN_LIMIT_MS = 30000;
const RSS_SLACK = 40 * 1024 * 1024;

const isArr = Array.isArray;

before(withLog(() => srv, async () => {
    srv = await startServer({ limits: { max_frame: 1048576, max_send_queue: MAX_SEND_QUEUE } });
}));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
});

T('a member that stops reading is dropped; the others get every message; RSS stays bounded', async (t) => {
    const chan = C.padId();
    let slowGot = 0;
    const slow = await C.rawReady(srv.url, {
        onFrame: (f) => { if (isArr(f) && f[2] === 'MSG') { slowGot++; return true; } return false; },
    });
    await slow.join(chan);
    const senders = [];
    for (let i = 0; i < SENDERS; i++) {
        const s = { i, got: new Map(), bad: [] };
        s.r = await C.rawReady(srv.url, {
            onFrame: (f) => {
                if (!(isArr(f) && f[0] === 0 && f[2] === 'MSG' && f[3] === chan)) { return false; }
                const key = String(f[4]).slice(0, 24).split('|').slice(0, 3).join('|');
                if (String(f[4]).length !== MSG_SIZE) { s.bad.push(`length ${String(f[4]).length} of ${key}`); }
                s.got.set(key, (s.got.get(key) || 0) + 1);
                return true;
            },
        });
        await s.r.join(chan);
        senders.push(s);
    }
    await C.sleep(500);
    const rss0 = srv.rss();
    assert.ok(rss0, 'server RSS readable');

    // the slow member stops reading
    slow.ws._socket.pause();

    const filler = 'x'.repeat(MSG_SIZE);
    const mk = (i, k) => { const head = `m|${i}|${k}|`; return head + filler.slice(head.length); };
    const t0 = Date.now();
    const deadline = t0 + RUN_LIMIT_MS;
    let sent = 0;
    await Promise.all(senders.map(async (s) => {
        for (let k = 0; k < PER_SENDER; k++) {
            if (Date.now() > deadline) { throw new Error(`sender ${s.i}: run exceeded ${RUN_LIMIT_MS} ms after ${k} messages`); }
            const ack = await s.r.msg(chan, mk(s.i, k), 10000);
            assert.deepEqual(ack.slice(1), ['ACK'], `sender ${s.i} message ${k}: ${C.short(ack)}`);
            sent++;
        }
    }));
    const runMs = Date.now() - t0;
    assert.equal(sent, SENDERS * PER_SENDER);

    // every sender received all the others' messages, exactly once
    const expected = (SENDERS - 1) * PER_SENDER;
    await C.waitFor(() => senders.every(s => s.got.size >= expected), 15000,
        `senders receive all messages (${senders.map(s => s.got.size).join(', ')} of ${expected})`);
    await C.sleep(300);
    for (const s of senders) {
        assert.deepEqual(s.bad, [], `sender ${s.i}: content intact`);
        assert.equal(s.got.size, expected, `sender ${s.i} distinct messages`);
        for (const [key, n] of s.got) {
            assert.equal(n, 1, `sender ${s.i} got ${key} ${n} times`);
            assert.notEqual(key.split('|')[1], String(s.i), `sender ${s.i} got its own message ${key}`);
        }
        assert.ok(s.r.isOpen(), `sender ${s.i} still connected`);
    }

    // the paused member was dropped: the others got its LEAVE
    for (const s of senders) {
        const ev = await s.r.next(f => isArr(f) && f[2] === 'LEAVE' && f[1] === slow.id, 10000,
            `LEAVE of the paused member at sender ${s.i}`);
        assert.deepEqual(ev, [0, slow.id, 'LEAVE', chan]);
    }
    // once it reads again it sees its connection closed, having missed messages
    slow.ws._socket.resume();
    await C.withTimeout(slow.closed, 15000, 'the paused client sees its connection closed');
    assert.ok(slowGot < SENDERS * PER_SENDER, `the paused client did not get everything (${slowGot})`);

    await C.sleep(500);
    const rss1 = srv.rss();
    const grow = rss1 - rss0;
    t.diagnostic(`run ${runMs} ms; paused client got ${slowGot} of ${SENDERS * PER_SENDER} messages; ` +
        `server RSS ${(rss0 / 1048576).toFixed(1)} -> ${(rss1 / 1048576).toFixed(1)} MiB`);
    assert.ok(grow <= RSS_SLACK,
        `server RSS grew by ${(grow / 1048576).toFixed(1)} MiB (from ${(rss0 / 1048576).toFixed(1)} to ${(rss1 / 1048576).toFixed(1)} MiB; run ${runMs} ms)`);

    // the remaining members still work
    const ack = await senders[0].r.msg(chan, mk(0, 'final'), 5000);
    assert.deepEqual(ack.slice(1), ['ACK']);
    for (const s of senders.slice(1)) {
        await C.waitFor(() => s.got.has(`m|0|final`), 5000, `final message at sender ${s.i}`);
    }
});

T('server exits 0 on SIGTERM', async () => {
    C.closeAll();
    const code = await srv.stop();
    assert.equal(code, 0, 'exit code after SIGTERM');
});
