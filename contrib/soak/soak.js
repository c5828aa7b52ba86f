#!/usr/bin/env node
// Soak load for cpsd (issue 12, not CI): for --seconds, mixed load through the
// real netflux-websocket client (broadcast in a few pads, connection churn,
// history reads) plus signed RPC, blob uploads and abuse over raw sockets (junk frames,
// COOKIE with random keys, slow HTTP bodies).  Loopback only; every loop is
// bounded by the deadline.  Prints one line of counts per minute and at the end.
//   node soak.js --url ws://127.0.0.1:PORT/cryptpad_websocket --seconds 1800
'use strict';

const Crypto = require('node:crypto');
const Net = require('node:net');
const WebSocket = require('ws');
const Netflux = require('netflux-websocket');
const Nacl = require('tweetnacl');

const arg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : def; };
const URL = arg('url', 'ws://127.0.0.1:3097/cryptpad_websocket');
const SECONDS = Number(arg('seconds', 1800));
if (!/^ws:\/\/(127\.\d+\.\d+\.\d+|localhost)(:\d+)?\//.test(URL)) { console.error('loopback URLs only'); process.exit(2); }
const PORT = Number(new globalThis.URL(URL).port);
const END = Date.now() + SECONDS * 1000;
setTimeout(() => { console.error('soak: watchdog'); process.exit(3); }, SECONDS * 1000 + 60000).unref();

const sleep = (ms) => new Promise(r => setTimeout(r, ms));
const hex = (n) => Crypto.randomBytes(n).toString('hex');
const b64 = (u8) => Buffer.from(u8).toString('base64');
const count = {};
const add = (k, n = 1) => { count[k] = (count[k] || 0) + n; };
const timeout = (p, ms, what) => Promise.race([p, sleep(ms).then(() => { throw new Error(`timeout: ${what}`); })]);
console.log = () => { add('client_notices'); };      // netflux-websocket's notices

const connect = () => {
    const made = [];
    return timeout(Netflux.connect(URL, (u) => { const ws = new WebSocket(u, { perMessageDeflate: false }); ws.on('error', () => {}); made.push(ws); return ws; }), 15000, 'connect')
        .then((net) => ({ net, close: () => { try { net.disconnect(); } catch (e) { /* gone */ } for (const w of made) { try { w.terminate(); } catch (e) { /* gone */ } } } }));
};

// broadcast: 5 pads x 4 users, each sends a message then waits 250 ms
const broadcast = async () => {
    const users = [];
    for (let p = 0; p < 5; p++) {
        const pad = hex(16);
        for (let u = 0; u < 4; u++) {
            const c = await connect();
            const wc = await timeout(c.net.join(pad), 15000, 'join');
            wc.on('message', () => add('bcast_received'));
            users.push({ c, wc });
        }
    }
    await Promise.all(users.map(async ({ wc }) => {
        while (Date.now() < END) {
            try { await timeout(wc.bcast(`${hex(8)}|${'x'.repeat(200)}`), 15000, 'bcast'); add('bcast_sent'); } catch (e) { add('bcast_errors'); }
            await sleep(250);
        }
    }));
    for (const { c } of users) { c.close(); }
};

// churn: connect, join, send, leave, disconnect; 4 workers
const churn = async () => {
    const pads = [hex(16), hex(16)];
    await Promise.all([0, 1, 2, 3].map(async (w) => {
        while (Date.now() < END) {
            try {
                const c = await connect();
                const wc = await timeout(c.net.join(pads[w % 2]), 15000, 'join');
                await timeout(wc.bcast(`churn|${hex(16)}`), 15000, 'bcast');
                wc.leave();
                c.close();
                add('churn_cycles');
            } catch (e) { add('churn_errors'); }
            await sleep(100);
        }
    }));
};

// history: a pad filled once, then read by fresh clients, one every 500 ms
const history = async () => {
    const writer = await connect();
    const pad = hex(16);
    const wc = await timeout(writer.net.join(pad), 15000, 'join');
    for (let i = 0; i < 300; i++) { await wc.bcast(`h${i}|${'y'.repeat(500)}`); }
    const hk = wc.members.find(id => id.length === 16);
    writer.close();
    while (Date.now() < END) {
        try {
            const c = await connect();
            await timeout(c.net.join(pad), 15000, 'join');
            const txid = hex(4);
            await timeout(new Promise((resolve) => {
                c.net.on('message', (msg, sender) => {
                    if (sender !== hk) { return; }
                    try { const m = JSON.parse(msg); if (m && m.state === 1 && m.txid === txid) { resolve(); } } catch (e) { /* a line */ }
                });
                c.net.sendto(hk, JSON.stringify(['GET_HISTORY', pad, { txid, metadata: {} }]));
            }), 15000, 'history');
            c.close();
            add('history_reads');
        } catch (e) { add('history_errors'); }
        await sleep(500);
    }
    return hk;
};

// a raw connection: frames in, one request at a time
const raw = () => new Promise((resolve, reject) => {
    const ws = new WebSocket(URL, { perMessageDeflate: false });
    const waiters = [];
    let seq = 1;
    ws.on('message', (d) => { let f; try { f = JSON.parse(String(d)); } catch (e) { return; } for (const w of waiters.slice()) { w(f); } });
    ws.on('error', () => {});
    ws.on('open', () => resolve({
        ws,
        ask (frame, pred, ms = 15000) {
            return timeout(new Promise((res) => { const w = (f) => { if (pred(f)) { waiters.splice(waiters.indexOf(w), 1); res(f); } }; waiters.push(w); ws.send(JSON.stringify(frame)); }), ms, 'raw reply');
        },
        seq: () => seq++,
    }));
    setTimeout(() => reject(new Error('raw connect')), 15000);
});

// A signed-RPC client on one raw connection (docs/protocol/rpc.md §3): each
// reply carries the next cookie.
const rpcClient = async (hk) => {
    const r = await raw();
    const keys = Nacl.sign.keyPair();
    const pub = b64(keys.publicKey);
    let cookie = null;
    const call = async (cmd, args, { signed = true } = {}) => {
        const a = args === undefined ? null : args;
        const sig = signed ? b64(Nacl.sign.detached(Buffer.from(JSON.stringify([cookie, cmd, a])), keys.secretKey)) : null;
        const txid = hex(6);
        const reply = await r.ask([r.seq(), 'MSG', hk, JSON.stringify([txid, [sig, pub, cookie, cmd, a]])], (f) => {
            if (!Array.isArray(f) || f[2] !== 'MSG' || f[1] !== hk) { return false; }
            try { return JSON.parse(f[4])[0] === txid; } catch (e) { return false; }
        });
        const body = JSON.parse(reply[4]);
        if (body[1] === 'ERROR') { throw new Error(`${cmd}: ${body[2]}`); }
        if (typeof body[1] === 'string' && body[1].includes('|')) { cookie = body[1]; }
        return body.slice(2);
    };
    return { r, call, close: () => r.ws.close() };
};

// signed RPC: COOKIE then GET_LIMIT, every 300 ms, 20 calls per connection
const rpc = async (hk) => {
    while (Date.now() < END) {
        try {
            const c = await rpcClient(hk);
            await c.call('COOKIE', '');
            for (let i = 0; i < 20 && Date.now() < END; i++) { await c.call('GET_LIMIT'); add('rpc_calls'); await sleep(300); }
            c.close();
        } catch (e) { add('rpc_errors'); }
    }
};

// uploads: a 64 KiB blob (UPLOAD_STATUS, UPLOAD in 16 KiB chunks,
// UPLOAD_COMPLETE), then GET /blob/ of it; one every 2 s
const httpGet = (path) => new Promise((resolve, reject) => {
    const s = Net.connect(PORT, '127.0.0.1');
    let n = 0;
    s.on('data', (d) => { n += d.length; });
    s.on('error', reject);
    s.on('close', () => resolve(n));
    s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
});
const uploads = async (hk) => {
    while (Date.now() < END) {
        try {
            const c = await rpcClient(hk);
            await c.call('COOKIE', '');
            for (let i = 0; i < 10 && Date.now() < END; i++) {
                const id = hex(24);
                const content = Crypto.randomBytes(65536);
                await c.call('UPLOAD_STATUS', { id, size: content.length });
                for (let off = 0; off < content.length; off += 16384) {
                    await c.call('UPLOAD', { chunk: b64(content.subarray(off, off + 16384)), id }, { signed: false });
                }
                await c.call('UPLOAD_COMPLETE', id);
                const got = await httpGet(`/blob/${id.slice(0, 2)}/${id}`);
                if (got < content.length) { throw new Error(`download of ${got} bytes`); }
                add('uploads');
                await sleep(2000);
            }
            c.close();
        } catch (e) { add('upload_errors'); if (!count.upload_error_text) { count.upload_error_text = String(e.message).slice(0, 100); } }
    }
};

// abuse: junk frames, random-key COOKIEs, a slow HTTP body; every 2 s
const abuse = async (hk) => {
    while (Date.now() < END) {
        try {
            const r = await raw();
            r.ws.send(JSON.stringify([r.seq(), 'MSG', hk, JSON.stringify([hex(4), [b64(Crypto.randomBytes(64)), b64(Crypto.randomBytes(32)), null, 'COOKIE', '']])]));
            r.ws.send('not json {');        // closes this connection
            add('abuse_junk');
            const s = Net.connect(PORT, '127.0.0.1');
            s.on('error', () => {});
            s.write('POST /api/auth HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{');
            await sleep(2000);
            s.destroy();
            add('abuse_slow_body');
        } catch (e) { add('abuse_errors'); }
    }
};

(async () => {
    const t0 = Date.now();
    const tick = setInterval(() => console.error(`soak ${Math.round((Date.now() - t0) / 1000)} s ${JSON.stringify(count)}`), 60000);
    const first = await connect();
    const wc = await timeout(first.net.join(hex(16)), 15000, 'join');
    const hk = wc.members.find(id => id.length === 16);
    first.close();
    await Promise.all([broadcast(), churn(), history(), rpc(hk), uploads(hk), abuse(hk)]);
    clearInterval(tick);
    process.stdout.write(`soak done ${JSON.stringify(count)}\n`);
    process.exit(0);
})().catch((e) => { process.stderr.write(`soak failed: ${e.stack}\n`); process.exit(1); });
