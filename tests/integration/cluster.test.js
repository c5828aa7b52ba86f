'use strict';
// A real cluster: 2 fronts x 2 cores x 2 storage nodes, each a child process
// of the supervisor (`cpsd --topology FILE`), linked by authenticated,
// encrypted websockets (host/link.c).  Spec: docs/protocol/cluster.md §2, §3, §8.
//
//   1. traffic across fronts: JOIN/MSG/LEAVE between users of both fronts on
//      channels of both shards, direct messages, history, anonymous and
//      signed RPC through both fronts;
//   2. faults: a front, a core and a storage node killed with SIGKILL and
//      restarted by the supervisor;
//   3. link security: wrong key, replay, stale timestamp, role confusion,
//      unauthenticated junk, a rogue node process with another key.
//
// Each group runs its own cluster (lib/cluster.js) and stops it by pid in
// its `after` hook.  Placement (the jump hash, docs/protocol/cluster.md §3.1) is computed
// here so that channels are chosen on a given core/storage index.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const ChildProcess = require('node:child_process');
const { channelFile, tmpDir, readStored, statStored, existsStored, FS_ONLY } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');
const L = require('./lib/cluster');
// AES-256-GCM on links needs both (crypto_aead_aes256gcm_is_available)
const cpuFlags = (() => { try { return Fs.readFileSync('/proc/cpuinfo', 'utf8'); } catch (e) { return ''; } })();

const isArr = Array.isArray;
const HK_LEN = 16;

const msgContent = (tag) => `${tag}|${C.hex(12)}`;

// lines of a channel log on storage node `idx` (null if absent)
const fileLines = (cl, idx, id, suffix = '.ndjson') => {
    let t;
    try { t = readStored(channelFile(cl.storageDir(idx), id, suffix), 'utf8'); } catch (e) { return null; }
    const parts = t.split('\n');
    if (parts[parts.length - 1] === '') { parts.pop(); }
    return parts;
};
const fileExists = (cl, idx, id, suffix = '.ndjson') => existsStored(channelFile(cl.storageDir(idx), id, suffix));

const isMsgIn = (chan) => (f) => isArr(f) && f[0] === 0 && f[2] === 'MSG' && f[3] === chan;
const isJoinOf = (id, chan) => (f) => isArr(f) && f[0] === 0 && f[2] === 'JOIN' && f[1] === id && f[3] === chan;
const isLeaveOf = (id, chan) => (f) => isArr(f) && f[0] === 0 && f[2] === 'LEAVE' && f[1] === id && f[3] === chan;

// Wait for the reply to seq with a bound; resolves the frame or
// { timeout: true } (so that a test can say "hung" precisely).
const replyTo = (r, seq, ms, what) => r.next(f => isArr(f) && f[0] === seq, ms, what)
    .catch((e) => ({ timeout: true, error: e.message }));

const pinFile = (cl, idx, keys) => Path.join(cl.storageDir(idx), 'data', 'pins', keys.safe.slice(0, 2), keys.safe + '.ndjson');

// =====================================================================
// 1. traffic across fronts
// =====================================================================

describe('cluster: traffic across fronts', () => {
    let cl;
    let HK;
    const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => cl.guard(fn)(t));

    before(async () => {
        cl = await L.startCluster();
        const r = await C.rawReady(cl.frontUrl(0));
        HK = await R.learnHk(r);
        r.close();
    });
    after(async () => {
        C.closeAll();
        if (cl) { await cl.stop(); }
    });

    T('the supervisor starts six nodes, each linked to the five others', async () => {
        assert.deepEqual(Object.keys(cl.pids()).sort(), cl.nodes.slice().sort());
        const pids = Object.values(cl.pids());
        assert.equal(new Set(pids).size, 6, `six distinct pids: ${JSON.stringify(cl.pids())}`);
        for (const p of pids) { assert.ok(L.isOurs(p, cl.file), `pid ${p} runs cpsd --topology ${cl.file}`); }
        for (const n of cl.nodes) {
            const m = await cl.metrics(n);
            assert.equal(m.cpsd_links_up_total, 5, `${n}: links up ${JSON.stringify(m)}`);
            assert.equal(m.cpsd_links_refused_total, 0, `${n}: no refused handshake`);
            assert.equal(m.cpsd_links_lost_total, 0, `${n}: no lost link`);
        }
        // the batch cipher agreed on each link (docs/protocol/cluster.md §2.3)
        const ups = cl.stderr().match(/link to [a-z]+:\d+ up \((\w+)\)/g) || [];
        assert.ok(ups.length >= 30, `a link-up line per node and peer (6 x 5): ${ups.length}`);
        const aes = /\baes\b/.test(cpuFlags) && /\bpclmulqdq\b/.test(cpuFlags);
        for (const u of ups) { assert.ok(u.endsWith(aes ? '(aes256gcm)' : '(secretbox)'), u); }
        // the --list command names every node with its address
        const out = ChildProcess.execFileSync(cl.bin, ['--topology', cl.file, '--list'], { encoding: 'utf8', timeout: 5000 });
        const want = cl.nodes.map(n => `${n} 127.0.0.1:${cl.port(n)}`);
        assert.deepEqual(out.trim().split('\n'), want, '--list output');
    });

    T('the history keeper id is the same through both fronts', async () => {
        const r = await C.rawReady(cl.frontUrl(1));
        const hk1 = await R.learnHk(r);
        assert.equal(hk1, HK, 'same history keeper id on front 1 and front 0');
        assert.equal(HK.length, HK_LEN);
        r.close();
    });

    T('raw clients on both fronts: JOIN, ordered messages stored with the time, no echo, LEAVE, on channels of both shards', async () => {
        // two channels per core/storage index (core and storage use the same
        // hash and the same count, so channel -> core:i -> storage:i)
        const chans = [L.padOn(0), L.padOn(1), L.padOn(0), L.padOn(1)];
        const a = await C.rawReady(cl.frontUrl(0));
        const b = await C.rawReady(cl.frontUrl(1));
        const c = await C.rawReady(cl.frontUrl(0));
        const d = await C.rawReady(cl.frontUrl(1));
        const all = [a, b, c, d];
        const name = new Map([[a, 'a@front0'], [b, 'b@front1'], [c, 'c@front0'], [d, 'd@front1']]);
        for (const chan of chans) {
            // join one after the other; earlier members see each later JOIN
            for (let i = 0; i < all.length; i++) {
                const u = all[i];
                const j = await u.join(chan);
                const expect = [HK, ...all.slice(0, i + 1).map(x => x.id)];
                assert.deepEqual(j.members.slice().sort(), expect.slice().sort(),
                    `${name.get(u)} joining ${chan}: member list (HK, earlier members, itself) ${C.short(j.members)}`);
                for (const e of all.slice(0, i)) {
                    await e.next(isJoinOf(u.id, chan), 5000, `${name.get(e)} sees JOIN of ${name.get(u)} in ${chan}`);
                }
            }
        }
        // 3 senders (both fronts) x 8 messages per channel, pipelined
        const senders = [a, b, c];
        const N = 8;
        const sent = [];
        for (const chan of chans) {
            for (let k = 0; k < N; k++) {
                for (const s of senders) {
                    const content = `m|${name.get(s)}|${k}|${C.hex(6)}`;
                    const seq = s.nextSeq();
                    s.send([seq, 'MSG', chan, content]);
                    sent.push({ s, seq, chan, content });
                }
            }
        }
        for (const m of sent) {
            const f = await m.s.next(x => isArr(x) && x[0] === m.seq, 10000, `reply to ${m.content}`);
            assert.deepEqual(f, [m.seq, 'ACK'], `ACK of ${m.content}`);
        }
        for (const chan of chans) {
            const idx = L.place(chan, 2);
            const total = N * senders.length;
            // every member receives the others' messages
            const got = new Map();
            for (const u of all) {
                const want = senders.includes(u) ? total - N : total;
                const fs = [];
                for (let i = 0; i < want; i++) {
                    fs.push(await u.next(isMsgIn(chan), 10000, `${name.get(u)}: message ${i + 1}/${want} in ${chan}`));
                }
                got.set(u, fs);
            }
            for (const u of all) {
                await u.none(isMsgIn(chan), 300, `extra message in ${chan} at ${name.get(u)}`);
                for (const f of got.get(u)) {
                    assert.notEqual(f[1], u.id, `${name.get(u)} got its own message back: ${C.short(f)}`);
                }
            }
            // the log of storage:idx holds them, in the order d (no sender) saw
            const lines = fileLines(cl, idx, chan);
            assert.ok(lines, `${chan} (placed on storage:${idx}) has a log under ${cl.storageDir(idx)}`);
            assert.equal(fileExists(cl, 1 - idx, chan), false, `${chan} is not stored on storage:${1 - idx}`);
            assert.equal(lines.length, total, `${chan}: ${total} lines stored`);
            const stored = lines.map(l => JSON.parse(l));
            for (const s of stored) {
                assert.equal(s.length, 6, `stored line with the time: ${C.short(s)}`);
                assert.ok(Number.isInteger(s[5]) && Math.abs(s[5] - Date.now()) < 60000, `time ${s[5]}`);
            }
            assert.deepEqual(got.get(d), stored, `${chan}: d received exactly the stored lines, in the stored order`);
            for (const u of senders) {
                assert.deepEqual(got.get(u), stored.filter(s => s[1] !== u.id),
                    `${chan}: ${name.get(u)} sees the one global order (minus its own messages)`);
            }
            // each sender's messages in send order
            for (const s of senders) {
                const ks = stored.filter(x => x[1] === s.id).map(x => Number(x[4].split('|')[2]));
                assert.deepEqual(ks, [...Array(N).keys()], `${chan}: ${name.get(s)}'s messages stored in send order`);
            }
        }
        // LEAVE from front 1 reaches front 0 and front 1 members, and the other way
        const chan = chans[1];
        const lb = await b.leave(chan);
        assert.deepEqual(lb.slice(1), ['ACK'], 'LEAVE ACKed');
        for (const u of [a, c, d]) {
            const ev = await u.next(isLeaveOf(b.id, chan), 5000, `${name.get(u)} gets LEAVE of b`);
            assert.deepEqual(ev, [0, b.id, 'LEAVE', chan]);
        }
        const la = await a.leave(chan);
        assert.deepEqual(la.slice(1), ['ACK']);
        for (const u of [c, d]) {
            await u.next(isLeaveOf(a.id, chan), 5000, `${name.get(u)} gets LEAVE of a`);
        }
        // after leaving, nothing of that channel reaches a or b
        const f = await d.msg(chan, msgContent('after-leave'));
        assert.deepEqual(f.slice(1), ['ACK']);
        await c.next(isMsgIn(chan), 5000, 'c gets the message after the leaves');
        await a.none(isMsgIn(chan), 300, 'a gets nothing after leaving');
        await b.none(isMsgIn(chan), 1, 'b gets nothing after leaving');
        // a newcomer on front 1 sees only c and d (and the history keeper)
        const e = await C.rawReady(cl.frontUrl(1));
        const je = await e.join(chan);
        assert.deepEqual(je.members.slice().sort(), [HK, c.id, d.id, e.id].sort(), `newcomer's member list ${C.short(je.members)}`);
        // a dropped connection on front 0 is a LEAVE at front 1
        c.terminate();
        await d.next(isLeaveOf(c.id, chan), 5000, 'LEAVE of the dropped user c (front 0) at d (front 1)');
        for (const x of [a, b, d, e]) { x.close(); }
    }, { skip: FS_ONLY });

    T('netflux clients on both fronts see each other join, talk in one order, leave', async () => {
        const chan = L.padOn(1);
        const users = [];
        for (let i = 0; i < 4; i++) {
            const net = await C.connect(cl.frontUrl(i % 2));
            const wc = await C.join(net, chan);
            const u = { i, front: i % 2, net, wc, id: wc.myID, joins: [], leaves: [], msgs: [] };
            wc.on('join', (id) => u.joins.push(id));
            wc.on('leave', (id) => u.leaves.push(id));
            wc.on('message', (msg, sender) => u.msgs.push({ msg, sender }));
            users.push(u);
        }
        await C.waitFor(() => users.every(u => users.every(o => u.wc.members.includes(o.id))), 5000,
            'every user lists every other user');
        for (const u of users) {
            const hks = u.wc.members.filter(id => id.length === HK_LEN);
            assert.deepEqual(hks, [HK], `user ${u.i}: one history keeper`);
            assert.equal(u.wc.members.length, 5, `user ${u.i} members ${JSON.stringify(u.wc.members)}`);
            for (const o of users.slice(u.i + 1)) {
                await C.waitFor(() => u.joins.includes(o.id), 5000, `user ${u.i} (front ${u.front}) sees JOIN of user ${o.i}`);
                assert.equal(u.joins.filter(x => x === o.id).length, 1);
            }
        }
        const senders = users.slice(0, 3);
        const N = 10;
        const acks = [];
        for (let k = 0; k < N; k++) {
            for (const s of senders) {
                acks.push(C.withTimeout(s.wc.bcast(`nf|${s.i}|${k}|${C.hex(4)}`), 10000, `ACK of ${k} from user ${s.i}`));
            }
        }
        await Promise.all(acks);
        const expected = (u) => (senders.includes(u) ? 2 : 3) * N;
        await C.waitFor(() => users.every(u => u.msgs.length >= expected(u)), 10000,
            `every member receives every message (${users.map(u => u.msgs.length)})`);
        await C.sleep(300);
        const global = users[3].msgs.map(m => m.msg);
        for (const u of users) {
            assert.equal(u.msgs.length, expected(u), `user ${u.i}: no duplicate, no echo`);
            for (const { msg, sender } of u.msgs) {
                assert.equal(sender, users[Number(msg.split('|')[1])].id, `sender of ${msg}`);
                assert.notEqual(sender, u.id, 'no echo');
            }
            assert.deepEqual(u.msgs.map(m => m.msg), global.filter(m => m.split('|')[1] !== String(u.i)),
                `user ${u.i} sees the global order`);
        }
        // leaves: user 0 (front 0) and user 1 (front 1)
        users[0].wc.leave('bye');
        users[1].net.close();
        for (const u of users.slice(2)) {
            await C.waitFor(() => u.leaves.includes(users[0].id) && u.leaves.includes(users[1].id), 5000,
                `user ${u.i} gets the LEAVEs of users 0 and 1`);
        }
        await C.waitFor(() => users[2].wc.members.length === 3, 5000, 'users 0 and 1 no longer listed');
        for (const u of users) { u.net.close(); }
    });

    T('direct messages between users of different fronts', async () => {
        const a = await C.rawReady(cl.frontUrl(0));
        const b = await C.rawReady(cl.frontUrl(1));
        for (const [from, to] of [[a, b], [b, a]]) {
            const text = msgContent('direct');
            const f = await from.msg(to.id, text);
            assert.deepEqual(f.slice(1), ['ACK'], `ACK of the direct message: ${C.short(f)}`);
            const g = await to.next(x => isArr(x) && x[2] === 'MSG' && x[4] === text, 5000, 'direct message delivered across fronts');
            assert.deepEqual(g, [0, from.id, 'MSG', to.id, text]);
            await to.none(x => isArr(x) && x[4] === text, 300, 'second copy');
            await from.none(x => isArr(x) && x[4] === text, 1, 'echo to the sender');
        }
        // netflux sendto across fronts (ids learnt through a shared ephemeral channel)
        const n0 = await C.connect(cl.frontUrl(0));
        const n1 = await C.connect(cl.frontUrl(1));
        const E = C.ephemeralId();
        const w0 = await C.join(n0, E);
        const w1 = await C.join(n1, E);
        const got = [];
        n1.on('message', (msg, sender) => got.push({ msg, sender }));
        const text = msgContent('nf-direct');
        await C.withTimeout(n0.sendto(w1.myID, text), 5000, 'netflux sendto ACK');
        await C.waitFor(() => got.some(g => g.msg === text), 5000, 'netflux direct message delivered across fronts');
        assert.equal(got.find(g => g.msg === text).sender, w0.myID, 'sender id of the netflux direct message');
        // to a user that is on no front
        const nobody = C.padId();
        const seq = a.nextSeq();
        a.send([seq, 'MSG', nobody, 'anyone?']);
        const e = await replyTo(a, seq, 10000, 'reply to a MSG for an unknown user');
        assert.ok(!e.timeout, `a MSG to an unknown user is answered (${e.error})`);
        assert.deepEqual(e, [seq, 'ERROR', 'enoent', nobody], `MSG to an unknown user: ${C.short(e)}`);
        a.close(); b.close(); n0.close(); n1.close();
    });

    const written = {};   // chan -> contents, written through front 0 (used by the RPC test)
    T('history written through front 0 is read through front 1 (GET_HISTORY, GET_FULL_HISTORY, GET_HISTORY_RANGE)', async () => {
        for (const idx of [0, 1]) {
            const chan = L.padOn(idx);
            const w = await C.rawReady(cl.frontUrl(0));
            await w.join(chan);
            const owner = R.keyPair().pub;
            const h0 = await C.getHistory(w, HK, chan, { txid: 'create', metadata: { owners: [owner] } });
            assert.deepEqual(h0.end, { state: 1, channel: chan, txid: 'create' }, `creation: ${C.short(h0.items)}`);
            const contents = [1, 2, 3, 4, 5].map(k => msgContent(`h${k}`));
            for (const c of contents) { assert.deepEqual((await w.msg(chan, c)).slice(1), ['ACK']); }
            written[chan] = contents;
            const lines = fileLines(cl, idx, chan);
            assert.equal(lines && lines.length, 5, `5 lines on storage:${idx}`);
            assert.ok(fileExists(cl, idx, chan, '.metadata.ndjson'), `metadata on storage:${idx}`);

            const rd = await C.rawReady(cl.frontUrl(1));
            await rd.join(chan);
            const h = await C.getHistory(rd, HK, chan, { txid: 9 });
            assert.deepEqual(h.reply, [h.seq, 'ACK']);
            assert.deepEqual(h.end, { state: 1, channel: chan, txid: 9 });
            const body = h.items.slice(0, -1);
            assert.equal(body.length, 6, `metadata + 5 lines: ${C.short(h.items)}`);
            assert.deepEqual(body[0].owners, [owner], 'metadata first');
            for (let i = 0; i < 5; i++) {
                const expect = JSON.parse(lines[i]);
                expect[0] = 9;
                assert.deepEqual(body[1 + i], expect, `line ${i + 1}`);
            }
            for (const f of h.frames) {
                assert.equal(f[1], HK);
                assert.equal(f[3], rd.id, 'HK frames addressed to the reader on front 1');
            }
            const fh = await C.getFullHistory(rd, HK, chan);
            assert.deepEqual(fh.end, ['FULL_HISTORY_END', chan]);
            const fbody = fh.items.slice(0, -1);
            assert.equal(fbody.length, 5, `FULL_HISTORY lines: ${C.short(fh.items)}`);
            fbody.forEach((p, i) => assert.equal(JSON.stringify(p[1]), lines[i], `full history line ${i + 1}`));
            const rh = await C.getHistoryRange(rd, HK, chan, { count: 2, txid: 'rr' });
            const rbody = rh.items.filter(p => isArr(p) && p[0] === 'HISTORY_RANGE');
            assert.ok(rbody.length === 2, `GET_HISTORY_RANGE count 2: ${C.short(rh.items)}`);
            assert.equal(rh.end && rh.end[0], 'HISTORY_RANGE_END');
            w.close(); rd.close();
        }
    });

    T('anonymous RPC (EXAMPLE_ECHO, GET_FILE_SIZE) through both fronts', async () => {
        const r0 = await C.rawReady(cl.frontUrl(0));
        const r1 = await C.rawReady(cl.frontUrl(1));
        for (const r of [r0, r1]) {
            const v = { nested: [1, 'two', null], u: 'ünï ✓', n: r.id };
            const { reply, txid } = await R.anonRaw(r, HK, 'EXAMPLE_ECHO', v);
            assert.deepEqual(reply, [txid, null, v, null], 'EXAMPLE_ECHO');
        }
        const chans = Object.keys(written);
        assert.ok(chans.length === 2, 'the history test wrote two channels');
        for (const chan of chans) {
            const s0 = (await R.anon(r0, HK, 'GET_FILE_SIZE', chan))[0];
            const s1 = (await R.anon(r1, HK, 'GET_FILE_SIZE', chan))[0];
            assert.equal(s0, s1, `GET_FILE_SIZE of ${chan} is the same through both fronts`);
            const idx = L.place(chan, 2);
            const bytes = statStored(channelFile(cl.storageDir(idx), chan)).size;
            assert.ok(s0 >= bytes, `GET_FILE_SIZE ${s0} counts at least the log (${bytes} bytes)`);
        }
        assert.deepEqual(await R.anon(r1, HK, 'GET_FILE_SIZE', C.padId()), [0], 'unknown channel: 0');
        r0.close(); r1.close();
    });

    T('signed RPC (COOKIE, PIN, GET_HASH) through both fronts; pin logs on the key\'s storage node', async () => {
        for (const idx of [0, 1]) {
            const K = R.keyPairWhere(pub => L.place(R.safeKey(pub), 2) === idx);
            const r0 = await C.rawReady(cl.frontUrl(0));
            const r1 = await C.rawReady(cl.frontUrl(1));
            const c0 = R.client(r0, HK, K);
            const c1 = R.client(r1, HK, K);
            assert.deepEqual(await c0.call('COOKIE', ''), [], 'COOKIE through front 0');
            assert.ok(R.isCookie(c0.cookie), `cookie ${c0.cookie}`);
            assert.deepEqual(await c1.call('COOKIE', ''), [], 'COOKIE through front 1');
            assert.deepEqual(await c1.call('GET_HASH', K.pub), [R.pinHash([])], 'no pins yet');
            const [p1, p2, p3] = [C.padId(), C.padId(), C.padId()];
            assert.deepEqual(await c0.call('PIN', [p1, p2]), [], 'PIN through front 0');
            assert.deepEqual(await c1.call('GET_HASH', K.pub), [R.pinHash([p1, p2])], 'GET_HASH through front 1 sees the pins');
            assert.deepEqual(await c1.call('PIN', [p3]), [], 'PIN through front 1');
            assert.deepEqual(await c0.call('GET_HASH', K.pub), [R.pinHash([p1, p2, p3])], 'GET_HASH through front 0');
            assert.deepEqual(await c0.call('UNPIN', [p1]), []);
            assert.deepEqual(await c1.call('GET_HASH', K.pub), [R.pinHash([p2, p3])]);
            assert.ok(existsStored(pinFile(cl, idx, K)), `pin log of ${K.safe} on storage:${idx} (${pinFile(cl, idx, K)})`);
            assert.ok(!existsStored(pinFile(cl, 1 - idx, K)), `no pin log on storage:${1 - idx}`);
            // a bad signature is refused through either front
            const bad = await c1.raw('GET_HASH', K.pub, { signer: R.keyPair().secretKey });
            assert.equal(bad.reply[1], 'ERROR', `bad signature: ${C.short(bad.reply)}`);
            r0.close(); r1.close();
        }
    }, { skip: FS_ONLY });

    T('channels landed on both storage nodes', async () => {
        for (const idx of [0, 1]) {
            const ds = Path.join(cl.storageDir(idx), 'datastore');
            const n = Fs.existsSync(ds) ? Fs.readdirSync(ds).length : 0;
            assert.ok(n > 0, `storage:${idx} has channel files under ${ds}`);
        }
        // fronts and cores store no channel
        for (const node of ['front:0', 'front:1', 'core:0', 'core:1']) {
            const ds = Path.join(cl.nodeDir(node), 'datastore');
            const n = Fs.existsSync(ds) ? Fs.readdirSync(ds).length : 0;
            assert.equal(n, 0, `${node} stores no channel (${ds})`);
        }
    }, { skip: FS_ONLY });

    T('relay checks across fronts: churn of clients on both fronts leaves no ghost; ephemeral and admin channels', async () => {
        const chan = L.padOn(0);
        const observer = await C.connect(cl.frontUrl(1));
        const ow = await C.join(observer, chan);
        const got = [];
        ow.on('message', (msg) => got.push(msg));
        const CYCLES = 24;
        await Promise.all([0, 1, 2, 3].map(async (w) => {
            for (let k = 0; k < CYCLES / 4; k++) {
                const net = await C.connect(cl.frontUrl((w + k) % 2));
                const wc = await C.join(net, chan);
                await C.withTimeout(wc.bcast(`churn|${w}|${k}`), 5000, 'ACK during churn');
                if (k % 2) { net.kill(); } else { net.close(); }
            }
        }));
        await C.waitFor(() => ow.members.length === 2, 10000,
            `observer lists only itself and the history keeper (members: ${JSON.stringify(ow.members)})`);
        await C.waitFor(() => got.length >= CYCLES, 5000, `observer receives every churn message (${got.length})`);
        await C.sleep(200);
        assert.equal(got.length, CYCLES, 'every churn message once');
        const late = await C.connect(cl.frontUrl(0));
        const lw = await C.join(late, chan);
        assert.deepEqual(lw.members.slice().sort(), [HK, ow.myID, lw.myID].sort(), 'a newcomer on the other front sees only live members');

        // ephemeral (34 hex) channel across fronts: relayed, nothing stored
        const E = C.ephemeralId();
        const we = await C.join(late, E);
        const wo = await C.join(observer, E);
        await C.waitFor(() => we.members.includes(wo.myID), 5000, 'members of the ephemeral channel');
        const eg = [];
        wo.on('message', (m, sender) => eg.push({ m, sender }));
        for (let k = 0; k < 5; k++) { await C.withTimeout(we.bcast(`eph|${k}`), 5000, 'ACK in the ephemeral channel'); }
        await C.waitFor(() => eg.length >= 5, 5000, 'ephemeral messages relayed across fronts');
        assert.deepEqual(eg.map(x => x.m), [0, 1, 2, 3, 4].map(k => `eph|${k}`));
        assert.ok(eg.every(x => x.sender === we.myID));
        for (const idx of [0, 1]) {
            assert.equal(fileExists(cl, idx, E), false, `ephemeral channel not stored on storage:${idx}`);
        }
        // admin channel: joinable through both fronts, no member list
        const wa = await C.join(late, C.ADMIN_CHANNEL);
        const wb = await C.join(observer, C.ADMIN_CHANNEL);
        assert.ok(!wb.members.includes(wa.myID), 'no member list for the admin channel');
        assert.ok(wb.members.includes(HK));
        late.close(); observer.close();
    });

    // issue 12 item 6 on a cluster: SIGHUP (logrotate, `systemctl reload`)
    // must not kill the supervisor (its default action); every node hears
    // it, reopens its log, says it reloads no settings, and keeps serving
    T('SIGHUP to the supervisor reaches every node; nothing restarts, the cluster keeps serving', async () => {
        const mark = cl.mark();
        const pids = cl.pids();
        const exits = cl.events.filter(e => e.kind === 'exited').length;
        process.kill(cl.supPid, 'SIGHUP');
        await C.waitFor(() => /\[supervisor\] SIGHUP: passed to 6 node\(s\)/.test(cl.since(mark)), 5000, 'the supervisor passes SIGHUP on');
        await C.waitFor(() => (cl.since(mark).match(/a cluster node reloads no settings/g) || []).length === 6, 5000,
            'each of the six nodes says it reloads no settings');
        assert.equal((cl.since(mark).match(/SIGHUP: log reopened/g) || []).length, 6, 'each node reopened its log');
        assert.equal(cl.exitInfo(), null, 'the supervisor lives');
        assert.deepEqual(cl.pids(), pids, 'no node restarted');
        assert.equal(cl.events.filter(e => e.kind === 'exited').length, exits, 'no node exited');
        // traffic across both fronts still flows
        const chan = L.padOn(1);
        const a = await C.connect(cl.frontUrl(0));
        const b = await C.connect(cl.frontUrl(1));
        const wa = await C.join(a, chan);
        const wb = await C.join(b, chan);
        const got = [];
        wb.on('message', (m) => got.push(m));
        await C.withTimeout(wa.bcast('after-sighup'), 5000, 'ACK after SIGHUP');
        await C.waitFor(() => got.includes('after-sighup'), 5000, 'relayed across fronts after SIGHUP');
        a.close(); b.close();
    });

    T('SIGTERM to the supervisor stops every node', async () => {
        C.closeAll();
        const pids = Object.values(cl.pids());
        const res = await cl.stop();
        assert.equal(res.supervisor, 0, `supervisor exit status ${C.short(res)}`);
        assert.deepEqual(res.killed, [], 'no child had to be killed by the harness');
        for (const p of pids) { assert.ok(!L.isOurs(p, cl.file), `node pid ${p} is gone`); }
    });
});

// The links' fallback cipher: with CPSD_LINK_NO_AES=1 no node offers
// AES-256-GCM, every link seals its batches with secretbox, and messages
// still cross the fronts (docs/protocol/cluster.md §2.3).
describe('cluster: links sealed with secretbox', () => {
    let cl;
    const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => cl.guard(fn)(t));
    before(async () => { cl = await L.startCluster({ counts: { front: 2, core: 1, storage: 1 }, env: { CPSD_LINK_NO_AES: '1' } }); });
    after(async () => {
        C.closeAll();
        if (cl) { await cl.stop(); }
    });

    T('every link says secretbox; a message from front 0 reaches a member on front 1', async () => {
        const ups = cl.stderr().match(/link to [a-z]+:\d+ up \((\w+)\)/g) || [];
        assert.ok(ups.length >= 12, `a link-up line per node and peer (4 x 3): ${ups.length}`);
        for (const u of ups) { assert.ok(u.endsWith('(secretbox)'), u); }
        const chan = L.padOn(0, 1);
        const a = await C.rawReady(cl.frontUrl(0));
        const b = await C.rawReady(cl.frontUrl(1));
        await a.join(chan);
        await b.join(chan);
        await a.next(isJoinOf(b.id, chan), 5000, 'a sees b join');
        const seq = a.nextSeq();
        a.send([seq, 'MSG', chan, 'over secretbox']);
        assert.deepEqual(await a.next(x => isArr(x) && x[0] === seq, 10000, 'ACK'), [seq, 'ACK']);
        const m = await b.next(isMsgIn(chan), 10000, 'b receives the message');
        assert.equal(m[4], 'over secretbox');
        assert.equal(m[1], a.id);
    });
});

// =====================================================================
// 2. faults
// =====================================================================


// Blobs in a cluster: the upload is staged on the storage node of the user's
// key and lands on the node of the blob id; any node serves /blob.
describe('cluster: blobs across storage nodes', () => {
    let cl;
    const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => cl.guard(fn)(t));
    before(async () => { cl = await L.startCluster(); });
    after(async () => { if (cl) { await cl.stop(); } });

    const Http = require('node:http');
    const get = (port, path, headers = {}) => new Promise((resolve, reject) => {
        const req = Http.request({ host: '127.0.0.1', port, method: 'GET', path, headers, agent: false }, (res) => {
            const parts = [];
            res.on('data', (c) => parts.push(c));
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts) }));
        });
        req.setTimeout(15000, () => req.destroy(new Error(`GET ${path}: timeout`)));
        req.on('error', reject);
        req.end();
    });

    T('an upload staged on one storage node completes on the blob\'s node and every node serves it', async () => {
        const R = require('./lib/rpc');
        const Crypto = require('node:crypto');
        // a key placed on storage 0 and a blob id placed on storage 1
        let keys;
        do { keys = R.keyPair(); } while (L.place(keys.safe, 2) !== 0);
        let id;
        do { id = Crypto.randomBytes(24).toString('hex'); } while (L.place(id, 2) !== 1);
        const content = Crypto.randomBytes(700 * 1024);
        const r = await C.rawReady(cl.frontUrl(0));
        const HK = await R.learnHk(r);
        const rpc = R.client(r, HK, keys);
        await rpc.call('COOKIE', '');
        assert.deepEqual(await rpc.call('UPLOAD_STATUS', { id, size: content.length }), [false]);
        for (let off = 0; off < content.length; off += 100000) {
            const part = content.subarray(off, off + 100000);
            const { reply } = await rpc.raw('UPLOAD', { chunk: R.b64(part), id }, { sig: null });
            if (R.isCookie(reply[1])) { rpc.cookie = reply[1]; }
            assert.deepEqual(reply.slice(2), [part.length], `UPLOAD: ${C.short(reply)}`);
        }
        assert.deepEqual(await rpc.call('OWNED_UPLOAD_COMPLETE', id), [id]);
        const Fs = require('node:fs');
        const Path = require('node:path');
        const at = (i) => Path.join(cl.storageDir(i), 'blob', id.slice(0, 2), id);
        assert.ok(Fs.existsSync(at(1)), 'the blob is on the storage node of its id');
        assert.ok(!Fs.existsSync(at(0)), 'not on the staging node');
        assert.ok(Fs.existsSync(at(1) + '.metadata.ndjson'), 'with its owner metadata');
        for (const node of ['front:0', 'front:1', 'storage:0', 'storage:1', 'core:0']) {
            const res = await get(cl.port(node), `/blob/${id.slice(0, 2)}/${id}`);
            assert.equal(res.status, 200, `GET /blob on ${node}`);
            assert.ok(res.body.equals(content), `exact bytes from ${node}`);
        }
        const part = await get(cl.port('front:1'), `/blob/${id.slice(0, 2)}/${id}`, { range: 'bytes=1000-299999' });
        assert.equal(part.status, 206);
        assert.equal(part.headers['content-range'], `bytes 1000-299999/${content.length}`);
        assert.ok(part.body.equals(content.subarray(1000, 300000)), 'range forwarded');
        const missing = Crypto.randomBytes(24).toString('hex');
        assert.equal((await get(cl.port('front:0'), `/blob/${missing.slice(0, 2)}/${missing}`)).status, 404);
        // the blob's size is known through any front, and its owner may remove it
        const { reply } = await R.anonRaw(r, HK, 'GET_FILE_SIZE', id);
        assert.deepEqual(reply.slice(2, 3), [content.length]);
        assert.deepEqual(await rpc.call('REMOVE_OWNED_CHANNEL', { channel: id, reason: 'x' }), ['OK']);
        assert.equal((await get(cl.port('front:1'), `/blob/${id.slice(0, 2)}/${id}`)).status, 404);
        r.close();
    }, { skip: FS_ONLY });

    T('login blocks: a challenge issued by one front is answered at the other, and every node serves the block', async () => {
        const Nacl = require('tweetnacl');
        const b64 = (u8) => Buffer.from(u8).toString('base64');
        const kp = Nacl.sign.keyPair();
        const pub = b64(kp.publicKey);
        const safe = pub.replace(/\//g, '-');
        const path = `/block/${safe.slice(0, 2)}/${safe}`;
        const post = async (node, body) => {
            const res = await fetch(`http://127.0.0.1:${cl.port(node)}/api/auth/`, {
                method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
            });
            return { status: res.status, json: await res.json().catch(() => undefined) };
        };
        for (const node of ['front:0', 'front:1']) {
            const before = await get(cl.port(node), path).catch((e) => { throw new Error(`GET ${path} on ${node}: ${e.message}`); });
            assert.equal(before.status, 404, `no block yet on ${node}`);
            assert.deepEqual(JSON.parse(before.body.toString()), { code: 404 });
        }
        const bytes = Buffer.concat([Buffer.from([0]), Buffer.from(Nacl.randomBytes(300))]);
        const content = { publicKey: pub, signature: b64(Nacl.sign.detached(Nacl.hash(bytes), kp.secretKey)), ciphertext: b64(bytes) };
        // many attempts, so that txids land on both storage nodes
        for (let i = 0; i < 6; i++) {
            const req = { command: 'TEST', publicKey: pub, nonce: b64(Nacl.randomBytes(24)) };
            const r1 = await post('front:0', req);
            assert.equal(r1.status, 200, `round 1: ${JSON.stringify(r1.json)}`);
            const sig = b64(Nacl.sign.detached(Buffer.from(JSON.stringify({ ...req, txid: r1.json.txid, date: r1.json.date })), kp.secretKey));
            const r2 = await post('front:1', { sig, txid: r1.json.txid });
            assert.equal(r2.status, 200, `round 2 at the other front: ${JSON.stringify(r2.json)}`);
            const again = await post('front:0', { sig, txid: r1.json.txid });
            assert.notEqual(again.status, 200, 'answerable once, across fronts');
        }
        const req = { command: 'WRITE_BLOCK', content, publicKey: pub, nonce: b64(Nacl.randomBytes(24)) };
        const r1 = await post('front:1', req);
        assert.equal(r1.status, 200);
        const sig = b64(Nacl.sign.detached(Buffer.from(JSON.stringify({ ...req, txid: r1.json.txid, date: r1.json.date })), kp.secretKey));
        const r2 = await post('front:0', { sig, txid: r1.json.txid });
        assert.equal(r2.status, 200, `WRITE_BLOCK: ${JSON.stringify(r2.json)}`);
        for (const node of ['front:0', 'front:1', 'storage:0', 'storage:1']) {
            const res = await get(cl.port(node), path);
            assert.equal(res.status, 200, `GET /block on ${node}`);
            assert.ok(res.body.equals(bytes), `exact block bytes from ${node}`);
        }
    });
});

describe('cluster: inter-node errors', () => {
    let cl;
    const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => cl.guard(fn)(t));
    before(async () => {
        const Path = require('node:path');
        cl = await L.startCluster({ config: {
            lua_dirs: [Path.join(__dirname, 'fixtures')],
            lua_scripts: ['examples/example_rpc.lua', 'ask.lua'],
        } });
    });
    after(async () => { if (cl) { await cl.stop(); } });

    T('a query for a command the remote node does not have is answered ENOENT at once, not left to time out', async () => {
        const R = require('./lib/rpc');
        const r = await C.rawReady(cl.frontUrl(0));
        const HK = await R.learnHk(r);
        for (const node of ['storage:0', 'storage:1', 'front:1', 'core:0', 'core:1']) {
            const t0 = Date.now();
            const { reply } = await R.anonRaw(r, HK, 'TEST_ASK', { node, cmd: 'NO_SUCH_COMMAND' });
            assert.deepEqual(reply[2], { error: 'ENOENT' }, `${node}: ${C.short(reply)}`);
            assert.ok(Date.now() - t0 < 3000, `${node} answered in ${Date.now() - t0} ms`);
        }
        const { reply } = await R.anonRaw(r, HK, 'TEST_ASK', { node: 'storage:9', cmd: 'JOIN' });
        assert.deepEqual(reply[2], { error: 'ENOENT' }, 'unknown node');
        r.close();
    });
});

describe('cluster: faults (SIGKILL and restart)', () => {
    let cl;
    let HK;
    const T = (name, fn, opts = {}) => test(name, { timeout: 120000, ...opts }, (t) => cl.guard(fn, 12000)(t));

    before(async () => {
        cl = await L.startCluster();
        const r = await C.rawReady(cl.frontUrl(1));
        HK = await R.learnHk(r);
        r.close();
    });
    after(async () => {
        C.closeAll();
        if (cl) {
            try { cl.resumeSupervisor(); } catch (e) { /* gone */ }
            await cl.stop();
        }
    });

    T('front 0 killed: its users\' LEAVEs reach front 1, the rest works, the supervisor restarts it', async () => {
        await cl.waitLinks(30000);
        const X = L.padOn(0);
        const Y = L.padOn(1);
        const a0 = await C.rawReady(cl.frontUrl(0));
        const n0 = await C.connect(cl.frontUrl(0));
        const b1 = await C.rawReady(cl.frontUrl(1));
        const m1 = await C.connect(cl.frontUrl(1));
        const leaves = [];
        const mws = {};
        for (const ch of [X, Y]) {
            await a0.join(ch);
            const w0 = await C.join(n0, ch);
            await b1.join(ch);
            mws[ch] = await C.join(m1, ch);
            mws[ch].on('leave', (id) => leaves.push({ ch, id }));
            assert.ok(w0.myID);
        }
        const n0id = mws[X].members.find(id => id !== a0.id && id !== b1.id && id !== mws[X].myID && id.length !== HK_LEN);
        assert.ok(n0id, `netflux user of front 0 listed: ${C.short(mws[X].members)}`);
        b1.clear();
        const mark = cl.mark();
        const oldPid = cl.kill('front:0', 'SIGKILL');
        // LEAVEs of both front-0 users in both channels, at front 1
        for (const ch of [X, Y]) {
            for (const id of [a0.id, n0id]) {
                await b1.next(isLeaveOf(id, ch), 10000, `LEAVE of ${id} (front 0) in ${ch} at b1 (front 1)`);
            }
        }
        await C.waitFor(() => [X, Y].every(ch => [a0.id, n0id].every(id => leaves.some(l => l.ch === ch && l.id === id))),
            10000, 'netflux member on front 1 gets the LEAVEs');
        // front 1 users keep talking, on both cores
        for (const ch of [X, Y]) {
            const t = msgContent('still');
            await C.withTimeout(mws[ch].bcast(t), 5000, `ACK in ${ch} while front 0 is down`);
            const f = await b1.next(x => isMsgIn(ch)(x) && x[4] === t, 5000, 'b1 receives m1\'s message');
            assert.equal(f[1], mws[ch].myID);
        }
        // the supervisor noticed and restarted it
        const newPid = await cl.waitRestart('front:0', oldPid);
        assert.notEqual(newPid, oldPid);
        const log = cl.since(mark);
        assert.match(log, new RegExp(`\\[supervisor\\] node front:0 exited \\(status \\d+, signal 9\\); restarting in \\d+ ms`),
            'the supervisor logs the death with the signal');
        assert.match(log, new RegExp(`\\[supervisor\\] node front:0 started, pid ${newPid}`));
        await cl.waitLinks(30000);
        // new clients on front 0 work with front 1
        const z = await C.rawReady(cl.frontUrl(0));
        for (const ch of [X, Y]) {
            const j = await z.join(ch);
            assert.deepEqual(j.members.slice().sort(), [HK, b1.id, mws[ch].myID, z.id].sort(),
                `after the restart, no ghost of the dead front's users in ${ch}: ${C.short(j.members)}`);
            await b1.next(isJoinOf(z.id, ch), 5000, 'b1 sees the newcomer on the restarted front');
            const t = msgContent('back');
            assert.deepEqual((await z.msg(ch, t)).slice(1), ['ACK']);
            await b1.next(x => isMsgIn(ch)(x) && x[4] === t, 5000, 'front 1 receives from the restarted front 0');
            const t2 = msgContent('back2');
            assert.deepEqual((await b1.msg(ch, t2)).slice(1), ['ACK']);
            await z.next(x => isMsgIn(ch)(x) && x[4] === t2, 5000, 'the restarted front 0 receives from front 1');
        }
        z.close(); b1.close(); m1.close(); n0.close();
    });

    T('core 1 killed: requests that need it get errors (bounded), core 0 channels keep working, then it recovers', async (tc) => {
        cl.resumeSupervisor();
        await cl.waitLinks(30000);
        const Z = L.padOn(1);            // core:1, storage:1
        const W = L.padOn(0);            // core:0, storage:0
        const p = await C.rawReady(cl.frontUrl(0));
        const q = await C.rawReady(cl.frontUrl(1));
        for (const ch of [Z, W]) {
            await p.join(ch);
            await q.join(ch);
            await p.next(isJoinOf(q.id, ch), 5000, 'JOIN of q');
        }
        const before = [msgContent('z-before1'), msgContent('z-before2')];
        for (const t of before) { assert.deepEqual((await p.msg(Z, t)).slice(1), ['ACK']); }
        for (const t of before) { await q.next(x => isMsgIn(Z)(x) && x[4] === t, 5000, 'relay before the kill'); }

        // keep the core down: pause the supervisor, then kill
        cl.pauseSupervisor();
        const mark = cl.mark();
        const oldPid = cl.kill('core:1', 'SIGKILL');
        await C.sleep(300);
        const BOUND = 15000;
        const t0 = Date.now();
        // a MSG to a joined channel of core 1 needs only its storage node
        // (storage 1, up): the front sends it there (docs/protocol/cluster.md §3.4)
        let seq = p.nextSeq();
        const tz = msgContent('z-down');
        p.send([seq, 'MSG', Z, tz]);
        const m = await replyTo(p, seq, BOUND, 'reply to MSG while core 1 is down');
        assert.ok(!m.timeout, `MSG to a channel of the dead core is answered within ${BOUND} ms (${m.error})`);
        assert.equal(m[1], 'ACK', `MSG while core 1 is down: ${C.short(m)}`);
        await q.next(x => isMsgIn(Z)(x) && x[4] === tz, 5000, 'relay on storage 1 while core 1 is down');
        // a JOIN of a channel of core 1
        const fresh = await C.rawReady(cl.frontUrl(1));
        const Z2 = L.padOn(1);
        seq = fresh.nextSeq();
        fresh.send([seq, 'JOIN', Z2]);
        const j = await replyTo(fresh, seq, BOUND, 'reply to JOIN while core 1 is down');
        assert.ok(!j.timeout, `JOIN is answered within ${BOUND} ms (${j.error})`);
        assert.equal(j[1], 'ERROR', `JOIN while core 1 is down: ${C.short(j)}`);
        // history of a channel of core 1
        seq = C.hkSend(q, HK, ['GET_HISTORY', Z, { txid: 'down' }]);
        const h = await q.next(x => (isArr(x) && x[0] === seq) || (C.isHkFrame(HK)(x) && x[4].includes(Z)), BOUND,
            'answer to GET_HISTORY while core 1 is down').catch(e => ({ timeout: true, error: e.message }));
        assert.ok(!h.timeout, `GET_HISTORY is answered within ${BOUND} ms (${h.error})`);
        assert.ok(h[1] === 'ERROR' || (typeof h[4] === 'string' && /error/i.test(h[4])), `GET_HISTORY while core 1 is down: ${C.short(h)}`);
        const elapsed = Date.now() - t0;
        tc.diagnostic(`while core:1 was down: MSG -> ${C.short(m)}, JOIN -> ${C.short(j)}, GET_HISTORY -> ${C.short(h)} (${elapsed} ms)`);
        // core 0's channel still works, both ways
        const tw = msgContent('w-during');
        assert.deepEqual((await p.msg(W, tw)).slice(1), ['ACK'], 'core 0 channel works while core 1 is down');
        await q.next(x => isMsgIn(W)(x) && x[4] === tw, 5000, 'relay on core 0 while core 1 is down');

        // let the supervisor restart it
        cl.resumeSupervisor();
        const newPid = await cl.waitRestart('core:1', oldPid);
        assert.match(cl.since(mark), /\[supervisor\] node core:1 exited \(status \d+, signal 9\); restarting in \d+ ms/);
        await cl.waitLinks(30000);
        // the old members keep going on Z (membership lives on storage 1, which stayed up)
        const ta = msgContent('z-after');
        const ack = await p.request(['MSG', Z, ta], 10000);
        assert.deepEqual(ack.slice(1), ['ACK'], `MSG on the core-1 channel after the restart: ${C.short(ack)}`);
        await q.next(x => isMsgIn(Z)(x) && x[4] === ta, 5000, 'relay on the core-1 channel after the restart');
        // join, send, read again
        const late = await C.rawReady(cl.frontUrl(1));
        const jl = await late.join(Z);
        assert.deepEqual(jl.members.slice().sort(), [HK, p.id, q.id, late.id].sort(), `members after the restart: ${C.short(jl.members)}`);
        const fh = await C.getFullHistory(late, HK, Z);
        const contents = fh.items.filter(x => isArr(x) && x[0] === 'FULL_HISTORY').map(x => x[1][4]);
        assert.deepEqual(contents, [...before, tz, ta], `history after the restart: ${C.short(contents)}`);
        const j2 = await fresh.join(Z2);
        assert.ok(j2.members.includes(fresh.id), 'a new channel of core 1 can be joined');
        assert.ok(elapsed < 3 * BOUND);
        assert.notEqual(newPid, oldPid);
        p.close(); q.close(); late.close(); fresh.close();
    });

    T('storage 1 killed during writes: its members are disconnected (1012), others go on, no ACKed message lost or duplicated', async (tc) => {
        cl.resumeSupervisor();
        await cl.waitLinks(30000);
        const S1 = L.padOn(1);
        const S0 = L.padOn(0);
        // w writes to a channel of storage 1; rd is only in a channel of storage 0
        const w = await C.rawReady(cl.frontUrl(0));
        const rd = await C.rawReady(cl.frontUrl(1));
        await w.join(S1);
        await rd.join(S0);
        const acked = [];
        let k = 0;
        const BOUND = 15000;
        const write = async (r, ch) => {
            const content = `sw|${k++}|${C.hex(6)}`;
            const seq = r.nextSeq();
            r.send([seq, 'MSG', ch, content]);
            const f = await replyTo(r, seq, BOUND, `reply to ${content}`);
            if (isArr(f) && f[1] === 'ACK' && ch === S1) { acked.push(content); }
            return f;
        };
        for (let i = 0; i < 5; i++) { assert.equal((await write(w, S1))[1], 'ACK'); }
        cl.pauseSupervisor();
        const mark = cl.mark();
        const pending = [];
        let oldPid = null;
        for (let i = 0; i < 10; i++) {
            pending.push(write(w, S1));
            if (i === 4) { oldPid = cl.kill('storage:1', 'SIGKILL'); }
        }
        const answers = await Promise.all(pending);
        // the node forgot who is in its channels: its members' connections
        // are closed so that their clients reconnect, rejoin and catch up
        const closed = await Promise.race([w.closed, C.sleep(BOUND).then(() => null)]);
        assert.ok(closed, 'the writer, a member of a channel of storage 1, was disconnected');
        assert.equal(closed.code, 1012, `close code: ${C.short(closed)}`);
        // a client of storage 0's channels notices nothing
        const ok0 = await write(rd, S0);
        assert.deepEqual(ok0.slice(1), ['ACK'], 'storage 0 channel still ACKs');
        // joining a channel of the dead node fails with an error, not a hang
        const n = await C.rawReady(cl.frontUrl(1));
        const seqj = n.nextSeq();
        n.send([seqj, 'JOIN', S1]);
        const jf = await replyTo(n, seqj, BOUND, 'JOIN while storage 1 is down');
        assert.ok(!jf.timeout && jf[1] === 'ERROR', `JOIN while storage 1 is down: ${C.short(jf)}`);
        n.close();

        cl.resumeSupervisor();
        await cl.waitRestart('storage:1', oldPid);
        assert.match(cl.since(mark), /\[supervisor\] node storage:1 exited \(status \d+, signal 9\); restarting in \d+ ms/);
        await cl.waitLinks(30000);
        const f = await C.rawReady(cl.frontUrl(1));
        await f.join(S1);
        const fh = await C.getFullHistory(f, HK, S1, 10000);
        assert.deepEqual(fh.end, ['FULL_HISTORY_END', S1], `full history after the restart: ${C.short(fh.items)}`);
        const contents = fh.items.filter(x => isArr(x) && x[0] === 'FULL_HISTORY').map(x => x[1][4]);
        for (const c of acked) {
            assert.equal(contents.filter(x => x === c).length, 1, `ACKed ${c} stored exactly once (history: ${C.short(contents, 2000)})`);
        }
        assert.deepEqual(contents.filter(c => acked.includes(c)), acked, 'ACKed messages in ACK order');
        tc.diagnostic(`storage:1 kill: ${acked.length} ACKed; in-flight answers ${C.short(answers, 400)}`);
        const t = msgContent('s1-after');
        assert.deepEqual((await f.msg(S1, t)).slice(1), ['ACK'], 'a fresh member writes after the restart');
        f.close();
        w.close(); rd.close();
    });

    T('after a storage restart, its members are disconnected, and once they rejoin messages flow again', async () => {
        cl.resumeSupervisor();
        await cl.waitLinks(30000);
        const S = L.padOn(1);
        const a = await C.rawReady(cl.frontUrl(0));
        const b = await C.rawReady(cl.frontUrl(1));
        await a.join(S);
        await b.join(S);
        await a.next(isJoinOf(b.id, S), 5000, 'JOIN of b');
        const oldPid = cl.kill('storage:1', 'SIGKILL');
        const ca = await Promise.race([a.closed, C.sleep(15000).then(() => null)]);
        const cb = await Promise.race([b.closed, C.sleep(15000).then(() => null)]);
        assert.ok(ca && cb, 'both members were disconnected when their storage node was lost');
        assert.equal(ca.code, 1012);
        await cl.waitRestart('storage:1', oldPid);
        await cl.waitLinks(30000);
        // what the clients do on their own: reconnect and rejoin
        const a2 = await C.rawReady(cl.frontUrl(0));
        const b2 = await C.rawReady(cl.frontUrl(1));
        await a2.join(S);
        const jb = await b2.join(S);
        assert.ok(jb.members.includes(a2.id), `b sees a after rejoining: ${C.short(jb.members)}`);
        const t = msgContent('post-restart');
        assert.deepEqual((await a2.msg(S, t)).slice(1), ['ACK']);
        const got = await b2.next(x => isMsgIn(S)(x) && x[4] === t, 5000, 'relay after the rejoin');
        assert.equal(got[1], a2.id);
        a2.close(); b2.close();
    });

    T('a node that keeps dying is restarted with growing back-off, then the cluster recovers', async () => {
        cl.resumeSupervisor();
        await cl.waitLinks(30000);
        const mark = cl.mark();
        let pid = cl.pid('storage:0');
        for (let i = 0; i < 3; i++) {
            cl.kill('storage:0', 'SIGKILL');
            pid = await cl.waitRestart('storage:0', pid, 20000);
        }
        const delays = Array.from(cl.since(mark).matchAll(/node storage:0 exited \(status \d+, signal 9\); restarting in (\d+) ms/g))
            .map(m => Number(m[1]));
        assert.equal(delays.length, 3, `three restarts logged: ${C.short(delays)}`);
        assert.ok(delays[1] > delays[0] && delays[2] > delays[1], `back-off grows: ${C.short(delays)}`);
        assert.ok(delays[2] <= 30000, 'back-off is capped');
        await cl.waitLinks(30000);
        const a = await C.rawReady(cl.frontUrl(0));
        const b = await C.rawReady(cl.frontUrl(1));
        const ch = L.padOn(0);
        await a.join(ch);
        await b.join(ch);
        const t = msgContent('after-backoff');
        assert.deepEqual((await a.msg(ch, t)).slice(1), ['ACK']);
        await b.next(x => isMsgIn(ch)(x) && x[4] === t, 5000, 'relay on storage 0 after its restarts');
        assert.ok((fileLines(cl, 0, ch) || []).some(l => l.includes(t)), 'stored on storage:0');
        a.close(); b.close();
    });
});

// =====================================================================
// 3. link security
// =====================================================================

describe('cluster: link security', () => {
    let cl;
    let rogue = null;       // { proc, pid, log, exited }
    let rogueDir = null;
    const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => cl.guard(fn)(t));

    before(async () => { cl = await L.startCluster(); });
    after(async () => {
        C.closeAll();
        if (rogue && !rogue.exitInfo) {
            try { process.kill(rogue.pid, 'SIGKILL'); } catch (e) { /* gone */ }
            await rogue.exited;
        }
        if (rogueDir) { Fs.rmSync(rogueDir, { recursive: true, force: true }); }
        if (cl) { await cl.stop(); }
    });

    const refused = async (node) => (await cl.metrics(node)).cpsd_links_refused_total;
    const lost = async (node) => (await cl.metrics(node)).cpsd_links_lost_total;

    // Send one HELLO on a fresh link socket; 'closed' | 'frame' | 'timeout'.
    const tryHello = async (node, hello, ms = 3000) => {
        const s = L.linkSocket(cl.linkUrl(node));
        await s.opened;
        s.ws.send(typeof hello === 'string' ? hello : JSON.stringify(hello));
        const out = await s.outcome(ms);
        return { s, out };
    };

    T('a HELLO sealed with a wrong key is refused: closed, counted, the real links untouched', async () => {
        const r0 = await refused('core:0');
        const l0 = await lost('core:0');
        const pid = cl.pid('core:0');
        const wrong = require('node:crypto').randomBytes(32).toString('base64');
        const h = L.sealLink(wrong, 'front:1', 'core:0');
        const { s, out } = await tryHello('core:0', h.text);
        assert.equal(out, 'closed', `wrong key: the connection is closed (got ${out}, frames ${s.frames.length})`);
        assert.equal(s.frames.length, 0, 'no WELCOME for a wrong key');
        await C.waitFor(async () => (await refused('core:0')) === r0 + 1, 3000, 'cpsd_links_refused_total + 1 on core:0');
        assert.equal(await lost('core:0'), l0, 'no real link lost');
        assert.equal(cl.pid('core:0'), pid, 'core:0 still runs (same pid)');
        await C.waitFor(() => /refused a link handshake claiming to be front:1/.test(cl.stderr()), 3000,
            'core:0 logs "refused a link handshake claiming to be front:1"');
        await cl.waitLinks(5000);
    });

    // docs/protocol/cluster.md §2.3: the claimed name is escaped, and the
    // warning comes at most once a second, counting the ones left out.
    T('refused HELLOs: the claimed name is escaped and the warning rate-limited', async () => {
        const lines = () => cl.stderr().split('\n').filter(l => l.includes('refused a link handshake'));
        await C.sleep(1100);                 // past any earlier warning's second
        const n0 = lines().length;
        const r0 = await refused('core:0');
        const name = 'x\nerror [link] forged\u001b[31m';
        const N = 20;
        for (let i = 0; i < N; i++) {
            const { out } = await tryHello('core:0', JSON.stringify(['HELLO', name, 'core:0', Date.now(), 'x', 'y', 'z']));
            assert.equal(out, 'closed');
        }
        await C.waitFor(async () => (await refused('core:0')) === r0 + N, 3000, `${N} refusals counted`);
        const burst = lines().slice(n0);
        assert.ok(burst.length >= 1 && burst.length <= 4, `${N} refusals, ${burst.length} lines: ${burst.join('\n')}`);
        assert.ok(burst[0].includes('claiming to be x\\x0aerror [link] forged\\x1b[31m'), `escaped: ${burst[0]}`);
        assert.ok(!cl.stderr().split('\n').some(l => l.startsWith('error [link] forged')), 'no forged line');
        assert.ok(!cl.stderr().includes('\u001b'), 'no terminal escape');
        await C.sleep(1100);
        await tryHello('core:0', JSON.stringify(['HELLO', 'y', 'core:0', Date.now(), 'x', 'y', 'z']));
        await C.waitFor(() => lines().length > n0 + burst.length, 3000, 'the next warning');
        assert.match(lines().pop(), /claiming to be y .*\d+ more refused since, not logged/);
        await cl.waitLinks(5000);
    });

    T('unauthenticated junk on /cpsd-link (no HELLO, text, binary, a bare close) neither crashes nor disturbs the node', async () => {
        const pid = cl.pid('storage:0');
        const l0 = await lost('storage:0');
        // connect and go away without a word (the prototype died on this, docs/protocol/cluster.md §8.1)
        for (let i = 0; i < 3; i++) {
            const s = L.linkSocket(cl.linkUrl('storage:0'));
            await s.opened;
            s.close();
        }
        for (const junk of ['hello', '[]', '["HELLO"]', JSON.stringify(['HELLO', 'core:0', 'storage:0', Date.now(), 'x', 'y', 'z']), '{}']) {
            const { out } = await tryHello('storage:0', junk);
            assert.equal(out, 'closed', `junk ${C.short(junk)} closes the connection`);
        }
        const s = L.linkSocket(cl.linkUrl('storage:0'));
        await s.opened;
        s.ws.send(Buffer.alloc(64, 7), { binary: true });
        assert.equal(await s.outcome(3000), 'closed', 'a binary first frame closes the connection');
        await C.sleep(200);
        assert.equal(cl.pid('storage:0'), pid, 'storage:0 still runs');
        assert.ok(L.isOurs(pid, cl.file));
        assert.equal(await lost('storage:0'), l0, 'no real link lost');
        await cl.waitLinks(5000);
        // and the cluster still serves clients
        const a = await C.rawReady(cl.frontUrl(0));
        const j = await a.join(L.padOn(0));
        assert.ok(j.members.includes(a.id));
        a.close();
    });

    T('HELLOs with the right key but a stale or future time, an unknown or wrong sender, or another addressee are refused', async () => {
        const cases = [
            ['60 s old', L.sealLink(cl.key, 'front:1', 'core:0', { t: Date.now() - 60000 })],
            ['31 s old', L.sealLink(cl.key, 'front:1', 'core:0', { t: Date.now() - 31000 })],
            ['60 s in the future', L.sealLink(cl.key, 'front:1', 'core:0', { t: Date.now() + 60000 })],
            ['an unknown node', L.sealLink(cl.key, 'front:9', 'core:0')],
            ['addressed to core:1', L.sealLink(cl.key, 'front:1', 'core:1')],
            // the node whose id sorts after the other's dials: storage:0
            // dials core:0, so a HELLO "from core:0" reaching storage:0 is a
            // role confusion and must be refused
            ['from a node the listener dials itself', L.sealLink(cl.key, 'core:0', 'storage:0'), 'storage:0'],
            ['text not matching the clear fields', L.sealLink(cl.key, 'front:1', 'core:0', { text: 'cpsd-link|HELLO|front:0|core:0|1|x|' })],
            ['a WELCOME instead of a HELLO', L.sealLink(cl.key, 'front:1', 'core:0', { kind: 'WELCOME' })],
        ];
        for (const [what, h, node = 'core:0'] of cases) {
            const r0 = await refused(node);
            const { s, out } = await tryHello(node, h.text);
            assert.equal(out, 'closed', `${what}: closed (got ${out})`);
            assert.equal(s.frames.length, 0, `${what}: no WELCOME`);
            await C.waitFor(async () => (await refused(node)) === r0 + 1, 3000, `${what}: refused counted on ${node}`);
        }
        await cl.waitLinks(5000);
    });

    T('a HELLO with the right key is accepted once (a WELCOME proving the key comes back); the same HELLO replayed is refused', async () => {
        // claim to be front:1 towards core:1 (fronts dial cores)
        const h = L.sealLink(cl.key, 'front:1', 'core:1');
        const r0 = await refused('core:1');
        const { s, out } = await tryHello('core:1', h.text);
        assert.equal(out, 'frame', `right key: an answer comes back (got ${out}, close ${C.short(s.closeInfo)})`);
        const f = s.frames[0];
        assert.equal(f.binary, false, 'the WELCOME is a text frame');
        const w = JSON.parse(f.data.toString('utf8'));
        assert.ok(isArr(w) && w.length === 7, `WELCOME shape: ${C.short(w)}`);
        assert.deepEqual(w.slice(0, 3), ['WELCOME', 'core:1', 'front:1']);
        assert.ok(Number.isInteger(w[3]) && Math.abs(w[3] - Date.now()) < 10000, `WELCOME time ${w[3]}`);
        const plain = L.openLink(cl.key, w);
        assert.equal(plain, `cpsd-link|WELCOME|core:1|front:1|${w[3]}|${w[5]}|${h.nonce.toString('base64')}`,
            'the WELCOME opens with the node key and is bound to our HELLO\'s nonce');
        assert.equal(L.openLink(require('node:crypto').randomBytes(32).toString('base64'), w), null, 'not with another key');
        s.close();
        await s.closed;
        // the same HELLO again, on a new connection: a replay
        const again = await tryHello('core:1', h.text);
        assert.equal(again.out, 'closed', `replayed HELLO: closed (got ${again.out})`);
        assert.equal(again.s.frames.length, 0, 'no WELCOME for a replay');
        await C.waitFor(async () => (await refused('core:1')) === r0 + 1, 3000, 'the replay is counted as refused');
        // the real front:1 comes back (its link was replaced by ours, then lost)
        await cl.waitLinks(20000, cl.nodes, { atLeast: true });
        await cl.waitLinks(20000, ['front:1', 'front:0', 'storage:0', 'storage:1', 'core:0']);
        const a = await C.rawReady(cl.frontUrl(1));
        const b = await C.rawReady(cl.frontUrl(0));
        const ch = L.padOn(1);
        await a.join(ch);
        await b.join(ch);
        const t = msgContent('after-replay');
        assert.deepEqual((await b.msg(ch, t)).slice(1), ['ACK']);
        await a.next(x => isMsgIn(ch)(x) && x[4] === t, 5000, 'front 1 <-> core 1 traffic works again');
        a.close(); b.close();
    });

    T('a rogue node process with another key, claiming to be front:1, is refused by every node it dials', async () => {
        rogueDir = tmpDir('cpsd-rogue-');
        const [port] = await L.freePorts(1);
        const topo = JSON.parse(JSON.stringify(cl.topo));
        topo.key = require('node:crypto').randomBytes(32).toString('base64');
        topo.front[1].port = port;
        topo.config.data_dir = Path.join(rogueDir, 'data');
        const file = Path.join(rogueDir, 'other.lua');
        Fs.writeFileSync(file, L.renderTopology(topo));
        const before = {};
        for (const n of ['core:0', 'core:1', 'front:0']) { before[n] = await refused(n); }
        const lostBefore = {};
        for (const n of cl.nodes) { lostBefore[n] = await lost(n); }
        const proc = ChildProcess.spawn(cl.bin, ['--topology', file, '--role', 'front', '--index', '1'],
            { stdio: ['ignore', 'pipe', 'pipe'], cwd: rogueDir });
        rogue = { proc, pid: proc.pid, log: '', exitInfo: null };
        rogue.exited = new Promise((resolve) => proc.on('exit', (code, signal) => { rogue.exitInfo = { code, signal }; resolve(); }));
        proc.stdout.on('data', (d) => { rogue.log += d; });
        proc.stderr.on('data', (d) => { rogue.log += d; });
        // front:1 dials front:0 and both cores (ids sorting before it)
        try {
            await C.waitFor(async () => (await refused('core:0')) > before['core:0'] && (await refused('core:1')) > before['core:1'] &&
                (await refused('front:0')) > before['front:0'], 10000, 'core:0, core:1 and front:0 refuse the rogue');
        } catch (e) {
            e.message += `\n--- rogue log ---\n${rogue.log.slice(-3000)}`;
            throw e;
        }
        assert.doesNotMatch(rogue.log, /link to \S+ up/, `the rogue never gets a link up:\n${rogue.log.slice(-2000)}`);
        for (const n of cl.nodes) { assert.equal(await lost(n), lostBefore[n], `${n}: no real link lost to the rogue`); }
        // the real front:1 still serves
        const a = await C.rawReady(cl.frontUrl(1));
        const b = await C.rawReady(cl.frontUrl(0));
        const ch = L.padOn(0);
        await a.join(ch);
        await b.join(ch);
        const t = msgContent('real');
        assert.deepEqual((await a.msg(ch, t)).slice(1), ['ACK']);
        await b.next(x => isMsgIn(ch)(x) && x[4] === t, 5000, 'real front:1 traffic unaffected');
        a.close(); b.close();
        process.kill(rogue.pid, 'SIGTERM');
        await C.withTimeout(rogue.exited, 10000, 'rogue exits on SIGTERM');
    });
});
