'use strict';
// Bad input on one connection must affect only that connection (docs/protocol/netflux.md
// §1, §3, §7.3, §12).  After every case a well-behaved client, connected the
// whole time, must still get PING -> ACK and have its channel MSG relayed.

const { test, before, beforeEach, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, withLog } = require('./lib/server');
const C = require('./lib/client');

let srv;
const servers = [];
const T = (name, fn, opts = {}) => test(name, { timeout: 120000, ...opts }, (t) => srv.guard(fn)(t));

const MAX_FRAME = 1048576;
const isArr = Array.isArray;

let good; let peer; let G; let HK;

// A server with a well-behaved pair (good, peer) in channel G.  If a case
// kills the server, the failure is recorded and a fresh one is started so
// that the remaining cases still run.
const setup = async () => {
    srv = await startServer({ limits: { max_frame: MAX_FRAME } });
    servers.push(srv);
    G = C.padId();
    good = await C.rawReady(srv.url);
    peer = await C.rawReady(srv.url);
    const j = await good.join(G);
    HK = j.members.find(id => id.length === 16);
    await peer.join(G);
    await good.next(f => isArr(f) && f[2] === 'JOIN' && f[1] === peer.id, 5000, 'JOIN of peer');
};
const ensureServer = async () => {
    if (srv && srv.alive() && good.isOpen() && peer.isOpen()) { return; }
    if (srv) { C.closeAll(); await srv.stop(); }
    await setup();
};

before(withLog(() => srv, setup));
beforeEach(withLog(() => srv, ensureServer));
after(async () => {
    C.closeAll();
    for (const s of servers) { await s.stop(); }
});

let healthN = 0;
// The well-behaved pair still works and the server is alive.
const healthy = async (what) => {
    if (!good.isOpen() || !peer.isOpen()) { await C.sleep(200); }   // let a process exit be noticed
    assert.ok(srv.alive(), `server still running after ${what} (exit: ${C.short(srv.exitInfo())})`);
    assert.ok(good.isOpen(), `good client still connected after ${what}`);
    assert.ok(peer.isOpen(), `peer still connected after ${what}`);
    const p = await good.ping(3000);
    assert.deepEqual(p.slice(1), ['ACK'], `PING after ${what}`);
    const content = `health|${++healthN}`;
    const ack = await good.msg(G, content, 3000);
    assert.deepEqual(ack.slice(1), ['ACK'], `MSG ACK after ${what}`);
    const f = await peer.next(x => isArr(x) && x[2] === 'MSG' && x[4] === content, 3000, `relay after ${what}`);
    assert.equal(f[1], good.id);
};

// Run one case, then check health.  Failures are collected (with the
// server's last words if it died) instead of stopping the loop; a dead
// server is replaced.  Call `report(failures)` at the end of the test.
const runCase = async (failures, what, fn) => {
    try {
        await fn();
        await healthy(what);
    } catch (e) {
        let msg = `${what}: ${e.message.split('\n--- cpsd')[0]}`;
        if (!srv.alive()) {
            const tail = srv.stderr().split('\n').slice(-6).join('\n');
            msg += `\n    server died: ${C.short(srv.exitInfo())}; last output:\n${tail}`;
        }
        failures.push(msg);
        C.closeAll();
        await srv.stop();
        await setup();
    }
};
const report = (failures) => {
    assert.equal(failures.length, 0, `${failures.length} failing case(s):\n- ${failures.join('\n- ')}`);
};

// Wait until `r` is closed or `ms` passed; returns the close info or null.
const closedWithin = (r, ms) => Promise.race([r.closed, C.sleep(ms).then(() => null)]);

// Send one bad frame (text) on a fresh connection; the connection may be
// closed or the frame ignored/answered.  Returns the client.
const sendBad = async (text, { waitMs = 150 } = {}) => {
    const bad = await C.rawReady(srv.url);
    bad.sendText(text);
    await closedWithin(bad, waitMs);
    return bad;
};

T('non-JSON text frames', async () => {
    const failures = [];
    for (const text of ['hello', '[1,"PING"', '', ' ', '[1,"PING"]]', '\u0000', '{"a":']) {
        await runCase(failures, `non-JSON ${JSON.stringify(text)}`, async () => {
            const bad = await sendBad(text);
            // whatever it did (close or ignore), the frame got no reply
            assert.ok(!bad.frames.some(f => isArr(f) && f[0] !== 0), `reply: ${C.short(bad.frames)}`);
            bad.terminate();
        });
    }
    report(failures);
});

T('JSON that is not an array, and the empty array', async () => {
    const failures = [];
    for (const text of ['{}', '42', '"x"', 'null', 'true', '[]', '[[]]', '{"0":1,"1":"PING"}']) {
        await runCase(failures, `frame ${text}`, async () => {
            const bad = await sendBad(text);
            bad.terminate();
        });
    }
    report(failures);
});

T('wrong types in every position', async () => {
    const chan = C.padId();
    const cases = [
        ['1', 'PING'], [{}, 'PING'], [-1, 'PING'], [1.5, 'PING'], [null, 'PING'], [[1], 'PING'], [true, 'PING'],
        ['1', 'JOIN', chan], [-3, 'JOIN', chan], [{}, 'MSG', chan, 'x'],
        [1, 5], [1, null], [1, {}], [1, []], [1], [1, ''], [1, 'ping'],
        [1, 'MSG'], [1, 'MSG', chan], [1, 'MSG', null, 'x'], [1, 'MSG', 42, 'x'], [1, 'MSG', {}, 'x'],
        [1, 'MSG', '', 'x'], [1, 'MSG', 'x'.repeat(100000), 'x'], [1, 'MSG', 'HK'],
        [1, 'LEAVE'], [1, 'LEAVE', null], [1, 'LEAVE', 42], [1, 'LEAVE', {}], [1, 'LEAVE', ''],
        [1, 'LEAVE', 'x'.repeat(100000)], [1, 'LEAVE', C.hex(8)],
        [1, 'PING', 'extra', 'elements'],
        [0, '', 'PONG'], [0, '', 'PONG', 'x', 'y'], [0, 5, 'PONG', 1],
    ];
    const failures = [];
    for (const c0 of cases) {
        const c = c0.map(x => x === 'HK' ? HK : x);
        await runCase(failures, `frame ${C.short(c, 80)}`, async () => {
            const bad = await sendBad(JSON.stringify(c));
            if (bad.isOpen()) {
                // the connection is either closed or still usable
                const p = await bad.ping(3000).catch(e => e);
                if (!(p instanceof Error)) { assert.deepEqual(p.slice(1), ['ACK'], 'PING afterwards'); }
                else { assert.ok(!bad.isOpen(), `no PING reply on an open connection: ${p.message}`); }
            }
            bad.terminate();
        });
    }
    report(failures);
});

T('JOIN with a missing or non-string channel is answered [seq,"ERROR","EINVAL",null]', async () => {
    const cases = [[], [42], [null], [['a']], [{}], [{ id: C.padId() }], [true]];
    const failures = [];
    for (const args of cases) {
        await runCase(failures, `JOIN ${C.short(args)}`, async () => {
            const bad = await C.rawReady(srv.url);
            const reply = await bad.request(['JOIN', ...args], 3000);
            assert.deepEqual(reply.slice(1), ['ERROR', 'EINVAL', null], `reply ${C.short(reply)}`);
            const p = await bad.ping(3000);
            assert.deepEqual(p.slice(1), ['ACK'], 'connection usable after the refused JOIN');
            await bad.none(f => isArr(f) && f[0] === 0 && f[2] === 'JOIN', 100, 'JOIN event after a refused JOIN');
            bad.close();
        });
    }
    report(failures);
});

T('JOIN with a channel id of the wrong length or alphabet is answered EINVAL', async () => {
    const ids = [
        C.padId().toUpperCase(),
        C.padId().replace(/^./, 'A'),
        C.hex(8),                      // 16 chars, like the history keeper
        'HK',
        C.hex(16).slice(0, 31),
        C.hex(18).slice(0, 35),
        C.hex(24),                     // 48: blob id, not a channel
        'g'.repeat(32),
        'zz' + C.hex(15),
        C.hex(16).slice(0, 30) + ' x',
        '../' + C.hex(16).slice(0, 29),
        '',
        'a'.repeat(100 * 1024),
    ];
    const failures = [];
    for (const id0 of ids) {
        const id = id0 === 'HK' ? HK : id0;
        await runCase(failures, `JOIN "${C.short(id, 60)}"`, async () => {
            const bad = await C.rawReady(srv.url);
            const reply = await bad.request(['JOIN', id], 3000);
            assert.deepEqual(reply.slice(1), ['ERROR', 'EINVAL', null], `reply ${C.short(reply)}`);
            const p = await bad.ping(3000);
            assert.deepEqual(p.slice(1), ['ACK'], 'connection usable after the refused JOIN');
            await bad.none(f => isArr(f) && f[0] === 0 && f[2] === 'JOIN', 100, 'JOIN event after a refused JOIN');
            bad.close();
        });
    }
    report(failures);
});

T('unknown commands and server-only verbs get no reply and the connection stays usable', async () => {
    const cmds = [
        ['FOO'], ['IDENT'], ['IDENT', C.padId()], ['ACK'], ['JACK', 'G'], ['ERROR', 'x'],
        ['GET_HISTORY', 'G'], ['PONG', 1], ['join', 'G'], ['Ping'], ['MSGX', 'G', 'x'],
    ];
    const failures = [];
    for (const c0 of cmds) {
        const c = c0.map(x => x === 'G' ? G : x);
        await runCase(failures, `command ${C.short(c)}`, async () => {
            const bad = await C.rawReady(srv.url);
            const seq = bad.nextSeq();
            bad.send([seq, ...c]);
            await bad.none(f => isArr(f) && f[0] === seq, 300, 'reply');
            assert.ok(bad.isOpen(), `connection closed (${C.short(bad.closeInfo)})`);
            const p = await bad.ping(3000);
            assert.deepEqual(p.slice(1), ['ACK'], 'PING afterwards');
            bad.close();
        });
    }
    report(failures);
});

T('MSG with non-string content is not relayed', async () => {
    const failures = [];
    for (const content of [42, null, {}, [], ['x'], true]) {
        await runCase(failures, `MSG content ${C.short(content)}`, async () => {
            const bad = await C.rawReady(srv.url);
            await bad.join(G);
            await peer.next(f => isArr(f) && f[2] === 'JOIN' && f[1] === bad.id, 5000, 'JOIN of bad at peer');
            bad.send([bad.nextSeq(), 'MSG', G, content]);
            // and as a direct message
            bad.send([bad.nextSeq(), 'MSG', peer.id, content]);
            await closedWithin(bad, 200);
            await peer.none(f => isArr(f) && f[2] === 'MSG' && f[1] === bad.id, 200, 'relay of non-string content');
            bad.terminate();
        });
    }
    report(failures);
});

T('invalid UTF-8 in a text frame closes that connection with 1007', async () => {
    const bad = await C.rawReady(srv.url);
    await bad.join(G);
    bad.sendBuffer(Buffer.from([0xC3, 0x28]), false);
    const info = await C.withTimeout(bad.closed, 5000, 'close after invalid UTF-8');
    assert.equal(info.code, 1007, `close code ${C.short(info)}`);
    // the bytes wrapped in a JSON MSG: not relayed either
    const bad2 = await C.rawReady(srv.url);
    await bad2.join(G);
    const pre = Buffer.from(`[${bad2.nextSeq()},"MSG","${G}","`);
    bad2.sendBuffer(Buffer.concat([pre, Buffer.from([0xff, 0xfe, 0xC3, 0x28]), Buffer.from('"]')]), false);
    const info2 = await C.withTimeout(bad2.closed, 5000, 'close after invalid UTF-8 in MSG');
    assert.equal(info2.code, 1007, `close code ${C.short(info2)}`);
    await peer.none(f => isArr(f) && f[2] === 'MSG' && (f[1] === bad.id || f[1] === bad2.id), 200, 'relay of invalid UTF-8');
    await healthy('invalid UTF-8');
});

T('a frame larger than limits.max_frame closes that connection with 1009', async () => {
    const bad = await C.rawReady(srv.url);
    await bad.join(G);
    const big = 'A'.repeat(2 * MAX_FRAME);
    bad.send([bad.nextSeq(), 'MSG', G, big]);
    const info = await C.withTimeout(bad.closed, 10000, 'close after an oversized frame');
    assert.equal(info.code, 1009, `close code ${C.short(info)} (client errors: ${bad.errors.map(e => e.message).join('; ')})`);
    await peer.none(f => isArr(f) && f[2] === 'MSG' && f[1] === bad.id, 300, 'relay of the oversized frame');
    // just below the message limit is fine: 7/8 of limits.max_send_queue,
    // here MAX_FRAME (netflux.md §12; limits.test.js covers the limit itself)
    const ok = await C.rawReady(srv.url);
    await ok.join(G);
    const content = 'B'.repeat(MAX_FRAME - MAX_FRAME / 8);
    const ack = await ok.msg(G, content, 10000);
    assert.deepEqual(ack.slice(1), ['ACK'], 'a frame below the limit is accepted');
    const f = await peer.next(x => isArr(x) && x[2] === 'MSG' && x[1] === ok.id, 10000, 'relay of the large frame');
    assert.equal(f[4].length, content.length);
    ok.close();
    await healthy('oversized frame');
});

T('malformed content for the history keeper does no harm', async () => {
    assert.equal(typeof HK, 'string');
    const contents = [
        'not json', '{}', '42', '[]', '["tx"]', '["tx", 5]', '["tx", []]',
        'true', 'null', '"str"', '[null]', '["tx", {}]', '["tx", [1,2,3,4,5,6]]',
        '["GET_HISTORY"]', '["GET_HISTORY", 5]', '["GET_HISTORY", "zz"]', '["GET_HISTORY_RANGE", null, 5]',
        '["GET_FULL_HISTORY", {}]', '["tx", [null, null]]', '["tx", [5, 5]]',
    ];
    const failures = [];
    for (const content of contents) {
        await runCase(failures, `HK content ${content}`, async () => {
            const bad = await C.rawReady(srv.url);
            const seq = bad.nextSeq();
            bad.send([seq, 'MSG', HK, content]);
            // acceptable: no reply, an ERROR, or an ACK (possibly followed by an error)
            const reply = await bad.next(f => isArr(f) && f[0] === seq, 500, 'reply').catch(() => null);
            if (reply) {
                assert.ok(reply[1] === 'ACK' || reply[1] === 'ERROR', `reply ${C.short(reply)}`);
            }
            await C.sleep(100);
            // a direct message from the HK is an error (RPC error or history error object)
            for (const f of bad.log) {
                if (!(isArr(f) && f[0] === 0 && f[2] === 'MSG')) { continue; }
                assert.equal(f[1], HK, `unexpected direct message ${C.short(f)}`);
                const p = JSON.parse(f[4]);
                const isErr = (isArr(p) && p[1] === 'ERROR') ||
                    (p && typeof p === 'object' && !isArr(p) && (p.error || p.state === 1 || p.channel));
                assert.ok(isErr, `HK answer is not an error: ${C.short(f)}`);
            }
            bad.close();
        });
    }
    report(failures);
});

T('after all of that the server still accepts new clients', async () => {
    const a = await C.rawReady(srv.url);
    const j = await a.join(C.padId());
    assert.ok(j.members.includes(a.id));
    a.close();
    await healthy('everything');
});

T('server exits 0 on SIGTERM', async () => {
    C.closeAll();
    const code = await srv.stop();
    assert.equal(code, 0, 'exit code after SIGTERM');
});
