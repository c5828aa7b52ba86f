'use strict';
// A healthy client in its own process (forked by abuse-flood.test.js): it
// pings every 20 ms until told to stop (or after MAX_PINGS) and reports how
// many answers it got and their round-trip times.  Its own process, so the
// flooding client's work in the test's process cannot delay its pings and be
// mistaken for the server's.
const C = require('./client');

const INTERVAL_MS = 20;          // often enough for a p99 over a short flood
const MAX_PINGS = 5000;          // bounded: under 2 minutes of pings at most
const PING_TIMEOUT_MS = 30000;   // generous: the machine is shared, this is no speed check

(async () => {
    const h = await C.rawReady(process.argv[2]);
    let stop = false; let error = null;
    const ms = [];
    process.on('message', (m) => { if (m === 'stop') { stop = true; } });
    process.send('ready');
    while (!stop && ms.length < MAX_PINGS) {
        const t0 = process.hrtime.bigint();
        try {
            const p = await h.ping(PING_TIMEOUT_MS);
            if (p[1] !== 'ACK') { throw new Error(`PING answered ${C.short(p)}`); }
        } catch (e) { error = e.message; break; }
        ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
        await C.sleep(INTERVAL_MS);
    }
    process.send({ n: ms.length, ms, error });
    h.close();
    process.exit(0);
})().catch((e) => { process.send({ n: 0, ms: [], error: e.message }); process.exit(1); });
