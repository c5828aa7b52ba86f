'use strict';
// Concurrent writers on one pad (docs/storage-pg.md, "Ordering, durability,
// group commit"): a channel's messages go to the backend while earlier ones
// are in flight, yet every message is ACKed once, each writer's ACKs come in
// its send order, the stored history is the relay order, and each writer's
// messages keep their send order in it.  On storage-pg the appends that
// queued up together share a transaction: fewer commits than messages.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, withLog, PG } = require('./lib/server');
const C = require('./lib/client');

const WRITERS = 5;
const PER_WRITER = 40;

let srv;
before(withLog(() => srv, async () => { srv = await startServer(); }));
after(async () => { C.closeAll(); if (srv) { await srv.stop(); } });

// A counter of /metrics, 0 while it is not listed yet.
const counter = async (name) => {
    const res = await fetch(`http://127.0.0.1:${srv.port}/metrics`);
    assert.equal(res.status, 200);
    const m = (await res.text()).match(new RegExp(`^${name} (\\S+)$`, 'm'));
    return m ? Number(m[1]) : 0;
};

test(`${WRITERS} writers firing at once on one pad: every ACK after its write, in order; history = relay order`,
    { timeout: 120000 }, withLog(() => srv, async () => {
        const P = C.padId();
        const writers = [];
        for (let k = 0; k < WRITERS; k++) { writers.push(await C.rawReady(srv.url)); }
        const observer = await C.rawReady(srv.url);
        for (const r of writers) { await r.join(P); }
        const j = await observer.join(P);
        const HK = j.members.find(id => id.length === 16);

        const commits0 = PG && await counter('cpsd_storage_pg_append_transactions_total');
        const appends0 = PG && await counter('cpsd_storage_pg_channel_appends_total');

        // Every writer sends all its messages without waiting, interleaved.
        const seqs = writers.map(() => []);
        for (let i = 0; i < PER_WRITER; i++) {
            writers.forEach((r, k) => {
                const seq = r.nextSeq();
                seqs[k].push(seq);
                r.send([seq, 'MSG', P, `w${k}-${i}`]);
            });
        }
        for (let k = 0; k < WRITERS; k++) {
            const r = writers[k];
            const replies = await Promise.all(seqs[k].map(seq =>
                r.next(f => Array.isArray(f) && f[0] === seq, 60000, `answer to ${seq}`)));
            for (const f of replies) { assert.equal(f[1], 'ACK', `writer ${k}: ${C.short(f)}`); }
            // ACKs in the order the messages were sent
            const order = r.log.filter(f => Array.isArray(f) && f[1] === 'ACK' && seqs[k].includes(f[0])).map(f => f[0]);
            assert.deepEqual(order, seqs[k], `writer ${k}: ACK order`);
        }

        // The observer got every message, relayed in one order.
        const total = WRITERS * PER_WRITER;
        const relayed = [];
        while (relayed.length < total) {
            const f = await observer.next(x => Array.isArray(x) && x[2] === 'MSG' && x[3] === P, 30000, 'a relayed message');
            relayed.push(f[4]);
        }
        // Each writer's own messages in its send order.
        for (let k = 0; k < WRITERS; k++) {
            const mine = relayed.filter(c => c.startsWith(`w${k}-`));
            assert.deepEqual(mine, Array.from({ length: PER_WRITER }, (_, i) => `w${k}-${i}`), `writer ${k}: relay order`);
        }
        // A writer sees the others' messages in the same order as the observer
        // (once they have all reached it: its socket is read after the observer's).
        const seenBy0 = () => writers[0].log.filter(f => Array.isArray(f) && f[2] === 'MSG' && f[3] === P).map(f => f[4]);
        await C.waitFor(() => seenBy0().length >= total - PER_WRITER, 30000, 'writer 0 receives the others\' messages');
        const seen0 = seenBy0();
        assert.deepEqual(seen0, relayed.filter(c => !c.startsWith('w0-')), 'writer 0 sees the relay order');

        // The log holds exactly the relay order.
        const reader = await C.rawReady(srv.url);
        await reader.join(P);
        const h = await C.getHistory(reader, HK, P, { txid: C.txid() }, 60000);
        assert.ok(h.end && h.end.state === 1, `history ends with its end marker: ${C.short(h.items)}`);
        const stored = h.items.filter(Array.isArray).map(m => m[4]);
        assert.deepEqual(stored, relayed, 'history order = relay order');

        if (PG) {
            const commits = await counter('cpsd_storage_pg_append_transactions_total') - commits0;
            const appends = await counter('cpsd_storage_pg_channel_appends_total') - appends0;
            assert.equal(appends, total, 'every message appended once');
            assert.ok(commits < appends, `group commit: ${commits} transactions for ${appends} appends`);
        }
    }));

// Many pads at once (docs/storage-pg.md, "Trains"): each writer sends one
// message to its own pad, all together; on storage-pg the appends of
// different channels that are ready together share a transaction, so the
// commits are fewer than the pads.  Every message is ACKed and stored once.
const PADS = 12;
test(`${PADS} writers on ${PADS} pads at once: every message stored once; on pg fewer commits than pads`,
    { timeout: 120000 }, withLog(() => srv, async () => {
        const pads = Array.from({ length: PADS }, () => C.padId());
        const writers = [];
        for (let k = 0; k < PADS; k++) {
            const r = await C.rawReady(srv.url);
            await r.join(pads[k]);
            writers.push(r);
        }
        const HK = (await writers[0].join(pads[0])).members.find(id => id.length === 16);
        const commits0 = PG && await counter('cpsd_storage_pg_append_transactions_total');
        const appends0 = PG && await counter('cpsd_storage_pg_channel_appends_total');
        const ROUNDS = 5;
        for (let round = 0; round < ROUNDS; round++) {
            const seqs = writers.map((r, k) => { const seq = r.nextSeq(); r.send([seq, 'MSG', pads[k], `p${k}-${round}`]); return seq; });
            const replies = await Promise.all(writers.map((r, k) =>
                r.next(f => Array.isArray(f) && f[0] === seqs[k], 60000, `answer on pad ${k}`)));
            replies.forEach((f, k) => assert.equal(f[1], 'ACK', `pad ${k}: ${C.short(f)}`));
        }
        for (let k = 0; k < PADS; k++) {
            const h = await C.getHistory(writers[k], HK, pads[k], { txid: C.txid() }, 60000);
            const stored = h.items.filter(Array.isArray).map(m => m[4]);
            assert.deepEqual(stored, Array.from({ length: ROUNDS }, (_, i) => `p${k}-${i}`), `pad ${k}: history`);
        }
        if (PG) {
            const commits = await counter('cpsd_storage_pg_append_transactions_total') - commits0;
            const appends = await counter('cpsd_storage_pg_channel_appends_total') - appends0;
            console.log(`# ${appends} appends on ${PADS} pads in ${commits} transactions`);
            assert.equal(appends, PADS * ROUNDS, 'every message appended once');
            assert.ok(commits < appends / 2, `trains: ${commits} transactions for ${appends} appends on ${PADS} pads`);
        }
    }));
