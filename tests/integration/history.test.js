'use strict';
// The history keeper (docs/protocol/history.md, docs/protocol/netflux.md §7, §13): storing
// channel messages, GET_HISTORY / GET_HISTORY_RANGE / GET_FULL_HISTORY,
// metadata creation, checkpoints and lastKnownHash, owned (signed),
// expiring and restricted channels, pipelining, bad input, the CryptPad
// datastore fixture, and the real chainpad-netflux client.
//
// One server for the whole file, its data_dir a temporary copy of
// tests/fixtures/datastore plus a restricted channel written beforehand.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const Crypto = require('node:crypto');
const Nacl = require('tweetnacl');
const { startServer, withLog, tmpDir, channelFile, listFiles, TESTS_DIR } = require('./lib/server');
const C = require('./lib/client');

const isArr = Array.isArray;
const isObj = (p) => p !== null && typeof p === 'object' && !isArr(p);

const FIXTURE = Path.resolve(TESTS_DIR, '..', 'fixtures', 'datastore');
const ROOT = tmpDir('cpsd-hist-');
const DATA = Path.join(ROOT, 'data');

let srv;
let HK;
const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv.guard(fn)(t));

// ------------------------------------------------------------ helpers

const b64 = (u8) => Buffer.from(u8).toString('base64');
const rnd = (n) => Crypto.randomBytes(n).toString('base64');
// A content whose hash (first 64 chars) is unique.
const msgContent = (tag) => `${tag}|${rnd(60)}`;
const cpContent = (tag, id = rnd(8)) => `cp|${id}|${tag}|${rnd(60)}`;
const hashOf = (c) => c.slice(0, 64);

const readText = (id, suffix = '.ndjson') => {
    try { return Fs.readFileSync(channelFile(DATA, id, suffix), 'utf8'); } catch (e) { return null; }
};
// The '\n'-terminated lines of a file (strings).
const fileLines = (id, suffix = '.ndjson') => {
    const t = readText(id, suffix);
    if (t === null) { return null; }
    const parts = t.split('\n');
    parts.pop();   // after the last '\n' (empty unless the last line is torn)
    return parts;
};
const fileExists = (id, suffix) => Fs.existsSync(channelFile(DATA, id, suffix));
// every path under DATA that mentions id
const filesMentioning = (id) => Object.keys(listFiles(DATA)).filter(p => p.includes(id));

const isEnd = (p, chan) => isObj(p) && p.state === 1 && p.channel === chan;
const isMeta = (p, chan) => isObj(p) && p.channel === chan && p.state === undefined && p.error === undefined;
const isLine = (p) => isArr(p) && p[2] === 'MSG';

// every HK frame: [0, HK, "MSG", me, text(, priority)]
const checkHkFrames = (r, res, prio) => {
    for (const f of res.frames) {
        assert.ok(f.length === 5 || f.length === 6, `HK frame length ${f.length}: ${C.short(f)}`);
        assert.equal(f[0], 0);
        assert.equal(f[1], HK);
        assert.equal(f[2], 'MSG');
        assert.equal(f[3], r.id, `HK frame addressed to the requester: ${C.short(f)}`);
        assert.equal(typeof f[4], 'string');
        if (f.length === 6) {
            assert.ok(f[5] === (prio === undefined ? null : prio) || f[5] === null,
                `priority element ${C.short(f[5])}, asked ${prio}: ${C.short(f)}`);
        }
    }
};

// Two raw clients joined to chan.
const pair = async (chan) => {
    const a = await C.rawReady(srv.url);
    const b = await C.rawReady(srv.url);
    await a.join(chan);
    await b.join(chan);
    await a.next(f => isArr(f) && f[2] === 'JOIN' && f[1] === b.id && f[3] === chan, 5000, 'JOIN of b');
    return { a, b };
};

// Send contents to chan without waiting; then wait for every reply.
// Returns the reply frames in send order and checks they came in that order.
const sendPipelined = async (r, chan, contents, ms = 20000) => {
    const seqs = contents.map((c) => {
        const s = r.nextSeq();
        r.send([s, 'MSG', chan, c]);
        return s;
    });
    const replies = [];
    for (const s of seqs) {
        replies.push(await r.next(f => isArr(f) && f[0] === s, ms, `reply to MSG seq ${s}`));
    }
    const set = new Set(seqs);
    const arrival = r.log.filter(f => isArr(f) && set.has(f[0]) && f.length <= 4).map(f => f[0]);
    assert.deepEqual(arrival, seqs, 'replies arrive in send order');
    return replies;
};

// Send contents one at a time (ACK each).
const sendEach = async (r, chan, contents) => {
    for (const c of contents) {
        const f = await r.msg(chan, c);
        assert.deepEqual(f.slice(1), ['ACK'], `ACK for ${c.slice(0, 20)}`);
    }
};

const contentsOf = (items) => items.filter(isLine).map(p => p[4]);

// ------------------------------------------------------------ fixtures

const A1 = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
const B2 = 'b2c3d4e5f60718293a4b5c6d7e8f90a1';
const RESTR = C.padId();
const restrKey = b64(Nacl.sign.keyPair().publicKey);

const prepareData = () => {
    Fs.mkdirSync(DATA, { recursive: true });
    Fs.cpSync(FIXTURE, Path.join(DATA, 'datastore'), { recursive: true });
    // a restricted channel with one message (nobody can authenticate yet)
    Fs.mkdirSync(Path.dirname(channelFile(DATA, RESTR)), { recursive: true });
    const meta = { channel: RESTR, created: Date.now(), restricted: true, owners: [restrKey], allowed: [] };
    Fs.writeFileSync(channelFile(DATA, RESTR, '.metadata.ndjson'), JSON.stringify(meta) + '\n');
    const line = [0, C.hex(16), 'MSG', RESTR, msgContent('secret'), Date.now()];
    Fs.writeFileSync(channelFile(DATA, RESTR), JSON.stringify(line) + '\n');
};

before(withLog(() => srv, async () => {
    prepareData();
    srv = await startServer({}, { dir: ROOT });
    assert.equal(srv.config.data_dir, DATA);
    const r = await C.rawReady(srv.url);
    const j = await r.join(C.padId());
    HK = j.members.find(id => id.length === 16);
    assert.ok(HK, 'history keeper id announced on JOIN');
    r.close();
}));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
});

// ------------------------------------------------------------ storing

T('a channel message is stored, ACKed after the write, relayed with its time', async () => {
    const P = C.padId();
    const { a, b } = await pair(P);
    const c = await C.rawReady(srv.url);
    await c.join(P);
    await a.next(x => isArr(x) && x[2] === 'JOIN' && x[1] === c.id, 5000, 'JOIN of c');
    const content = msgContent('first');
    const before = Date.now();
    const ack = await a.msg(P, content);
    // read the log as soon as the ACK is in: the line must already be there
    const lines = fileLines(P);
    assert.deepEqual(ack.slice(1), ['ACK']);
    assert.ok(lines && lines.length === 1, `one line in the log at ACK time, got ${C.short(lines)}`);
    const stored = JSON.parse(lines[0]);
    assert.equal(stored.length, 6, `stored line ${lines[0]}`);
    assert.deepEqual(stored.slice(0, 5), [0, a.id, 'MSG', P, content]);
    assert.ok(Number.isInteger(stored[5]) && Math.abs(stored[5] - before) < 5000, `time ${stored[5]} close to ${before}`);
    assert.equal(lines[0], JSON.stringify(stored), 'compact JSON line');

    const f = await b.next(x => isArr(x) && x[2] === 'MSG' && x[3] === P, 5000, 'relay');
    assert.deepEqual(f, stored, 'members receive the stored array');
    const f2 = await c.next(x => isArr(x) && x[2] === 'MSG' && x[3] === P, 5000, 'relay to the third member');
    assert.deepEqual(f2, stored, 'every member receives the same array');
    await a.none(x => isArr(x) && x[2] === 'MSG' && x[3] === P, 300, 'echo to the sender');
    await b.none(x => isArr(x) && x[2] === 'MSG' && x[3] === P, 1, 'second relay');
    a.close(); b.close(); c.close();
});

// ------------------------------------------------------------ GET_HISTORY

T('GET_HISTORY: creation by a member, then the exact reply sequence', async () => {
    const P = C.padId();
    const a = await C.rawReady(srv.url);
    await a.join(P);
    const owner = b64(Nacl.sign.keyPair().publicKey);
    const t0 = Date.now();
    const res = await C.getHistory(a, HK, P, { txid: 'tx-create', metadata: { owners: [owner], foo: 'bar' }, priority: 2 });
    assert.deepEqual(res.reply, [res.seq, 'ACK']);
    assert.equal(res.order[0], 'reply', 'ACK first');
    checkHkFrames(a, res, 2);
    assert.deepEqual(res.end, { state: 1, channel: P, txid: 'tx-create' });
    const metas = res.items.slice(0, -1);
    assert.ok(metas.length >= 1 && metas.length <= 2, `1 or 2 metadata messages before the end marker, got ${C.short(res.items)}`);
    for (const m of metas) {
        assert.ok(isMeta(m, P), `metadata message ${C.short(m)}`);
        assert.deepEqual(m.owners, [owner]);
        assert.equal(m.foo, 'bar');
    }
    const created = metas[metas.length - 1];
    assert.ok(Math.abs(created.created - t0) < 5000, `created ${created.created}`);
    // written to the dedicated metadata log, byte-identical to what was sent
    const mlines = fileLines(P, '.metadata.ndjson');
    assert.ok(mlines && mlines.length === 1, `metadata log has one line: ${C.short(mlines)}`);
    assert.equal(mlines[0], res.frames[res.frames.length - 2][4], 'metadata line = metadata text sent at creation');
    assert.equal(fileExists(P, '.ndjson'), false, 'no channel log before the first message');

    // messages, then a second member reads the history
    const contents = [msgContent('h1'), cpContent('h2'), msgContent('h3')];
    await sendEach(a, P, contents);
    const b = await C.rawReady(srv.url);
    await b.join(P);
    const res2 = await C.getHistory(b, HK, P, { txid: 7, priority: 3 });
    assert.deepEqual(res2.reply, [res2.seq, 'ACK']);
    assert.equal(res2.order[0], 'reply');
    checkHkFrames(b, res2, 3);
    const lines = fileLines(P);
    assert.equal(lines.length, 3);
    assert.equal(res2.items.length, 1 + 3 + 1, `metadata + 3 lines + end: ${C.short(res2.items)}`);
    assert.deepEqual(res2.items[0], JSON.parse(mlines[0]), 'the stored metadata, once');
    for (let i = 0; i < 3; i++) {
        const expected = JSON.parse(lines[i]);
        expected[0] = 7;
        assert.deepEqual(res2.items[1 + i], expected, `line ${i + 1} with element 0 = txid`);
        assert.equal(res2.frames[1 + i][4], JSON.stringify(expected), 'compact JSON text');
    }
    assert.deepEqual(res2.end, { state: 1, channel: P, txid: 7 });
    await b.none(C.isHkFrame(HK), 300, 'HK frame after the end marker');
    // a second GET_HISTORY by the creator does not create anything again
    const res3 = await C.getHistory(a, HK, P, { txid: 'again', metadata: { owners: ['other'] } });
    assert.equal(res3.items.filter(p => isMeta(p, P)).length, 1, 'exactly one metadata message');
    assert.deepEqual(res3.items[0].owners, [owner], 'stored metadata, not the request');
    assert.equal(fileLines(P, '.metadata.ndjson').length, 1, 'metadata log unchanged');
    a.close(); b.close();
});

T('metadata is not created for a non-member, nor for an ephemeral channel', async () => {
    const P = C.padId();
    const c = await C.rawReady(srv.url);
    const vk = b64(Nacl.sign.keyPair().publicKey);
    const res = await C.getHistory(c, HK, P, { txid: 'nm', metadata: { validateKey: vk } });
    assert.deepEqual(res.reply, [res.seq, 'ACK']);
    assert.deepEqual(res.items, [{ state: 1, channel: P, txid: 'nm' }], 'non-member: just the end marker');
    assert.deepEqual(filesMentioning(P), [], 'nothing written for a non-member');
    // now as a member: created
    await c.join(P);
    const res2 = await C.getHistory(c, HK, P, { txid: 'm', metadata: { validateKey: vk } });
    assert.ok(res2.items.some(p => isMeta(p, P) && p.validateKey === vk), `created: ${C.short(res2.items)}`);
    assert.ok(fileExists(P, '.metadata.ndjson'), 'metadata log written');

    // ephemeral channel, as a member
    const E = C.ephemeralId();
    await c.join(E);
    const res3 = await C.getHistory(c, HK, E, { txid: 'eph', metadata: { validateKey: vk } });
    const e = res3.end;
    assert.ok((isObj(e) && e.error === 'EINVAL') || isEnd(e, E), `EINVAL or an empty history, got ${C.short(res3.items)}`);
    assert.equal(res3.items.filter(p => isMeta(p, E) || isLine(p)).length, 0, `no metadata/line for an ephemeral channel: ${C.short(res3.items)}`);
    await c.msg(E, 'ephemeral message');
    await C.sleep(100);
    assert.deepEqual(filesMentioning(E), [], 'nothing stored for a 34-char channel');
    c.close();
});

T('lastKnownHash on a log without checkpoints', async () => {
    const P = C.padId();
    const a = await C.rawReady(srv.url);
    await a.join(P);
    const m = Array.from({ length: 10 }, (_, i) => msgContent(`m${i}`));
    await sendEach(a, P, m);
    const c = await C.rawReady(srv.url);   // not a member
    const ask = async (lkh, txid) => {
        const cfg = { txid };
        if (lkh !== undefined) { cfg.lastKnownHash = lkh; }
        const res = await C.getHistory(c, HK, P, cfg);
        assert.deepEqual(res.reply, [res.seq, 'ACK']);
        return res;
    };
    let res = await ask(undefined, 1);
    assert.deepEqual(contentsOf(res.items), m, 'no lastKnownHash: whole log');
    res = await ask(-1, 2);
    assert.deepEqual(contentsOf(res.items), m, '-1: whole log');
    res = await ask(hashOf(m[4]), 3);
    assert.deepEqual(contentsOf(res.items), m.slice(4), 'resume at m4, inclusive');
    assert.deepEqual(res.end, { state: 1, channel: P, txid: 3 });
    res = await ask(hashOf(m[9]), 4);
    assert.deepEqual(contentsOf(res.items), [m[9]], 'newest hash: just that message');
    res = await ask(rnd(48), 5);
    assert.deepEqual(res.end, { error: 'EUNKNOWN', channel: P, txid: 5 }, `unknown hash: ${C.short(res.items)}`);
    assert.equal(contentsOf(res.items).length, 0);
    await c.none(C.isHkFrame(HK), 300, 'end marker after EUNKNOWN');
    // a missing log with a lastKnownHash: EDELETED (docs/protocol/history.md §5.2)
    const Q = C.padId();
    res = await C.getHistory(c, HK, Q, { txid: 6, lastKnownHash: hashOf(m[3]) });
    assert.deepEqual(res.end, { error: 'EDELETED', channel: Q, txid: 6 }, `missing log + lastKnownHash: ${C.short(res.items)}`);
    assert.deepEqual(filesMentioning(Q), []);
    a.close(); c.close();
});

// docs/protocol/history.md §5.3 example: checkpoints on lines 4, 124, 128 of 131.
T('checkpoints: recent history starts at the second-to-last checkpoint (§5.3 example)', async () => {
    const P = C.padId();
    const a = await C.rawReady(srv.url);
    await a.join(P);
    const cps = new Set([4, 124, 128]);
    const m = [null];   // 1-based
    for (let i = 1; i <= 131; i++) { m.push(cps.has(i) ? cpContent(`l${i}`) : msgContent(`l${i}`)); }
    await sendPipelined(a, P, m.slice(1));
    assert.equal(fileLines(P).length, 131);
    const c = await C.rawReady(srv.url);
    const ask = async (lkh, txid) => {
        const cfg = { txid };
        if (lkh !== undefined) { cfg.lastKnownHash = lkh; }
        return C.getHistory(c, HK, P, cfg, 10000);
    };
    const from = (n) => m.slice(n);
    const check = async (when) => {
        let res = await ask(undefined, 'none');
        assert.deepEqual(contentsOf(res.items), from(124), `${when}: no lastKnownHash → lines 124..131, got ${contentsOf(res.items).length} lines starting ${C.short(contentsOf(res.items)[0], 30)}`);
        assert.ok(isEnd(res.end, P));
        res = await ask(-1, 'all');
        assert.deepEqual(contentsOf(res.items), from(1), `${when}: -1 → whole log`);
        res = await ask(hashOf(m[126]), 'l126');
        assert.deepEqual(contentsOf(res.items), from(126), `${when}: hash of line 126 → 126..131`);
        res = await ask(hashOf(m[124]), 'l124');
        assert.deepEqual(contentsOf(res.items), from(124), `${when}: hash of the checkpoint on line 124 → 124..131`);
        res = await ask(hashOf(m[131]), 'l131');
        assert.deepEqual(contentsOf(res.items), [m[131]], `${when}: newest hash`);
        for (const n of [50, 4, 2, 123]) {
            res = await ask(hashOf(m[n]), `old${n}`);
            assert.deepEqual(res.end, { error: 'EUNKNOWN', channel: P, txid: `old${n}` },
                `${when}: hash of line ${n} (older than R) → EUNKNOWN, got ${C.short(res.items, 400)}`);
            assert.equal(contentsOf(res.items).length, 0);
        }
        res = await ask(rnd(48), 'unknown');
        assert.deepEqual(res.end, { error: 'EUNKNOWN', channel: P, txid: 'unknown' }, `${when}: unknown hash`);
        await c.none(C.isHkFrame(HK), 300, 'end marker after EUNKNOWN');
    };
    await check('channel open');
    await a.leave(P);
    await C.sleep(200);
    await check('after the last member left');
    a.close(); c.close();
});

// docs/protocol/history.md §4: the index keeps a bounded number of hashes
// from R on; past that a lookup that misses scans the log, and a hash found
// by the scan before R is still EUNKNOWN (not served from there).
T('checkpoints, then more lines than the index keeps: hashes before R stay EUNKNOWN', async () => {
    const P = C.padId();
    const a = await C.rawReady(srv.url);
    await a.join(P);
    const cps = new Set([4, 10, 12]);
    const N = 2112;
    const m = [null];   // 1-based
    for (let i = 1; i <= N; i++) { m.push(cps.has(i) ? cpContent(`l${i}`) : msgContent(`l${i}`)); }
    await sendPipelined(a, P, m.slice(1));
    assert.equal(fileLines(P).length, N);
    const c = await C.rawReady(srv.url);
    const ask = (lkh, txid) => C.getHistory(c, HK, P, { txid, lastKnownHash: lkh }, 20000);
    let res = await ask(hashOf(m[5]), 'l5');
    assert.deepEqual(res.end, { error: 'EUNKNOWN', channel: P, txid: 'l5' },
        `hash of line 5 (before R = line 10) → EUNKNOWN, got ${contentsOf(res.items).length} lines`);
    assert.equal(contentsOf(res.items).length, 0);
    res = await ask(hashOf(m[11]), 'l11');     // after R, dropped from the index: found by the scan
    assert.deepEqual(contentsOf(res.items), m.slice(11), 'hash of line 11 → 11..N');
    res = await ask(hashOf(m[N]), 'last');
    assert.deepEqual(contentsOf(res.items), [m[N]], 'newest hash');
    a.close(); c.close();
});

T('a duplicate checkpoint is ACKed, not stored, not relayed', async () => {
    const P = C.padId();
    const { a, b } = await pair(P);
    const id1 = rnd(8); const id2 = rnd(8);
    const cp1 = cpContent('cp1', id1);
    await sendEach(a, P, [cp1]);
    await b.next(f => isArr(f) && f[4] === cp1, 5000, 'relay of cp1');
    const dup = cpContent('dup', id1);
    const ack = await a.msg(P, dup);
    assert.deepEqual(ack.slice(1), ['ACK'], 'duplicate checkpoint ACKed');
    await b.none(f => isArr(f) && f[2] === 'MSG' && f[4] === dup, 400, 'relay of the duplicate checkpoint');
    assert.equal(fileLines(P).length, 1, 'duplicate not stored');
    // another id: stored and relayed; then the first id again is no longer a duplicate
    const cp2 = cpContent('cp2', id2);
    const cp3 = cpContent('cp3', id1);
    await sendEach(a, P, [cp2, cp3]);
    await b.next(f => isArr(f) && f[4] === cp2, 5000, 'relay of cp2');
    await b.next(f => isArr(f) && f[4] === cp3, 5000, 'relay of cp1-id after cp2');
    assert.deepEqual(fileLines(P).map(l => JSON.parse(l)[4]), [cp1, cp2, cp3]);
    a.close(); b.close();
});

// ------------------------------------------------------------ GET_HISTORY_RANGE

T('GET_HISTORY_RANGE: selection, framing and errors', async () => {
    const P = C.padId();
    const a = await C.rawReady(srv.url);
    await a.join(P);
    const m = Array.from({ length: 10 }, (_, i) => msgContent(`r${i}`));
    await sendEach(a, P, m);
    const lines = fileLines(P).map(l => JSON.parse(l));
    const c = await C.rawReady(srv.url);
    const range = async (cfg, what) => {
        const res = await C.getHistoryRange(c, HK, P, cfg);
        assert.deepEqual(res.reply, [res.seq, 'ACK'], `${what}: ACK`);
        assert.equal(res.order[0], 'reply', `${what}: ACK first`);
        checkHkFrames(c, res);
        for (const f of res.frames) { assert.equal(f.length, 5, `${what}: no priority element: ${C.short(f)}`); }
        assert.deepEqual(res.end, ['HISTORY_RANGE_END', cfg.txid, P], `${what}: end`);
        const body = res.items.slice(0, -1);
        for (const p of body) {
            assert.ok(isArr(p) && p[0] === 'HISTORY_RANGE' && p.length === 3, `${what}: item ${C.short(p)}`);
            assert.deepEqual(p[1], cfg.txid);
        }
        return body.map(p => p[2]);
    };
    let got = await range({ from: hashOf(m[5]), to: hashOf(m[2]), count: 4, txid: 'r1' }, 'from m5 to m2');
    assert.deepEqual(got, lines.slice(2, 6), 'm2..m5, stored arrays unchanged (element 0 = 0)');
    got = await range({ from: hashOf(m[7]), count: 3, txid: 2 }, 'from m7 count 3');
    assert.deepEqual(got, lines.slice(5, 8), 'm5, m6, m7');
    got = await range({ from: hashOf(m[3]), to: 'NONE', txid: { x: 1 } }, 'to NONE');
    assert.deepEqual(got, lines.slice(0, 4), 'from the first message to m3');
    got = await range({ count: 2, txid: 'tail' }, 'no from');
    assert.deepEqual(got, lines.slice(8), 'last 2 of the log');
    // a missing log: empty range and END
    const res = await C.getHistoryRange(c, HK, C.padId(), { count: 5, txid: 'missing' });
    assert.deepEqual(res.reply, [res.seq, 'ACK']);
    assert.ok(isArr(res.end) && (res.end[0] === 'HISTORY_RANGE_END' || (res.end[0] === 'HISTORY_RANGE_ERROR' && res.end[2] && res.end[2].code === 'ENOENT')),
        `missing log: ${C.short(res.items)}`);
    assert.equal(res.items.length, 1, 'no line for a missing log');

    const err = async (cfg, code) => {
        const r2 = await C.getHistoryRange(c, HK, P, cfg);
        assert.deepEqual(r2.reply, [r2.seq, 'ERROR', code, HK], `${C.short(cfg)} → ${code}`);
        assert.equal(r2.items.length, 0);
        await c.none(C.isHkFrame(HK), 200, `HK frame after ${code}`);
    };
    await err('a string', 'INVALID_ARGS');
    await err({ txid: 'x', from: hashOf(m[5]) }, 'UNSPECIFIED_COUNT');
    await err({ count: 3 }, 'NO_TXID');
    a.close(); c.close();
});

// ------------------------------------------------------------ GET_FULL_HISTORY

T('GET_FULL_HISTORY: every line byte-identical, then FULL_HISTORY_END', async () => {
    const P = C.padId();
    const a = await C.rawReady(srv.url);
    await a.join(P);
    await C.getHistory(a, HK, P, { txid: 1, metadata: { owners: [] } });   // creates metadata
    const m = [msgContent('f0'), cpContent('f1'), msgContent('f2'), cpContent('f3'), cpContent('f4'), msgContent('f5')];
    await sendEach(a, P, m);
    const c = await C.rawReady(srv.url);
    const check = async (chan) => {
        const res = await C.getFullHistory(c, HK, chan);
        assert.deepEqual(res.reply, [res.seq, 'ACK']);
        checkHkFrames(c, res);
        assert.deepEqual(res.end, ['FULL_HISTORY_END', chan]);
        const body = res.items.slice(0, -1);
        const flines = fileLines(chan);
        assert.equal(body.length, flines.length, `${chan}: one FULL_HISTORY per line`);
        body.forEach((p, i) => {
            assert.ok(isArr(p) && p[0] === 'FULL_HISTORY' && p.length === 2, `item ${C.short(p)}`);
            assert.equal(JSON.stringify(p[1]), flines[i], `${chan} line ${i + 1} byte-identical`);
        });
    };
    await check(P);
    await check(A1);
    await check(B2);   // legacy metadata first line included
    a.close(); c.close();
});

// ------------------------------------------------------------ the fixture

T('the CryptPad datastore fixture is served as stored', async () => {
    const c = await C.rawReady(srv.url);
    // a1: 5 lines, checkpoints on lines 1 and 4 → R = line 1 → every line
    const a1 = fileLines(A1);
    assert.equal(a1.length, 5);
    const a1meta = JSON.parse(fileLines(A1, '.metadata.ndjson')[0]);
    let res = await C.getHistory(c, HK, A1, { txid: 'fx' });
    assert.deepEqual(res.reply, [res.seq, 'ACK']);
    checkHkFrames(c, res);
    assert.deepEqual(res.items[0], a1meta, 'a1: metadata from the dedicated log');
    assert.deepEqual(res.items.slice(1, -1), a1.map((l) => { const p = JSON.parse(l); p[0] = 'fx'; return p; }), 'a1: the 5 lines');
    assert.deepEqual(res.end, { state: 1, channel: A1, txid: 'fx' });
    // resume inside the fixture
    const hash4 = JSON.parse(a1[3])[4].slice(0, 64);
    res = await C.getHistory(c, HK, A1, { txid: 'fx4', lastKnownHash: hash4 });
    assert.deepEqual(contentsOf(res.items), [3, 4].map(i => JSON.parse(a1[i])[4]), 'a1: from line 4');
    const hash2 = JSON.parse(a1[1])[4].slice(0, 64);
    res = await C.getHistory(c, HK, A1, { txid: 'fx2', lastKnownHash: hash2 });
    assert.deepEqual(contentsOf(res.items), [1, 2, 3, 4].map(i => JSON.parse(a1[i])[4]), 'a1: from line 2');

    // b2: legacy metadata on line 1: sent as the metadata message, not as a line
    const b2 = fileLines(B2);
    assert.equal(b2.length, 4);
    res = await C.getHistory(c, HK, B2, { txid: 'legacy' });
    assert.deepEqual(res.reply, [res.seq, 'ACK']);
    assert.deepEqual(res.items[0], JSON.parse(b2[0]), 'b2: the legacy metadata line as metadata');
    assert.equal(res.items.filter(p => isMeta(p, B2)).length, 1, `b2: metadata once: ${C.short(res.items)}`);
    assert.deepEqual(res.items.slice(1, -1), b2.slice(1).map((l) => { const p = JSON.parse(l); p[0] = 'legacy'; return p; }), 'b2: lines 2..4');
    assert.deepEqual(res.end, { state: 1, channel: B2, txid: 'legacy' });
    c.close();
});

// ------------------------------------------------------------ owned channels

const signed = (text, sk) => b64(Nacl.sign(Buffer.from(text, 'utf8'), sk));

T('owned channel: signed messages stored and relayed, others refused', async () => {
    const P = C.padId();
    const keys = Nacl.sign.keyPair();
    const other = Nacl.sign.keyPair();
    const vk = b64(keys.publicKey);
    const { a, b } = await pair(P);
    const res = await C.getHistory(a, HK, P, { txid: 'own', metadata: { validateKey: vk, owners: [b64(Nacl.sign.keyPair().publicKey)] } });
    assert.ok(res.items.some(p => isMeta(p, P) && p.validateKey === vk), 'created with validateKey');
    const good = [signed('hello', keys.secretKey), `cp|${rnd(8)}|` + signed('checkpoint', keys.secretKey),
        'cp|' + signed('cp without id', keys.secretKey), signed('third', keys.secretKey)];
    const bad = [signed('forged', other.secretKey), 'garbage!!', '', b64(Buffer.from('short')),
        `cp|${rnd(8)}|` + signed('forged cp', other.secretKey)];
    const relayed = [];
    b.onFrame = (f) => { if (isArr(f) && f[2] === 'MSG' && f[3] === P) { relayed.push(f[4]); } return false; };
    for (let i = 0; i < Math.max(good.length, bad.length); i++) {
        if (good[i]) {
            const f = await a.msg(P, good[i]);
            assert.deepEqual(f.slice(1), ['ACK'], `good message ${i} ACKed`);
        }
        if (bad[i] !== undefined) {
            const f = await a.msg(P, bad[i]);
            assert.deepEqual(f.slice(1), ['ERROR'], `bad message ${C.short(bad[i], 40)} refused with [seq,"ERROR"]`);
        }
    }
    await C.waitFor(() => relayed.length >= good.length, 5000, 'relays of good messages');
    await C.sleep(200);
    assert.deepEqual(relayed, good, 'only the good messages are relayed, in order');
    assert.deepEqual(fileLines(P).map(l => JSON.parse(l)[4]), good, 'only the good messages are stored');
    const c = await C.rawReady(srv.url);
    // two checkpoints: the recent history starts at the first one (§5.3); -1 = all
    let h = await C.getHistory(c, HK, P, { txid: 'h', lastKnownHash: -1 });
    assert.deepEqual(contentsOf(h.items), good, 'whole history holds only the good messages');
    h = await C.getHistory(c, HK, P, { txid: 'h2' });
    assert.deepEqual(contentsOf(h.items), good.slice(1), 'recent history from the second-to-last checkpoint');
    a.close(); b.close(); c.close();
});

T('GET_HISTORY with an invalid validateKey → HK_INVALID_KEY and nothing more', async () => {
    const a = await C.rawReady(srv.url);
    const exact = [];
    for (const vk of ['abc', b64(Crypto.randomBytes(31)), b64(Crypto.randomBytes(33)), 42, '', b64(Crypto.randomBytes(64))]) {
        const P = C.padId();
        await a.join(P);
        const res = await C.getHistory(a, HK, P, { txid: 'bad', metadata: { validateKey: vk } });
        assert.deepEqual(res.reply && res.reply.slice(0, 3), [res.seq, 'ERROR', 'HK_INVALID_KEY'],
            `validateKey ${C.short(vk)}: ${C.short(res)}`);
        if (res.reply.length !== 3) { exact.push(`validateKey ${C.short(vk)}: got ${C.short(res.reply)}`); }
        assert.equal(res.items.length, 0);
        await a.none(C.isHkFrame(HK), 300, `HK frame after HK_INVALID_KEY (${C.short(vk)})`);
        assert.deepEqual(filesMentioning(P), [], 'no channel created');
    }
    a.close();
    assert.deepEqual(exact, [], 'expected exactly [seq,"ERROR","HK_INVALID_KEY"] (docs/protocol/history.md §5.1, docs/protocol/netflux.md §15)');
});

// ------------------------------------------------------------ pipelining

T('pipelining: 200 messages to a fresh pad, in send order everywhere', async () => {
    const run = async (signedPad) => {
        const P = C.padId();
        const { a, b } = await pair(P);
        const keys = Nacl.sign.keyPair();
        const contents = [];
        for (let i = 0; i < 200; i++) {
            const text = `p${i}|${rnd(30)}`;
            contents.push(signedPad ? signed(text, keys.secretKey) : text);
        }
        if (signedPad) {
            // create the pad, then send the burst without waiting for anything
            const seq = C.hkSend(a, HK, ['GET_HISTORY', P, { txid: 'pipe', metadata: { validateKey: b64(keys.publicKey) } }]);
            await a.next(f => isArr(f) && f[0] === seq, 5000, 'GET_HISTORY ACK');
            await a.next(f => C.isHkFrame(HK)(f) && isEnd(JSON.parse(f[4]), P), 5000, 'end marker');
        }
        const received = [];
        b.onFrame = (f) => {
            if (isArr(f) && f[2] === 'MSG' && f[3] === P) { received.push(f[4]); return true; }
            return false;
        };
        const replies = await sendPipelined(a, P, contents);
        for (const f of replies) { assert.equal(f[1], 'ACK', `every message ACKed: ${C.short(f)}`); }
        await C.waitFor(() => received.length >= 200, 10000, `200 relays (got ${received.length})`);
        assert.deepEqual(received, contents, 'the other member receives them in send order');
        const c = await C.rawReady(srv.url);
        const h = await C.getHistory(c, HK, P, { txid: 'h' }, 10000);
        assert.deepEqual(contentsOf(h.items), contents, 'history in send order');
        a.close(); b.close(); c.close();
    };
    await run(true);
    await run(false);
});

// ------------------------------------------------------------ expiry

T('expiring channel: refused after expiry, members notified, EEXPIRED history', async () => {
    const P = C.padId();
    const { a, b } = await pair(P);
    const t0 = Date.now();
    const res = await C.getHistory(a, HK, P, { txid: 'exp', metadata: { expire: 1 } });
    const meta = res.items.find(p => isMeta(p, P));
    assert.ok(meta, `created: ${C.short(res.items)}`);
    assert.ok(meta.expire >= t0 + 1000 - 50 && meta.expire <= Date.now() + 1000 + 50, `expire in absolute ms: ${meta.expire} (t0 ${t0})`);
    const early = msgContent('early');
    const ack = await a.msg(P, early);
    assert.deepEqual(ack.slice(1), ['ACK'], 'a message before expiry is accepted');
    await b.next(f => isArr(f) && f[4] === early, 3000, 'relay before expiry');
    await C.sleep(Math.max(0, meta.expire - Date.now()) + 500);
    const late = msgContent('late');
    const f = await a.msg(P, late);
    assert.deepEqual(f, [f[0], 'ERROR'], 'a message after expiry gets [seq,"ERROR"]');
    const note = await b.next(x => C.isHkFrame(HK)(x) && x[4].includes('EEXPIRED'), 3000, 'EEXPIRED notice to the other member');
    assert.equal(note[3], b.id, 'notice addressed to the member');
    assert.deepEqual(JSON.parse(note[4]), { error: 'EEXPIRED', channel: P }, 'notice is the JSON text of the object');
    await b.none(x => isArr(x) && x[2] === 'MSG' && x[4] === late, 300, 'relay of the refused message');
    assert.ok(!fileLines(P).some(l => l.includes(late)), 'refused message not stored');
    const c = await C.rawReady(srv.url);
    const h = await C.getHistory(c, HK, P, { txid: 'after' });
    assert.ok(isObj(h.end) && h.end.error === 'EEXPIRED' && h.end.channel === P, `GET_HISTORY after expiry: ${C.short(h)}`);
    assert.equal(contentsOf(h.items).length, 0, 'no line');
    await c.none(x => C.isHkFrame(HK)(x) && isEnd(JSON.parse(x[4]), P), 300, 'end marker after EEXPIRED');
    a.close(); b.close(); c.close();
});

// ------------------------------------------------------------ restricted

T('restricted channel: JOIN and history commands refused without authentication', async () => {
    const r = await C.rawReady(srv.url);
    const j = await r.request(['JOIN', RESTR]);
    assert.deepEqual(j, [j[0], 'ERROR', 'ERESTRICTED', [HK, restrKey]], 'JOIN → ERESTRICTED with [HK, owners..., allowed...]');
    await r.none(x => isArr(x) && x[2] === 'JOIN' && x[3] === RESTR, 200, 'JOIN event for a refused JOIN');
    const h = await C.getHistory(r, HK, RESTR, { txid: 'r' });
    assert.deepEqual(h.reply, [h.seq, 'ERROR', 'ERESTRICTED', HK], `GET_HISTORY: ${C.short(h)}`);
    assert.equal(h.items.length, 0);
    const fh = await C.getFullHistory(r, HK, RESTR);
    assert.deepEqual(fh.reply, [fh.seq, 'ERROR', 'ERESTRICTED', HK], `GET_FULL_HISTORY: ${C.short(fh)}`);
    const rh = await C.getHistoryRange(r, HK, RESTR, { count: 5, txid: 'rr' });
    assert.deepEqual(rh.reply, [rh.seq, 'ERROR', 'ERESTRICTED', HK], `GET_HISTORY_RANGE: ${C.short(rh)}`);
    await r.none(C.isHkFrame(HK), 300, 'HK frame for a restricted channel');
    // a MSG to it from a non-member is neither stored nor relayed
    const before = readText(RESTR);
    await r.request(['MSG', RESTR, msgContent('intruder')]).catch(() => null);
    await C.sleep(100);
    assert.equal(readText(RESTR), before, 'log unchanged');
    r.close();
});

// ------------------------------------------------------------ bad input

T('bad history commands: refused or dropped, nothing written, others unaffected', async () => {
    // the well-behaved pair uses an ephemeral channel, so it writes nothing
    const E = C.ephemeralId();
    const { a: good, b: peer } = await pair(E);
    let n = 0;
    const healthy = async (what) => {
        assert.ok(srv.alive(), `server alive after ${what}`);
        const p = await good.ping(3000);
        assert.deepEqual(p.slice(1), ['ACK'], `PING after ${what}`);
        const content = `health|${++n}`;
        await good.msg(E, content, 3000);
        await peer.next(x => isArr(x) && x[4] === content, 3000, `relay after ${what}`);
    };
    // an existing channel, read once first (a backend may write an index cache on first read)
    const P = C.padId();
    const w = await C.rawReady(srv.url);
    await w.join(P);
    await sendEach(w, P, [msgContent('x0'), cpContent('x1'), msgContent('x2'), cpContent('x3'), msgContent('x4')]);
    await w.leave(P);
    w.close();
    const bad = await C.rawReady(srv.url);
    await C.getHistory(bad, HK, P, { txid: 0 });
    await C.getHistoryRange(bad, HK, P, { count: 1, txid: 0 });
    await C.sleep(200);
    const fresh = C.padId();
    const listing = listFiles(DATA);

    const J = JSON.stringify;
    const cases = [
        // history commands with a missing/invalid channel
        J(['GET_HISTORY']), J(['GET_HISTORY', 123, {}]), J(['GET_HISTORY', null, {}]), J(['GET_HISTORY', {}, {}]),
        J(['GET_HISTORY', '../../../../etc/passwd', {}]), J(['GET_HISTORY', '../' + 'a'.repeat(29), {}]),
        J(['GET_HISTORY', 'a/b' + 'c'.repeat(29), {}]), J(['GET_HISTORY', 'x'.repeat(1000), {}]),
        J(['GET_HISTORY', 'ab', {}]), J(['GET_HISTORY', [P], {}]),
        J(['GET_FULL_HISTORY']), J(['GET_FULL_HISTORY', {}]), J(['GET_FULL_HISTORY', '..']),
        J(['GET_FULL_HISTORY', P.slice(0, 31) + '/']),
        J(['GET_HISTORY_RANGE']), J(['GET_HISTORY_RANGE', 5, { count: 1, txid: 1 }]),
        J(['GET_HISTORY_RANGE', '..\\' + 'a'.repeat(29), { count: 1, txid: 1 }]),
        // config of the wrong type
        J(['GET_HISTORY', fresh, 'cfg']), J(['GET_HISTORY', fresh, 42]), J(['GET_HISTORY', fresh, [1, 2]]),
        J(['GET_HISTORY', fresh, null]), J(['GET_HISTORY', P, true]),
        J(['GET_HISTORY_RANGE', P, 'a string']), J(['GET_HISTORY_RANGE', P, [1]]), J(['GET_HISTORY_RANGE', P, null]),
        // unknown commands
        J(['GET_HISTORYX', P, {}]), J(['get_history', P, {}]), J(['DROP_CHANNEL', P, {}]), J(['', P]),
        // bogus hashes
        J(['GET_HISTORY', P, { txid: 1, lastKnownHash: 5 }]), J(['GET_HISTORY', P, { txid: 1, lastKnownHash: {} }]),
        J(['GET_HISTORY', P, { txid: 1, lastKnownHash: 'x'.repeat(100000) }]),
        J(['GET_HISTORY', P, { txid: 1, lastKnownHash: '../../../etc/passwd' }]),
        J(['GET_HISTORY', P, { txid: 1, lastKnownHash: -2 }]), J(['GET_HISTORY', P, { txid: 1, lastKnownHash: null }]),
        J(['GET_HISTORY', P, { txid: 1, lastKnownHash: '' }]), J(['GET_HISTORY', P, { txid: 1, lastKnownHash: [] }]),
        J(['GET_HISTORY', P, { txid: {}, lastKnownHash: 'cp|' }]),
        J(['GET_HISTORY_RANGE', P, { from: 5, count: 2, txid: 1 }]),
        J(['GET_HISTORY_RANGE', P, { from: {}, to: [], txid: 1 }]),
        J(['GET_HISTORY_RANGE', P, { count: -5, txid: 1 }]), J(['GET_HISTORY_RANGE', P, { count: 1e15, txid: 1 }]),
        J(['GET_HISTORY_RANGE', P, { cpCount: -1, txid: 1 }]), J(['GET_HISTORY_RANGE', P, { cpCount: 1e9, txid: 1 }]),
        J(['GET_HISTORY_RANGE', P, { to: 'NONE', from: 'nope', txid: 1 }]),
        J(['GET_HISTORY_RANGE', P, { count: 'abc', txid: 1 }]), J(['GET_HISTORY_RANGE', P, { to: 5, txid: 1 }]),
        J(['GET_HISTORY_RANGE', P, { count: 2.5, txid: null }]),
        J(['GET_HISTORY', P, { txid: 1, metadata: 'x' }]), J(['GET_HISTORY', fresh, { txid: 1, metadata: [1] }]),
        // non-array / non-object payloads
        '{}', '42', 'true', 'null', '"GET_HISTORY"', 'not json', '[]', '[[]]', '[{}]', '{"GET_HISTORY":1}',
        '["GET_HISTORY", "' + P + '", {"txid":1}', '\u0000',
    ];
    const failures = [];
    for (const text of cases) {
        try {
            const seq = bad.nextSeq();
            bad.send([seq, 'MSG', HK, text]);
            const reply = await bad.next(f => isArr(f) && f[0] === seq, 600, 'reply').catch(() => null);
            if (reply) {
                assert.ok(reply[1] === 'ACK' || reply[1] === 'ERROR', `reply ${C.short(reply)}`);
            }
            await C.sleep(80);
            for (const f of bad.frames.splice(0)) {
                if (!(isArr(f) && f[0] === 0 && f[2] === 'MSG')) { continue; }
                assert.equal(f[1], HK, `unexpected direct message ${C.short(f)}`);
                const p = JSON.parse(f[4]);
                const ok = (isArr(p) && (p[1] === 'ERROR' || /^(HISTORY_RANGE|FULL_HISTORY|ERROR)/.test(String(p[0])))) ||
                    (isObj(p) && (p.error || p.state === 1 || p.channel)) || (isArr(p) && p[2] === 'MSG');
                assert.ok(ok, `HK answer ${C.short(p)}`);
            }
            if (text.includes('GET_HISTORY_RANGE') && text.includes('"a string"')) {
                assert.deepEqual(reply, [seq, 'ERROR', 'INVALID_ARGS', HK], 'GET_HISTORY_RANGE with a string cfg');
            }
            assert.ok(bad.isOpen(), 'bad client still connected');
            await healthy(C.short(text, 80));
        } catch (e) {
            failures.push(`${C.short(text, 100)}: ${e.message.split('\n--- cpsd')[0]}`);
            if (!srv.alive()) { break; }
        }
    }
    await C.sleep(200);
    const after = listFiles(DATA);
    assert.deepEqual(after, listing, 'nothing written to the data directory');
    assert.deepEqual(failures, [], `failures:\n${failures.join('\n')}`);
    good.close(); peer.close(); bad.close();
});

// ------------------------------------------------------------ chainpad-netflux

T('chainpad-netflux: two clients exchange messages, a third gets the history', async () => {
    const CPNF = require('chainpad-netflux');
    const CCrypto = require('chainpad-crypto');
    const P = C.padId();
    const keys = Nacl.sign.keyPair();
    const cryptKey = Nacl.randomBytes(32);
    const validateKey = b64(keys.publicKey);
    const mkCrypto = () => CCrypto.createEncryptor({ cryptKey, signKey: b64(keys.secretKey) });
    const started = [];
    const user = async (name) => {
        const net = await C.connect(srv.url);
        const u = { name, net, msgs: [], errors: [], send: null, ready: null };
        u.ready = C.withTimeout(new Promise((resolve) => {
            const rt = CPNF.start({
                network: net,
                channel: P,
                crypto: mkCrypto(),
                validateKey,
                owners: [validateKey],
                noChainPad: true,
                onConnect: (wc, send) => { u.send = send; },
                onMessage: (msg, peer, vk, isCp, hash) => { u.msgs.push({ msg, peer, isCp, hash }); },
                onReady: (info) => { u.info = info; resolve(info); },
                onChannelError: (e) => { u.errors.push(e); },
                onError: (e) => { u.errors.push(e); },
            });
            u.rt = rt;
            started.push(u);
        }), 8000, `${name}: chainpad-netflux onReady`);
        await u.ready;
        return u;
    };
    const send = (u, msg) => C.withTimeout(new Promise((resolve, reject) => {
        u.send(msg, (err, hash) => (err ? reject(new Error(`${u.name} send: ${err}`)) : resolve(hash)));
    }), 5000, `${u.name} send ACK`);
    try {
        const u1 = await user('u1');
        assert.equal(u1.info.metadata.validateKey, validateKey);
        const meta = fileLines(P, '.metadata.ndjson');
        assert.ok(meta && JSON.parse(meta[0]).validateKey === validateKey, 'pad created with its validateKey');
        const u2 = await user('u2');
        assert.equal(u2.msgs.length, 0, 'empty history for u2');
        const sent = [];
        const h1 = await send(u1, 'hello from u1'); sent.push('hello from u1');
        await C.waitFor(() => u2.msgs.length >= 1, 5000, 'u2 receives u1');
        const h2 = await send(u2, 'hello from u2'); sent.push('hello from u2');
        await C.waitFor(() => u1.msgs.length >= 1, 5000, 'u1 receives u2');
        const hcp = await send(u1, '[4,"a checkpoint"]'); sent.push('[4,"a checkpoint"]');
        await send(u2, 'after the checkpoint'); sent.push('after the checkpoint');
        await C.waitFor(() => u2.msgs.length >= 2 && u1.msgs.length >= 2, 5000, 'all relays');
        assert.deepEqual(u2.msgs.map(x => x.msg), ['hello from u1', '[4,"a checkpoint"]']);
        assert.deepEqual(u1.msgs.map(x => x.msg), ['hello from u2', 'after the checkpoint']);
        assert.equal(u2.msgs[0].hash, h1);
        assert.equal(u1.msgs[0].hash, h2);
        assert.ok(/^cp\|[A-Za-z0-9+/=]+\|/.test(hcp), `checkpoint hash ${hcp}`);
        assert.equal(u2.msgs[1].isCp, true);
        const u3 = await user('u3');
        assert.deepEqual(u3.msgs.map(x => x.msg), sent, 'u3 gets the whole history before onReady');
        assert.deepEqual(u3.msgs.map(x => x.peer), sent.map(() => HK), 'history comes from the HK');
        assert.equal(u3.info.metadata.validateKey, validateKey);
        assert.deepEqual(u3.errors, []);
        // u3 can write too, and the others see it
        await send(u3, 'from u3');
        await C.waitFor(() => u1.msgs.length >= 3 && u2.msgs.length >= 3, 5000, 'relay of u3');
        assert.equal(u1.msgs[2].msg, 'from u3');
        assert.deepEqual(fileLines(P).length, 5);
    } finally {
        for (const u of started) {
            try { u.rt.stop(); } catch (e) { /* ignore */ }
            u.net.close();
        }
    }
});
