'use strict';
// What an unauthenticated /api/auth round 1 may make the server keep is
// bounded (docs/protocol/http.md §9.5): the size of a stored challenge, the
// challenges outstanding per key and in total (429), wrong TOTP codes per
// key and minute (INVALID_OTP), and challenges of an earlier run are
// collected at start-up through the index record.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const Crypto = require('node:crypto');
const Nacl = require('tweetnacl');
const { startServer, withLog, tmpDir, existsStored } = require('./lib/server');

const ROOT = tmpDir('cpsd-authlim-');
const CONF = {
    listen: { extra_ports: [] },
    auth: { challenge_ttl_ms: 1500, max_challenges_per_key: 3, max_challenges: 6, max_challenge_bytes: 4096 },
};
let srv;
const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv.guard(fn)(t));

before(withLog(() => srv, async () => { srv = await startServer(CONF, { dir: ROOT }); }));
after(async () => {
    if (srv) { await srv.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
});

const sleep = (ms) => new Promise(r => setTimeout(r, ms));
const b64 = (u8) => Buffer.from(u8).toString('base64');
const keys = () => { const kp = Nacl.sign.keyPair(); return { pub: b64(kp.publicKey), sec: kp.secretKey }; };
const post = async (body) => {
    const res = await fetch(`http://127.0.0.1:${srv.port}/api/auth/`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try { json = text ? JSON.parse(text) : undefined; } catch (e) { json = undefined; }
    return { status: res.status, text, json };
};
const round1 = (kp, cmd, params = {}) => {
    const req = { command: cmd, ...params, publicKey: kp.pub, nonce: b64(Nacl.randomBytes(24)) };
    return post(req).then(r => ({ ...r, req }));
};
const signFor = (req, r1, sec) =>
    b64(Nacl.sign.detached(Buffer.from(JSON.stringify({ ...req, txid: r1.txid, date: r1.date }), 'utf8'), sec));
const command = async (kp, cmd, params = {}) => {
    const r1 = await round1(kp, cmd, params);
    if (r1.status !== 200) { return { ...r1, round: 1 }; }
    return { ...(await post({ sig: signFor(r1.req, r1.json, kp.sec), txid: r1.json.txid })), round: 2 };
};
const challengeFile = (txid) => Path.join(srv.config.data_dir, 'data', 'challenges', txid.slice(0, 2), txid);
const waitGone = async (files, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end && files.some(f => existsStored(f))) { await sleep(50); }
    return files.filter(f => existsStored(f));
};

// TOTP (RFC 6238) with Node's HMAC, as auth.test.js.
const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const base32 = (buf) => {
    let bits = 0; let acc = 0; let out = '';
    for (const b of buf) {
        acc = (acc << 8) | b; bits += 8;
        while (bits >= 5) { out += B32[(acc >>> (bits - 5)) & 31]; bits -= 5; }
    }
    if (bits) { out += B32[(acc << (5 - bits)) & 31]; }
    return out;
};
const totp = (raw, ms = Date.now()) => {
    const msg = Buffer.alloc(8);
    msg.writeBigUInt64BE(BigInt(Math.floor(ms / 30000)));
    const mac = Crypto.createHmac('sha1', raw).update(msg).digest();
    const bin = mac.readUInt32BE(mac[19] & 15) & 0x7fffffff;
    return String(bin % 1000000).padStart(6, '0');
};
const badCode = (raw) => {
    const near = new Set([-1, 0, 1].map(d => totp(raw, Date.now() + d * 30000)));
    for (let i = 0; ; i++) {
        const c = String((123456 + i * 7919) % 1000000).padStart(6, '0');
        if (!near.has(c)) { return c; }
    }
};

T('a stored challenge is bounded by max_challenge_bytes: 413, nothing stored', async () => {
    const kp = keys();
    const r = await round1(kp, 'TEST', { pad: 'x'.repeat(5000) });
    assert.equal(r.status, 413, r.text);
    assert.deepEqual(r.json, { error: 'Request too large' });
    const ok = await command(kp, 'TEST', { pad: 'x'.repeat(3000) });
    assert.equal(ok.status, 200, ok.text);
});

T('outstanding challenges per key and in total: 429 EBUSY, room again once answered or expired', async () => {
    const a = keys();
    const r1s = [];
    for (let i = 0; i < 3; i++) {
        const r = await round1(a, 'TEST');
        assert.equal(r.status, 200, r.text);
        r1s.push(r);
    }
    let r = await round1(a, 'TEST');
    assert.equal(r.status, 429, r.text);
    assert.deepEqual(r.json, { error: 'EBUSY' });
    // another key still gets challenges, up to the total of 6
    const others = [keys(), keys()];
    for (const k of others) {
        for (let i = 0; i < 3 && r1s.length < 6; i++) { assert.equal((await round1(k, 'TEST')).status, 200); r1s.push(null); }
    }
    r = await round1(keys(), 'TEST');
    assert.equal(r.status, 429, `total reached: ${r.text}`);
    // answering one gives its key room again
    const ans = await post({ sig: signFor(r1s[0].req, r1s[0].json, a.sec), txid: r1s[0].json.txid });
    assert.equal(ans.status, 200, ans.text);
    assert.equal((await round1(a, 'TEST')).status, 200);
    // expiry (1.5 s) and collection give room to everyone
    await sleep(3500);
    for (let i = 0; i < 3; i++) { assert.equal((await round1(a, 'TEST')).status, 200); }
    assert.equal((await round1(keys(), 'TEST')).status, 200);
    await sleep(3500);   // leave the next test an empty table
});

T('wrong TOTP codes: 5 per key and minute, then INVALID_OTP even for a right code', async () => {
    const kp = keys();
    const bytes = Buffer.concat([Buffer.from([0]), Buffer.from(Nacl.randomBytes(200))]);
    const content = { publicKey: kp.pub, signature: b64(Nacl.sign.detached(Nacl.hash(bytes), kp.sec)), ciphertext: b64(bytes) };
    let r = await command(kp, 'WRITE_BLOCK', { content });
    assert.equal(r.status, 200, r.text);
    const raw = Crypto.randomBytes(20);
    const secret = base32(raw);
    r = await command(kp, 'TOTP_SETUP', { secret, code: totp(raw) });
    assert.equal(r.status, 200, r.text);
    for (let i = 0; i < 5; i++) {
        r = await command(kp, 'TOTP_VALIDATE', { code: badCode(raw) });
        assert.deepEqual(r.json, { error: 'INVALID_OTP' }, `wrong code ${i}`);
    }
    r = await command(kp, 'TOTP_VALIDATE', { code: totp(raw) });
    assert.equal(r.round, 1);
    assert.deepEqual(r.json, { error: 'INVALID_OTP' }, 'locked for the minute');
    // another key is not affected
    const other = keys();
    r = await command(other, 'TEST');
    assert.equal(r.status, 200, r.text);
});

T('challenges of an earlier run are collected at start-up', async () => {
    const kp = keys();
    const txids = [];
    for (let i = 0; i < 3; i++) {
        const r = await round1(kp, 'TEST');
        assert.equal(r.status, 200, r.text);
        txids.push(r.json.txid);
    }
    const files = txids.map(challengeFile);
    files.forEach(f => assert.ok(existsStored(f), f));
    await sleep(1300);           // the index record is saved (every second)
    assert.equal(await srv.stop(), 0);
    srv = null;
    await sleep(1000);           // now expired (ttl 1.5 s)
    srv = await startServer(CONF, { dir: ROOT });
    const left = await waitGone(files, 1000);   // well before the first collection tick (1.5 s)
    assert.deepEqual(left, [], 'expired challenges of the earlier run deleted at start-up');
});

T('the server stops cleanly (exit 0: nothing leaked under ASan)', async () => {
    const r = round1(keys(), 'TEST').catch(() => null);
    assert.equal(await srv.stop(), 0, srv.stderr().slice(-4000));
    srv = null;
    await r;
});
