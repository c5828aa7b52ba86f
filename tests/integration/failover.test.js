'use strict';
// Storage failover (docs/protocol/cluster.md §11): a 2x2x2 topology whose
// storage nodes share one PostgreSQL database (storage-pg) with
// storage_failover = true.
//
//   1. storage:1 killed (SIGKILL) under ACK-paced writes on several pads:
//      its clients are closed with 1012, rejoin, and storage:0 serves the
//      pads; every ACKed message is in the history once; when storage:1 is
//      back the slot moves back to it, still without loss;
//   2. fencing: storage:1 paused (SIGSTOP) while storage:0 takes its lease
//      over, then resumed (SIGCONT): the writes it held are not ACKed and
//      not stored.
//
// Needs PostgreSQL: ctest runs it with the pg fixture (tests/pg/pg_env.sh),
// which sets PGHOST/PGUSER; skipped otherwise.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const ChildProcess = require('node:child_process');
const Crypto = require('node:crypto');
const C = require('./lib/client');
const R = require('./lib/rpc');
const L = require('./lib/cluster');

const SKIP = process.env.PGHOST ? false : 'needs PostgreSQL (run by ctest with the pg fixture, which sets PGHOST)';
const isArr = Array.isArray;
const BOUND = 15000;          // any single wait, so that nothing hangs

// One database shared by the storage nodes of the cluster.
const createDb = () => {
    const db = 'cps_fo_' + Crypto.randomBytes(6).toString('hex');
    const r = ChildProcess.spawnSync('createdb', [db], { encoding: 'utf8', timeout: 20000 });
    if (r.status !== 0) { throw new Error(`createdb ${db}: ${r.stderr || r.error}`); }
    return db;
};
const dropDb = (db) => ChildProcess.spawnSync('dropdb', ['--if-exists', db], { encoding: 'utf8', timeout: 20000 });

// Waits until the cluster log since `mark` matches re (bounded).
const waitLog = async (cl, mark, re, ms = BOUND, what = String(re)) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        if (re.test(cl.since(mark))) { return; }
        await C.sleep(50);
    }
    throw new Error(`timeout after ${ms} ms waiting for ${what} in the cluster log`);
};

// A client that keeps a pad joined: connects to its front, joins (trying
// again while the pad's storage node is changing), and reconnects whenever
// the server closes it.  write() sends one message and resolves
// 'ACK' | 'ERROR' | 'CLOSED' (the connection closed before an answer).
const member = (cl, front, pad) => {
    const m = { pad, front, r: null, closes: [], rejoins: 0 };
    m.connect = async () => {
        const end = Date.now() + BOUND;
        let last;
        while (Date.now() < end) {
            const r = C.raw(cl.frontUrl(front));
            try {
                await r.ready;
                const seq = r.nextSeq();
                r.send([seq, 'JOIN', pad]);
                const f = await r.next(x => isArr(x) && x[0] === seq, BOUND, `JACK for ${pad}`);
                if (f[1] === 'JACK') {
                    await r.next(x => isArr(x) && x[0] === 0 && x[2] === 'JOIN' && x[1] === r.id && x[3] === pad, BOUND, 'own JOIN');
                    m.r = r;
                    r.closed.then((c) => { if (m.r === r) { m.closes.push(c); m.r = null; } });
                    return;
                }
                last = C.short(f);
            } catch (e) { last = e.message; }
            r.terminate();
            await C.sleep(100);
        }
        throw new Error(`could not join ${pad} through front ${front} within ${BOUND} ms (last: ${last})`);
    };
    m.write = async (content) => {
        if (!m.r) { m.rejoins++; await m.connect(); }
        const r = m.r;
        const seq = r.nextSeq();
        r.send([seq, 'MSG', pad, content]);
        try {
            const f = await r.next(x => isArr(x) && x[0] === seq, BOUND, `reply to ${content}`);
            return f[1] === 'ACK' ? 'ACK' : 'ERROR';
        } catch (e) {
            if (r.closeInfo) { return 'CLOSED'; }
            throw e;
        }
    };
    m.close = () => { const r = m.r; m.r = null; if (r) { r.close(); } };
    return m;
};

// Every content of a pad's history, read through a fresh client.
const history = async (cl, hk, pad) => {
    const end = Date.now() + BOUND;
    let last;
    while (Date.now() < end) {
        const r = C.raw(cl.frontUrl(0));
        try {
            await r.ready;
            const fh = await C.getFullHistory(r, hk, pad, BOUND);
            if (fh.end && fh.end[0] === 'FULL_HISTORY_END') {
                r.close();
                return fh.items.filter(x => isArr(x) && x[0] === 'FULL_HISTORY').map(x => x[1][4]);
            }
            last = C.short(fh.reply || fh.end);
        } catch (e) { last = e.message; }
        r.terminate();
        await C.sleep(200);
    }
    throw new Error(`no full history of ${pad} within ${BOUND} ms (last: ${last})`);
};

const checkNoLoss = (contents, acked, sent, what) => {
    for (const c of acked) {
        assert.equal(contents.filter(x => x === c).length, 1, `${what}: ACKed ${c} stored exactly once`);
    }
    const seen = new Set();
    for (const c of contents) {
        assert.ok(!seen.has(c), `${what}: ${c} stored twice`);
        seen.add(c);
        assert.ok(sent.has(c), `${what}: ${c} was never sent`);
    }
    // ACK order is history order
    assert.deepEqual(contents.filter(c => acked.includes(c)), acked, `${what}: ACKed messages in ACK order`);
};

describe('storage failover on a shared PostgreSQL', { skip: SKIP }, () => {
    let cl;
    let HK;
    let db;
    const T = (name, fn) => test(name, { timeout: 120000 }, (t) => cl.guard(fn)(t));

    before(async () => {
        db = createDb();
        cl = await L.startCluster({
            config: { storage_backend: 'pg', storage_pg: { conninfo: `dbname=${db}` }, storage_failover: true },
        });
        await cl.waitLinks(30000);
        await waitLog(cl, 0, /storage slot 0: served by storage:0/);
        await waitLog(cl, 0, /storage slot 1: served by storage:1/);
        const r = await C.rawReady(cl.frontUrl(0));
        HK = await R.learnHk(r);
        r.close();
    });
    after(async () => {
        C.closeAll();
        if (cl) { await cl.stop(); }
        if (db) { dropDb(db); }
    });

    T('storage 1 killed under writes: its pads move to storage 0 (1012, rejoin), nothing ACKed is lost, then they move back', async (tc) => {
        // three pads of slot 1, written by members on both fronts; one pad of
        // slot 0 written alongside
        const pads = [L.padOn(1), L.padOn(1), L.padOn(1), L.padOn(0)];
        const ms = pads.map((p, i) => member(cl, i % 2, p));
        for (const m of ms) { await m.connect(); }
        const acked = new Map(pads.map(p => [p, []]));
        const sent = new Map(pads.map(p => [p, new Set()]));
        let n = 0;
        const writeOne = async (m) => {
            const content = `fo|${n++}|${C.hex(6)}`;
            sent.get(m.pad).add(content);
            const res = await m.write(content);
            m.results = (m.results || []).concat(`${res}@${Date.now() % 100000}`).slice(-8);
            if (res === 'ACK') { acked.get(m.pad).push(content); }
            return res;
        };
        for (const m of ms) { for (let i = 0; i < 3; i++) { assert.equal(await writeOne(m), 'ACK'); } }

        // each writer goes on, ACK-paced, until told to stop; the first ACK
        // after the kill says when its pad was served again
        let stop = false;
        let killedAt = 0;
        const firstAckAfter = new Map();
        const loopEnd = Date.now() + 90000;
        const loops = ms.map(async (m) => {
            for (let i = 0; i < 20000 && !stop && Date.now() < loopEnd; i++) {
                const sentAt = Date.now();
                const res = await writeOne(m);
                if (res === 'ACK' && killedAt && sentAt > killedAt && !firstAckAfter.has(m.pad)) {
                    firstAckAfter.set(m.pad, Date.now() - killedAt);
                }
                await C.sleep(res === 'ACK' ? 20 : 50);
            }
        });
        await C.sleep(300);
        cl.pauseSupervisor();             // storage:1 stays down
        const mark = cl.mark();
        killedAt = Date.now();
        const oldPid = cl.kill('storage:1', 'SIGKILL');
        await waitLog(cl, mark, /storage slot 1: served by storage:0/, BOUND, 'storage:0 taking slot 1 over');
        // every pad is written again (bounded wait)
        const end = Date.now() + BOUND;
        while (firstAckAfter.size < pads.length && Date.now() < end) { await C.sleep(50); }
        assert.equal(firstAckAfter.size, pads.length, `every pad ACKs again after the kill: ${C.short([...firstAckAfter])}`);
        tc.diagnostic(`first ACK of a write sent after the kill (ms): ${pads.map(p => `slot ${L.place(p, 2)}: ${firstAckAfter.get(p)}`).join(', ')}`);
        await C.sleep(500);

        // the members of slot 1's pads were disconnected with 1012 and rejoined
        for (const m of ms.slice(0, 3)) {
            assert.ok(m.closes.length >= 1, `the member of ${m.pad} was disconnected`);
            assert.equal(m.closes[0].code, 1012, `close code ${C.short(m.closes)}`);
            assert.ok(m.rejoins >= 1, 'and rejoined');
        }
        assert.equal(ms[3].closes.length, 0, 'the member of the slot 0 pad noticed nothing');

        // storage:1 comes back: the slot moves back to it, writes go on
        const mark2 = cl.mark();
        cl.resumeSupervisor();
        await cl.waitRestart('storage:1', oldPid);
        await waitLog(cl, mark2, /storage slot 1: no longer served by storage:0 \(handed back/, BOUND, 'storage:0 handing slot 1 back');
        await waitLog(cl, mark2, /storage slot 1: served by storage:1/, BOUND, 'storage:1 serving slot 1 again');
        const before = new Map(pads.map(p => [p, acked.get(p).length]));
        const end2 = Date.now() + BOUND;
        while (pads.some(p => acked.get(p).length < before.get(p) + 3) && Date.now() < end2) { await C.sleep(50); }
        stop = true;
        await Promise.all(loops);
        for (const m of ms) {
            assert.ok(acked.get(m.pad).length >= before.get(m.pad) + 3, `${m.pad} (slot ${L.place(m.pad, 2)}) ACKs after the handback: ` +
                `${acked.get(m.pad).length - before.get(m.pad)} ACKs, closes ${C.short(m.closes)}, rejoins ${m.rejoins}, last ${C.short(m.results)}`);
        }
        for (const m of ms.slice(0, 3)) { assert.ok(m.closes.length >= 2, `the member of ${m.pad} was moved back too`); }

        for (const p of pads) { checkNoLoss(await history(cl, HK, p), acked.get(p), sent.get(p), p); }
        tc.diagnostic(`ACKed per pad: ${pads.map(p => acked.get(p).length).join(', ')}`);
        for (const m of ms) { m.close(); }
    });

    T('fencing: a paused storage node whose lease was taken over fails the writes it held and stores none of them', async (tc) => {
        await cl.waitLinks(30000);
        const pad = L.padOn(1);
        const w = member(cl, 0, pad);
        await w.connect();
        const acked = [];
        const sent = new Set();
        for (let i = 0; i < 3; i++) {
            const c = `pre|${i}|${C.hex(6)}`;
            sent.add(c);
            assert.equal(await w.write(c), 'ACK');
            acked.push(c);
        }
        const mark = cl.mark();
        cl.kill('storage:1', 'SIGSTOP');
        let resumed = false;
        try {
            // sent to storage:1 (its link is still up): they wait in its socket
            const held = [0, 1, 2].map(i => `held|${i}|${C.hex(6)}`);
            const r = w.r;
            const replies = held.map((c) => {
                sent.add(c);
                const seq = r.nextSeq();
                r.send([seq, 'MSG', pad, c]);
                return r.next(x => isArr(x) && x[0] === seq, 4 * BOUND, `reply to ${c}`)
                    .then(f => f[1]).catch(() => (r.closeInfo ? 'CLOSED' : 'TIMEOUT'));
            });
            // its lease expires; storage:0 takes slot 1 over
            await waitLog(cl, mark, /storage slot 1: served by storage:0/, BOUND, 'storage:0 taking the lease of the paused node');
            cl.kill('storage:1', 'SIGCONT');
            resumed = true;
            const got = await Promise.all(replies);
            tc.diagnostic(`answers to the held writes: ${C.short(got)}`);
            for (const g of got) { assert.notEqual(g, 'ACK', `a write held by the paused node was not ACKed (${C.short(got)})`); }
            assert.ok(!got.includes('TIMEOUT'), `every held write was answered or its connection closed: ${C.short(got)}`);
            // its next renewal finds the lease taken
            await waitLog(cl, mark, /storage slot 1: no longer served by storage:1/, BOUND, 'storage:1 learning it lost the slot');
            tc.diagnostic(`the held writes were fenced in the database: ${/fenced: slot 1/.test(cl.since(mark))}`);
        } finally {
            if (!resumed) { cl.kill('storage:1', 'SIGCONT'); }
        }
        // the slot settles on storage:1 again and the pad is written
        await waitLog(cl, mark, /storage slot 1: served by storage:1/, BOUND, 'storage:1 serving slot 1 again');
        let ok = false;
        for (let i = 0; i < 50 && !ok; i++) {
            const c = `post|${i}|${C.hex(6)}`;
            sent.add(c);
            if (await w.write(c) === 'ACK') { acked.push(c); ok = true; } else { await C.sleep(100); }
        }
        assert.ok(ok, 'the pad is written again');
        const contents = await history(cl, HK, pad);
        for (const c of sent) {
            if (c.startsWith('held|')) { assert.ok(!contents.includes(c), `the held write ${c} was not stored: ${C.short(contents)}`); }
        }
        checkNoLoss(contents, acked, sent, pad);
        w.close();
    });
});
