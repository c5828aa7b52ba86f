#!/usr/bin/env node
// Benchmark (c) of the history issue: K clients read a large channel history
// at the same moment; reports the throughput and the server's peak memory.
//   node bighistory.js --url ws://127.0.0.1:PORT/cryptpad_websocket --pid PID
//                      --channel ID [--readers 20] [--max-seconds 300]
// The log must exist already (run.sh bighistory writes a 100 MB one).
'use strict';
const Fs = require('node:fs');
const WebSocket = require('ws');
const arg = (k, d) => { const i = process.argv.indexOf('--' + k); return i > 0 ? process.argv[i + 1] : d; };
const url = arg('url'); const pid = Number(arg('pid')); const chan = arg('channel');
const K = Number(arg('readers', 20)); const MAX = Number(arg('max-seconds', 300));
if (!/^ws:\/\/(127\.|localhost|\[::1\])/.test(url || '')) { console.error('loopback --url required'); process.exit(2); }
const status = () => { try { return Fs.readFileSync(`/proc/${pid}/status`, 'utf8'); } catch (e) { return ''; } };
const kb = (k) => { const m = status().match(new RegExp(`${k}:\\s+(\\d+)`)); return m ? Number(m[1]) : 0; };
setTimeout(() => { console.error('watchdog'); process.exit(3); }, MAX * 1000).unref();
const rssBefore = kb('VmRSS');
let peak = rssBefore;
const sampler = setInterval(() => { peak = Math.max(peak, kb('VmRSS')); }, 50);
const reader = (i) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
    let bytes = 0, frames = 0;
    ws.on('error', reject);
    ws.on('message', (d) => {
        const s = String(d);
        if (s.includes('"IDENT"')) {
            ws.send(JSON.stringify([1, 'MSG', '0123456789abcdef', JSON.stringify(['GET_HISTORY', chan, { txid: 'r' + i, lastKnownHash: -1 }])]));
            return;
        }
        bytes += d.length; frames++;
        if (s.includes('\\"state\\":1')) { ws.close(); resolve({ bytes, frames }); }
        if (s.includes('"ERROR"') || s.includes('\\"error\\"')) { ws.close(); reject(new Error(s.slice(0, 200))); }
    });
});
(async () => {
    const t0 = Date.now();
    const res = await Promise.all(Array.from({ length: K }, (_, i) => reader(i)));
    const secs = (Date.now() - t0) / 1000;
    clearInterval(sampler);
    const total = res.reduce((a, r) => a + r.bytes, 0);
    console.log(`${K} readers, ${res[0].frames} frames each: ${(total / 1048576).toFixed(1)} MiB in ${secs.toFixed(2)} s => ${(total / 1048576 / secs).toFixed(1)} MiB/s`);
    console.log(`server RSS: before ${(rssBefore / 1024).toFixed(1)} MiB, peak ${(peak / 1024).toFixed(1)} MiB, VmHWM ${(kb('VmHWM') / 1024).toFixed(1)} MiB`);
    process.exit(0);
})().catch((e) => { console.error('failed:', e.message); process.exit(1); });
