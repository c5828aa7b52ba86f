'use strict';
// Storage failover benchmark (docs/protocol/cluster.md §11.7), run by hand:
//
//   PGHOST=... PGUSER=... CPSD_BIN=build/cpsd node failover-bench.js [kills]
//
// A 2x2x2 cluster on one PostgreSQL database with storage_failover; a
// writer keeps an ACK-paced stream of messages on a pad of slot 1.  Each
// round kills storage:1 (SIGKILL, the supervisor paused so that it stays
// down) and measures, from the kill, when storage:0 holds the slot (its log
// line) and when the writer, disconnected with 1012, has rejoined and has a
// message ACKed again.  Then storage:1 is let back and the slot handed back
// before the next round.  Prints each round and the medians.

const ChildProcess = require('node:child_process');
const Crypto = require('node:crypto');
const C = require('./lib/client');
const L = require('./lib/cluster');

const ROUNDS = Number(process.argv[2] || 10);
const median = (xs) => { const s = xs.slice().sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };

const waitLog = async (cl, mark, re, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        const m = re.exec(cl.since(mark));
        if (m) { return m; }
        await C.sleep(20);
    }
    throw new Error(`timeout waiting for ${re}`);
};

// Connect and join, trying again while the pad is between nodes.
const joinLoop = async (cl, pad, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        const r = C.raw(cl.frontUrl(0));
        try {
            await r.ready;
            const j = await r.request(['JOIN', pad], 5000);
            if (j[1] === 'JACK') {
                await r.next(x => Array.isArray(x) && x[0] === 0 && x[2] === 'JOIN' && x[1] === r.id, 5000);
                return r;
            }
        } catch (e) { /* closed: again */ }
        r.terminate();
        await C.sleep(50);
    }
    throw new Error('could not rejoin');
};

(async () => {
    const db = 'cps_bench_' + Crypto.randomBytes(4).toString('hex');
    ChildProcess.spawnSync('createdb', [db]);
    const cl = await L.startCluster({
        config: { storage_backend: 'pg', storage_pg: { conninfo: `dbname=${db}` }, storage_failover: true },
    });
    const lease = [];
    const ack = [];
    try {
        await cl.waitLinks(30000);
        await waitLog(cl, 0, /storage slot 1: served by storage:1/, 15000);
        const pad = L.padOn(1);
        for (let round = 0; round < ROUNDS; round++) {
            let r = await joinLoop(cl, pad, 30000);
            for (let i = 0; i < 5; i++) { await r.msg(pad, `warm|${i}`); }
            cl.pauseSupervisor();
            const mark = cl.mark();
            const t0 = Date.now();
            const oldPid = cl.kill('storage:1', 'SIGKILL');
            // the writer keeps writing; a failure means reconnect and rejoin
            let acked = 0;
            for (let i = 0; i < 100000 && !acked && Date.now() - t0 < 30000; i++) {
                try {
                    const f = await r.msg(pad, `w|${round}|${i}`, 5000);
                    if (f[1] === 'ACK' && Date.now() - t0 > 0) {
                        // an ACK that was already in flight at the kill does not count
                        if (!r.closeInfo && cl.since(mark).includes('served by storage:0')) { acked = Date.now() - t0; }
                    }
                } catch (e) {
                    r.terminate();
                    r = await joinLoop(cl, pad, 30000);
                }
            }
            const m = await waitLog(cl, mark, /(\d\d):(\d\d):(\d\d\.\d+)Z info {2}\[storage\] storage slot 1: served by storage:0/, 15000);
            const killLine = /(\d\d):(\d\d):(\d\d\.\d+)Z warn {2}\[link\] link to storage:1 lost/.exec(cl.since(mark));
            const secs = (x) => Number(x[1]) * 3600 + Number(x[2]) * 60 + Number(x[3]);
            const held = killLine ? Math.round((secs(m) - secs(killLine)) * 1000) : NaN;
            lease.push(held);
            ack.push(acked);
            console.log(`round ${round + 1}: slot taken over ${held} ms after the link loss; writes ACKed again ${acked} ms after the kill`);
            r.close();
            const mark2 = cl.mark();
            cl.resumeSupervisor();
            await cl.waitRestart('storage:1', oldPid, 90000);   // the supervisor's back-off grows
            await waitLog(cl, mark2, /storage slot 1: served by storage:1/, 20000);
            await cl.waitLinks(30000);
        }
        console.log(`median over ${ROUNDS} kills: takeover ${median(lease)} ms, writes ACKed again ${median(ack)} ms ` +
                    `(min ${Math.min(...ack)}, max ${Math.max(...ack)})`);
    } finally {
        C.closeAll();
        cl.resumeSupervisor();
        await cl.stop();
        ChildProcess.spawnSync('dropdb', [db]);
    }
})().catch((e) => { console.error(e); process.exitCode = 1; });
