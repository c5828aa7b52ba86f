'use strict';
// Signed RPC (spec docs/protocol/rpc.md §1, §3, §4): the [sig, pubKey, cookie, CMD, args]
// envelope, cookies and their 5-minute limit, signature checks over the
// exact signed text, COOKIE / DESTROY / EXPIRE_SESSION, envelope errors,
// replays, and the per-connection authentication that opens restricted
// channels (docs/protocol/rpc.md §3.6, docs/protocol/netflux.md §6.2, docs/protocol/history.md §8).
//
// One server for the file.  Its data_dir holds, before start, a restricted
// pad owned by key A (RP) and an unrestricted pad owned by A (OP), written
// directly in the storage-fs layout.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const Crypto = require('node:crypto');
const { startServer, withLog, tmpDir, channelFile, listFiles, readStored, statStored, existsStored, writeStored } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');

const isArr = Array.isArray;
const isObj = (p) => p !== null && typeof p === 'object' && !isArr(p);

const ROOT = tmpDir('cpsd-rpcsig-');
const DATA = Path.join(ROOT, 'data');

let srv;
let HK;
const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv.guard(fn)(t));

const A = R.keyPair();      // owner of RP and OP
const B = R.keyPair();      // another user
const RP = C.padId();       // restricted, owners [A], allowed []
const OP = C.padId();       // unrestricted, owners [A]
const rnd = (n) => Crypto.randomBytes(n).toString('base64');
const msgContent = (tag) => `${tag}|${rnd(60)}`;

const writePad = (id, meta, lines) => {
    writeStored(channelFile(DATA, id, '.metadata.ndjson'), JSON.stringify(meta) + '\n');
    writeStored(channelFile(DATA, id), lines.map(l => JSON.stringify(l) + '\n').join(''));
};

before(withLog(() => srv, async () => {
    Fs.mkdirSync(DATA, { recursive: true });
    const now = Date.now();
    writePad(RP, { channel: RP, created: now, owners: [A.pub], restricted: true, allowed: [] },
        [[0, C.hex(16), 'MSG', RP, msgContent('secret'), now]]);
    writePad(OP, { channel: OP, created: now, owners: [A.pub] },
        [[0, C.hex(16), 'MSG', OP, msgContent('open'), now]]);
    srv = await startServer({}, { dir: ROOT });
    const r = await C.rawReady(srv.url);
    HK = await R.learnHk(r);
    r.close();
}));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
});

// ------------------------------------------------------------ helpers

const snapshot = () => listFiles(DATA);
const readText = (id, suffix = '.ndjson') => {
    try { return readStored(channelFile(DATA, id, suffix), 'utf8'); } catch (e) { return null; }
};

// A fresh connection with a signed-call client for keys (COOKIE done).
const session = async (keys, { cookie = true } = {}) => {
    const r = await C.rawReady(srv.url);
    const rpc = R.client(r, HK, keys);
    if (cookie) { await rpc.call('COOKIE', ''); }
    return { r, rpc };
};

// Check the frame shape of an RPC reply and return the parsed reply.
const checkFrame = (r, res) => {
    assert.deepEqual(res.ack.slice(1), ['ACK'], `ACK: ${C.short(res.ack)}`);
    assert.equal(res.ack.length, 2);
    assert.deepEqual(res.frame.slice(0, 4), [0, HK, 'MSG', r.id], `reply frame ${C.short(res.frame)}`);
    assert.equal(res.reply[0], res.txid, 'txid echoed');
    return res.reply;
};

const errorCode = (res) => {
    assert.equal(res.reply.length, 3, `error reply [txid,"ERROR",code]: ${C.short(res.reply)}`);
    assert.equal(res.reply[1], 'ERROR', `error reply: ${C.short(res.reply)}`);
    return res.reply[2];
};

// Try a JOIN; returns the reply frame for its seq (JACK or ERROR).
const tryJoin = async (r, chan) => {
    const seq = r.nextSeq();
    r.send([seq, 'JOIN', chan]);
    return r.next(f => isArr(f) && f[0] === seq, 5000, `reply to JOIN ${chan}`);
};

// A command with an effect on disk when it runs: adding a new allowed key to OP.
const addAllowed = () => ['SET_METADATA', { channel: OP, command: 'ADD_ALLOWED', value: [R.keyPair().pub] }];

const stillServing = async (r, rpc, what) => {
    assert.ok(srv.alive(), `server alive after ${what}`);
    const p = await r.ping(3000);
    assert.deepEqual(p.slice(1), ['ACK'], `PING after ${what}`);
    const v = await rpc.call('COOKIE', '');
    assert.deepEqual(v, [], `COOKIE after ${what}`);
};

// ------------------------------------------------------------ transport

T('every RPC gets [seq,"ACK"] before its reply', async () => {
    const r = await C.rawReady(srv.url);
    const seen = [];
    const cases = [
        R.payload(A, null, 'COOKIE', ''),                               // signed, success
        R.payload(A, null, 'COOKIE', '', { signer: B.secretKey }),      // signed, bad signature
        ['GET_FILE_SIZE', OP],                                           // anonymous
    ];
    for (const pl of cases) {
        const res = await R.send(r, HK, pl);
        checkFrame(r, res);
        const iAck = r.log.indexOf(res.ack);
        const iReply = r.log.indexOf(res.frame);
        assert.ok(iAck >= 0 && iReply > iAck, `ACK (#${iAck}) before the reply (#${iReply}) for ${C.short(pl, 80)}`);
        seen.push(res.reply);
    }
    assert.equal(seen[0][1].includes('|'), true, `COOKIE reply carries a cookie: ${C.short(seen[0])}`);
    assert.equal(seen[1][2], 'INVALID_SIGNATURE_OR_PUBLIC_KEY');
    assert.equal(seen[2][1], null);
    r.close();
});

T('COOKIE with cookie null: [txid, "<time>|<pid>|<token>"]', async () => {
    const r = await C.rawReady(srv.url);
    const t0 = Date.now();
    const res = await R.send(r, HK, R.payload(A, null, 'COOKIE', ''));
    const reply = checkFrame(r, res);
    assert.equal(reply.length, 2, `COOKIE reply has no value: ${C.short(reply)}`);
    const c = R.parseCookie(reply[1]);
    assert.ok(c, `three-part cookie: ${reply[1]}`);
    assert.match(reply[1], /^\d+\|\d+\|[0-9a-f]+$/, 'decimal time, integer pid, hex token');
    assert.equal(c.time % 5000, 0, 'time rounded down to a multiple of 5000');
    assert.ok(c.time <= Date.now() && c.time > t0 - 10000, `time ${c.time} close to now ${t0}`);
    assert.ok(BigInt('0x' + c.token) < 2n ** 53n, 'token below 2^53');
    // a second COOKIE of the same key in the same session: same token
    const res2 = await R.send(r, HK, R.payload(A, reply[1], 'COOKIE', ''));
    const c2 = R.parseCookie(res2.reply[1]);
    assert.equal(c2.token, c.token, 'same session, same token');
    assert.equal(c2.pid, c.pid, 'same pid');
    // another key: another session, another token
    const res3 = await R.send(r, HK, R.payload(B, null, 'COOKIE', ''));
    assert.notEqual(R.parseCookie(res3.reply[1]).token, c.token, 'each key has its own token');
    r.close();
});

// ------------------------------------------------------------ signatures

T('a valid cookie with a bad signature → INVALID_SIGNATURE_OR_PUBLIC_KEY, nothing changes', async () => {
    const { r, rpc } = await session(A);
    const other = R.keyPair();
    const cmds = [
        addAllowed(),
        ['CLEAR_OWNED_CHANNEL', OP],
        ['REMOVE_OWNED_CHANNEL', { channel: OP, reason: 'nope' }],
        ['SET_METADATA', { channel: RP, command: 'RESTRICT_ACCESS', value: [false] }],
    ];
    const bad = (cookie, cmd, args) => [
        ['random 64 bytes', { sig: R.b64(Crypto.randomBytes(64)) }],
        ['signed by another key', { signer: other.secretKey }],
        ['signed over other content', { text: R.signedText(cookie, cmd, { other: 'content' }) }],
        ['signed over other args', { text: R.signedText(cookie, cmd, null) }],
        ['signed over another cookie', { text: R.signedText(null, cmd, args) }],
        ['signed over another command', { text: R.signedText(cookie, 'COOKIE', args) }],
        ['signed with whitespace', { text: JSON.stringify([cookie, cmd, args], null, 1) }],
        ['63-byte signature', { sig: R.b64(Nacl63(cookie, cmd, args)) }],
        ['65-byte signature', { sig: R.b64(Buffer.concat([Buffer.from(R.sign(A.secretKey, R.signedText(cookie, cmd, args)), 'base64'), Buffer.from([0])])) }],
        ['empty signature', { sig: '' }],
        ['signature not base64', { sig: '!!!not base64 at all!!!' }],
        ['signature a number', { sig: 12345 }],
        ['signature null', { sig: null }],
        ['public key of 31 bytes', { pub: R.b64(A.publicKey.slice(0, 31)) }],
    ];
    const Nacl63 = (cookie, cmd, args) => Buffer.from(R.sign(A.secretKey, R.signedText(cookie, cmd, args)), 'base64').subarray(0, 63);
    const before = snapshot();
    const metaBefore = readText(OP, '.metadata.ndjson');
    for (const [cmd, args] of cmds) {
        for (const [what, o] of bad(rpc.cookie, cmd, args)) {
            if (what === 'public key of 31 bytes') {
                // the cookie belongs to A's full key: NO_COOKIE or a key error are both refusals
                const res = await rpc.raw(cmd, args, o);
                const code = errorCode(res);
                assert.ok(['INVALID_SIGNATURE_OR_PUBLIC_KEY', 'NO_COOKIE'].includes(code), `${cmd} / ${what}: ${code}`);
                continue;
            }
            const res = await rpc.raw(cmd, args, o);
            checkFrame(r, res);
            assert.equal(errorCode(res), 'INVALID_SIGNATURE_OR_PUBLIC_KEY', `${cmd} / ${what}`);
        }
    }
    await C.sleep(100);
    assert.deepEqual(snapshot(), before, 'data_dir unchanged (file list and sizes)');
    assert.equal(readText(OP, '.metadata.ndjson'), metaBefore, 'metadata log unchanged');
    // the same cookie still works with a good signature (positive control)
    const [meta] = await rpc.call(...addAllowed());
    assert.ok(isObj(meta) && meta.channel === OP, `SET_METADATA with a good signature: ${C.short(meta)}`);
    assert.notEqual(readText(OP, '.metadata.ndjson'), metaBefore, 'a good signature does write');
    r.close();
});

// ------------------------------------------------------------ cookies

T('missing, garbage, foreign, outdated and rewritten cookies → NO_COOKIE, nothing runs', async () => {
    const { r, rpc } = await session(A);
    const good = rpc.cookie;
    const c = R.parseCookie(good);
    const { rpc: rpcB } = await session(B);
    const cookieB = rpcB.cookie;
    const old = (ms) => Math.floor((Date.now() - ms) / 5000) * 5000;
    const cases = [
        ['null', null],
        ['empty string', ''],
        ['garbage', 'garbage'],
        ['two parts', `${c.time}|${c.pid}`],
        ['four parts', `${good}|x`],
        ['number', 12345],
        ['object', { cookie: good }],
        ['array', good.split('|')],
        ['wrong pid', `${c.time}|${Number(c.pid) + 1}|${c.token}`],
        ['wrong token', `${c.time}|${c.pid}|${(BigInt('0x' + c.token) ^ 1n).toString(16)}`],
        ['time not a number', `soon|${c.pid}|${c.token}`],
        ['time as a date string', `${new Date(c.time).toISOString()}|${c.pid}|${c.token}`],
        ['time 5 min 5 s old (rewritten)', `${old(305000)}|${c.pid}|${c.token}`],
        ['time 1 hour old (rewritten)', `${old(3600000)}|${c.pid}|${c.token}`],
        ['time 0', `0|${c.pid}|${c.token}`],
        ['cookie of key B', cookieB],
    ];
    const before = snapshot();
    for (const [what, cookie] of cases) {
        const [cmd, args] = addAllowed();
        // correctly signed over the cookie actually sent
        const res = await rpc.raw(cmd, args, { cookie });
        checkFrame(r, res);
        assert.equal(errorCode(res), 'NO_COOKIE', `cookie ${what} (${C.short(cookie)})`);
    }
    await C.sleep(100);
    assert.deepEqual(snapshot(), before, 'nothing written for refused calls');
    // a rewritten time still inside the 5 minutes is a valid cookie
    const recent = `${old(60000)}|${c.pid}|${c.token}`;
    const ok = await rpc.raw('COOKIE', '', { cookie: recent });
    assert.notEqual(ok.reply[1], 'ERROR', `COOKIE never needs a cookie: ${C.short(ok.reply)}`);
    const ok2 = await rpc.raw(...addAllowed(), { cookie: recent });
    assert.notEqual(ok2.reply[1], 'ERROR', `a 1-minute-old time part is still valid: ${C.short(ok2.reply)}`);
    // the cookie of A used by B (signed by B, B's key) is refused too
    const resB = await rpcB.raw(...addAllowed(), { cookie: good });
    assert.equal(errorCode(resB), 'NO_COOKIE', 'cookie of A with key B');
    // COOKIE itself works with any cookie (and refreshes it)
    for (const [what, cookie] of cases) {
        const res = await rpc.raw('COOKIE', '', { cookie });
        assert.ok(R.isCookie(res.reply[1]), `COOKIE with cookie ${what}: ${C.short(res.reply)}`);
    }
    r.close();
});

T('the client recovers from NO_COOKIE: COOKIE, then the call once more', async () => {
    const { r, rpc } = await session(A);
    const c = R.parseCookie(rpc.cookie);
    rpc.cookie = `${Math.floor((Date.now() - 400000) / 5000) * 5000}|${c.pid}|${c.token}`;
    const calls = rpc.cookieCalls;
    const [meta] = await rpc.call(...addAllowed());
    assert.ok(isObj(meta) && meta.channel === OP, `call succeeded after recovery: ${C.short(meta)}`);
    assert.equal(rpc.retries, 1, 'one resend');
    assert.equal(rpc.cookieCalls, calls + 1, 'one COOKIE call');
    assert.equal(R.parseCookie(rpc.cookie).token, c.token, 'same session token');
    r.close();
});

// ------------------------------------------------------------ commands and envelope

T('unknown or anonymous command names sent signed → INVALID_RPC_CALL', async () => {
    const { r, rpc } = await session(A);
    for (const cmd of ['NO_SUCH_COMMAND', 'cookie', 'PIN ', '', 'GET_FILE_SIZE', 'IS_NEW_CHANNEL', 'GET_METADATA',
        'WRITE_PRIVATE_MESSAGE', 'EXAMPLE_ECHO', 'EXAMPLE_UPPER', 'GET_HISTORY']) {
        let res = await rpc.raw(cmd, OP);
        checkFrame(r, res);
        assert.equal(errorCode(res), 'INVALID_RPC_CALL', `${JSON.stringify(cmd)} well signed`);
        res = await rpc.raw(cmd, OP, { signer: B.secretKey });
        assert.equal(errorCode(res), 'INVALID_RPC_CALL', `${JSON.stringify(cmd)} badly signed`);
        res = await rpc.raw(cmd, OP, { sig: 'x' });
        assert.equal(errorCode(res), 'INVALID_RPC_CALL', `${JSON.stringify(cmd)} with a garbage signature`);
    }
    for (const cmd of [42, null, ['COOKIE'], { c: 1 }]) {
        const res = await rpc.raw(cmd, OP);
        const code = errorCode(res);
        assert.ok(['INVALID_RPC_CALL', 'INVALID_ARG_FORMAT', 'INVALID_MSG', 'UNSUPPORTED_RPC_CALL'].includes(code),
            `command ${C.short(cmd)}: ${code}`);
    }
    await stillServing(r, rpc, 'unknown commands');
    r.close();
});

T('publicKey not a string → INVALID_MESSAGE_OR_PUBLIC_KEY', async () => {
    const { r, rpc } = await session(A);
    for (const pub of [42, null, true, { k: A.pub }, [A.pub]]) {
        const res = await R.send(r, HK, R.payload(A, null, 'COOKIE', '', { pub }));
        checkFrame(r, res);
        assert.equal(errorCode(res), 'INVALID_MESSAGE_OR_PUBLIC_KEY', `COOKIE with publicKey ${C.short(pub)}`);
        // another command: the cookie check comes first in the spec's order (§3.3),
        // so NO_COOKIE is also a correct answer there
        const res2 = await R.send(r, HK, R.payload(A, rpc.cookie, ...addAllowed(), { pub }));
        const code = errorCode(res2);
        assert.ok(['INVALID_MESSAGE_OR_PUBLIC_KEY', 'NO_COOKIE'].includes(code), `SET_METADATA with publicKey ${C.short(pub)}: ${code}`);
    }
    // a string that is not a key fails the signature check
    const res = await R.send(r, HK, R.payload(A, null, 'COOKIE', '', { pub: 'not a key' }));
    assert.equal(errorCode(res), 'INVALID_SIGNATURE_OR_PUBLIC_KEY', 'publicKey "not a key"');
    await stillServing(r, rpc, 'bad public keys');
    r.close();
});

T('payload lengths 0, 1, 3, 4, 6 → INSUFFICIENT_ARGS / INVALID_ARG_FORMAT', async () => {
    const { r, rpc } = await session(A);
    const full = R.payload(A, rpc.cookie, 'COOKIE', '');
    const cases = [
        [[], 'INSUFFICIENT_ARGS'],
        [full.slice(0, 1), 'INVALID_ARG_FORMAT'],
        [full.slice(0, 3), 'INVALID_ARG_FORMAT'],
        [full.slice(0, 4), 'INVALID_ARG_FORMAT'],
        [[...full, 'extra'], 'INVALID_ARG_FORMAT'],
        [['COOKIE'], 'INVALID_ARG_FORMAT'],
        ['COOKIE', 'INVALID_ARG_FORMAT'],
        [{ 0: 'COOKIE' }, 'INVALID_ARG_FORMAT'],
        [null, 'INVALID_ARG_FORMAT'],
    ];
    for (const [pl, code] of cases) {
        const res = await R.send(r, HK, pl);
        checkFrame(r, res);
        assert.deepEqual(res.reply, [res.txid, 'ERROR', code], `payload ${C.short(pl, 100)}`);
    }
    // length 2 with a signed-only command: the anonymous path refuses it
    const res = await R.send(r, HK, ['COOKIE', '']);
    assert.equal(res.reply[1], 'ERROR', `["COOKIE",""] anonymous: ${C.short(res.reply)}`);
    await stillServing(r, rpc, 'bad payload lengths');
    r.close();
});

T('a txid that is not a string: no reply, the connection keeps working', async (t) => {
    const { r, rpc } = await session(A);
    const answers = [];
    for (const txid of [42, null, { t: 1 }, ['t'], true]) {
        const seq = r.nextSeq();
        const pl = R.payload(A, rpc.cookie, 'COOKIE', '');
        r.send([seq, 'MSG', HK, JSON.stringify([txid, pl])]);
        const a = await r.next(f => isArr(f) && f[0] === seq, 3000, `reply to seq ${seq}`);
        answers.push([txid, a]);
        assert.ok(a[1] === 'ACK' || a[1] === 'ERROR', `seq answered ACK or ERROR: ${C.short(a)}`);
    }
    await r.none(f => C.isHkFrame(HK)(f), 500, 'an HK reply for a non-string txid');
    await stillServing(r, rpc, 'non-string txids');
    // what the seq got, for the report
    t.diagnostic(`non-string txid: seq answers ${C.short(answers)}`);
    r.close();
});

T('oversized args: an error or a refused frame, never a crash', async (t) => {
    const { r, rpc } = await session(A);
    // 1 MiB of args: beyond limits.max_frame with the envelope
    const big = 'x'.repeat(1 << 20);
    const seq = r.nextSeq();
    const txid = C.txid();
    r.send([seq, 'MSG', HK, JSON.stringify([txid, R.payload(A, rpc.cookie, 'SET_METADATA', { channel: OP, command: 'ADD_ALLOWED', value: [big] })])]);
    const outcome = await r.next(f => C.isHkFrame(HK)(f) && JSON.parse(f[4])[0] === txid, 10000, 'reply to the big RPC')
        .then(f => ({ reply: JSON.parse(f[4]) }))
        .catch((e) => {
            if (r.closeInfo) { return { closed: r.closeInfo }; }
            throw e;
        });
    t.diagnostic(`1 MiB signed call: ${C.short(outcome)}`);
    if (outcome.reply) {
        assert.equal(outcome.reply[1], 'ERROR', `big call answered with an error: ${C.short(outcome.reply)}`);
    } else {
        assert.ok([1009, 1006, 1008].includes(outcome.closed.code), `connection closed with ${C.short(outcome.closed)}`);
    }
    assert.ok(srv.alive(), 'server alive after a 1 MiB RPC');
    // below the frame limit: 900 kB of args, correctly signed
    const s2 = await session(A);
    const mid = 'y'.repeat(900000);
    let res = await s2.rpc.raw('NO_SUCH_COMMAND', mid);
    assert.equal(errorCode(res), 'INVALID_RPC_CALL', '900 kB unknown command');
    res = await s2.rpc.raw('COOKIE', mid);
    assert.ok(R.isCookie(res.reply[1]), `900 kB COOKIE, signed over its exact text: ${C.short(res.reply, 100)}`);
    res = await s2.rpc.raw('COOKIE', mid, { signer: B.secretKey });
    assert.equal(errorCode(res), 'INVALID_SIGNATURE_OR_PUBLIC_KEY', '900 kB COOKIE, bad signature');
    res = await R.send(s2.r, HK, ['GET_FILE_SIZE', mid]);
    assert.equal(errorCode(res), 'INVALID_CHAN', '900 kB anonymous argument');
    await stillServing(s2.r, s2.rpc, 'big RPCs');
    s2.r.close();
});

// ------------------------------------------------------------ DESTROY, EXPIRE_SESSION

T('DESTROY gets no reply at all; the next call still works', async () => {
    const { r, rpc } = await session(A);
    const txid = C.txid();
    const seq = r.nextSeq();
    r.send([seq, 'MSG', HK, JSON.stringify([txid, R.payload(A, rpc.cookie, 'DESTROY', '')])]);
    const ack = await r.next(f => isArr(f) && f[0] === seq, 3000, 'ACK of DESTROY');
    assert.deepEqual(ack, [seq, 'ACK']);
    await r.none(f => C.isHkFrame(HK)(f) && JSON.parse(f[4])[0] === txid, 500, 'reply to DESTROY');
    await r.none(f => C.isHkFrame(HK)(f), 1, 'any HK frame after DESTROY');
    // the cookie session is not ended by DESTROY
    const res = await rpc.raw(...addAllowed());
    assert.notEqual(res.reply[1], 'ERROR', `signed call after DESTROY: ${C.short(res.reply)}`);
    // a badly signed DESTROY is refused with a reply
    const bad = await rpc.raw('DESTROY', '', { signer: B.secretKey });
    assert.equal(errorCode(bad), 'INVALID_SIGNATURE_OR_PUBLIC_KEY');
    // DESTROY without a valid cookie: NO_COOKIE
    const nc = await rpc.raw('DESTROY', '', { cookie: null });
    assert.equal(errorCode(nc), 'NO_COOKIE');
    await stillServing(r, rpc, 'DESTROY');
    r.close();
});

T('EXPIRE_SESSION → "OK"; the old cookie is refused afterwards', async () => {
    const { r, rpc } = await session(A);
    const old = rpc.cookie;
    const res = await rpc.raw('EXPIRE_SESSION', null);
    checkFrame(r, res);
    assert.equal(res.reply.length, 3, `[txid, cookie, "OK"]: ${C.short(res.reply)}`);
    assert.equal(res.reply[2], 'OK');
    const after = await rpc.raw(...addAllowed(), { cookie: old });
    assert.equal(errorCode(after), 'NO_COOKIE', 'old cookie after EXPIRE_SESSION');
    // COOKIE opens a new session with a new token
    const nres = await rpc.raw('COOKIE', '', { cookie: null });
    const nc = R.parseCookie(nres.reply[1]);
    assert.notEqual(nc.token, R.parseCookie(old).token, 'new session, new token');
    const again = await rpc.raw(...addAllowed(), { cookie: old });
    assert.equal(errorCode(again), 'NO_COOKIE', 'old cookie refused in the new session too');
    const ok = await rpc.raw(...addAllowed(), { cookie: nres.reply[1] });
    assert.notEqual(ok.reply[1], 'ERROR', `new cookie works: ${C.short(ok.reply)}`);
    // the helper recovers from the ended session by itself
    rpc.cookie = old;
    const [meta] = await rpc.call(...addAllowed());
    assert.equal(meta.channel, OP);
    r.close();
});

// ------------------------------------------------------------ replay

T('replaying a signed request: accepted while its cookie is valid, refused after', async () => {
    // Documented behaviour: the signature covers [cookie, CMD, args] and not
    // the txid, so the same signed payload sent again within the cookie's
    // session and 5 minutes runs again (as with the Node servers).  Once the
    // session ends (EXPIRE_SESSION here) the replay gets NO_COOKIE.
    const P = C.padId();
    const { r, rpc } = await session(A);
    await r.join(P);
    const h = await C.getHistory(r, HK, P, { txid: 'c', metadata: { owners: [A.pub] } });
    assert.equal(h.end.state, 1, `pad created: ${C.short(h.items)}`);
    const metaSize = statStored(channelFile(DATA, P, '.metadata.ndjson')).size;
    await r.msg(P, msgContent('m1'));
    const pl = R.payload(A, rpc.cookie, 'CLEAR_OWNED_CHANNEL', P);
    let res = await R.send(r, HK, pl);
    assert.equal(res.reply[1].includes('|'), true, `first CLEAR: ${C.short(res.reply)}`);
    assert.equal(statStored(channelFile(DATA, P)).size, 0, 'log cleared');
    await r.msg(P, msgContent('m2'));
    assert.ok(statStored(channelFile(DATA, P)).size > 0);
    res = await R.send(r, HK, pl);                       // same payload, new txid
    assert.notEqual(res.reply[1], 'ERROR', `replay while the cookie is valid is accepted: ${C.short(res.reply)}`);
    assert.equal(statStored(channelFile(DATA, P)).size, 0, 'the replay ran (log cleared again)');
    // end the session: the replay is refused
    const ex = await rpc.raw('EXPIRE_SESSION', null);
    assert.equal(ex.reply[2], 'OK');
    const m3 = msgContent('m3');
    await r.msg(P, m3);
    const sizeBefore = statStored(channelFile(DATA, P)).size;
    res = await R.send(r, HK, pl);
    assert.deepEqual(res.reply, [res.txid, 'ERROR', 'NO_COOKIE'], 'replay after the session ended');
    assert.equal(statStored(channelFile(DATA, P)).size, sizeBefore, 'the refused replay changed nothing');
    assert.equal(statStored(channelFile(DATA, P, '.metadata.ndjson')).size, metaSize);
    // even on another connection, the same payload is refused now
    const r2 = await C.rawReady(srv.url);
    res = await R.send(r2, HK, pl);
    assert.deepEqual(res.reply, [res.txid, 'ERROR', 'NO_COOKIE'], 'replay from another connection');
    r.close(); r2.close();
});

T('a replay of a valid payload from another connection runs while the cookie is valid', async () => {
    // Documented: cookies are per key, not per connection.
    const { r, rpc } = await session(A);
    const r2 = await C.rawReady(srv.url);
    const res = await R.send(r2, HK, R.payload(A, rpc.cookie, ...addAllowed()));
    assert.notEqual(res.reply[1], 'ERROR', `valid cookie + signature from another connection: ${C.short(res.reply)}`);
    r.close(); r2.close();
});

// ------------------------------------------------------------ restricted channels

T('authentication opens a restricted channel for that connection only', async () => {
    // not authenticated: refused with the allow list
    const u = await C.rawReady(srv.url);
    const j0 = await tryJoin(u, RP);
    assert.deepEqual(j0, [j0[0], 'ERROR', 'ERESTRICTED', [HK, A.pub]], 'unauthenticated JOIN');
    const h0 = await C.getHistory(u, HK, RP, { txid: 'u' });
    assert.deepEqual(h0.reply, [h0.seq, 'ERROR', 'ERESTRICTED', HK], 'unauthenticated GET_HISTORY');

    // authenticated as A (COOKIE signed by A): JOIN and history work
    const a1 = await session(A);
    const j1 = await tryJoin(a1.r, RP);
    assert.equal(j1[1], 'JACK', `JOIN after COOKIE signed by A: ${C.short(j1)}`);
    await a1.r.next(f => isArr(f) && f[2] === 'JOIN' && f[1] === a1.r.id && f[3] === RP, 3000, 'own JOIN');
    const h1 = await C.getHistory(a1.r, HK, RP, { txid: 'a' });
    assert.deepEqual(h1.reply, [h1.seq, 'ACK']);
    assert.ok(h1.items.some(p => isArr(p) && p[2] === 'MSG'), `history delivered: ${C.short(h1.items)}`);
    assert.equal(h1.end.state, 1);
    // GET_METADATA on this connection: the stored object
    const [m1] = await R.anon(a1.r, HK, 'GET_METADATA', RP);
    assert.deepEqual(m1.owners, [A.pub], `stored metadata for A: ${C.short(m1)}`);

    // the same user on a second connection, without COOKIE: refused
    const a2 = await C.rawReady(srv.url);
    const j2 = await tryJoin(a2, RP);
    assert.deepEqual(j2, [j2[0], 'ERROR', 'ERESTRICTED', [HK, A.pub]], 'second connection of A without COOKIE');
    const h2 = await C.getHistory(a2, HK, RP, { txid: 'a2' });
    assert.deepEqual(h2.reply, [h2.seq, 'ERROR', 'ERESTRICTED', HK]);
    // the still unauthenticated connection remains refused
    const j0b = await tryJoin(u, RP);
    assert.equal(j0b[2], 'ERESTRICTED', 'first connection still refused');

    // a COOKIE claiming A but signed by B: refused, opens nothing
    const a3 = await C.rawReady(srv.url);
    const bad = await R.send(a3, HK, R.payload(A, null, 'COOKIE', '', { signer: B.secretKey }));
    assert.equal(errorCode(bad), 'INVALID_SIGNATURE_OR_PUBLIC_KEY');
    const j3 = await tryJoin(a3, RP);
    assert.equal(j3[2], 'ERESTRICTED', `JOIN after a badly signed COOKIE: ${C.short(j3)}`);
    // a correctly authenticated key that is not allowed opens nothing
    const b = await session(B);
    const jb = await tryJoin(b.r, RP);
    assert.deepEqual(jb, [jb[0], 'ERROR', 'ERESTRICTED', [HK, A.pub]], 'JOIN as B (not allowed)');

    // DESTROY: the connection loses A's authentication
    const tx = C.txid();
    const seq = a1.r.nextSeq();
    a1.r.send([seq, 'MSG', HK, JSON.stringify([tx, R.payload(A, a1.rpc.cookie, 'DESTROY', '')])]);
    await a1.r.next(f => isArr(f) && f[0] === seq, 3000, 'ACK of DESTROY');
    await a1.r.none(f => C.isHkFrame(HK)(f) && JSON.parse(f[4])[0] === tx, 500, 'reply to DESTROY');
    const lv = await a1.r.leave(RP);
    assert.equal(lv[1], 'ACK', `LEAVE: ${C.short(lv)}`);
    const j4 = await tryJoin(a1.r, RP);
    assert.deepEqual(j4, [j4[0], 'ERROR', 'ERESTRICTED', [HK, A.pub]], 'fresh JOIN after DESTROY');
    const h4 = await C.getHistory(a1.r, HK, RP, { txid: 'd' });
    assert.deepEqual(h4.reply, [h4.seq, 'ERROR', 'ERESTRICTED', HK], 'GET_HISTORY after DESTROY');
    // authenticating again opens it again
    await a1.rpc.call('COOKIE', '');
    const j5 = await tryJoin(a1.r, RP);
    assert.equal(j5[1], 'JACK', `JOIN after a new COOKIE: ${C.short(j5)}`);

    // a connection that authenticates with another signed command (not COOKIE)
    const a6 = await C.rawReady(srv.url);
    const rpc6 = R.client(a6, HK, A);
    await rpc6.call(...addAllowed());
    const j6 = await tryJoin(a6, RP);
    assert.equal(j6[1], 'JACK', `JOIN after SET_METADATA signed by A: ${C.short(j6)}`);
    for (const x of [u, a1.r, a2, a3, b.r, a6]) { x.close(); }
});

T('authentication ends with the connection', async () => {
    const a = await session(A);
    const cookie = a.rpc.cookie;
    a.r.close();
    await a.r.closed;
    // a new connection with the same (still valid) cookie but no signed call
    const r = await C.rawReady(srv.url);
    const j = await tryJoin(r, RP);
    assert.equal(j[2], 'ERESTRICTED', 'a new connection starts unauthenticated');
    // one signed call with the old cookie authenticates this connection
    const res = await R.send(r, HK, R.payload(A, cookie, ...addAllowed()));
    assert.notEqual(res.reply[1], 'ERROR', C.short(res.reply));
    const j2 = await tryJoin(r, RP);
    assert.equal(j2[1], 'JACK', `JOIN after a signed call on this connection: ${C.short(j2)}`);
    r.close();
});

T('server still up, exits 0 on SIGTERM', async () => {
    assert.ok(srv.alive());
    C.closeAll();
    const code = await srv.stop();
    assert.equal(code, 0);
});
