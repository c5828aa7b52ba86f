'use strict';
// Helpers of the admin tests (docs/protocol/admin.md): an admin RPC client
// as the admin panel uses it (ADMIN [SUBCMD, payload], reply.slice(2)),
// the HTTP modules the web app reads (/api/config, /api/broadcast,
// /api/instance) parsed, the decree log, and a login-block registration
// (POST /api/auth WRITE_BLOCK) to see registration closed or open.

const Fs = require('node:fs');
const Path = require('node:path');
const Nacl = require('tweetnacl');
const C = require('./client');
const R = require('./rpc');

// ADMIN calls of one key on one connection.  call(): reply.slice(2) or
// throws R's error (.code); fail(): the error code of a call that must fail.
const adminClient = async (url, keys, { ms = 20000 } = {}) => {
    const r = await C.rawReady(url);
    const hk = await R.learnHk(r);
    const rpc = R.client(r, hk, keys, { ms });
    const payload = (p) => (p === undefined ? null : p);
    return {
        r, hk, rpc,
        call: (sub, p) => rpc.call('ADMIN', [sub, payload(p)]),
        fail: (sub, p) => rpc.fail('ADMIN', [sub, payload(p)]),
        raw: (args) => rpc.callRaw('ADMIN', args),
        decree: (cmd, args) => rpc.call('ADMIN', ['ADMIN_DECREE', [cmd, args]]),
        decreeFail: (cmd, args) => rpc.fail('ADMIN', ['ADMIN_DECREE', [cmd, args]]),
        anon: (cmd, args) => R.anonRaw(r, hk, cmd, args),
        close: () => r.close(),
    };
};

// The JSON inside a define(function(){ ... }) module.
const httpModule = async (port, path) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    const text = await res.text();
    const m = /return\s*([\s\S]*);\s*\n?\}\);\s*$/.exec(text);
    if (!m) { throw new Error(`${path}: not a module: ${text.slice(0, 200)}`); }
    return JSON.parse(m[1]);
};

const decreeFile = (dataDir) => Path.join(dataDir, 'data', 'decrees', 'decree.ndjson');
const decreeLines = (dataDir) => {
    let text = '';
    try { text = Fs.readFileSync(decreeFile(dataDir), 'utf8'); } catch (e) { return []; }
    return text.split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l); } catch (e) { return l; } });
};

// The onboarding link printed at start (admin.md §1.4), or null.
const installLinks = (log) => [...log.matchAll(/^(\S+)\/install\/#([0-9a-f]{64})$/gm)]
    .map(m => ({ origin: m[1], token: m[2] }));

// WRITE_BLOCK of a new login block, both rounds (docs/protocol/http.md §9).
const b64 = (u8) => Buffer.from(u8).toString('base64');
const registerBlock = async (port) => {
    const kp = Nacl.sign.keyPair();
    const pub = b64(kp.publicKey);
    const bytes = Buffer.concat([Buffer.from([0]), Buffer.from(Nacl.randomBytes(100))]);
    const content = { publicKey: pub, signature: b64(Nacl.sign.detached(Nacl.hash(bytes), kp.secretKey)), ciphertext: b64(bytes) };
    const post = async (body) => {
        const res = await fetch(`http://127.0.0.1:${port}/api/auth/`, {
            method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
        });
        const text = await res.text();
        let json; try { json = JSON.parse(text); } catch (e) { json = undefined; }
        return { status: res.status, text, json };
    };
    const req = { command: 'WRITE_BLOCK', content, publicKey: pub, nonce: b64(Nacl.randomBytes(24)) };
    const r1 = await post(req);
    if (r1.status !== 200) { return r1; }
    const sig = b64(Nacl.sign.detached(Buffer.from(JSON.stringify({ ...req, txid: r1.json.txid, date: r1.json.date }), 'utf8'), kp.secretKey));
    return post({ sig, txid: r1.json.txid });
};

module.exports = { adminClient, httpModule, decreeFile, decreeLines, installLinks, registerBlock };
