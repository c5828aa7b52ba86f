'use strict';
// A healthy client in its own process (forked by abuse-flood.test.js): it
// pings every 100 ms until told to stop and reports how many answers it got
// and the slowest.  Its own process, so the flooding client's work in the
// test's process cannot delay its pings and be mistaken for the server's.
const C = require('./client');

(async () => {
    const h = await C.rawReady(process.argv[2]);
    let stop = false; let n = 0; let worst = 0; let error = null;
    process.on('message', (m) => { if (m === 'stop') { stop = true; } });
    process.send('ready');
    while (!stop) {
        const t0 = Date.now();
        try {
            const p = await h.ping(5000);
            if (p[1] !== 'ACK') { throw new Error(`PING answered ${C.short(p)}`); }
        } catch (e) { error = e.message; break; }
        worst = Math.max(worst, Date.now() - t0);
        n++;
        await C.sleep(100);
    }
    process.send({ n, worst, error });
    h.close();
    process.exit(0);
})().catch((e) => { process.send({ n: 0, worst: 0, error: e.message }); process.exit(1); });
