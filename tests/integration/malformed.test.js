'use strict';
// Malformed frames, kind by kind, as in the table of docs/protocol/netflux.md
// §1.1: what cpsd does with each (close with which code, answer, or ignore),
// and that a real netflux-websocket client on another connection, in the
// same pad, is never affected.  Exact behaviour, not "closed or ignored":
// a change here is a change to the documented table.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, withLog } = require('./lib/server');
const C = require('./lib/client');

const MAX_FRAME = 64 * 1024;
let srv;
let net;          // a real client (netflux-websocket) in pad G
let wc;
const G = C.padId();
const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv.guard(fn)(t));
const isArr = Array.isArray;

before(withLog(() => srv, async () => {
    srv = await startServer({ limits: { max_frame: MAX_FRAME } });
    net = await C.connect(srv.url);
    wc = await C.join(net, G);
}));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
});

// A fresh raw connection in G sends `send(r)`; returns it with its close
// info (null: still open after 300 ms) and every reply it got.
const attempt = async (send) => {
    const r = await C.rawReady(srv.url);
    await r.join(G);
    r.clear();
    send(r);
    const info = await Promise.race([r.closed, C.sleep(300).then(() => null)]);
    return { r, info, replies: r.frames.filter(f => isArr(f) && f[0] !== 0) };
};

// The real client still works: its bcast is ACKed and a raw peer sees it.
const realClientFine = async () => {
    await C.withTimeout(wc.bcast(`still-here|${C.hex(8)}`), 5000, 'bcast of the real client');
};

const closes = (code) => async (text) => {
    const { info, replies } = await attempt((r) => r.sendText(text));
    assert.ok(info, `${C.short(text, 60)}: closed`);
    assert.equal(info.code, code, `${C.short(text, 60)}: close code ${C.short(info)}`);
    if (code === 1003) { assert.equal(info.reason, 'BAD_MESSAGE'); }
    assert.deepEqual(replies, [], 'no reply before the close');
};

const answered = (expect) => async (frame) => {
    const { r, info, replies } = await attempt((x) => x.sendText(JSON.stringify(frame)));
    assert.equal(info, null, `${C.short(frame)}: not closed (${C.short(info)})`);
    assert.deepEqual(replies, expect === null ? [] : [expect(frame)], `${C.short(frame)}: replies`);
    assert.deepEqual((await r.ping()).slice(1), ['ACK'], 'usable afterwards');
    r.close();
};

T('not JSON: closed 1003 BAD_MESSAGE (chainpad-server closes too)', async () => {
    for (const t of ['hello', '[1,"PING"', '{"a":', '']) { await closes(1003)(t); }
    await realClientFine();
});

T('JSON that is not an array: closed 1003 (chainpad-server throws and closes)', async () => {
    for (const t of ['{}', '42', '"x"', 'null', 'true']) { await closes(1003)(t); }
    await realClientFine();
});

T('arrays of fewer than two values and unknown commands: ignored, still usable (as chainpad-server)', async () => {
    for (const f of [[], [1], [1, 'FOO', G], [1, 'IDENT'], [1, 'ping']]) { await answered(null)(f); }
    await realClientFine();
});

T('wrong arity: JOIN/LEAVE/MSG without their channel or content are EINVAL; extra values are ignored', async () => {
    const einval = (f) => [f[0], 'ERROR', 'EINVAL', null];
    for (const f of [[1, 'JOIN'], [1, 'JOIN', null], [1, 'LEAVE'], [1, 'MSG', G], [1, 'MSG']]) { await answered(einval)(f); }
    await answered((f) => [f[0], 'ACK'])([7, 'PING', 'extra', 'values']);
    await realClientFine();
});

T('bad seq: not a number or negative is ignored; any other number is echoed', async () => {
    for (const f of [['1', 'PING'], [null, 'PING'], [{}, 'PING'], [-1, 'PING']]) { await answered(null)(f); }
    for (const s of [1.5, 0.25, 1e6, 2 ** 40]) { await answered((f) => [f[0], 'ACK'])([s, 'PING']); }
    await realClientFine();
});

T('a binary frame: closed 1003 (text only)', async () => {
    const { info } = await attempt((r) => r.sendBuffer(Buffer.from(JSON.stringify([1, 'PING'])), true));
    assert.ok(info, 'closed');
    assert.equal(info.code, 1003, C.short(info));
    await realClientFine();
});

T('over-long: a frame over limits.max_frame is closed 1009; too many values 1003', async () => {
    await closes(1009)(JSON.stringify([1, 'MSG', G, 'A'.repeat(2 * MAX_FRAME)]));
    await closes(1003)(JSON.stringify([1, 'MSG', G, 'x', ...new Array(80).fill(0)]));
    await realClientFine();
});

T('invalid UTF-8 in a text frame: closed 1007', async () => {
    const { info } = await attempt((r) => r.sendBuffer(Buffer.from([0x5b, 0x31, 0x2c, 0x22, 0xc3, 0x28, 0x22, 0x5d]), false));
    assert.ok(info, 'closed');
    assert.equal(info.code, 1007, C.short(info));
    await realClientFine();
});

T('numbers jansson cannot hold and lone surrogate escapes: closed 1003', async () => {
    for (const t of ['[1e400,"PING"]', '[1234567890123456789012345,"PING"]', '[1,"MSG","' + G + '","\\ud800"]']) {
        await closes(1003)(t);
    }
    await realClientFine();
});
