'use strict';
// DELETE_MAILBOX_MESSAGE (spec docs/protocol/history.md §9.6, docs/protocol/rpc.md §5): the sender of a
// mailbox message (a form response) deletes it with a proof boxed for the
// server's curve key, published as curvePublic in /api/broadcast (docs/protocol/http.md
// §5.2).  Checked against the files in the data_dir: the line goes, the
// others stay byte-identical, the metadata log is consolidated, the old log
// is archived; refusals change nothing; the key survives a restart.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const Http = require('node:http');
const Nacl = require('tweetnacl');
const { startServer, withLog, tmpDir, channelFile, readStored, statStored, existsStored, PG } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');

const ROOT = tmpDir('cpsd-mailbox-');
const DATA = Path.join(ROOT, 'data');
const RECORD = Path.join(DATA, 'data', 'server', 'cu', 'curve');

let srv;
let HK;
let SERVER_PUB;     // Uint8Array, from /api/broadcast
const T = (name, fn) => test(name, { timeout: 60000 }, (t) => srv.guard(fn)(t));

const A = R.keyPair();      // the mailbox owner
const b64 = (u8) => Buffer.from(u8).toString('base64');
const isArr = Array.isArray;

const readText = (id, suffix = '.ndjson') => {
    try { return readStored(channelFile(DATA, id, suffix), 'utf8'); } catch (e) { return null; }
};
const lines = (text) => text.split('\n').slice(0, -1);

// ------------------------------------------------------------ the key

const broadcast = (port) => new Promise((resolve, reject) => {
    Http.get({ host: '127.0.0.1', port, path: `/api/broadcast?${Date.now()}`, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { body += d; });
        res.on('end', () => {
            try { resolve(JSON.parse(body.slice(27, -5))); } catch (e) { reject(new Error(`/api/broadcast: ${body}`)); }
        });
    }).on('error', reject);
});

// The published key, once the web plugin has it from storage:0 (the
// record server/curve of the data_dir).
const publishedKey = async (port) => {
    const deadline = Date.now() + 10000;
    for (;;) {
        const b = await broadcast(port);
        let rec = null;
        try { rec = JSON.parse(readStored(RECORD, 'utf8')); } catch (e) { /* not yet */ }
        if (rec && b.curvePublic === rec.public) {
            assert.equal(Buffer.from(rec.secret, 'base64').length, 32);
            return b.curvePublic;
        }
        if (Date.now() > deadline) { throw new Error(`curvePublic ${b.curvePublic} never became the record's ${C.short(rec)}`); }
        await C.sleep(50);
    }
};

const start = async () => {
    srv = await startServer({}, { dir: ROOT });
    const r = await C.rawReady(srv.url);
    HK = await R.learnHk(r);
    r.close();
    SERVER_PUB = Buffer.from(await publishedKey(srv.port), 'base64');
};

before(withLog(() => srv, async () => {
    Fs.mkdirSync(DATA, { recursive: true });
    await start();
}));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
});

// ------------------------------------------------------------ helpers

// A mailbox message as chainpad-crypto's Mailbox writes it: base64 of
// signature(64) | nonce(24) | sender curve public key(32) | ciphertext.
const sender = () => Nacl.box.keyPair();
const message = (from) => b64(Buffer.concat([Nacl.randomBytes(64), Nacl.randomBytes(24),
    Buffer.from(from.publicKey), Nacl.randomBytes(40 + Math.floor(Math.random() * 60))]));
const hashOf = (content) => content.slice(0, 64);
const proofFor = (hash, from, serverPub = SERVER_PUB) => {
    const nonce = Nacl.randomBytes(24);
    return `${b64(nonce)}|${b64(Nacl.box(Buffer.from(hash, 'utf8'), nonce, serverPub, from.secretKey))}`;
};

const anonRaw = (r, cmd, args) => R.anonRaw(r, HK, cmd, args);
const del = async (r, args) => {
    const { reply, txid } = await anonRaw(r, 'DELETE_MAILBOX_MESSAGE', args);
    assert.equal(reply[0], txid);
    return reply;
};
const delOk = async (r, args) => {
    const reply = await del(r, args);
    assert.notEqual(reply[1], 'ERROR', `DELETE_MAILBOX_MESSAGE ${C.short(args, 120)}: ${C.short(reply)}`);
    assert.equal(reply[1], null, `anonymous success: ${C.short(reply)}`);
    assert.ok(reply[2] === null || reply[2] === undefined, `no value: ${C.short(reply)}`);
};
const delErr = async (r, args) => {
    const reply = await del(r, args);
    assert.equal(reply[1], 'ERROR', `DELETE_MAILBOX_MESSAGE ${C.short(args, 120)} should fail: ${C.short(reply)}`);
    return reply[2];
};

// A mailbox owned by A; with deleteLines set by A through SET_METADATA.
const mailbox = async (deleteLines) => {
    const r = await C.rawReady(srv.url);
    const P = C.padId();
    await r.join(P);
    const h = await C.getHistory(r, HK, P, { txid: 'create', metadata: { owners: [A.pub] } });
    assert.deepEqual(h.end, { state: 1, channel: P, txid: 'create' }, `creation: ${C.short(h.items)}`);
    if (deleteLines) {
        const a = R.client(await C.rawReady(srv.url), HK, A);
        const [m] = await a.call('SET_METADATA', { channel: P, command: 'ALLOW_LINE_DELETION', value: [true] });
        assert.equal(m.deleteLines, true);
        a.r.close();
        assert.equal(lines(readText(P, '.metadata.ndjson')).length, 2, 'creation + ALLOW_LINE_DELETION');
    }
    r.close();
    return P;
};

const write = async (r, P, content) => {
    const { reply } = await anonRaw(r, 'WRITE_PRIVATE_MESSAGE', [P, content]);
    assert.equal(reply[1], null, `WRITE_PRIVATE_MESSAGE: ${C.short(reply)}`);
};

const fullHistory = async (r, P) => {
    const res = await C.getFullHistory(r, HK, P);
    assert.deepEqual(res.end, ['FULL_HISTORY_END', P]);
    return res.items.filter(p => isArr(p) && p[0] === 'FULL_HISTORY').map(p => p[1]);
};

// ------------------------------------------------------------ tests

T('/api/broadcast publishes the key storage:0 keeps (record server/curve)', async () => {
    assert.equal(SERVER_PUB.length, 32);
    const rec = JSON.parse(readStored(RECORD, 'utf8'));
    const kp = Nacl.box.keyPair.fromSecretKey(Buffer.from(rec.secret, 'base64'));
    assert.equal(b64(kp.publicKey), b64(SERVER_PUB), 'the record is a matching pair');
});

T('the sender deletes its line: gone from the log and GET_FULL_HISTORY, the rest byte-identical', async () => {
    const P = await mailbox(true);
    const w = await C.rawReady(srv.url);
    const s1 = sender(); const s2 = sender(); const s3 = sender();
    const [c1, c2, c3] = [message(s1), message(s2), message(s3)];
    for (const c of [c1, c2, c3]) { await write(w, P, c); }
    const before = readText(P);
    const [l1, l2, l3] = lines(before);
    assert.ok(l2.includes(c2));
    const metaBefore = readText(P, '.metadata.ndjson');
    const sizeBefore = (await R.anon(w, HK, 'GET_FILE_SIZE', P))[0];

    await delOk(w, { channel: P, hash: hashOf(c2), proof: proofFor(hashOf(c2), s2) });

    assert.equal(readText(P), `${l1}\n${l3}\n`, 'the other lines are byte-identical');
    const meta = lines(readText(P, '.metadata.ndjson'));
    assert.equal(meta.length, 1, `metadata log consolidated: ${metaBefore}`);
    const m = JSON.parse(meta[0]);
    assert.equal(m.channel, P);
    assert.equal(m.deleteLines, true);
    assert.deepEqual(m.owners, [A.pub]);
    const archived = Path.join(DATA, 'data', 'archive', 'datastore', P.slice(0, 2), `${P}.ndjson`);
    assert.equal(readStored(archived, 'utf8'), before, 'the old log is archived');
    assert.ok(!existsStored(channelFile(DATA, P, '.ndjson.temp')));
    const sizeAfter = (await R.anon(w, HK, 'GET_FILE_SIZE', P))[0];
    assert.equal(sizeAfter, sizeBefore - (l2.length + 1) - (metaBefore.length - meta[0].length - 1));

    const got = await fullHistory(w, P);
    const msgs = got.filter(p => isArr(p) && p[2] === 'MSG').map(p => p[4]);
    assert.deepEqual(msgs, [c1, c3], 'GET_FULL_HISTORY no longer has it');
    assert.equal(JSON.stringify(got.find(p => isArr(p) && p[4] === c3)), l3);
    // GET_HISTORY (a new index) agrees, and new messages append after
    const c4 = message(s1);
    await write(w, P, c4);
    const h = await C.getHistory(w, HK, P, { txid: 'after' });
    assert.deepEqual(h.items.filter(p => isArr(p) && p[2] === 'MSG').map(p => p[4]), [c1, c3, c4]);
    // the same line cannot be deleted twice
    assert.equal(await delErr(w, { channel: P, hash: hashOf(c2), proof: proofFor(hashOf(c2), s2) }), 'HASH_NOT_FOUND');
    w.close();
});

T('a wrong proof or an unknown hash: HASH_NOT_FOUND, nothing changes', async () => {
    const P = await mailbox(true);
    const w = await C.rawReady(srv.url);
    const s1 = sender(); const s2 = sender();
    const [c1, c2] = [message(s1), message(s2)];
    await write(w, P, c1);
    await write(w, P, c2);
    const log = readText(P);
    const meta = readText(P, '.metadata.ndjson');
    const h2 = hashOf(c2);
    const cases = [
        ['another sender\'s key', proofFor(h2, s1)],
        ['the proof of another hash', proofFor(hashOf(c1), s2)],
        ['boxed for another server key', proofFor(h2, s2, sender().publicKey)],
        ['a short nonce', `${b64(Nacl.randomBytes(12))}|${proofFor(h2, s2).split('|')[1]}`],
        ['an empty box', `${b64(Nacl.randomBytes(24))}|`],
        ['a tampered box', (() => {
            const [n, bx] = proofFor(h2, s2).split('|');
            const raw = Buffer.from(bx, 'base64');
            raw[raw.length - 1] ^= 1;
            return `${n}|${b64(raw)}`;
        })()],
    ];
    for (const [what, proof] of cases) {
        assert.equal(await delErr(w, { channel: P, hash: h2, proof }), 'HASH_NOT_FOUND', what);
    }
    const unknown = hashOf(message(s2));
    assert.equal(await delErr(w, { channel: P, hash: unknown, proof: proofFor(unknown, s2) }), 'HASH_NOT_FOUND', 'unknown hash');
    assert.equal(await delErr(w, { channel: P, hash: h2.slice(0, 63), proof: proofFor(h2.slice(0, 63), s2) }),
        'HASH_NOT_FOUND', 'a prefix of a hash');
    const fresh = C.padId();
    await mailbox(false);
    assert.equal(await delErr(w, { channel: fresh, hash: h2, proof: proofFor(h2, s2) }), 'EFORBIDDEN',
        'a channel that does not exist has no deleteLines');
    assert.equal(readText(P), log, 'the log is unchanged');
    assert.equal(readText(P, '.metadata.ndjson'), meta, 'the metadata log is unchanged');
    assert.ok(!existsStored(Path.join(DATA, 'data', 'archive', 'datastore', P.slice(0, 2), `${P}.ndjson`)), 'nothing archived');
    // the right proof still works afterwards
    await delOk(w, { channel: P, hash: h2, proof: proofFor(h2, s2) });
    assert.equal(readText(P), `${lines(log)[0]}\n`);
    w.close();
});

T('deleteLines not set: EFORBIDDEN; malformed arguments: EINVAL', async () => {
    const P = await mailbox(false);
    const w = await C.rawReady(srv.url);
    const s = sender();
    const c = message(s);
    await write(w, P, c);
    const log = readText(P);
    const h = hashOf(c);
    assert.equal(await delErr(w, { channel: P, hash: h, proof: proofFor(h, s) }), 'EFORBIDDEN');
    // deleteLines set back to false refuses too
    const Q = await mailbox(true);
    await write(w, Q, c);
    const a = R.client(await C.rawReady(srv.url), HK, A);
    await a.call('SET_METADATA', { channel: Q, command: 'ALLOW_LINE_DELETION', value: [false] });
    a.r.close();
    assert.equal(await delErr(w, { channel: Q, hash: h, proof: proofFor(h, s) }), 'EFORBIDDEN', 'deleteLines: false');

    const good = proofFor(h, s);
    assert.ok(good.endsWith('='), 'an 80-byte box is padded');
    for (const [what, args] of [
        ['no bar', { channel: P, hash: h, proof: 'abc' }],
        ['two bars', { channel: P, hash: h, proof: `${good}|${good.split('|')[1]}` }],
        ['bad base64 nonce', { channel: P, hash: h, proof: `!!!!|${good.split('|')[1]}` }],
        ['bad base64 box', { channel: P, hash: h, proof: `${good.split('|')[0]}|@@@@` }],
        ['unpadded base64', { channel: P, hash: h, proof: `${good.split('|')[0]}|${good.split('|')[1].replace(/=+$/, '')}` }],
        ['proof not a string', { channel: P, hash: h, proof: 42 }],
        ['no proof', { channel: P, hash: h }],
        ['hash not a string', { channel: P, hash: 7, proof: good }],
        ['no channel', { hash: h, proof: good }],
        ['bad channel', { channel: 'abc', hash: h, proof: good }],
        ['not an object', [P, h, good]],
    ]) {
        assert.equal(await delErr(w, args), 'EINVAL', what);
    }
    // malformed proofs are refused before the metadata is looked at
    assert.equal(await delErr(w, { channel: Q, hash: h, proof: 'x' }), 'EINVAL');
    assert.equal(readText(P), log);
    w.close();
});

T('the curve key survives a restart; proofs made for it still work', async () => {
    const P = await mailbox(true);
    const w = await C.rawReady(srv.url);
    const s = sender();
    const c = message(s);
    await write(w, P, c);
    await write(w, P, message(sender()));
    w.close();
    const before = b64(SERVER_PUB);
    const proof = proofFor(hashOf(c), s);
    assert.equal(await srv.stop(), 0, 'a clean exit (no leak under ASan)');
    await start();
    assert.equal(b64(SERVER_PUB), before, 'same curvePublic after the restart');
    const r = await C.rawReady(srv.url);
    const l2 = lines(readText(P))[1];
    await delOk(r, { channel: P, hash: hashOf(c), proof });
    assert.equal(readText(P), `${l2}\n`);
    r.close();
});

// ------------------------------------------------------------ cluster

// Every process publishes the key of storage:0, and storage:1 opens proofs
// with the secret it asks storage:0 for (SERVER_CURVE_SECRET over the link).
test('cluster: one curve key for every front; a mailbox on storage:1 deletes a line', { timeout: 90000 }, async () => {
    const L = require('./lib/cluster');
    const cl = await L.startCluster();
    try {
        const rec = () => { try { return JSON.parse(readStored(Path.join(cl.storageDir(0), 'data', 'server', 'cu', 'curve'), 'utf8')); } catch (e) { return null; } };
        const deadline = Date.now() + 20000;
        let keys;
        for (;;) {
            keys = await Promise.all(['front:0', 'front:1', 'storage:1'].map(n => broadcast(cl.port(n)).then(b => b.curvePublic)));
            const r0 = rec();
            if (r0 && keys.every(k => k === r0.public)) { break; }
            if (Date.now() > deadline) { throw new Error(`keys ${C.short(keys)} vs record ${C.short(r0)}`); }
            await C.sleep(100);
        }
        const pub = Buffer.from(keys[0], 'base64');
        const r = await C.rawReady(cl.frontUrl(0));
        const hk = await R.learnHk(r);
        const P = L.padOn(1);
        await r.join(P);
        const h = await C.getHistory(r, hk, P, { txid: 'create', metadata: { owners: [A.pub] } });
        assert.deepEqual(h.end, { state: 1, channel: P, txid: 'create' });
        const a = R.client(await C.rawReady(cl.frontUrl(1)), hk, A);
        await a.call('SET_METADATA', { channel: P, command: 'ALLOW_LINE_DELETION', value: [true] });
        const s = sender();
        const c = message(s);
        const keep = message(sender());
        for (const x of [c, keep]) {
            const { reply } = await R.anonRaw(r, hk, 'WRITE_PRIVATE_MESSAGE', [P, x]);
            assert.equal(reply[1], null, C.short(reply));
        }
        const { reply } = await R.anonRaw(a.r, hk, 'DELETE_MAILBOX_MESSAGE', { channel: P, hash: hashOf(c), proof: proofFor(hashOf(c), s, pub) });
        assert.equal(reply[1], null, `deleted through front:1 on storage:1: ${C.short(reply)}`);
        const text = readStored(channelFile(cl.storageDir(1), P), 'utf8');
        assert.ok(!text.includes(c) && text.includes(keep), text);
        if (!PG) { assert.ok(!Fs.existsSync(Path.join(cl.storageDir(1), 'data', 'server')), 'storage:1 keeps no key record'); }   // one database for both nodes with pg
        r.close(); a.r.close();
    } catch (e) {
        e.message += `\n--- cluster log ---\n${cl.stderr().slice(-6000)}`;
        throw e;
    } finally {
        await cl.stop();
    }
});
