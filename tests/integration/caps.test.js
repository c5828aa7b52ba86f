'use strict';
// Per-session caps of the front (docs/protocol/netflux.md §12, issue 12):
// 1. front.max_channels_per_session: a JOIN beyond it is answered
//    [seq,"ERROR","EBUSY",C] and opens nothing; other clients are unaffected;
//    a LEAVE frees room; a re-JOIN of a joined channel is always answered;
// 2. front.max_requests_in_flight: history/RPC requests beyond it are
//    answered [seq,"ERROR","EBUSY",null] and not forwarded; every request
//    within the cap is answered; answers free room.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, withLog, FIXTURES_DIR } = require('./lib/server');
const C = require('./lib/client');

const MAX_CH = 5;
const MAX_REQ = 8;

let srv;
let HK;
const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv.guard(fn)(t));

before(withLog(() => srv, async () => {
    srv = await startServer({
        lua_dirs: [FIXTURES_DIR],
        lua_scripts_add: ['failing.lua'],          // TEST_LUA_LATER: answers after 50 ms
        front: { max_channels_per_session: MAX_CH, max_requests_in_flight: MAX_REQ },
    });
    const r = await C.rawReady(srv.url);
    const j = await r.join('0'.repeat(34));
    HK = j.members.find(id => id.length === 16);
    await r.leave('0'.repeat(34));
    r.close();
}));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
});

const isReply = (seq) => (f) => Array.isArray(f) && f[0] === seq;

T('JOIN beyond max_channels_per_session: EBUSY, nothing opened; others still join and message', async () => {
    const a = await C.rawReady(srv.url);
    const pads = [];
    for (let i = 0; i < MAX_CH; i++) {
        const ch = i % 2 ? C.ephemeralId() : C.padId();
        pads.push(ch);
        await a.join(ch);
    }
    // a re-JOIN of a joined channel adds nothing: answered normally
    await a.join(pads[0]);
    // one more: refused with EBUSY, the channel named in the detail
    const extra = C.padId();
    const rep = await a.request(['JOIN', extra]);
    assert.deepEqual(rep.slice(1), ['ERROR', 'EBUSY', extra]);
    // pipelined JOINs over the cap: all refused, none half-joined
    const seqs = [];
    for (let i = 0; i < 5; i++) {
        const seq = a.nextSeq();
        seqs.push(seq);
        a.send([seq, 'JOIN', C.padId()]);
    }
    for (const seq of seqs) {
        const f = await a.next(isReply(seq));
        assert.deepEqual(f.slice(1, 3), ['ERROR', 'EBUSY']);
    }
    await a.none(f => Array.isArray(f) && (f[1] === 'JACK' || f[2] === 'JOIN'), 200, 'JOIN frame after EBUSY');

    // the refused channel was never opened: a second client joining it is alone
    const b = await C.rawReady(srv.url);
    const jb = await b.join(extra);
    assert.deepEqual(jb.members.filter(m => m.length === 32), [b.id]);
    // and b joins a's channel and messages it
    const jb2 = await b.join(pads[0]);
    assert.ok(jb2.members.includes(a.id));
    const ack = await b.msg(pads[0], 'hello');
    assert.deepEqual(ack.slice(1), ['ACK']);
    const got = await a.next(f => Array.isArray(f) && f[2] === 'MSG' && f[3] === pads[0]);
    assert.equal(got[1], b.id);
    assert.equal(got[4], 'hello');

    // a message from a to the refused channel is not relayed (not joined)
    const e = await a.msg(extra, 'nope');
    assert.deepEqual(e.slice(1), ['ERROR', 'enoent', extra]);

    // leaving frees room again
    assert.deepEqual((await a.leave(pads[1])).slice(1), ['ACK']);
    const ja = await a.join(extra);
    assert.ok(ja.members.includes(b.id));
    const again = await a.request(['JOIN', C.padId()]);
    assert.deepEqual(again.slice(1, 3), ['ERROR', 'EBUSY']);
    a.close(); b.close();
});

T('the real netflux client sees the JOIN error as a rejected join', async () => {
    const net = await C.connect(srv.url);
    for (let i = 0; i < MAX_CH; i++) { await C.join(net, C.padId()); }
    let err = null;
    try { await C.join(net, C.padId()); } catch (e) { err = e; }
    assert.ok(err, 'join over the cap rejected');
    assert.equal(err.type, 'EBUSY');
    // a second netflux client is not affected
    const net2 = await C.connect(srv.url);
    const wc = await C.join(net2, C.padId());
    await C.withTimeout(wc.bcast('x'), 5000, 'bcast ACK');
    net.disconnect(); net2.disconnect();
});

T('pipelined HK requests beyond max_requests_in_flight: EBUSY for the excess, the rest answered', async () => {
    const a = await C.rawReady(srv.url);
    const b = await C.rawReady(srv.url);
    const N = MAX_REQ * 3;
    const sent = [];
    for (let i = 0; i < N; i++) {
        const id = C.txid();
        const seq = a.nextSeq();
        a.send([seq, 'MSG', HK, JSON.stringify([id, ['TEST_LUA_LATER', i]])]);
        sent.push({ seq, id, i });
    }
    // history requests are counted too: refused while the RPCs are pending
    const pad = C.padId();
    const hseq = C.hkSend(a, HK, ['GET_HISTORY', pad, {}]);
    // meanwhile another client is served
    const hb = await C.getHistory(b, HK, pad, {});
    assert.deepEqual(hb.reply.slice(1), ['ACK']);

    let answered = 0; let busy = 0;
    for (const s of sent) {
        const rep = await a.next(isReply(s.seq));
        if (rep[1] === 'ACK') {
            assert.ok(s.i < MAX_REQ, `request ${s.i} answered, within the cap`);
            answered++;
            const f = await a.next(f => C.isHkFrame(HK)(f) && JSON.parse(f[4])[0] === s.id, 5000, `answer ${s.i}`);
            assert.deepEqual(JSON.parse(f[4]), [s.id, null, s.i, null]);
        } else {
            assert.deepEqual(rep.slice(1), ['ERROR', 'EBUSY', null]);
            busy++;
        }
    }
    assert.equal(answered, MAX_REQ, 'the first MAX_REQ answered');
    assert.equal(busy, N - MAX_REQ);
    // the first MAX_REQ (in send order) were the answered ones
    const h = await a.next(isReply(hseq));
    assert.deepEqual(h.slice(1), ['ERROR', 'EBUSY', null]);
    // no answer for a refused request ever comes
    const refused = new Set(sent.slice(MAX_REQ).map(s => s.id));
    await a.none(f => C.isHkFrame(HK)(f) && refused.has(JSON.parse(f[4])[0]), 300, 'answer to a refused request');

    // answers freed the room: a history request and RPCs work again
    const ha = await C.getHistory(a, HK, pad, {});
    assert.deepEqual(ha.reply.slice(1), ['ACK']);
    for (let i = 0; i < MAX_REQ; i++) {
        const { ack, reply, txid } = await C.rawRpc(a, HK, ['TEST_LUA_LATER', i]);
        assert.deepEqual(ack.slice(1), ['ACK']);
        assert.deepEqual(reply, [txid, null, i, null]);
    }
    a.close(); b.close();
});
