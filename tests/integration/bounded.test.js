'use strict';
// Work an unauthenticated or anonymous caller can make the server do is
// bounded (issue 12 item 4): a GET_MULTIPLE_FILE_SIZE with 10,000 ids keeps
// at most a few size queries in flight (docs/protocol/rpc.md §5), so other
// clients' RPCs and pad messages are answered meanwhile, and the big call
// still gets its full answer in request order.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, withLog } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');

let srv;
let HK;
const T = (name, fn, opts = {}) => test(name, { timeout: 90000, ...opts }, (t) => srv.guard(fn)(t));

before(withLog(() => srv, async () => {
    srv = await startServer({});
    const r = await C.rawReady(srv.url);
    HK = await R.learnHk(r);
    r.close();
}));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
});

const timed = async (p) => { const t0 = Date.now(); const v = await p; return [v, Date.now() - t0]; };

T('GET_MULTIPLE_FILE_SIZE with 10,000 ids does not starve other clients', async () => {
    const big = await C.rawReady(srv.url);
    const other = await C.rawReady(srv.url);
    // a pad with content, so that some answers are not 0
    const P = C.padId();
    await other.join(P);
    const h = await C.getHistory(other, HK, P, { txid: 'create', metadata: {} });
    assert.deepEqual(h.end, { state: 1, channel: P, txid: 'create' });
    assert.deepEqual((await other.msg(P, 'x'.repeat(100))).slice(1), ['ACK']);
    const [[sizeP]] = await Promise.all([R.anon(other, HK, 'GET_FILE_SIZE', P)]);
    assert.ok(sizeP > 0);

    const ids = [];
    for (let i = 0; i < 10000; i++) { ids.push(i === 5000 ? P : C.padId()); }
    let bigDone = false;
    const bigCall = timed(R.anonRaw(big, HK, 'GET_MULTIPLE_FILE_SIZE', ids, { ms: 80000 }).finally(() => { bigDone = true; }));
    await C.sleep(50);      // the big call is being worked on
    const keys = R.keyPair();
    const rpc = R.client(other, HK, keys);
    for (let i = 0; i < 5; i++) {
        const [[s], ms1] = await timed(R.anon(other, HK, 'GET_FILE_SIZE', P));
        assert.ok(s >= sizeP, `GET_FILE_SIZE ${s}`);
        const [ack, ms2] = await timed(other.msg(P, 'y'.repeat(100)));
        assert.deepEqual(ack.slice(1), ['ACK'], `pad message ${C.short(ack)}`);
        const [cookie, ms3] = await timed(rpc.call('COOKIE', ''));
        assert.ok(Array.isArray(cookie));
        assert.ok(ms1 < 2000 && ms2 < 2000 && ms3 < 2000, `answered promptly: ${ms1} ${ms2} ${ms3} ms`);
    }
    const overlapped = !bigDone;
    const [{ reply, txid }, msBig] = await bigCall;
    console.log(`# the big call took ${msBig} ms; others were answered ${overlapped ? 'while it ran' : 'after it ended'}`);
    assert.equal(reply[0], txid);
    assert.equal(reply[1], null, `full answer, not an error: ${C.short(reply)} after ${msBig} ms`);
    const m = reply[2];
    assert.deepEqual(Object.keys(m), ids, 'one entry per id, in request order');
    assert.ok(m[P] >= sizeP, `the pad's size ${m[P]}`);
    assert.equal(Object.values(m).filter(v => v === 0).length, 9999);
    big.close(); other.close();
});

T('GET_MULTIPLE_FILE_SIZE and GET_DELETED_PADS: more than 10,000 ids is INVALID_LIST', async () => {
    const r = await C.rawReady(srv.url);
    const ids = [];
    for (let i = 0; i < 10001; i++) { ids.push(C.padId()); }
    for (const cmd of ['GET_MULTIPLE_FILE_SIZE', 'GET_DELETED_PADS']) {
        const { reply } = await R.anonRaw(r, HK, cmd, ids, { ms: 20000 });
        assert.deepEqual(reply.slice(1), ['ERROR', 'INVALID_LIST'], `${cmd}: ${C.short(reply)}`);
    }
    const d = await R.anon(r, HK, 'GET_DELETED_PADS', ids.slice(0, 300), { ms: 20000 });
    assert.deepEqual(d[0], ids.slice(0, 300), 'unknown pads are deleted, in request order');
    r.close();
});
