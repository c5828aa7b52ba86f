'use strict';
// Login blocks and HTTP commands (spec docs/protocol/http.md §7, §9; docs/protocol/storage.md §6, §10),
// served by the plugin auth: POST /api/auth(/) in two signed rounds (TEST,
// WRITE_BLOCK, REMOVE_BLOCK, UPLOAD_COOKIE, MFA_CHECK, TOTP_*), and
// GET /block/<xx>/<key> with its 404 body and MFA gate, checked against the
// files the server writes under <data_dir> (block/, data/challenges/, ...).
//
// Three servers: the default one, one with auth = { challenge_ttl_ms = 300 }
// (expiry), and a restart of the first on its data (challenges persist).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const Crypto = require('node:crypto');
const Http = require('node:http');
const Nacl = require('tweetnacl');
const { startServer, withLog, tmpDir, listFiles, readStored, statStored, existsStored } = require('./lib/server');

const ROOT = tmpDir('cpsd-auth-');
const DATA = Path.join(ROOT, 'data');
const ROOT2 = tmpDir('cpsd-auth2-');

// No second (sandbox) port: two servers would both want the default one.
const CONF = { listen: { extra_ports: [] } };
let srv;
let srv2;
const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv.guard(fn)(t));

before(withLog(() => srv2 || srv, async () => {
    Fs.mkdirSync(DATA, { recursive: true });
    srv = await startServer(CONF, { dir: ROOT });
    srv2 = await startServer({ ...CONF, auth: { challenge_ttl_ms: 300 } }, { dir: ROOT2 });
}));

after(async () => {
    if (srv) { await srv.stop(); }
    if (srv2) { await srv2.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
    Fs.rmSync(ROOT2, { recursive: true, force: true });
});

// ------------------------------------------------------------ helpers

const b64 = (u8) => Buffer.from(u8).toString('base64');
const safe = (k) => k.replace(/\//g, '-');
const keys = () => {
    const kp = Nacl.sign.keyPair();
    return { pub: b64(kp.publicKey), sec: kp.secretKey };
};

const post = async (s, body, { path = '/api/auth/', raw = false } = {}) => {
    const res = await fetch(`http://127.0.0.1:${s.port}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: raw ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try { json = text ? JSON.parse(text) : undefined; } catch (e) { json = undefined; }
    return { status: res.status, text, json };
};

// A GET sent byte for byte (fetch would normalise '..' and escapes).
const rawGet = (s, path) => new Promise((resolve, reject) => {
    const req = Http.request({ host: '127.0.0.1', port: s.port, path, method: 'GET' }, (res) => {
        const chunks = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => {
            const buf = Buffer.concat(chunks);
            let json;
            try { json = JSON.parse(buf.toString('utf8')); } catch (e) { json = undefined; }
            resolve({ status: res.statusCode, buf, json });
        });
    });
    req.on('error', reject);
    req.end();
});

const get = async (s, path, headers = {}) => {
    const res = await fetch(`http://127.0.0.1:${s.port}${path}`, { headers });
    const buf = Buffer.from(await res.arrayBuffer());
    let json;
    try { json = JSON.parse(buf.toString('utf8')); } catch (e) { json = undefined; }
    return { status: res.status, buf, json, headers: res.headers };
};

// Round 1 as the web app sends it: its fields, then publicKey and nonce.
const round1 = (s, kp, cmd, params = {}) => {
    const req = { command: cmd, ...params, publicKey: kp.pub, nonce: b64(Nacl.randomBytes(24)) };
    return post(s, req).then(r => ({ ...r, req }));
};

// The signed text: the request with txid and date appended (docs/protocol/http.md §9.2).
const signFor = (req, r1, sec) =>
    b64(Nacl.sign.detached(Buffer.from(JSON.stringify({ ...req, txid: r1.txid, date: r1.date }), 'utf8'), sec));

// Both rounds; returns the round-2 answer.
const command = async (s, kp, cmd, params = {}) => {
    const r1 = await round1(s, kp, cmd, params);
    if (r1.status !== 200) { return { ...r1, round: 1 }; }
    assert.equal(typeof r1.json.txid, 'string');
    const r2 = await post(s, { sig: signFor(r1.req, r1.json, kp.sec), txid: r1.json.txid });
    return { ...r2, round: 2, txid: r1.json.txid };
};

// A block's content (docs/protocol/http.md §9.3): the ciphertext signed through SHA-512.
const blockContent = (kp, bytes) => ({
    publicKey: kp.pub,
    signature: b64(Nacl.sign.detached(Nacl.hash(bytes), kp.sec)),
    ciphertext: b64(bytes),
});
const randomBlock = (n = 200) => Buffer.concat([Buffer.from([0]), Buffer.from(Nacl.randomBytes(n))]);
const blockPath = (kp) => `/block/${safe(kp.pub).slice(0, 2)}/${safe(kp.pub)}`;
const blockFile = (dir, kp) => Path.join(dir, 'block', safe(kp.pub).slice(0, 2), safe(kp.pub));
const challengeFile = (dir, txid) => Path.join(dir, 'data', 'challenges', txid.slice(0, 2), txid);

// RFC 6238 with Node's own HMAC-SHA1, independent of the server's.
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
const unbase32 = (s) => {
    let bits = 0; let acc = 0; const out = [];
    for (const ch of s.replace(/=+$/, '')) {
        acc = (acc << 5) | B32.indexOf(ch.toUpperCase()); bits += 5;
        if (bits >= 8) { out.push((acc >>> (bits - 8)) & 255); bits -= 8; }
    }
    return Buffer.from(out);
};
const totp = (secret, ms = Date.now()) => {
    const msg = Buffer.alloc(8);
    msg.writeBigUInt64BE(BigInt(Math.floor(ms / 30000)));
    const mac = Crypto.createHmac('sha1', unbase32(secret)).update(msg).digest();
    const off = mac[19] & 15;
    const bin = mac.readUInt32BE(off) & 0x7fffffff;
    return String(bin % 1000000).padStart(6, '0');
};
// A code outside the accepted window (-1..+1 steps).
const badCode = (secret) => {
    const near = new Set([-1, 0, 1].map(d => totp(secret, Date.now() + d * 30000)));
    for (let i = 0; ; i++) {
        const c = String((123456 + i * 7919) % 1000000).padStart(6, '0');
        if (!near.has(c)) { return c; }
    }
};

const register = async (s, kp, bytes = randomBlock()) => {
    const r = await command(s, kp, 'WRITE_BLOCK', { content: blockContent(kp, bytes) });
    assert.equal(r.status, 200, r.text);
    return bytes;
};

// ------------------------------------------------------------ tests

T('the TOTP code of the RFC 6238 vector is what this file computes', async () => {
    // Checks the helper itself (the server checks its own at start-up).
    assert.equal(totp(base32(Buffer.from('12345678901234567890')), 59000), '287082');
});

T('TEST: round 1 gives {txid, date}, round 2 succeeds, the challenge record is gone', async () => {
    const kp = keys();
    const r1 = await round1(srv, kp, 'TEST');
    assert.equal(r1.status, 200, r1.text);
    assert.match(r1.json.txid, /^[A-Za-z0-9+=-]{32}$/);
    assert.match(r1.json.date, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Math.abs(Date.parse(r1.json.date) - Date.now()) < 60000);
    const file = challengeFile(DATA, r1.json.txid);
    // The stored text is exactly what the client signs.
    assert.equal(readStored(file, 'utf8'), JSON.stringify({ ...r1.req, ...r1.json }));
    const r2 = await post(srv, { sig: signFor(r1.req, r1.json, kp.sec), txid: r1.json.txid });
    assert.equal(r2.status, 200, r2.text);
    assert.deepEqual(r2.json, { success: 1 });
    assert.equal(existsStored(file), false, 'challenge deleted after use');
});

T('both /api/auth and /api/auth/ reach the endpoint', async () => {
    const kp = keys();
    const req = { command: 'TEST', publicKey: kp.pub, nonce: b64(Nacl.randomBytes(24)) };
    const r1 = await post(srv, req, { path: '/api/auth' });
    assert.equal(r1.status, 200, r1.text);
    const r2 = await post(srv, { sig: signFor(req, r1.json, kp.sec), txid: r1.json.txid }, { path: '/api/auth' });
    assert.equal(r2.status, 200, r2.text);
});

T('GET /block before registration: 404 with a JSON body', async () => {
    const kp = keys();
    const r = await get(srv, blockPath(kp));
    assert.equal(r.status, 404);
    assert.deepEqual(r.json, { code: 404 });
});

T('WRITE_BLOCK then GET /block returns exactly the bytes; a rewrite returns the new bytes', async () => {
    const kp = keys();
    const bytes = await register(srv, kp);
    let r = await get(srv, blockPath(kp));
    assert.equal(r.status, 200);
    assert.ok(r.buf.equals(bytes));
    assert.equal(r.headers.get('content-type'), 'application/octet-stream');
    assert.ok(readStored(blockFile(DATA, kp)).equals(bytes));

    const bytes2 = randomBlock(300);
    await register(srv, kp, bytes2);
    r = await get(srv, blockPath(kp));
    assert.equal(r.status, 200);
    assert.ok(r.buf.equals(bytes2));
    // The old block went to the archive, with the reason next to the live one.
    const xx = safe(kp.pub).slice(0, 2);
    assert.ok(readStored(Path.join(DATA, 'data', 'archive', 'block', xx, safe(kp.pub))).equals(bytes));
    assert.equal(readStored(blockFile(DATA, kp) + '.placeholder', 'utf8'), 'PASSWORD_CHANGE');
    // The same through a key with a '/' (safe form in the path).
    let kp2;
    do { kp2 = keys(); } while (!kp2.pub.includes('/'));
    const b3 = await register(srv, kp2);
    r = await get(srv, blockPath(kp2));
    assert.equal(r.status, 200);
    assert.ok(r.buf.equals(b3));
});

T('REMOVE_BLOCK: the block is archived and GET answers 404 with the reason', async () => {
    const kp = keys();
    await register(srv, kp);
    const r = await command(srv, kp, 'REMOVE_BLOCK', { reason: 'ACCOUNT_DELETED' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, '');
    const g = await get(srv, blockPath(kp));
    assert.equal(g.status, 404);
    assert.deepEqual(g.json, { reason: 'ACCOUNT_DELETED', code: 404 });
    assert.equal(existsStored(blockFile(DATA, kp)), false);
    // Nothing left to remove.
    const again = await command(srv, kp, 'REMOVE_BLOCK', {});
    assert.equal(again.status, 500);
    assert.equal(again.json.error, 'Execution error');
});

T('a challenge answered twice: the second answer is refused', async () => {
    const kp = keys();
    const r1 = await round1(srv, kp, 'TEST');
    const body = { sig: signFor(r1.req, r1.json, kp.sec), txid: r1.json.txid };
    const [a, b] = await Promise.all([post(srv, body), post(srv, body)]);
    const oks = [a, b].filter(x => x.status === 200);
    assert.equal(oks.length, 1, `${a.status} ${a.text} / ${b.status} ${b.text}`);
    const c = await post(srv, body);
    assert.equal(c.status, 500);
    assert.deepEqual(c.json, { error: 'Unexpected response' });
});

T('a wrong signature is refused, consumes the challenge, and writes nothing', async () => {
    const kp = keys();
    const other = keys();
    const before = listFiles(Path.join(DATA, 'block'));
    const content = blockContent(kp, randomBlock());
    // Signed by another key.
    let r1 = await round1(srv, kp, 'WRITE_BLOCK', { content });
    let r2 = await post(srv, { sig: signFor(r1.req, r1.json, other.sec), txid: r1.json.txid });
    assert.equal(r2.status, 500);
    assert.deepEqual(r2.json, { error: 'Failed signature validation' });
    assert.equal(existsStored(challengeFile(DATA, r1.json.txid)), false);
    // Over another text (one more member).
    r1 = await round1(srv, kp, 'WRITE_BLOCK', { content });
    const sig = b64(Nacl.sign.detached(Buffer.from(JSON.stringify({ ...r1.req, ...r1.json, x: 1 })), kp.sec));
    r2 = await post(srv, { sig, txid: r1.json.txid });
    assert.deepEqual(r2.json, { error: 'Failed signature validation' });
    // A block whose own signature is wrong.
    const bad = { ...content, signature: b64(Nacl.sign.detached(Nacl.hash(randomBlock()), kp.sec)) };
    r2 = await command(srv, kp, 'WRITE_BLOCK', { content: bad });
    assert.equal(r2.status, 500);
    assert.deepEqual(r2.json, { error: 'Execution error', errorCode: 'E_COULD_NOT_VERIFY' });
    assert.deepEqual(listFiles(Path.join(DATA, 'block')), before);
    assert.equal((await get(srv, blockPath(kp))).status, 404);
});

T('an expired challenge is refused (challenge_ttl_ms = 300)', async () => {
    const kp = keys();
    const r1 = await round1(srv2, kp, 'TEST');
    assert.equal(r1.status, 200, r1.text);
    await new Promise(r => setTimeout(r, 700));
    const r2 = await post(srv2, { sig: signFor(r1.req, r1.json, kp.sec), txid: r1.json.txid });
    assert.equal(r2.status, 500);
    assert.ok(r2.json && r2.json.error, r2.text);
    // A fresh one still works.
    const ok = await command(srv2, kp, 'TEST');
    assert.equal(ok.status, 200, ok.text);
    // Abandoned challenges are collected (the timer runs every second).
    const r3 = await round1(srv2, kp, 'TEST');
    const f = challengeFile(srv2.config.data_dir, r3.json.txid);
    assert.ok(existsStored(f));
    await new Promise(r => setTimeout(r, 2500));
    assert.equal(existsStored(f), false, 'abandoned challenge collected');
});

T('TOTP: setup, the gate on GET /block, validate, MFA checks, revoke with the recovery key', async () => {
    const kp = keys();
    const bytes = await register(srv, kp);
    const secret = base32(Crypto.randomBytes(20));
    const recovery = b64(Crypto.randomBytes(24));

    // Setup needs a correct code.
    let r = await command(srv, kp, 'TOTP_SETUP', { secret, code: badCode(secret), contact: `secret:${recovery}` });
    assert.equal(r.round, 1);
    assert.deepEqual(r.json, { error: 'INVALID_OTP' });
    r = await command(srv, kp, 'TOTP_SETUP', { secret, code: '12ab56' });
    assert.deepEqual(r.json, { error: 'E_INVALID' });
    r = await command(srv, kp, 'TOTP_SETUP', { secret, code: totp(secret), contact: `secret:${recovery}` });
    assert.equal(r.status, 200, r.text);
    assert.match(r.json.bearer, /^[A-Za-z0-9+=-]{32}$/);
    const bearer = r.json.bearer;
    const mfa = JSON.parse(readStored(Path.join(DATA, 'data', 'mfa', safe(kp.pub).slice(0, 2), safe(kp.pub)), 'utf8'));
    assert.equal(mfa.method, 'TOTP');
    assert.equal(mfa.secret, secret);
    assert.equal(mfa.contact, `secret:${recovery}`);
    // A second setup is refused.
    r = await command(srv, kp, 'TOTP_SETUP', { secret, code: totp(secret) });
    assert.deepEqual(r.json, { error: 'EEXISTS' });

    // The gate.
    let g = await get(srv, blockPath(kp));
    assert.equal(g.status, 401);
    assert.deepEqual(g.json, { sso: false, method: 'TOTP', code: 401 });
    g = await get(srv, blockPath(kp), { authorization: 'Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
    assert.equal(g.status, 401);
    g = await get(srv, blockPath(kp), { authorization: `Bearer ${bearer}` });
    assert.equal(g.status, 200);
    assert.ok(g.buf.equals(bytes));

    // Commands refused while MFA is on.
    r = await command(srv, kp, 'MFA_CHECK');
    assert.deepEqual(r.json, { error: 'NOT_ALLOWED' });
    r = await command(srv, kp, 'WRITE_BLOCK', { content: blockContent(kp, randomBlock()) });
    assert.deepEqual(r.json, { error: 'NOT_ALLOWED' });
    r = await command(srv, kp, 'REMOVE_BLOCK', {});
    assert.deepEqual(r.json, { error: 'NOT_ALLOWED' });

    // Validate gives another session.
    r = await command(srv, kp, 'TOTP_VALIDATE', { code: badCode(secret) });
    assert.deepEqual(r.json, { error: 'INVALID_OTP' });
    r = await command(srv, kp, 'TOTP_VALIDATE', { code: totp(secret) });
    assert.equal(r.status, 200, r.text);
    assert.notEqual(r.json.bearer, bearer);
    g = await get(srv, blockPath(kp), { authorization: `Bearer ${r.json.bearer}` });
    assert.equal(g.status, 200);
    r = await command(srv, kp, 'TOTP_MFA_CHECK', { auth: totp(secret) });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, '');

    // Revoke: a wrong recovery key, then the right one.
    r = await command(srv, kp, 'TOTP_REVOKE', { recoveryKey: b64(Crypto.randomBytes(24)) });
    assert.deepEqual(r.json, { error: 'E_WRONG_RECOVERY_KEY' });
    r = await command(srv, kp, 'TOTP_REVOKE', { recoveryKey: recovery });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { success: true });
    g = await get(srv, blockPath(kp));
    assert.equal(g.status, 200);
    r = await command(srv, kp, 'TOTP_VALIDATE', { code: totp(secret) });
    assert.deepEqual(r.json, { error: 'NO_MFA_CONFIGURED' });
    r = await command(srv, kp, 'MFA_CHECK');
    assert.equal(r.status, 200, r.text);
});

T('TOTP: setup without a block is NO_BLOCK; password change (TOTP_WRITE_BLOCK) and TOTP_REMOVE_BLOCK', async () => {
    const nob = keys();
    const s0 = base32(Crypto.randomBytes(20));
    let r = await command(srv, nob, 'TOTP_SETUP', { secret: s0, code: totp(s0) });
    assert.deepEqual(r.json, { error: 'Execution error', errorCode: 'NO_BLOCK' });

    const old = keys();
    await register(srv, old);
    const secret = base32(Crypto.randomBytes(20));
    r = await command(srv, old, 'TOTP_SETUP', { secret, code: totp(secret) });
    assert.equal(r.status, 200, r.text);

    const kp = keys();
    const bytes = randomBlock();
    const proof = JSON.stringify([old.pub, b64(Nacl.sign.detached(Buffer.from(old.pub, 'base64'), old.sec))]);
    const content = { ...blockContent(kp, bytes), registrationProof: proof };
    r = await command(srv, kp, 'TOTP_WRITE_BLOCK', { content: { ...content, auth: totp(secret) } });
    assert.equal(r.status, 200, r.text);
    const bearer = r.json.bearer;
    assert.equal((await get(srv, blockPath(kp))).status, 401, 'MFA copied to the new block');
    const g = await get(srv, blockPath(kp), { authorization: `Bearer ${bearer}` });
    assert.equal(g.status, 200);
    assert.ok(g.buf.equals(bytes));
    // A proof by another key, or none.
    const forged = JSON.stringify([old.pub, b64(Nacl.sign.detached(Buffer.from(old.pub, 'base64'), kp.sec))]);
    r = await command(srv, kp, 'TOTP_WRITE_BLOCK', { content: { ...content, registrationProof: forged, auth: totp(secret) } });
    assert.deepEqual(r.json, { error: 'INVALID_ANCESTOR' });
    r = await command(srv, kp, 'TOTP_WRITE_BLOCK', { content: { ...blockContent(kp, bytes), auth: totp(secret) } });
    assert.deepEqual(r.json, { error: 'MISSING_ANCESTOR' });

    // The old block goes away with its MFA.
    r = await command(srv, old, 'TOTP_REMOVE_BLOCK', { auth: totp(secret), reason: 'PASSWORD_CHANGE' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { success: true });
    const go = await get(srv, blockPath(old));
    assert.equal(go.status, 404);
    assert.deepEqual(go.json, { reason: 'PASSWORD_CHANGE', code: 404 });
    assert.equal(existsStored(Path.join(DATA, 'data', 'mfa', safe(old.pub).slice(0, 2), safe(old.pub))), false);
});

T('malformed requests: 400 for non-JSON, 413 above 100 kB, the spec\'s 500 errors otherwise', async () => {
    const kp = keys();
    let r = await post(srv, 'not json', { raw: true });
    assert.equal(r.status, 400);
    r = await post(srv, '{"command":"TEST",', { raw: true });
    assert.equal(r.status, 400);
    r = await post(srv, {});
    assert.equal(r.status, 500);
    assert.deepEqual(r.json, { error: 'invalid request' });
    r = await post(srv, [1, 2]);
    assert.deepEqual(r.json, { error: 'invalid request' });
    r = await round1(srv, kp, 'NO_SUCH_COMMAND');
    assert.deepEqual(r.json, { error: 'invalid command' });
    r = await post(srv, { command: 'TEST', publicKey: 'short' });
    assert.deepEqual(r.json, { error: 'Invalid key' });
    r = await post(srv, { command: 'TEST' });
    assert.deepEqual(r.json, { error: 'Invalid key' });
    r = await post(srv, { command: 'TEST', publicKey: kp.pub, txid: '', date: 'x' });
    assert.deepEqual(r.json, { error: 'invalid request' });
    r = await round1(srv, kp, 'WRITE_BLOCK', {});
    assert.deepEqual(r.json, { error: 'INVALID_KEY' });
    r = await round1(srv, kp, 'WRITE_BLOCK', { content: blockContent(keys(), randomBlock()) });
    assert.deepEqual(r.json, { error: 'INVALID_KEY' });

    // Round 2.
    const good = await round1(srv, kp, 'TEST');
    const sig = signFor(good.req, good.json, kp.sec);
    r = await post(srv, { sig, txid: good.json.txid, publicKey: kp.pub });
    assert.deepEqual(r.json, { error: 'extraneous parameters' });
    r = await post(srv, { sig, txid: 'abc' });
    assert.deepEqual(r.json, { error: 'Invalid txid' });
    r = await post(srv, { txid: good.json.txid });
    assert.deepEqual(r.json, { error: 'Missing signature' });
    r = await post(srv, { sig: 'x'.repeat(10), txid: good.json.txid });
    assert.deepEqual(r.json, { error: 'Missing signature' });
    r = await post(srv, { sig, txid: '../../../../etc/passwd/xxxxxxxxx' });
    assert.deepEqual(r.json, { error: 'Unexpected response' });
    r = await post(srv, { sig, txid: 'A'.repeat(32) });
    assert.deepEqual(r.json, { error: 'Unexpected response' });
    // None of that consumed the real challenge.
    r = await post(srv, { sig, txid: good.json.txid });
    assert.equal(r.status, 200, r.text);

    // Size: 100 kB of JSON is read, one byte more of body is 413.
    const big = JSON.stringify({ command: 'TEST', publicKey: kp.pub, pad: 'x'.repeat(102400) });
    r = await post(srv, big, { raw: true });
    assert.equal(r.status, 413);
    // A body that fits is read and answered (auth.max_challenge_bytes
    // defaults to every body the route accepts, http.md §9.5).
    const fits = { command: 'TEST', publicKey: kp.pub, pad: '' };
    fits.pad = 'x'.repeat(102400 - JSON.stringify(fits).length);
    r = await post(srv, fits);
    assert.equal(r.status, 200, r.text);
});

T('block paths that try to escape: 404 INVALID_ID and nothing read', async () => {
    // A file that an escaping path would reach.
    Fs.writeFileSync(Path.join(DATA, 'secret'), 'SECRET');
    const kp = keys();
    await register(srv, kp);
    const k = safe(kp.pub);
    // Inside the route: refused before any storage call.
    const wrong = k.startsWith('xx') ? 'yy' : 'xx';     // a prefix that is not the key's
    const paths = [
        `/block/${wrong}/${k}`, `/block/${k.slice(0, 2)}/${k.slice(0, 43)}`, `/block/${k.slice(0, 2)}/${k}x`,
        `/block/${k.slice(0, 2)}/${k}/`, `/block/${k.slice(0, 2)}/${k.slice(0, 41)}%2e%2e`,
        `/block/${k.slice(0, 2)}`, `/block/${k.slice(0, 2)}/`,
        `/block/${k.slice(0, 2)}/${k.slice(0, 38)}..%2F..`,
        '/block/',
    ];
    for (const p of paths) {
        const r = await rawGet(srv, p);
        assert.equal(r.status, 404, p);
        assert.deepEqual(r.json, { error: 'INVALID_ID' }, p);
    }
    // Dot segments (also escaped) are resolved by the host before routing,
    // so they never reach /block/, and a NUL is refused by it; whoever
    // answers must not hand out the file.
    for (const p of ['/block/..', '/block/../secret', `/block/${k.slice(0, 2)}/../../secret`, '/block/./../secret',
        `/block/%2e%2e/${'%2e'.repeat(14)}xx`, '/block/%2e%2e/secret',
        `/block/${k.slice(0, 2)}/%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecret`, `/block/${k.slice(0, 2)}/${k.slice(0, 40)}%00abc`]) {
        // libwebsockets drops some of these outright: also fine.
        const r = await rawGet(srv, p).catch(e => ({ buf: Buffer.from(''), error: e }));
        assert.ok(!r.buf.toString().includes('SECRET'), p);
    }
    const ok = await get(srv, blockPath(kp));
    assert.equal(ok.status, 200);
});

T('UPLOAD_COOKIE answers a cookie from the blob plugin', async (t) => {
    const kp = keys();
    const r = await command(srv, kp, 'UPLOAD_COOKIE', { id: Crypto.randomBytes(24).toString('hex') });
    if (r.status === 503) {
        t.skip('UPLOAD_COOKIE answered 503: no blob plugin (BLOB_UPLOAD_COOKIE) on the storage node');
        return;
    }
    assert.equal(r.status, 200, r.text);
    assert.match(r.json.cookie, /^[0-9a-f]{32}$/);
});

T('a challenge survives a restart (stored through the backend)', async () => {
    const kp = keys();
    const r1 = await round1(srv, kp, 'TEST');
    assert.equal(r1.status, 200, r1.text);
    await srv.stop();
    srv = await startServer(CONF, { dir: ROOT });
    const r2 = await post(srv, { sig: signFor(r1.req, r1.json, kp.sec), txid: r1.json.txid });
    assert.equal(r2.status, 200, r2.text);
    assert.deepEqual(r2.json, { success: 1 });
});

T('both servers stop cleanly (exit 0: nothing leaked under ASan)', async () => {
    // An answer still in flight at shutdown must be released too.
    const kp = keys();
    const pending = round1(srv, kp, 'MFA_CHECK').catch(() => null);
    const logs = [srv.stderr, srv2.stderr];
    assert.equal(await srv.stop(), 0, logs[0]().slice(-4000));
    assert.equal(await srv2.stop(), 0, logs[1]().slice(-4000));
    await pending;
});
