'use strict';
// Exact netflux frames over a raw websocket (spec docs/protocol/netflux.md §2-§10).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, withLog } = require('./lib/server');
const C = require('./lib/client');

let srv;
const T = (name, fn, opts = {}) => test(name, { timeout: 30000, ...opts }, (t) => srv.guard(fn)(t));

before(withLog(() => srv, async () => { srv = await startServer(); }));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
});

const isArr = Array.isArray;
const notPing = (f) => !(isArr(f) && f[0] === 0 && f[2] === 'PING');

// Send a JOIN with `seq` and return every frame received from then up to
// and including the joiner's own JOIN (consumed from r.frames).
const joinFrames = async (r, chan, seq = r.nextSeq()) => {
    const start = r.log.length;
    r.send([seq, 'JOIN', chan]);
    await r.next(f => isArr(f) && f[0] === 0 && f[1] === r.id && f[2] === 'JOIN' && f[3] === chan, 5000,
        `own JOIN after [${seq},"JOIN","${chan}"]`);
    const got = r.log.slice(start).filter(notPing);
    for (const f of got) {
        const i = r.frames.indexOf(f);
        if (i !== -1) { r.frames.splice(i, 1); }
    }
    return got;
};

let HK = null;

T('IDENT is the first frame, with a 32-lowercase-hex user id', async () => {
    const a = C.raw(srv.url);
    const b = C.raw(srv.url);
    await Promise.all([a.ready, b.ready]);
    for (const r of [a, b]) {
        assert.deepEqual(r.log[0], [0, '', 'IDENT', r.id], `first frame: ${C.short(r.log[0])}`);
        assert.match(r.id, /^[0-9a-f]{32}$/);
    }
    assert.notEqual(a.id, b.id, 'ids are unique');
    a.close(); b.close();
});

T('JOIN reply order: JACK, HK JOIN, other members, own JOIN last', async () => {
    const chan = C.padId();
    const a = await C.rawReady(srv.url);
    const b = await C.rawReady(srv.url);
    const d = await C.rawReady(srv.url);

    const fa = await joinFrames(a, chan, 5);
    assert.equal(fa.length, 3, `frames for the first joiner: ${C.short(fa, 1000)}`);
    assert.deepEqual(fa[0], [5, 'JACK', chan]);
    assert.equal(fa[1].length, 4);
    assert.equal(fa[1][0], 0); assert.equal(fa[1][2], 'JOIN'); assert.equal(fa[1][3], chan);
    HK = fa[1][1];
    assert.equal(typeof HK, 'string');
    assert.equal(HK.length, 16, `history keeper id ${HK} has 16 characters`);
    assert.deepEqual(fa[2], [0, a.id, 'JOIN', chan]);

    const fb = await joinFrames(b, chan, 11);
    assert.deepEqual(fb, [
        [11, 'JACK', chan],
        [0, HK, 'JOIN', chan],
        [0, a.id, 'JOIN', chan],
        [0, b.id, 'JOIN', chan],
    ], `frames for the second joiner: ${C.short(fb, 1000)}`);

    // the existing member gets the joiner's JOIN, once
    await a.next(f => isArr(f) && f[2] === 'JOIN' && f[1] === b.id, 5000, 'JOIN of b at a');
    await a.none(f => isArr(f) && f[2] === 'JOIN', 300, 'second JOIN at a');

    const fd = await joinFrames(d, chan, 1000001);
    assert.equal(fd.length, 5, `frames for the third joiner: ${C.short(fd, 1000)}`);
    assert.deepEqual(fd[0], [1000001, 'JACK', chan]);
    assert.deepEqual(fd[1], [0, HK, 'JOIN', chan]);
    assert.deepEqual(fd.slice(2, 4).map(f => f[1]).sort(), [a.id, b.id].sort());
    for (const f of fd.slice(2, 4)) { assert.deepEqual(f, [0, f[1], 'JOIN', chan]); }
    assert.deepEqual(fd[4], [0, d.id, 'JOIN', chan]);
    for (const r of [a, b]) {
        const f = await r.next(x => isArr(x) && x[2] === 'JOIN' && x[1] === d.id, 5000, 'JOIN of d');
        assert.deepEqual(f, [0, d.id, 'JOIN', chan]);
        await r.none(x => isArr(x) && x[2] === 'JOIN', 200, 'duplicate JOIN');
    }
    a.close(); b.close(); d.close();
});

T('JOIN of ephemeral (34) and admin (33) channels', async () => {
    const a = await C.rawReady(srv.url);
    const b = await C.rawReady(srv.url);
    const eph = '0'.repeat(34);
    const fa = await joinFrames(a, eph, 3);
    assert.deepEqual(fa[0], [3, 'JACK', eph]);
    assert.equal(fa[1][2], 'JOIN'); assert.equal(fa[1][1].length, 16, 'HK announced in ephemeral channel');
    if (HK) { assert.equal(fa[1][1], HK, 'same HK id in every channel'); }
    assert.deepEqual(fa[fa.length - 1], [0, a.id, 'JOIN', eph]);

    const adm = C.ADMIN_CHANNEL;
    await joinFrames(a, adm, 9);
    const fb = await joinFrames(b, adm, 13);
    assert.equal(fb.length, 3, `admin channel: JACK, HK JOIN, own JOIN only: ${C.short(fb, 1000)}`);
    assert.deepEqual(fb[0], [13, 'JACK', adm]);
    assert.equal(fb[1][1].length, 16);
    assert.deepEqual(fb[2], [0, b.id, 'JOIN', adm]);
    await a.none(f => isArr(f) && f[2] === 'JOIN' && f[1] === b.id, 300, 'JOIN of b in the admin channel at a');
    a.close(); b.close();
});

T('LEAVE: errors for channels not joined, ACK and LEAVE event otherwise', async () => {
    const chan = C.padId();
    const a = await C.rawReady(srv.url);
    const b = await C.rawReady(srv.url);
    const d = await C.rawReady(srv.url);
    await joinFrames(a, chan);
    await joinFrames(b, chan);
    await a.next(f => isArr(f) && f[2] === 'JOIN' && f[1] === b.id, 5000, 'JOIN of b at a');

    // a channel nobody is in
    const unknown = C.padId();
    const r1 = await d.request(['LEAVE', unknown, null]);
    assert.equal(r1[1], 'ERROR', `LEAVE of an unknown channel: ${C.short(r1)}`);
    assert.ok(['ENOENT', 'NOT_IN_CHAN'].includes(r1[2]), `code ${r1[2]}`);
    assert.deepEqual(r1.slice(3), [unknown]);
    // an existing channel d is not a member of
    const r2 = await d.request(['LEAVE', chan, null]);
    assert.deepEqual(r2.slice(1), ['ERROR', 'NOT_IN_CHAN', chan], `LEAVE of a channel not joined: ${C.short(r2)}`);
    await a.none(f => isArr(f) && f[2] === 'LEAVE', 200, 'LEAVE event caused by a non-member');

    // b leaves: ACK to b, LEAVE event to a (once, 4 elements)
    const seq = 77;
    b.send([seq, 'LEAVE', chan, 'some reason']);
    const ack = await b.next(f => isArr(f) && f[0] === seq, 5000, 'LEAVE reply');
    assert.deepEqual(ack, [seq, 'ACK']);
    const ev = await a.next(f => isArr(f) && f[2] === 'LEAVE', 5000, 'LEAVE event at a');
    assert.deepEqual(ev, [0, b.id, 'LEAVE', chan]);
    await a.none(f => isArr(f) && f[2] === 'LEAVE', 200, 'duplicate LEAVE');

    // b receives nothing from the channel anymore
    const m = await a.msg(chan, 'after b left');
    assert.deepEqual(m.slice(1), ['ACK']);
    await b.none(f => isArr(f) && f[3] === chan, 300, 'channel traffic after LEAVE');
    // leaving twice: b is no longer a member
    const r3 = await b.request(['LEAVE', chan, null]);
    assert.equal(r3[1], 'ERROR', `second LEAVE: ${C.short(r3)}`);
    a.close(); b.close(); d.close();
});

T('MSG to a 32-char channel is relayed as [0,sender,"MSG",chan,content(,time)] to the others only', async () => {
    const chan = C.padId();
    const a = await C.rawReady(srv.url);
    const b = await C.rawReady(srv.url);
    const d = await C.rawReady(srv.url);
    for (const r of [a, b, d]) { await joinFrames(r, chan); }
    await C.sleep(100);
    for (const r of [a, b, d]) { r.clear(); }

    const content = `hello|${C.hex(8)}|"quoted" \\ ünïcødé`;
    const t0 = Date.now();
    const ack = await a.msg(chan, content);
    assert.deepEqual(ack.slice(1), ['ACK']);
    for (const r of [b, d]) {
        const f = await r.next(x => isArr(x) && x[2] === 'MSG', 5000, 'relayed MSG');
        assert.deepEqual(f.slice(0, 5), [0, a.id, 'MSG', chan, content]);
        assert.ok(f.length === 5 || f.length === 6, `5 or 6 elements: ${C.short(f)}`);
        if (f.length === 6) {
            assert.equal(typeof f[5], 'number', 'timestamp is a number');
            assert.ok(f[5] >= t0 - 5000 && f[5] <= Date.now() + 5000, `timestamp ${f[5]} is about now (ms)`);
        }
    }
    await a.none(x => isArr(x) && x[2] === 'MSG', 300, 'echo to the sender');
    a.close(); b.close(); d.close();
});

T('MSG to a 34-char channel is relayed with exactly 5 elements', async () => {
    const chan = C.ephemeralId();
    const a = await C.rawReady(srv.url);
    const b = await C.rawReady(srv.url);
    await joinFrames(a, chan);
    await joinFrames(b, chan);
    const content = `eph|${C.hex(8)}`;
    const ack = await a.msg(chan, content);
    assert.deepEqual(ack.slice(1), ['ACK']);
    const f = await b.next(x => isArr(x) && x[2] === 'MSG', 5000, 'relayed MSG');
    assert.deepEqual(f, [0, a.id, 'MSG', chan, content]);
    await a.none(x => isArr(x) && x[2] === 'MSG', 300, 'echo to the sender');
    a.close(); b.close();
});

T('MSG to a connected user id is delivered with the sender id', async () => {
    const a = await C.rawReady(srv.url);
    const b = await C.rawReady(srv.url);
    const ack = await a.msg(b.id, 'direct');
    assert.deepEqual(ack.slice(1), ['ACK']);
    const f = await b.next(x => isArr(x) && x[2] === 'MSG', 5000, 'direct MSG');
    assert.deepEqual(f, [0, a.id, 'MSG', b.id, 'direct']);
    a.close(); b.close();
});

T('PING is ACKed with the request seq, whatever its value, many in flight', async () => {
    const a = await C.rawReady(srv.url);
    for (const seq of [7, 1e6, 2147483649, 9007199254740991]) {
        a.send([seq, 'PING']);
        const f = await a.next(x => isArr(x) && x[0] === seq, 5000, `ACK of PING ${seq}`);
        assert.deepEqual(f, [seq, 'ACK']);
    }
    const seqs = [];
    for (let i = 0; i < 200; i++) { seqs.push(1001 + 2 * i); }
    for (const s of seqs) { a.send([s, 'PING']); }
    const got = [];
    for (let i = 0; i < seqs.length; i++) {
        got.push(await a.next(x => isArr(x) && x[1] === 'ACK', 5000, `ACK ${i + 1}/${seqs.length}`));
    }
    for (const f of got) { assert.equal(f.length, 2); }
    assert.deepEqual(got.map(f => f[0]).sort((x, y) => x - y), seqs, 'every PING ACKed exactly once');
    await a.none(x => isArr(x) && x[1] === 'ACK', 200, 'extra ACK');
    a.close();
});

T('MSG to an unknown user is answered [seq,"ERROR","enoent",target]', async () => {
    const a = await C.rawReady(srv.url);
    const target = C.padId();
    a.send([21, 'MSG', target, 'anyone?']);
    const f = await a.next(x => isArr(x) && x[0] === 21, 5000, 'reply to MSG to unknown user');
    assert.deepEqual(f, [21, 'ERROR', 'enoent', target]);
    a.close();
});

T('a dropped connection (no close frame) is announced as LEAVE to the others', async () => {
    const chan = C.padId();
    const a = await C.rawReady(srv.url);
    const b = await C.rawReady(srv.url);
    await joinFrames(a, chan);
    await joinFrames(b, chan);
    await a.next(f => isArr(f) && f[2] === 'JOIN' && f[1] === b.id, 5000, 'JOIN of b at a');
    b.terminate();   // TCP close without a websocket close frame
    const ev = await a.next(f => isArr(f) && f[2] === 'LEAVE', 5000, 'LEAVE of the dropped user');
    assert.deepEqual(ev, [0, b.id, 'LEAVE', chan]);
    // a newcomer does not see the dead user
    const d = await C.rawReady(srv.url);
    const fd = await joinFrames(d, chan);
    const listed = fd.filter(f => f[2] === 'JOIN').map(f => f[1]);
    assert.ok(!listed.includes(b.id), `dead user listed to a newcomer: ${C.short(fd)}`);
    assert.ok(listed.includes(a.id));
    a.close(); d.close();
});

T('server exits 0 on SIGTERM', async () => {
    C.closeAll();
    const code = await srv.stop();
    assert.equal(code, 0, 'exit code after SIGTERM');
});
