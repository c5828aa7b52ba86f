'use strict';
// A connection's share of the work queues (docs/protocol/netflux.md §12,
// issue 12): front.max_work_in_flight bounds the queries one connection has
// unanswered; at the bound the server stops reading it until half are
// answered.  Here the shared bound limits.pending_queries is small (32): a
// client that fires thousands of MSGs without waiting for their ACKs would,
// unpaced, take every pending-query slot and every other user's messages
// would fail at once.  Paced, the flood waits in its own socket: the other
// user's messages are all ACKed during the flood, and the flood itself is
// slowed, never refused (every message ACKed, stored once, in order).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, withLog } = require('./lib/server');
const C = require('./lib/client');

const WORK = 8;             // front.max_work_in_flight
const PENDING = 32;         // limits.pending_queries: < the flood, > WORK x hops
const FLOOD = 1500;         // messages, over 3 pads
const PADS = 3;

let srv;
let HK;
const T = (name, fn, opts = {}) => test(name, { timeout: 120000, ...opts }, (t) => srv.guard(fn)(t));
const isArr = Array.isArray;

before(withLog(() => srv, async () => {
    srv = await startServer({ limits: { pending_queries: PENDING }, front: { max_work_in_flight: WORK } });
}));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
});

const pendingQueries = async () => {
    const text = await (await fetch(`http://127.0.0.1:${srv.port}/metrics`)).text();
    const m = /^cpsd_router_pending_queries (\d+)/m.exec(text);
    return m ? Number(m[1]) : null;
};

T('a flood of unpaced MSGs is slowed, not refused, and other users keep their answers', async () => {
    const pads = Array.from({ length: PADS }, () => C.padId());
    const flood = await C.rawReady(srv.url);
    const acks = new Map();            // seq -> reply kind
    const seqs = [];
    for (const p of pads) { const j = await flood.join(p); HK = HK || j.members.find(id => id.length === 16); }
    flood.onFrame = (f) => {
        if (isArr(f) && typeof f[0] === 'number' && f[0] !== 0 && (f[1] === 'ACK' || f[1] === 'ERROR')) {
            acks.set(f[0], f[1]);
            return true;
        }
        return false;
    };
    const healthy = await C.rawReady(srv.url);
    const hpad = C.padId();
    await healthy.join(hpad);
    assert.equal(await pendingQueries(), 0, 'no query pending before the flood');

    // fire the whole flood in one go, no waiting for ACKs
    for (let i = 0; i < FLOOD; i++) {
        const seq = flood.nextSeq();
        seqs.push(seq);
        flood.send([seq, 'MSG', pads[i % PADS], `flood-${i}`]);
    }
    // during the flood: the healthy user's messages, ACK-paced, and the
    // shared bound sampled
    let maxPending = 0;
    const healthyReplies = [];
    let n = 0;
    while (acks.size < FLOOD && n < 200) {
        const r = await healthy.msg(hpad, `healthy-${n++}`, 30000);
        healthyReplies.push(r[1]);
        maxPending = Math.max(maxPending, await pendingQueries());
    }
    await C.waitFor(() => acks.size === FLOOD, 60000, `ACKs of the ${FLOOD} flood messages`);
    console.log(`flood of ${FLOOD}: ${healthyReplies.length} healthy messages meanwhile, ` +
        `pending queries at most ${maxPending} (limits.pending_queries ${PENDING})`);
    assert.ok(healthyReplies.length > 0, 'the healthy user sent during the flood');
    assert.deepEqual(healthyReplies.filter(k => k !== 'ACK'), [], 'every healthy message ACKed');
    const refused = seqs.filter(s => acks.get(s) !== 'ACK');
    assert.equal(refused.length, 0, `flood messages refused: ${refused.length} (paced, never refused)`);
    assert.ok(maxPending < PENDING, `pending queries stayed under the shared bound (${maxPending})`);

    // stored once each, in the order sent
    const reader = await C.rawReady(srv.url);
    for (let k = 0; k < PADS; k++) {
        await reader.join(pads[k]);
        const h = await C.getHistory(reader, HK, pads[k], {}, 30000);
        const got = h.items.filter(p => isArr(p) && p[2] === 'MSG').map(p => p[4]);
        const want = [];
        for (let i = k; i < FLOOD; i += PADS) { want.push(`flood-${i}`); }
        assert.deepEqual(got, want, `history of pad ${k}`);
    }
    // the flooding connection is read again: it still answers
    flood.onFrame = null;
    assert.deepEqual((await flood.ping()).slice(1), ['ACK']);
});
