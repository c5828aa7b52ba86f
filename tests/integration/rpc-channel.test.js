'use strict';
// The channel RPC commands (spec docs/protocol/rpc.md §5-§6, docs/protocol/history.md §9-§12):
// GET_FILE_SIZE, GET_MULTIPLE_FILE_SIZE, GET_DELETED_PADS, IS_NEW_CHANNEL,
// GET_METADATA, WRITE_PRIVATE_MESSAGE (anonymous) and SET_METADATA,
// CLEAR_OWNED_CHANNEL, REMOVE_OWNED_CHANNEL, TRIM_HISTORY (signed), checked
// against the files the server writes in its data_dir.
//
// One server for the file; pads are created the way the web app does it
// (JOIN, then GET_HISTORY with the initial metadata).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const Crypto = require('node:crypto');
const { isDeepStrictEqual } = require('node:util');
const { startServer, withLog, tmpDir, channelFile, listFiles, readStored, statStored, existsStored, PG } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');

const isArr = Array.isArray;
const isObj = (p) => p !== null && typeof p === 'object' && !isArr(p);
const clone = (x) => JSON.parse(JSON.stringify(x));

const ROOT = tmpDir('cpsd-rpcchan-');
const DATA = Path.join(ROOT, 'data');

let srv;
let HK;
const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv.guard(fn)(t));

const A = R.keyPair();      // owner
const B = R.keyPair();      // another user (pending owner, ...)
const X = R.keyPair();      // a stranger
const K1 = R.keyPair();
const K2 = R.keyPair();
const K3 = R.keyPair();

before(withLog(() => srv, async () => {
    Fs.mkdirSync(DATA, { recursive: true });
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

// exactly n characters of base64 (no '"' nor '\\'): JSON adds 2 bytes
const content = (n) => {
    let s = '';
    while (s.length < n) { s += Crypto.randomBytes(n).toString('base64'); }
    return s.slice(0, n);
};
const hashOf = (c) => c.slice(0, 64);
const fileSize = (id, suffix = '.ndjson') => {
    try { return statStored(channelFile(DATA, id, suffix)).size; } catch (e) { return null; }
};
const readText = (id, suffix = '.ndjson') => {
    try { return readStored(channelFile(DATA, id, suffix), 'utf8'); } catch (e) { return null; }
};
const fileLines = (id, suffix = '.ndjson') => {
    const t = readText(id, suffix);
    if (t === null) { return null; }
    const parts = t.split('\n');
    parts.pop();
    return parts;
};
const diskSize = (id) => (fileSize(id) || 0) + (fileSize(id, '.metadata.ndjson') || 0);
const snapshot = () => listFiles(DATA);
const filesOf = (id) => Object.entries(listFiles(DATA)).filter(([p]) => p.includes(id));

// A connection with a signed-call client for keys (COOKIE done).
const session = async (keys) => {
    const r = await C.rawReady(srv.url);
    const rpc = R.client(r, HK, keys);
    await rpc.call('COOKIE', '');
    return { r, rpc };
};

// Join a new pad on r and create it with meta; returns the metadata text the
// server sent at creation (the last metadata message before the end marker).
const createPad = async (r, meta, P = C.padId()) => {
    await r.join(P);
    const h = await C.getHistory(r, HK, P, { txid: 'create', metadata: meta });
    assert.deepEqual(h.reply, [h.seq, 'ACK']);
    assert.deepEqual(h.end, { state: 1, channel: P, txid: 'create' }, `creation of ${P}: ${C.short(h.items)}`);
    assert.ok(h.frames.length >= 2, `metadata sent at creation: ${C.short(h.items)}`);
    const metaText = h.frames[h.frames.length - 2][4];
    const m = JSON.parse(metaText);
    assert.equal(m.channel, P);
    assert.deepEqual(fileLines(P, '.metadata.ndjson'), [metaText], 'metadata log = the text sent');
    return { P, metaText, meta: m };
};

// Send contents to chan (one ACK each); returns the stored lines' texts.
const sendEach = async (r, chan, contents) => {
    for (const c of contents) {
        const f = await r.msg(chan, c);
        assert.deepEqual(f.slice(1), ['ACK'], `ACK for ${c.slice(0, 20)}`);
    }
};

const anon = (r, cmd, args) => R.anon(r, HK, cmd, args);
const anonErr = async (r, cmd, args) => {
    const { reply, txid } = await R.anonRaw(r, HK, cmd, args);
    assert.equal(reply[0], txid);
    assert.equal(reply[1], 'ERROR', `${cmd} ${C.short(args, 100)} should fail: ${C.short(reply)}`);
    assert.equal(reply.length, 3, `[txid,"ERROR",code]: ${C.short(reply)}`);
    return reply[2];
};
const anonOk = async (r, cmd, args) => {
    const { reply, txid } = await R.anonRaw(r, HK, cmd, args);
    assert.deepEqual([reply[0], reply[1], reply[3], reply.length], [txid, null, null, 4],
        `anonymous reply [txid,null,value,null] for ${cmd} ${C.short(args, 100)}: ${C.short(reply)}`);
    return reply[2];
};
const size = (r, id) => anonOk(r, 'GET_FILE_SIZE', id);

// An HK notification on r whose parsed content satisfies pred.
const hkNote = (r, pred, what, ms = 3000) => r.next((f) => {
    if (!C.isHkFrame(HK)(f)) { return false; }
    let p;
    try { p = JSON.parse(f[4]); } catch (e) { return false; }
    return pred(p, f);
}, ms, what).then(f => ({ frame: f, content: JSON.parse(f[4]) }));

// ------------------------------------------------------------ sizes

T('GET_FILE_SIZE is byte-exact: metadata line + N+97 per message (docs/protocol/rpc.md §5 example)', async () => {
    const r = await C.rawReady(srv.url);
    const owner = R.keyPair().pub;
    assert.equal(owner.length, 44);
    const { P, metaText } = await createPad(r, { owners: [owner], restricted: false, allowed: [] });
    assert.equal(metaText.length, 160, `metadata text ${metaText}`);       // 159 with restricted:true
    assert.equal(await size(r, P), metaText.length + 1, 'size of a new pad = metadata line + newline');
    const cs = [1, 2, 3, 4, 5].map(() => content(101));
    await sendEach(r, P, cs);
    const expected = metaText.length + 1 + 5 * (101 + 97);
    assert.equal(expected, 1151);
    assert.equal(await size(r, P), expected, 'GET_FILE_SIZE = 160 + 1 + 5 * 198');
    assert.equal(diskSize(P), expected, 'equals the bytes on disk');
    // contents of other lengths
    await sendEach(r, P, [content(1), content(1000)]);
    assert.equal(await size(r, P), expected + 98 + 1097);
    // a restricted pad: the spec's exact example, 1150
    const a = await session(A);
    const { P: Q, metaText: mt } = await createPad(a.r, { owners: [A.pub], restricted: true, allowed: [] });
    assert.equal(mt.length, 159, `restricted metadata text ${mt}`);
    await sendEach(a.r, Q, [1, 2, 3, 4, 5].map(() => content(101)));
    assert.equal(await size(r, Q), 1150, 'the docs/protocol/rpc.md §5 example: 990 + 160');
    r.close(); a.r.close();
});

T('GET_FILE_SIZE: 0 for unknown ids, INVALID_CHAN for bad ids', async () => {
    const r = await C.rawReady(srv.url);
    assert.equal(await size(r, C.padId()), 0, 'unknown 32-char channel');
    assert.equal(await size(r, C.hex(24)), 0, 'unknown 48-char blob');
    assert.equal(await size(r, 'A'.repeat(32)), 0, 'unknown upper-case id');
    for (const bad of ['abc', C.hex(16).slice(1), C.hex(17), C.hex(25).slice(1), 'a'.repeat(31) + '/',
        'a'.repeat(31) + '_', 'a'.repeat(31) + '.', 'a'.repeat(31) + ' ', '../' + C.hex(16).slice(3), '',
        42, null, {}, [C.padId()], true]) {
        assert.equal(await anonErr(r, 'GET_FILE_SIZE', bad), 'INVALID_CHAN', `GET_FILE_SIZE ${C.short(bad)}`);
    }
    r.close();
});

T('GET_MULTIPLE_FILE_SIZE and GET_DELETED_PADS; INVALID_LIST', async () => {
    const r = await C.rawReady(srv.url);
    const { P: P1 } = await createPad(r, { owners: [B.pub] });
    const { P: P2 } = await createPad(r, {});
    await sendEach(r, P1, [content(50), content(60)]);
    await sendEach(r, P2, [content(70)]);
    const s1 = await size(r, P1);
    const s2 = await size(r, P2);
    assert.equal(s1, diskSize(P1));
    assert.equal(s2, diskSize(P2));
    const U = C.padId();
    const blob = C.hex(24);
    const m = await anonOk(r, 'GET_MULTIPLE_FILE_SIZE', [P1, U, P2, blob, P1]);
    assert.deepEqual(m, { [P1]: s1, [U]: 0, [P2]: s2, [blob]: 0 }, 'one entry per id, unknown = 0');
    assert.deepEqual(await anonOk(r, 'GET_MULTIPLE_FILE_SIZE', []), {}, 'empty list');
    const withBad = await anonOk(r, 'GET_MULTIPLE_FILE_SIZE', [P1, 'abc']);
    assert.equal(withBad[P1], s1);
    assert.equal(withBad.abc, 0, `a bad id counts as 0: ${C.short(withBad)}`);
    for (const bad of ['x', null, {}, 5, P1]) {
        assert.equal(await anonErr(r, 'GET_MULTIPLE_FILE_SIZE', bad), 'INVALID_LIST', `GET_MULTIPLE_FILE_SIZE ${C.short(bad)}`);
    }

    // deleted pads: ids that hold no data (never created, or removed)
    const a = await session(A);
    const { P: P3 } = await createPad(a.r, { owners: [A.pub] });
    await sendEach(a.r, P3, [content(10)]);
    assert.deepEqual(await a.rpc.call('REMOVE_OWNED_CHANNEL', { channel: P3, reason: 'gone' }), ['OK']);
    const d = await anonOk(r, 'GET_DELETED_PADS', [P1, U, P2, P3]);
    assert.ok(isArr(d), C.short(d));
    assert.deepEqual(d.slice().sort(), [U, P3].sort(), 'unknown and removed ids');
    assert.deepEqual(await anonOk(r, 'GET_DELETED_PADS', []), []);
    const d2 = await anonOk(r, 'GET_DELETED_PADS', ['abc', P1]);
    assert.deepEqual(d2, [], `ids with errors are omitted: ${C.short(d2)}`);
    for (const bad of ['x', null, {}, 5]) {
        assert.equal(await anonErr(r, 'GET_DELETED_PADS', bad), 'INVALID_LIST', `GET_DELETED_PADS ${C.short(bad)}`);
    }
    r.close(); a.r.close();
});

// ------------------------------------------------------------ IS_NEW_CHANNEL

T('IS_NEW_CHANNEL: new until a message, then not; deleted → reason', async () => {
    const a = await session(A);
    const r = a.r;
    const P = C.padId();
    assert.deepEqual(await anonOk(r, 'IS_NEW_CHANNEL', P), { isNew: true }, 'unknown id');
    await createPad(r, { owners: [A.pub] }, P);
    assert.deepEqual(await anonOk(r, 'IS_NEW_CHANNEL', P), { isNew: true }, 'metadata only');
    await sendEach(r, P, [content(20)]);
    assert.deepEqual(await anonOk(r, 'IS_NEW_CHANNEL', P), { isNew: false }, 'after a message');
    const other = await C.rawReady(srv.url);
    assert.deepEqual(await anonOk(other, 'IS_NEW_CHANNEL', P), { isNew: false }, 'from another connection');
    assert.deepEqual(await a.rpc.call('REMOVE_OWNED_CHANNEL', { channel: P, reason: 'bye bye' }), ['OK']);
    assert.deepEqual(await anonOk(other, 'IS_NEW_CHANNEL', P), { isNew: true, reason: 'bye bye' }, 'after REMOVE_OWNED_CHANNEL');
    for (const bad of ['abc', C.hex(17), C.hex(24), 42, null, {}, 'a'.repeat(31) + '/']) {
        assert.equal(await anonErr(other, 'IS_NEW_CHANNEL', bad), 'INVALID_CHAN', `IS_NEW_CHANNEL ${C.short(bad)}`);
    }
    r.close(); other.close();
});

// ------------------------------------------------------------ GET_METADATA

T('GET_METADATA: the stored object unchanged; null for unknown; errors for bad ids', async () => {
    const r = await C.rawReady(srv.url);
    const meta = { owners: [A.pub], validateKey: R.b64(Crypto.randomBytes(32)), foo: { bar: [1, 'two', null] },
        expire: undefined, mailbox: { [A.pub]: 'mbx' } };
    delete meta.expire;
    const { P, meta: created } = await createPad(r, meta);
    const other = await C.rawReady(srv.url);
    const got = await anonOk(other, 'GET_METADATA', P);
    assert.deepEqual(got, created, 'same object as sent at creation');
    assert.deepEqual(Object.keys(got), Object.keys(created), 'same members in the same order');
    assert.deepEqual(got, JSON.parse(fileLines(P, '.metadata.ndjson')[0]));
    assert.equal(await anonOk(other, 'GET_METADATA', C.padId()), null, 'unknown channel → null');
    for (const bad of ['abc', C.hex(17), 42, null, {}, 'a'.repeat(31) + '/']) {
        const code = await anonErr(other, 'GET_METADATA', bad);
        assert.ok(['INVALID_CHAN', 'INVALID_CHAN_LENGTH'].includes(code), `GET_METADATA ${C.short(bad)}: ${code}`);
    }
    r.close(); other.close();
});

T('GET_METADATA on a restricted pad: privacy form unless authenticated with an allowed key', async () => {
    const a = await session(A);
    const { P, meta: stored } = await createPad(a.r, { owners: [A.pub], restricted: true, allowed: [K1.pub] });
    const privacy = { restricted: true, allowed: [A.pub, K1.pub], rejected: true };
    const u = await C.rawReady(srv.url);
    assert.deepEqual(await anonOk(u, 'GET_METADATA', P), privacy, 'unauthenticated caller');
    const x = await session(X);
    assert.deepEqual(await anonOk(x.r, 'GET_METADATA', P), privacy, 'caller authenticated with another key');
    assert.deepEqual(await anonOk(a.r, 'GET_METADATA', P), stored, 'owner');
    const k = await session(K1);
    assert.deepEqual(await anonOk(k.r, 'GET_METADATA', P), stored, 'allowed key');
    u.close(); x.r.close(); a.r.close(); k.r.close();
});

// ------------------------------------------------------------ WRITE_PRIVATE_MESSAGE

T('WRITE_PRIVATE_MESSAGE: relayed with a null sender, stored as N+67 bytes, reply = the time', async () => {
    const M = C.padId();
    const mb = await C.rawReady(srv.url);
    await mb.join(M);
    const mb2 = await C.rawReady(srv.url);
    await mb2.join(M);
    const w = await C.rawReady(srv.url);
    const c1 = content(100);
    const t0 = Date.now();
    const time = await anonOk(w, 'WRITE_PRIVATE_MESSAGE', [M, c1]);
    assert.ok(Number.isInteger(time) && Math.abs(time - t0) < 5000, `reply = server time: ${time}`);
    for (const m of [mb, mb2]) {
        const f = await m.next(x => isArr(x) && x[2] === 'MSG' && x[3] === M, 3000, 'relay of the private message');
        assert.deepEqual(f, [0, null, 'MSG', M, c1, time], 'members get [0,null,"MSG",C,content,time]');
    }
    await w.none(x => isArr(x) && x[2] === 'MSG' && x[3] === M, 200, 'relay to the non-member writer');
    const lines = fileLines(M);
    assert.deepEqual(lines, [JSON.stringify([0, null, 'MSG', M, c1, time])], 'stored with a null sender');
    assert.equal(lines[0].length + 1, 100 + 67, 'N + 67 bytes');
    assert.equal(await size(w, M), 167);
    const c2 = content(10);
    await anonOk(w, 'WRITE_PRIVATE_MESSAGE', [M, c2]);
    assert.equal(await size(w, M), 167 + 77);
    // the owner reads it back with GET_HISTORY
    const h = await C.getHistory(mb, HK, M, { txid: 'mbx' });
    const got = h.items.filter(p => isArr(p) && p[2] === 'MSG');
    assert.deepEqual(got.map(p => [p[1], p[4]]), [[null, c1], [null, c2]]);
    mb.close(); mb2.close(); w.close();
});

T('WRITE_PRIVATE_MESSAGE errors: INVALID_MESSAGE, INVALID_CHAN, nothing written', async () => {
    const w = await C.rawReady(srv.url);
    const M = C.padId();
    for (const [args, codes] of [
        [[M, ''], ['INVALID_MESSAGE']],
        [[M, 42], ['INVALID_MESSAGE']],
        [[M, null], ['INVALID_MESSAGE']],
        [[M], ['INVALID_MESSAGE']],
        [['abc', 'hello'], ['INVALID_CHAN']],
        [[C.hex(17), 'hello'], ['INVALID_CHAN']],
        [[42, 'hello'], ['INVALID_CHAN']],
        [['a'.repeat(31) + '/', 'hello'], ['INVALID_CHAN']],
        ['not an array', ['EINVAL', 'INVALID_MESSAGE', 'INVALID_CHAN']],
        [{ channel: M, msg: 'x' }, ['EINVAL', 'INVALID_MESSAGE', 'INVALID_CHAN']],
    ]) {
        const code = await anonErr(w, 'WRITE_PRIVATE_MESSAGE', args);
        assert.ok(codes.includes(code), `WRITE_PRIVATE_MESSAGE ${C.short(args)}: ${code}, expected ${codes}`);
    }
    assert.deepEqual(filesOf(M), [], 'nothing written');
    w.close();
});

T('WRITE_PRIVATE_MESSAGE to a restricted mailbox: only with an allowed key', async () => {
    const a = await session(A);
    const { P } = await createPad(a.r, { owners: [A.pub], restricted: true, allowed: [K1.pub] });
    const before = diskSize(P);
    const u = await C.rawReady(srv.url);
    assert.equal(await anonErr(u, 'WRITE_PRIVATE_MESSAGE', [P, content(30)]), 'INSUFFICIENT_PERMISSIONS', 'anonymous writer');
    const x = await session(X);
    assert.equal(await anonErr(x.r, 'WRITE_PRIVATE_MESSAGE', [P, content(30)]), 'INSUFFICIENT_PERMISSIONS', 'writer authenticated with another key');
    assert.equal(diskSize(P), before, 'nothing stored');
    const k = await session(K1);
    const c = content(30);
    const time = await anonOk(k.r, 'WRITE_PRIVATE_MESSAGE', [P, c]);
    const f = await a.r.next(y => isArr(y) && y[2] === 'MSG' && y[3] === P, 3000, 'relay to the owner');
    assert.deepEqual(f, [0, null, 'MSG', P, c, time]);
    assert.equal(diskSize(P), before + 30 + 67);
    const time2 = await anonOk(a.r, 'WRITE_PRIVATE_MESSAGE', [P, content(5)]);
    assert.ok(Number.isInteger(time2), 'the owner may write too');
    u.close(); x.r.close(); k.r.close(); a.r.close();
});

// ------------------------------------------------------------ SET_METADATA

T('SET_METADATA: every command by an owner; reply, notification and log lines', async () => {
    const a = await session(A);
    const { P, meta } = await createPad(a.r, { owners: [A.pub], restricted: false, allowed: [] });
    const m = await C.rawReady(srv.url);        // unauthenticated member
    await m.join(P);
    let s = clone(meta);
    let nlines = 1;

    const step = async (what, rpc, command, value, expect, changed) => {
        m.clear();
        const t0 = Date.now();
        const res = await rpc.callRaw('SET_METADATA', { channel: P, command, value });
        const reply = res.reply;
        assert.equal(reply.length, 3, `${what}: reply [txid, cookie, metadata]: ${C.short(reply)}`);
        assert.ok(R.isCookie(reply[1]), `${what}: ${C.short(reply)}`);
        const got = reply[2];
        assert.deepEqual(got, expect, `${what}: metadata after ${command} ${C.short(value)}`);
        const lines = fileLines(P, '.metadata.ndjson');
        if (changed) {
            nlines++;
            assert.equal(lines.length, nlines, `${what}: one line appended: ${C.short(lines)}`);
            const last = JSON.parse(lines[lines.length - 1]);
            assert.equal(last.length, 3, `${what}: [cmd, value, time]: ${lines[lines.length - 1]}`);
            assert.deepEqual(last.slice(0, 2), [command, value], `${what}: logged command`);
            assert.ok(Number.isInteger(last[2]) && last[2] >= t0 - 1000 && last[2] <= Date.now() + 1000, `${what}: time ${last[2]}`);
            assert.equal(lines[lines.length - 1], JSON.stringify(last), `${what}: compact JSON`);
            // the notification whose content is the new metadata (an older
            // one may still be on its way)
            const n = await hkNote(m, p => isObj(p) && p.channel === P && p.error === undefined && isDeepStrictEqual(p, expect),
                `${what}: members get the new metadata ${C.short(expect)}`);
            assert.deepEqual(n.content, expect, `${what}: members get the new metadata`);
            assert.equal(n.frame[3], m.id);
        } else {
            assert.equal(lines.length, nlines, `${what}: nothing changed, nothing logged: ${C.short(lines)}`);
        }
        assert.deepEqual(await anonOk(m, 'GET_METADATA', P), expect, `${what}: GET_METADATA`);
        s = clone(expect);
        return got;
    };
    const with_ = (f) => { const x = clone(s); f(x); return x; };

    await step('ADD_ALLOWED', a.rpc, 'ADD_ALLOWED', [K1.pub], with_(x => { x.allowed = [K1.pub]; }), true);
    await step('ADD_ALLOWED again', a.rpc, 'ADD_ALLOWED', [K1.pub], s, false);
    await step('ADD_ALLOWED invalid keys', a.rpc, 'ADD_ALLOWED', ['short', K1.pub + 'x'], s, false);
    await step('ADD_ALLOWED an owner', a.rpc, 'ADD_ALLOWED', [A.pub], s, false);
    await step('RM_ALLOWED', a.rpc, 'RM_ALLOWED', [K1.pub], with_(x => { x.allowed = []; }), true);
    await step('RM_ALLOWED absent', a.rpc, 'RM_ALLOWED', [K1.pub], s, false);
    await step('RESET_ALLOWED', a.rpc, 'RESET_ALLOWED', [K1.pub, K2.pub, A.pub], with_(x => { x.allowed = [K1.pub, K2.pub]; }), true);
    await step('ADD_PENDING_OWNERS', a.rpc, 'ADD_PENDING_OWNERS', [B.pub], with_(x => { x.pending_owners = [B.pub]; }), true);
    await step('RM_PENDING_OWNERS', a.rpc, 'RM_PENDING_OWNERS', [B.pub], with_(x => { x.pending_owners = []; }), true);
    await step('ADD_PENDING_OWNERS again', a.rpc, 'ADD_PENDING_OWNERS', [B.pub], with_(x => { x.pending_owners = [B.pub]; }), true);

    // the pending owner may only accept (ADD_OWNERS [self]) or decline
    const b = await session(B);
    const before = snapshot();
    for (const [cmd, value] of [['ADD_ALLOWED', [B.pub]], ['ADD_OWNERS', [B.pub, K3.pub]], ['ADD_OWNERS', [K3.pub]],
        ['RM_PENDING_OWNERS', [K3.pub]], ['RM_OWNERS', [A.pub]], ['RESTRICT_ACCESS', [true]], ['RESET_OWNERS', [B.pub]]]) {
        assert.equal(await b.rpc.fail('SET_METADATA', { channel: P, command: cmd, value }), 'INSUFFICIENT_PERMISSIONS',
            `pending owner: ${cmd} ${C.short(value)}`);
    }
    assert.deepEqual(snapshot(), before, 'refused commands write nothing');
    const accepted = await (async () => {
        m.clear();
        const [got] = await b.rpc.call('SET_METADATA', { channel: P, command: 'ADD_OWNERS', value: [B.pub] });
        return got;
    })();
    assert.deepEqual(accepted.owners, [A.pub, B.pub], `pending owner accepted: ${C.short(accepted)}`);
    assert.ok(accepted.pending_owners === undefined || isArr(accepted.pending_owners), C.short(accepted));
    nlines++;
    assert.equal(fileLines(P, '.metadata.ndjson').length, nlines, 'accepting is logged');
    await hkNote(m, p => isDeepStrictEqual(p, accepted), 'members get the metadata after the acceptance');
    s = clone(accepted);
    // a new owner acts as an owner from the next call on
    await step('new owner ADD_ALLOWED', b.rpc, 'ADD_ALLOWED', [K3.pub], with_(x => { x.allowed = [K1.pub, K2.pub, K3.pub]; }), true);
    await step('RM_OWNERS', a.rpc, 'RM_OWNERS', [B.pub], with_(x => { x.owners = [A.pub]; }), true);
    assert.equal(await b.rpc.fail('SET_METADATA', { channel: P, command: 'ADD_ALLOWED', value: [B.pub] }), 'INSUFFICIENT_PERMISSIONS',
        'a removed owner is refused');
    await step('ADD_OWNERS (removed from allowed)', a.rpc, 'ADD_OWNERS', [K2.pub],
        with_(x => { x.owners = [A.pub, K2.pub]; x.allowed = [K1.pub, K3.pub]; }), true);
    await step('ADD_OWNERS again', a.rpc, 'ADD_OWNERS', [K2.pub], s, false);
    await step('RESET_OWNERS', a.rpc, 'RESET_OWNERS', [A.pub], with_(x => { x.owners = [A.pub]; }), true);
    await step('RESET_OWNERS same (always a change)', a.rpc, 'RESET_OWNERS', [A.pub], s, true);
    await step('ALLOW_LINE_DELETION', a.rpc, 'ALLOW_LINE_DELETION', [true], with_(x => { x.deleteLines = true; }), true);
    await step('ADD_MAILBOX', a.rpc, 'ADD_MAILBOX', { [A.pub]: 'mbxA', [K1.pub]: 'not an owner' },
        with_(x => { x.mailbox = { [A.pub]: 'mbxA' }; }), true);
    await step('RM_MAILBOX', a.rpc, 'RM_MAILBOX', [A.pub], with_(x => { x.mailbox = {}; }), true);
    await step('RESTRICT_ACCESS false (already)', a.rpc, 'RESTRICT_ACCESS', [false], s, false);

    // errors: nothing written
    const before2 = snapshot();
    const code1 = await a.rpc.fail('SET_METADATA', { channel: P, command: 'NOT_A_COMMAND', value: [] });
    assert.equal(code1, 'UNSUPPORTED_COMMAND');
    const code2 = await a.rpc.fail('SET_METADATA', { channel: P, command: 'UPDATE_EXPIRATION', value: [Date.now() + 100000] });
    assert.equal(typeof code2, 'string', 'UPDATE_EXPIRATION is not implemented');
    const code3 = await a.rpc.fail('SET_METADATA', { channel: P, command: 'ADD_OWNERS', value: 'not an array' });
    assert.equal(typeof code3, 'string');
    const code4 = await a.rpc.fail('SET_METADATA', { channel: 'abc', command: 'ADD_ALLOWED', value: [K1.pub] });
    assert.equal(code4, 'INVALID_CHAN');
    const code5 = await a.rpc.fail('SET_METADATA', { channel: P, value: [K1.pub] });
    assert.ok(['INVALID_COMMAND', 'UNSUPPORTED_COMMAND'].includes(code5), `no command: ${code5}`);
    assert.deepEqual(snapshot(), before2, 'failed commands write nothing');
    assert.deepEqual(await anonOk(m, 'GET_METADATA', P), s, 'metadata unchanged by failed commands');

    a.r.close(); b.r.close(); m.close();
});

T('SET_METADATA RESTRICT_ACCESS: members without an allowed key are kicked (docs/protocol/history.md §8)', async () => {
    const a = await session(A);
    const { P } = await createPad(a.r, { owners: [A.pub], allowed: [K1.pub] });
    const m = await C.rawReady(srv.url);        // unauthenticated member
    await m.join(P);
    const k = await session(K1);                 // member authenticated with an allowed key
    await k.r.join(P);
    const x = await session(X);                  // member authenticated with another key
    await x.r.join(P);
    m.clear(); k.r.clear(); x.r.clear(); a.r.clear();
    const [r1] = await a.rpc.call('SET_METADATA', { channel: P, command: 'RESTRICT_ACCESS', value: [true] });
    assert.equal(r1.restricted, true);
    assert.deepEqual(r1.allowed, [K1.pub]);
    for (const [who, r] of [['owner', a.r], ['allowed member', k.r]]) {
        const note = await hkNote(r, p => isObj(p) && p.channel === P && p.error === undefined,
            `${who} gets the new metadata`);
        assert.deepEqual(note.content, r1, who);
    }
    for (const [who, r] of [['unauthenticated member', m], ['member with another key', x.r]]) {
        const kick = await hkNote(r, p => isObj(p) && p.channel === P, `${who}: ERESTRICTED kick`);
        assert.deepEqual(kick.content, { error: 'ERESTRICTED', channel: P }, `${who} gets the kick, not the metadata`);
    }
    // the kicked are no longer members: a message is not relayed to them
    const c = content(20);
    await sendEach(a.r, P, [c]);
    await k.r.next(f => isArr(f) && f[2] === 'MSG' && f[4] === c, 3000, 'relay to the allowed member');
    await m.none(f => isArr(f) && f[2] === 'MSG' && f[4] === c, 300, 'relay to a kicked member');
    const j = await m.request(['JOIN', P]);
    assert.deepEqual(j, [j[0], 'ERROR', 'ERESTRICTED', [HK, A.pub, K1.pub]], 'the kicked member cannot rejoin');
    const [r2] = await a.rpc.call('SET_METADATA', { channel: P, command: 'RESTRICT_ACCESS', value: [false] });
    assert.equal(r2.restricted, false);
    a.r.close(); k.r.close(); x.r.close(); m.close();
});

T('SET_METADATA by a non-owner → INSUFFICIENT_PERMISSIONS; E_NO_OWNERS without owners', async () => {
    const a = await session(A);
    const { P } = await createPad(a.r, { owners: [A.pub] });
    const x = await session(X);
    const before = snapshot();
    for (const [cmd, value] of [['ADD_OWNERS', [X.pub]], ['ADD_ALLOWED', [X.pub]], ['RM_OWNERS', [A.pub]],
        ['RESET_OWNERS', [X.pub]], ['RESTRICT_ACCESS', [true]], ['ADD_PENDING_OWNERS', [X.pub]],
        ['ALLOW_LINE_DELETION', [true]], ['ADD_MAILBOX', { [X.pub]: 'm' }], ['NOT_A_COMMAND', []]]) {
        const code = await x.rpc.fail('SET_METADATA', { channel: P, command: cmd, value });
        assert.equal(code, 'INSUFFICIENT_PERMISSIONS', `non-owner ${cmd}`);
    }
    assert.deepEqual(snapshot(), before, 'nothing written');
    // a pad without owners
    const { P: Q } = await createPad(a.r, {});
    const before2 = snapshot();
    assert.equal(await a.rpc.fail('SET_METADATA', { channel: Q, command: 'ADD_OWNERS', value: [A.pub] }), 'E_NO_OWNERS');
    assert.equal(await a.rpc.fail('CLEAR_OWNED_CHANNEL', Q), 'E_NO_OWNERS');
    assert.equal(await a.rpc.fail('REMOVE_OWNED_CHANNEL', { channel: Q, reason: 'x' }), 'E_NO_OWNERS');
    await sendEach(a.r, Q, [content(70)]);
    const before3 = snapshot();
    assert.equal(await a.rpc.fail('TRIM_HISTORY', { channel: Q, hash: hashOf(content(70)) }), 'E_NO_OWNERS');
    assert.deepEqual(snapshot(), before3, 'nothing written for a pad without owners');
    if (!PG) { assert.notDeepEqual(before2, before3); }   // storage-fs's files
    a.r.close(); x.r.close();
});

// ------------------------------------------------------------ CLEAR_OWNED_CHANNEL

T('CLEAR_OWNED_CHANNEL: ECLEARED to members, metadata-only history, the pad keeps working', async () => {
    const a = await session(A);
    const { P, meta } = await createPad(a.r, { owners: [A.pub] });
    const m = await C.rawReady(srv.url);
    await m.join(P);
    await sendEach(a.r, P, [content(40), content(50), content(60)]);
    const metaSize = fileSize(P, '.metadata.ndjson');
    const x = await session(X);
    const before = snapshot();
    assert.equal(await x.rpc.fail('CLEAR_OWNED_CHANNEL', P), 'INSUFFICIENT_PERMISSIONS', 'non-owner');
    assert.deepEqual(snapshot(), before, 'non-owner clear changes nothing');
    m.clear();
    const res = await a.rpc.callRaw('CLEAR_OWNED_CHANNEL', P);
    assert.equal(res.reply.length, 2, `reply [txid, cookie]: ${C.short(res.reply)}`);
    assert.ok(R.isCookie(res.reply[1]));
    const n = await hkNote(m, p => isObj(p) && p.error === 'ECLEARED', 'ECLEARED');
    assert.deepEqual(n.content, { error: 'ECLEARED', channel: P });
    assert.equal(n.frame[3], m.id, 'addressed to the member');
    assert.equal(await size(m, P), metaSize, 'size = metadata log size');
    assert.equal(fileSize(P, '.metadata.ndjson'), metaSize, 'metadata log kept');
    assert.ok(!fileSize(P), 'log empty');
    const r = await C.rawReady(srv.url);
    const h = await C.getHistory(r, HK, P, { txid: 'after-clear' });
    assert.deepEqual(h.items, [meta, { state: 1, channel: P, txid: 'after-clear' }], 'metadata + end marker only');
    assert.deepEqual(await anonOk(r, 'IS_NEW_CHANNEL', P), { isNew: true }, 'no message left');
    // still usable
    const c = content(33);
    await sendEach(m, P, [c]);
    const f = await a.r.next(y => isArr(y) && y[2] === 'MSG' && y[3] === P && y[4] === c, 3000, 'relay after clear');
    assert.equal(f[1], m.id);
    assert.equal(await size(r, P), metaSize + 33 + 97);
    const h2 = await C.getHistory(r, HK, P, { txid: 'again' });
    assert.deepEqual(h2.items.filter(p => isArr(p) && p[2] === 'MSG').map(p => p[4]), [c]);
    // bad arguments
    for (const bad of ['abc', C.hex(17), '0'.repeat(33), 42, null, { channel: P }]) {
        assert.equal(await a.rpc.fail('CLEAR_OWNED_CHANNEL', bad), 'INVALID_ARGUMENTS', `CLEAR_OWNED_CHANNEL ${C.short(bad)}`);
    }
    a.r.close(); m.close(); x.r.close(); r.close();
});

// ------------------------------------------------------------ REMOVE_OWNED_CHANNEL

T('REMOVE_OWNED_CHANNEL: "OK", EDELETED with the reason, size 0; non-owner refused', async () => {
    const a = await session(A);
    const { P } = await createPad(a.r, { owners: [A.pub] });
    const m = await C.rawReady(srv.url);
    await m.join(P);
    await sendEach(a.r, P, [content(40), content(50)]);
    const s0 = await size(m, P);
    const x = await session(X);
    const before = snapshot();
    assert.equal(await x.rpc.fail('REMOVE_OWNED_CHANNEL', { channel: P, reason: 'x' }), 'INSUFFICIENT_PERMISSIONS');
    assert.deepEqual(snapshot(), before, 'non-owner remove changes nothing');
    assert.equal(await size(m, P), s0);
    m.clear();
    const res = await a.rpc.callRaw('REMOVE_OWNED_CHANNEL', { channel: P, reason: 'my reason' });
    assert.equal(res.reply.length, 3, C.short(res.reply));
    assert.equal(res.reply[2], 'OK');
    const n = await hkNote(m, p => isObj(p) && p.error === 'EDELETED', 'EDELETED');
    assert.deepEqual(n.content, { error: 'EDELETED', message: 'my reason', channel: P });
    assert.equal(n.frame[3], m.id);
    assert.equal(fileSize(P), null, 'log moved away');
    assert.equal(fileSize(P, '.metadata.ndjson'), null, 'metadata log moved away');
    const r = await C.rawReady(srv.url);
    assert.equal(await size(r, P), 0, 'size 0');
    const h = await C.getHistory(r, HK, P, { txid: 'del' });
    assert.deepEqual(h.end, { error: 'EDELETED', message: 'my reason', channel: P, txid: 'del' }, C.short(h.items));
    assert.deepEqual(await anonOk(r, 'IS_NEW_CHANNEL', P), { isNew: true, reason: 'my reason' });
    assert.equal(await anonOk(r, 'GET_METADATA', P), null, 'no metadata any more');
    // owner commands on a removed pad
    const code = await a.rpc.fail('REMOVE_OWNED_CHANNEL', { channel: P, reason: 'again' });
    assert.ok(['ENOENT', 'E_NO_OWNERS'].includes(code), `second removal: ${code}`);
    // without a reason
    const { P: Q } = await createPad(a.r, { owners: [A.pub] });
    await sendEach(a.r, Q, [content(10)]);
    assert.deepEqual(await a.rpc.call('REMOVE_OWNED_CHANNEL', { channel: Q }), ['OK']);
    const hq = await C.getHistory(r, HK, Q, { txid: 'q' });
    assert.equal(hq.end.error, 'EDELETED');
    assert.equal(hq.end.message, 'ARCHIVE_OWNED', `default reason: ${C.short(hq.end)}`);
    // never created
    const code2 = await a.rpc.fail('REMOVE_OWNED_CHANNEL', { channel: C.padId(), reason: 'x' });
    assert.ok(['ENOENT', 'E_NO_OWNERS'].includes(code2), `never created: ${code2}`);
    // bad arguments
    for (const [bad, codes] of [[{ channel: 'abc' }, ['INVALID_ARGUMENTS']], [{ channel: C.hex(17) }, ['INVALID_ARGUMENTS']],
        [{}, ['RPC_EARGS', 'INVALID_ARGUMENTS']], [null, ['RPC_EARGS', 'INVALID_ARGUMENTS']], [42, ['RPC_EARGS', 'INVALID_ARGUMENTS']]]) {
        const c = await a.rpc.fail('REMOVE_OWNED_CHANNEL', bad);
        assert.ok(codes.includes(c), `REMOVE_OWNED_CHANNEL ${C.short(bad)}: ${c}`);
    }
    a.r.close(); m.close(); x.r.close(); r.close();
});

// ------------------------------------------------------------ TRIM_HISTORY

T('TRIM_HISTORY: the log begins with the given message; HASH_NOT_FOUND; INVALID_ARGS', async () => {
    const a = await session(A);
    const { P } = await createPad(a.r, { owners: [A.pub] });
    const cs = [0, 1, 2, 3, 4, 5].map(i => `m${i}|${content(80)}`);
    await sendEach(a.r, P, cs);
    const lines = fileLines(P);
    assert.equal(lines.length, 6);
    const s0 = await size(a.r, P);
    const metaLines = fileLines(P, '.metadata.ndjson');
    assert.equal(metaLines.length, 1);

    // refused: nothing changes
    const x = await session(X);
    const before = snapshot();
    assert.equal(await x.rpc.fail('TRIM_HISTORY', { channel: P, hash: hashOf(cs[2]) }), 'INSUFFICIENT_PERMISSIONS');
    assert.equal(await a.rpc.fail('TRIM_HISTORY', { channel: P, hash: hashOf(content(80)) }), 'HASH_NOT_FOUND');
    for (const hash of [hashOf(cs[2]).slice(0, 63), hashOf(cs[2]) + 'x', 42, null, undefined]) {
        const args = { channel: P };
        if (hash !== undefined) { args.hash = hash; }
        assert.equal(await a.rpc.fail('TRIM_HISTORY', args), 'INVALID_ARGS', `hash ${C.short(hash)}`);
    }
    const code = await a.rpc.fail('TRIM_HISTORY', { hash: hashOf(cs[2]) });
    assert.ok(['RPC_EARGS', 'INVALID_ARGS'].includes(code), `no channel: ${code}`);
    assert.deepEqual(snapshot(), before, 'refused trims change nothing');
    assert.deepEqual(fileLines(P), lines);

    const res = await a.rpc.callRaw('TRIM_HISTORY', { channel: P, hash: hashOf(cs[2]) });
    assert.equal(res.reply[2], 'OK', C.short(res.reply));
    assert.equal(res.reply.length, 3);
    assert.deepEqual(fileLines(P), lines.slice(2), 'log begins with the message of the hash, kept lines byte-identical');
    const removed = lines[0].length + 1 + lines[1].length + 1;
    assert.equal(await size(a.r, P), s0 - removed, 'size drops by the removed lines');
    assert.deepEqual(fileLines(P, '.metadata.ndjson'), metaLines, 'metadata log: the current metadata, one line');
    const r = await C.rawReady(srv.url);
    const h = await C.getHistory(r, HK, P, { txid: 't' });
    assert.deepEqual(h.items.filter(p => isArr(p) && p[2] === 'MSG').map(p => p[4]), cs.slice(2), 'history after the trim');
    // trimming to the first remaining line changes nothing; the pad keeps working
    assert.deepEqual(await a.rpc.call('TRIM_HISTORY', { channel: P, hash: hashOf(cs[2]) }), ['OK']);
    assert.deepEqual(fileLines(P), lines.slice(2));
    const c = `m6|${content(80)}`;
    await sendEach(a.r, P, [c]);
    assert.equal(await size(r, P), s0 - removed + c.length + 97);
    a.r.close(); x.r.close(); r.close();
});

T('TRIM_HISTORY after metadata changes: one metadata line, the current state', async () => {
    const a = await session(A);
    const { P } = await createPad(a.r, { owners: [A.pub] });
    const cs = [0, 1, 2].map(i => `t${i}|${content(70)}`);
    await sendEach(a.r, P, cs);
    const [m1] = await a.rpc.call('SET_METADATA', { channel: P, command: 'ADD_ALLOWED', value: [K1.pub] });
    assert.equal(fileLines(P, '.metadata.ndjson').length, 2);
    assert.deepEqual(await a.rpc.call('TRIM_HISTORY', { channel: P, hash: hashOf(cs[1]) }), ['OK']);
    const ml = fileLines(P, '.metadata.ndjson');
    assert.equal(ml.length, 1, `one metadata line: ${C.short(ml)}`);
    assert.deepEqual(JSON.parse(ml[0]), m1, 'the current metadata');
    const r = await C.rawReady(srv.url);
    assert.deepEqual(await anonOk(r, 'GET_METADATA', P), m1);
    assert.equal(await size(r, P), diskSize(P));
    a.r.close(); r.close();
});

// ------------------------------------------------------------ non-owners

T('a non-owner trying every owner-only command changes nothing on disk', async () => {
    const a = await session(A);
    const { P } = await createPad(a.r, { owners: [A.pub], allowed: [] });
    const cs = [0, 1, 2].map(i => `n${i}|${content(70)}`);
    await sendEach(a.r, P, cs);
    const m = await C.rawReady(srv.url);
    await m.join(P);
    const x = await session(X);
    // warm up any cache file the server may write when a channel is read
    await C.getHistory(x.r, HK, P, { txid: 'warm' });
    await C.sleep(100);
    m.clear();
    const before = snapshot();
    const tries = [
        ['CLEAR_OWNED_CHANNEL', P],
        ['REMOVE_OWNED_CHANNEL', { channel: P, reason: 'x' }],
        ['TRIM_HISTORY', { channel: P, hash: hashOf(cs[1]) }],
        ...['ADD_OWNERS', 'RM_OWNERS', 'RESET_OWNERS', 'ADD_PENDING_OWNERS', 'RM_PENDING_OWNERS', 'ADD_ALLOWED',
            'RM_ALLOWED', 'RESET_ALLOWED', 'RM_MAILBOX'].map(cmd => ['SET_METADATA', { channel: P, command: cmd, value: [X.pub] }]),
        ['SET_METADATA', { channel: P, command: 'RESTRICT_ACCESS', value: [true] }],
        ['SET_METADATA', { channel: P, command: 'ALLOW_LINE_DELETION', value: [true] }],
        ['SET_METADATA', { channel: P, command: 'ADD_MAILBOX', value: { [X.pub]: 'x' } }],
    ];
    for (const [cmd, args] of tries) {
        assert.equal(await x.rpc.fail(cmd, args), 'INSUFFICIENT_PERMISSIONS', `non-owner ${cmd} ${C.short(args)}`);
    }
    await C.sleep(100);
    assert.deepEqual(snapshot(), before, 'data_dir unchanged');
    await m.none(C.isHkFrame(HK), 200, 'notification to members after refused commands');
    const h = await C.getHistory(x.r, HK, P, { txid: 'check' });
    assert.deepEqual(h.items.filter(p => isArr(p) && p[2] === 'MSG').map(p => p[4]), cs);
    a.r.close(); m.close(); x.r.close();
});

T('server still up, exits 0 on SIGTERM', async () => {
    assert.ok(srv.alive());
    C.closeAll();
    const code = await srv.stop();
    assert.equal(code, 0);
});
