'use strict';
// Pinning and quota (spec docs/protocol/rpc.md §6-§7, docs/protocol/storage.md §7), served by the
// plugin rpc-pin: PIN, UNPIN, RESET, GET_HASH, GET_TOTAL_SIZE, GET_LIMIT,
// UPDATE_LIMITS, REMOVE_PINS, TRIM_PINS (signed) and IS_CHANNEL_PINNED
// (anonymous), checked against the pin log the server writes at
// <data_dir>/data/pins/<xx>/<safeKey>.ndjson.
//
// Two servers: one with the default limit (50 MiB) and one with
// instance = { default_storage_limit = 1000 }.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const Crypto = require('node:crypto');
const { startServer, withLog, tmpDir, listFiles } = require('./lib/server');
// A copy of a running server's data: its control socket (cpsd.sock) is not data.
const notSocket = (src) => !Fs.lstatSync(src).isSocket();
const C = require('./lib/client');
const R = require('./lib/rpc');

const isArr = Array.isArray;

const ROOT = tmpDir('cpsd-rpcpin-');
const DATA = Path.join(ROOT, 'data');
const ROOT2 = tmpDir('cpsd-rpcpin2-');
const DATA2 = Path.join(ROOT2, 'data');

let srv;
let srv2;
const PREMIUM = R.keyPair();
let HK;
let HK2;
const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv.guard(fn)(t));
const T2 = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv2.guard(fn)(t));

before(withLog(() => srv2 || srv, async () => {
    Fs.mkdirSync(DATA, { recursive: true });
    Fs.mkdirSync(DATA2, { recursive: true });
    srv = await startServer({}, { dir: ROOT });
    srv2 = await startServer({ instance: { default_storage_limit: 1000 }, 'rpc-pin': { limits: { [PREMIUM.pub]: { limit: 5000, plan: 'gold', note: 'n' } } } }, { dir: ROOT2 });
    let r = await C.rawReady(srv.url);
    HK = await R.learnHk(r);
    r.close();
    r = await C.rawReady(srv2.url);
    HK2 = await R.learnHk(r);
    r.close();
}));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
    if (srv2) { await srv2.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
    Fs.rmSync(ROOT2, { recursive: true, force: true });
});

// ------------------------------------------------------------ helpers

const content = (n) => {
    let s = '';
    while (s.length < n) { s += Crypto.randomBytes(n).toString('base64'); }
    return s.slice(0, n);
};
const pinFile = (data, keys) => Path.join(data, 'data', 'pins', keys.safe.slice(0, 2), keys.safe + '.ndjson');
const archivedPinFile = (data, keys) => Path.join(data, 'data', 'archive', 'pins', keys.safe.slice(0, 2), keys.safe + '.ndjson');
const pinLines = (data, keys) => {
    let t;
    try { t = Fs.readFileSync(pinFile(data, keys), 'utf8'); } catch (e) { return null; }
    const parts = t.split('\n');
    assert.equal(parts.pop(), '', 'the pin log ends with a newline');
    return parts;
};

const session = async (url, hk, keys) => {
    const r = await C.rawReady(url);
    const rpc = R.client(r, hk, keys);
    await rpc.call('COOKIE', '');
    return { r, rpc };
};

// Create pad P on r (JOIN + GET_HISTORY) and store messages of these lengths.
const makePad = async (r, hk, lengths) => {
    const P = C.padId();
    await r.join(P);
    const h = await C.getHistory(r, hk, P, { txid: 'c', metadata: { owners: [R.keyPair().pub] } });
    assert.equal(h.end && h.end.state, 1, `created: ${C.short(h.items)}`);
    for (const n of lengths) {
        const f = await r.msg(P, content(n));
        assert.equal(f[1], 'ACK');
    }
    await r.leave(P);
    return P;
};
const fileSize = async (r, hk, id) => (await R.anon(r, hk, 'GET_FILE_SIZE', id))[0];

// The pin log line check: [cmd, ids, time], compact JSON.
const checkLine = (line, cmd, ids, t0) => {
    const a = JSON.parse(line);
    assert.equal(line, JSON.stringify(a), `compact JSON: ${line}`);
    assert.equal(a.length, 3, line);
    assert.equal(a[0], cmd, line);
    assert.deepEqual(a[1], ids, line);
    assert.ok(Number.isInteger(a[2]) && String(a[2]).length === 13 && a[2] >= t0 - 1000 && a[2] <= Date.now() + 1000,
        `time ${a[2]}`);
};

// ------------------------------------------------------------ tests

T('the rpc-pin plugin is loaded', async () => {
    const bin = srv.proc.spawnfile;
    const so = Path.join(Path.dirname(Path.resolve(bin)), 'plugins', 'rpc-pin.so');
    assert.ok(Fs.existsSync(so), `${so} exists (build the plugin)`);
    const { r, rpc } = await session(srv.url, HK, R.keyPair());
    const code = await rpc.callRaw('GET_LIMIT', null);
    assert.notEqual(code.reply[2], 'INVALID_RPC_CALL', `GET_LIMIT is a known command: ${C.short(code.reply)}`);
    r.close();
});

T('PIN / UNPIN / RESET and GET_HASH = base64(sha512(JSON.stringify(sorted ids)))', async () => {
    const K = R.keyPairWhere(pub => pub.includes('/'));         // exercises the safe key
    const { r, rpc } = await session(srv.url, HK, K);
    const empty = R.pinHash([]);
    assert.deepEqual(await rpc.call('GET_HASH', K.pub), [empty], 'no pins: hash of []');
    assert.equal(pinLines(DATA, K), null, 'no pin log before the first PIN');

    const [p1, p2, p3, p4] = [C.padId(), C.padId(), C.padId(), C.hex(24)];
    const t0 = Date.now();
    const res = await rpc.callRaw('PIN', [p2, p1, p4]);
    assert.equal(res.reply.length, 2, `PIN reply [txid, cookie]: ${C.short(res.reply)}`);
    assert.ok(R.isCookie(res.reply[1]));
    let lines = pinLines(DATA, K);
    assert.ok(lines, `pin log at ${pinFile(DATA, K)}`);
    assert.equal(lines.length, 1);
    checkLine(lines[0], 'PIN', [p2, p1, p4], t0);
    assert.deepEqual(await rpc.call('GET_HASH', K.pub), [R.pinHash([p1, p2, p4])]);

    // already pinned: success, nothing written
    assert.deepEqual(await rpc.call('PIN', [p1, p2]), []);
    assert.equal(pinLines(DATA, K).length, 1, 'PIN of pinned ids writes nothing');
    // partly new: only the new ids are written
    assert.deepEqual(await rpc.call('PIN', [p1, p3]), []);
    lines = pinLines(DATA, K);
    assert.equal(lines.length, 2);
    checkLine(lines[1], 'PIN', [p3], t0);
    assert.deepEqual(await rpc.call('GET_HASH', null), [R.pinHash([p1, p2, p3, p4])], 'GET_HASH ignores its argument');

    // UNPIN
    assert.deepEqual(await rpc.call('UNPIN', [p2, C.padId()]), []);
    lines = pinLines(DATA, K);
    assert.equal(lines.length, 3);
    checkLine(lines[2], 'UNPIN', [p2], t0);
    assert.deepEqual(await rpc.call('GET_HASH', K.pub), [R.pinHash([p1, p3, p4])]);
    assert.deepEqual(await rpc.call('UNPIN', [p2]), []);
    assert.equal(pinLines(DATA, K).length, 3, 'UNPIN of an unpinned id writes nothing');

    // RESET
    const p5 = C.padId();
    assert.deepEqual(await rpc.call('RESET', [p5, p1, p5]), []);
    lines = pinLines(DATA, K);
    assert.equal(lines.length, 4);
    const last = JSON.parse(lines[3]);
    assert.equal(last[0], 'RESET');
    assert.deepEqual(Array.from(new Set(last[1])).sort(), [p1, p5].sort(), `RESET line ${lines[3]}`);
    assert.deepEqual(await rpc.call('GET_HASH', K.pub), [R.pinHash([p5, p1])], 'RESET replaces the set');
    assert.deepEqual(await rpc.call('RESET', []), []);
    assert.equal(pinLines(DATA, K).length, 4, 'RESET [] writes nothing');
    assert.deepEqual(await rpc.call('GET_HASH', K.pub), [R.pinHash([p5, p1])], 'RESET [] keeps the set');

    // the client's check: same hash as computed here over its own list
    const list = [p1, p5];
    assert.equal((await rpc.call('GET_HASH', K.pub))[0],
        Crypto.createHash('sha512').update(JSON.stringify(list.slice().sort())).digest('base64'));
    r.close();
});

T('the pin log replays after a restart; the file is in CryptPad\'s format', async () => {
    const K = R.keyPair();
    const { r, rpc } = await session(srv.url, HK, K);
    const ids = [C.padId(), C.padId(), C.padId()];
    await rpc.call('PIN', ids);
    await rpc.call('UNPIN', [ids[1]]);
    await rpc.call('PIN', [ids[1] + '#drive']);
    const expected = R.pinHash([ids[0], ids[1], ids[2]]);
    // live: the list as pinned (id#drive kept); replay: the suffix stripped
    assert.deepEqual(await rpc.call('GET_HASH', K.pub), [R.pinHash([ids[0], ids[1] + '#drive', ids[2]])]);
    const lines = pinLines(DATA, K);
    assert.equal(lines.length, 3);
    assert.deepEqual(lines.map(l => JSON.parse(l).slice(0, 2)),
        [['PIN', ids], ['UNPIN', [ids[1]]], ['PIN', [ids[1] + '#drive']]]);
    r.close();
    // a second server on a copy of the data reads the same log
    const ROOT3 = tmpDir('cpsd-rpcpin3-');
    Fs.cpSync(DATA, Path.join(ROOT3, 'data'), { recursive: true, filter: notSocket });
    const s3 = await startServer({}, { dir: ROOT3 });
    try {
        const r3 = await C.rawReady(s3.url);
        const hk3 = await R.learnHk(r3);
        const rpc3 = R.client(r3, hk3, K);
        assert.deepEqual(await rpc3.call('GET_HASH', K.pub), [expected], 'replayed from the log');
        r3.close();
    } finally {
        await s3.stop();
        Fs.rmSync(ROOT3, { recursive: true, force: true });
    }
    // a log written by CryptPad (with #drive, #block, junk and unknown lines)
    const L = R.keyPair();
    const [a, b, c, d] = [C.padId(), C.padId(), C.padId(), C.padId()];
    Fs.mkdirSync(Path.dirname(pinFile(DATA, L)), { recursive: true });
    Fs.writeFileSync(pinFile(DATA, L), [
        JSON.stringify(['PIN', [a, b], 1700000000000]),
        'not json',
        JSON.stringify(['PIN', [c + '#drive', d + '#block'], 1700000000001]),
        JSON.stringify(['WHATEVER', [d], 1700000000002]),
        JSON.stringify(['UNPIN', [b], 1700000000003]),
        '',
    ].join('\n'));
    const l = await session(srv.url, HK, L);
    assert.deepEqual(await l.rpc.call('GET_HASH', L.pub), [R.pinHash([a, c])],
        'replay: #drive adds the id, #block is not added, junk and unknown lines skipped');
    await l.rpc.call('RESET', [b, c]);
    assert.deepEqual(await l.rpc.call('GET_HASH', L.pub), [R.pinHash([b, c])]);
    l.r.close();
});

// Issue 12 item 8 (docs/protocol/rpc.md §7.1): as CryptPad's session list,
// the live set keeps `id#drive` as sent; a replay of the log strips it.
T('id#drive: GET_HASH hashes it as sent in the session, stripped after a restart', async () => {
    const K = R.keyPair();
    const { r, rpc } = await session(srv.url, HK, K);
    const drive = C.padId();
    const other = C.padId();
    await rpc.call('PIN', [drive + '#drive']);
    assert.deepEqual(await rpc.call('GET_HASH', K.pub), [R.pinHash([drive + '#drive'])],
        'same session: the list as pinned');
    await rpc.call('PIN', [other]);
    const live = R.pinHash([drive + '#drive', other]);
    assert.deepEqual(await rpc.call('GET_HASH', K.pub), [live]);
    // the client's own check: the same sha512 over its sorted list
    assert.equal(live, Crypto.createHash('sha512')
        .update(JSON.stringify([drive + '#drive', other].sort())).digest('base64'));
    const n = pinLines(DATA, K).length;
    await rpc.call('UNPIN', [drive]);
    assert.equal(pinLines(DATA, K).length, n, 'UNPIN id: not in the set as sent, nothing written');
    r.close();
    // a server on a copy of the data replays the log: the suffix is stripped
    const ROOT3 = tmpDir('cpsd-rpcpin4-');
    Fs.cpSync(DATA, Path.join(ROOT3, 'data'), { recursive: true, filter: notSocket });
    const s3 = await startServer({}, { dir: ROOT3 });
    try {
        const r3 = await C.rawReady(s3.url);
        const hk3 = await R.learnHk(r3);
        const rpc3 = R.client(r3, hk3, K);
        assert.deepEqual(await rpc3.call('GET_HASH', K.pub), [R.pinHash([drive, other])], 'replayed: id#drive → id');
        // after the replay id#drive is new again: PIN writes it, the set holds both
        await rpc3.call('PIN', [drive + '#drive']);
        assert.deepEqual(await rpc3.call('GET_HASH', K.pub), [R.pinHash([drive, drive + '#drive', other])]);
        await rpc3.call('UNPIN', [drive]);
        assert.deepEqual(await rpc3.call('GET_HASH', K.pub), [R.pinHash([drive + '#drive', other])]);
        r3.close();
    } finally {
        await s3.stop();
        Fs.rmSync(ROOT3, { recursive: true, force: true });
    }
});

T('GET_TOTAL_SIZE = the sum of GET_FILE_SIZE of the pinned pads', async () => {
    const K = R.keyPair();
    const { r, rpc } = await session(srv.url, HK, K);
    assert.deepEqual(await rpc.call('GET_TOTAL_SIZE', null), [0], 'nothing pinned');
    const p1 = await makePad(r, HK, [100, 200, 300]);
    const p2 = await makePad(r, HK, [50]);
    const p3 = C.padId();           // never created
    await rpc.call('PIN', [p1, p2, p3]);
    const s1 = await fileSize(r, HK, p1);
    const s2 = await fileSize(r, HK, p2);
    assert.ok(s1 > 600 && s2 > 50, `${s1} ${s2}`);
    const [total] = await rpc.call('GET_TOTAL_SIZE', null);
    assert.equal(total, s1 + s2, 'sum of the pinned pads\' sizes');
    // it follows the pads' growth and the pin set
    const w = await C.rawReady(srv.url);
    await w.join(p2);
    await w.msg(p2, content(1000));
    assert.deepEqual(await rpc.call('GET_TOTAL_SIZE', null), [s1 + s2 + 1097]);
    await rpc.call('UNPIN', [p1]);
    assert.deepEqual(await rpc.call('GET_TOTAL_SIZE', null), [s2 + 1097]);
    // a pad pinned twice (id and id#drive) counts once
    await rpc.call('PIN', [p2 + '#drive']);
    assert.deepEqual(await rpc.call('GET_TOTAL_SIZE', null), [s2 + 1097]);
    r.close(); w.close();
});

T('GET_LIMIT → [txid, cookie, 52428800, "", ""]; UPDATE_LIMITS the same', async () => {
    const K = R.keyPair();
    const { r, rpc } = await session(srv.url, HK, K);
    const res = await rpc.callRaw('GET_LIMIT', null);
    assert.equal(res.reply.length, 5, `flattened reply: ${C.short(res.reply)}`);
    assert.deepEqual(res.reply.slice(2), [52428800, '', '']);
    assert.ok(R.isCookie(res.reply[1]));
    assert.deepEqual(await rpc.call('UPDATE_LIMITS', null), [52428800, '', '']);
    r.close();
});

T2('IS_PREMIUM: true only for a key whose limit entry names a plan; GET_LIMIT gives that entry', async () => {
    const r = await C.rawReady(srv2.url);
    for (const [key, want] of [[PREMIUM.pub, true], [R.keyPair().pub, false], [null, false], [42, false]]) {
        const { reply, txid } = await R.anonRaw(r, HK2 || await R.learnHk(r), 'IS_PREMIUM', key);
        assert.deepEqual(reply, [txid, null, want, null], `IS_PREMIUM ${C.short(key)}`);
    }
    r.close();
    const { r: r2, rpc } = await session(srv2.url, HK2 || HK, PREMIUM);
    assert.deepEqual(await rpc.call('GET_LIMIT', PREMIUM.pub), [5000, 'gold', 'n']);
    r2.close();
});

T('TRIM_PINS → NOT_IMPLEMENTED; IS_CHANNEL_PINNED → true', async () => {
    const K = R.keyPair();
    const { r, rpc } = await session(srv.url, HK, K);
    assert.equal(await rpc.fail('TRIM_PINS', null), 'NOT_IMPLEMENTED');
    for (const id of [C.padId(), C.hex(24)]) {
        const { reply, txid } = await R.anonRaw(r, HK, 'IS_CHANNEL_PINNED', id);
        assert.deepEqual(reply, [txid, null, true, null], `IS_CHANNEL_PINNED ${id}`);
    }
    r.close();
});

T('INVALID_PIN_LIST for lists that are not arrays; nothing written', async () => {
    const K = R.keyPair();
    const { r, rpc } = await session(srv.url, HK, K);
    const before = listFiles(DATA);
    for (const cmd of ['PIN', 'UNPIN', 'RESET']) {
        for (const bad of ['x', C.padId(), 5, null, {}, { 0: C.padId() }, true]) {
            assert.equal(await rpc.fail(cmd, bad), 'INVALID_PIN_LIST', `${cmd} ${C.short(bad)}`);
        }
    }
    assert.deepEqual(listFiles(DATA), before, 'nothing written');
    assert.deepEqual(await rpc.call('GET_HASH', K.pub), [R.pinHash([])]);
    r.close();
});

T('pin commands need a valid cookie and signature', async () => {
    const K = R.keyPair();
    const O = R.keyPair();
    const { r, rpc } = await session(srv.url, HK, K);
    const before = listFiles(DATA);
    let res = await rpc.raw('PIN', [C.padId()], { signer: O.secretKey });
    assert.deepEqual(res.reply.slice(1), ['ERROR', 'INVALID_SIGNATURE_OR_PUBLIC_KEY']);
    res = await rpc.raw('PIN', [C.padId()], { cookie: null });
    assert.deepEqual(res.reply.slice(1), ['ERROR', 'NO_COOKIE']);
    res = await rpc.raw('RESET', [C.padId()], { sig: R.b64(Crypto.randomBytes(64)) });
    assert.deepEqual(res.reply.slice(1), ['ERROR', 'INVALID_SIGNATURE_OR_PUBLIC_KEY']);
    res = await rpc.raw('REMOVE_PINS', null, { signer: O.secretKey });
    assert.deepEqual(res.reply.slice(1), ['ERROR', 'INVALID_SIGNATURE_OR_PUBLIC_KEY']);
    await C.sleep(100);
    assert.deepEqual(listFiles(DATA), before, 'refused pin calls write nothing');
    // anonymous forms of signed commands are refused
    for (const cmd of ['PIN', 'GET_HASH', 'GET_LIMIT']) {
        const { reply } = await R.anonRaw(r, HK, cmd, [C.padId()]);
        assert.equal(reply[1], 'ERROR', `anonymous ${cmd}: ${C.short(reply)}`);
    }
    r.close();
});

T('REMOVE_PINS → "OK", the pin log is archived, the cookie session ends', async () => {
    const K = R.keyPair();
    const { r, rpc } = await session(srv.url, HK, K);
    const ids = [C.padId(), C.padId()];
    await rpc.call('PIN', ids);
    const text = Fs.readFileSync(pinFile(DATA, K), 'utf8');
    const old = rpc.cookie;
    const res = await rpc.callRaw('REMOVE_PINS', null);
    assert.equal(res.reply[1] === 'ERROR', false, C.short(res.reply));
    assert.deepEqual(res.reply.slice(2), ['OK']);
    assert.equal(Fs.existsSync(pinFile(DATA, K)), false, 'live pin log gone');
    assert.equal(Fs.readFileSync(archivedPinFile(DATA, K), 'utf8'), text, 'archived unchanged at data/archive/pins/<xx>/<safeKey>.ndjson');
    // the old cookie is refused now
    const nc = await rpc.raw('GET_HASH', K.pub, { cookie: old });
    assert.deepEqual(nc.reply.slice(1), ['ERROR', 'NO_COOKIE'], 'old cookie after REMOVE_PINS');
    // the helper recovers (COOKIE, resend); the pins are gone
    rpc.cookie = old;
    const calls = rpc.cookieCalls;
    assert.deepEqual(await rpc.call('GET_HASH', K.pub), [R.pinHash([])], 'no pins after REMOVE_PINS');
    assert.equal(rpc.cookieCalls, calls + 1, 'one COOKIE call to recover');
    assert.equal(rpc.retries, 1);
    assert.notEqual(R.parseCookie(rpc.cookie).token, R.parseCookie(old).token, 'a new session token');
    // pinning again starts a new log
    await rpc.call('PIN', [ids[0]]);
    assert.equal(pinLines(DATA, K).length, 1);
    assert.deepEqual(await rpc.call('GET_HASH', K.pub), [R.pinHash([ids[0]])]);
    r.close();
});

T('two connections of one user share the pin set', async () => {
    const K = R.keyPair();
    const s1 = await session(srv.url, HK, K);
    const s2 = await session(srv.url, HK, K);
    const ids = [];
    const jobs = [];
    for (let i = 0; i < 20; i++) {
        const id = C.padId();
        ids.push(id);
        jobs.push((i % 2 ? s1 : s2).rpc.call('PIN', [id]));
    }
    await Promise.all(jobs);
    assert.deepEqual(await s1.rpc.call('GET_HASH', K.pub), [R.pinHash(ids)]);
    assert.equal(pinLines(DATA, K).length, 20, 'one line per PIN, none lost');
    s1.r.close(); s2.r.close();
});

// ------------------------------------------------------------ quota (srv2)

T2('E_OVER_LIMIT with default_storage_limit = 1000', async () => {
    const K = R.keyPair();
    const { r, rpc } = await session(srv2.url, HK2, K);
    assert.deepEqual(await rpc.call('GET_LIMIT', null), [1000, '', '']);
    const small = await makePad(r, HK2, [100, 100]);          // ~ 500 bytes
    const big = await makePad(r, HK2, [250, 250]);            // ~ 800 bytes
    const sSmall = await fileSize(r, HK2, small);
    const sBig = await fileSize(r, HK2, big);
    assert.ok(sSmall < 1000 && sSmall + sBig > 1000, `sizes ${sSmall} ${sBig}`);
    assert.deepEqual(await rpc.call('PIN', [small]), []);
    assert.deepEqual(await rpc.call('GET_TOTAL_SIZE', null), [sSmall]);
    const linesBefore = pinLines(DATA2, K);
    assert.equal(await rpc.fail('PIN', [big]), 'E_OVER_LIMIT', `pin ${sBig} bytes with ${1000 - sSmall} free`);
    assert.deepEqual(pinLines(DATA2, K), linesBefore, 'nothing written');
    assert.deepEqual(await rpc.call('GET_HASH', K.pub), [R.pinHash([small])]);
    // a list with new ids over the limit is refused as a whole
    const tiny = await makePad(r, HK2, [10]);
    assert.equal(await rpc.fail('PIN', [tiny, big]), 'E_OVER_LIMIT');
    assert.deepEqual(await rpc.call('GET_HASH', K.pub), [R.pinHash([small])]);
    // unknown ids have size 0: always fit
    assert.deepEqual(await rpc.call('PIN', [C.padId()]), []);
    // after unpinning, the big one fits if it is under the limit on its own
    await rpc.call('UNPIN', [small]);
    assert.ok(sBig <= 1000);
    assert.deepEqual(await rpc.call('PIN', [big]), [], `${sBig} bytes fit in an empty quota`);
    // RESET has no quota check (docs/protocol/rpc.md §7.1)
    assert.deepEqual(await rpc.call('RESET', [small, big, tiny]), []);
    r.close();
});

T2('quota server: GET_LIMIT for another key is the same default', async () => {
    const { r, rpc } = await session(srv2.url, HK2, R.keyPair());
    const res = await rpc.callRaw('GET_LIMIT', null);
    assert.deepEqual(res.reply.slice(2), [1000, '', '']);
    r.close();
});

test('servers exit 0 on SIGTERM', async () => {
    C.closeAll();
    assert.equal(await srv.stop(), 0);
    assert.equal(await srv2.stop(), 0);
});
