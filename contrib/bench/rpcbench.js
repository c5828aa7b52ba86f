#!/usr/bin/env node
// Benchmark of signed RPC (issue 4): C clients each authenticate (COOKIE)
// and then call GET_HASH N times, W calls in flight each; reports calls/s
// and the server's CPU time per call (from /proc/PID/stat).
//   node rpcbench.js --url ws://127.0.0.1:PORT/cryptpad_websocket --pid PID
//                    [--clients 50] [--calls 200] [--window 4] [--max-seconds 120]
'use strict';
const Fs = require('node:fs');
const WebSocket = require('ws');
const Nacl = require('tweetnacl');
const arg = (k, d) => { const i = process.argv.indexOf('--' + k); return i > 0 ? process.argv[i + 1] : d; };
const url = arg('url'); const pid = Number(arg('pid'));
const C = Number(arg('clients', 50)), N = Number(arg('calls', 200)), W = Number(arg('window', 4));
if (!/^ws:\/\/(127\.|localhost|\[::1\])/.test(url || '')) { console.error('loopback --url required'); process.exit(2); }
setTimeout(() => { console.error('watchdog'); process.exit(3); }, Number(arg('max-seconds', 120)) * 1000).unref();
const HK = '0123456789abcdef';
const cpu = () => { try { const f = Fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / 100; } catch (e) { return NaN; } };

const client = (i) => new Promise((resolve, reject) => {
    const kp = Nacl.sign.keyPair();
    const pub = Buffer.from(kp.publicKey).toString('base64');
    const ws = new WebSocket(url, { perMessageDeflate: false });
    let seq = 1, cookie = null, done = 0, sent = 0, tx = 0;
    const waiting = new Map();
    // tweetnacl signs in pure JS (~5-10 ms): the same text (same cookie,
    // command, args) is signed once and the signature reused, as the server
    // allows while the cookie is valid, so the bench measures the server.
    const sigs = new Map();
    const sign = (c, cmd, a) => {
        const text = JSON.stringify([c, cmd, a]);
        if (!sigs.has(text)) { sigs.set(text, Buffer.from(Nacl.sign.detached(Buffer.from(text), kp.secretKey)).toString('base64')); }
        return sigs.get(text);
    };
    const call = (cmd, a) => new Promise((res) => {
        const txid = `c${i}t${tx++}`;
        waiting.set(txid, res);
        ws.send(JSON.stringify([seq++, 'MSG', HK, JSON.stringify([txid, [sign(cookie, cmd, a), pub, cookie, cmd, a]])]));
    });
    ws.on('error', reject);
    ws.on('message', (d) => {
        const m = JSON.parse(String(d));
        if (m[2] !== 'MSG' || m[1] !== HK) { return; }
        const r = JSON.parse(m[4]);
        const res = waiting.get(r[0]);
        if (!res) { return; }
        waiting.delete(r[0]);
        if (!cookie && typeof r[1] === 'string' && r[1].includes('|')) { cookie = r[1]; }
        res(r);
    });
    ws.on('open', async () => {
        const c = await call('COOKIE', '');
        if (c[1] === 'ERROR') { return reject(new Error(String(c))); }
        const pump = async () => {
            while (sent < N) {
                sent++;
                const r = await call('GET_HASH', pub);
                if (r[1] === 'ERROR') { return reject(new Error(JSON.stringify(r))); }
                done++;
            }
        };
        await Promise.all(Array.from({ length: W }, pump));
        ws.close();
        resolve(done);
    });
});

(async () => {
    const c0 = cpu(); const t0 = Date.now();
    const counts = await Promise.all(Array.from({ length: C }, (_, i) => client(i)));
    const secs = (Date.now() - t0) / 1000; const used = cpu() - c0;
    const total = counts.reduce((a, b) => a + b, 0);
    console.log(`${C} clients x ${N} signed GET_HASH (window ${W}): ${total} calls in ${secs.toFixed(2)} s => ${Math.round(total / secs)} calls/s; server CPU ${used.toFixed(2)} s => ${(used / total * 1e6).toFixed(1)} us/call`);
    process.exit(0);
})().catch((e) => { console.error('failed:', e.message); process.exit(1); });
