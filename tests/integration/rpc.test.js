'use strict';
// Anonymous RPC through the history keeper (docs/protocol/rpc.md §1-§2): built-in example
// commands (C: EXAMPLE_ECHO, Lua: EXAMPLE_UPPER), envelope errors, and Lua
// commands from fixtures/failing.lua that fail, loop forever or reply late.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, withLog, FIXTURES_DIR } = require('./lib/server');
const C = require('./lib/client');

let srv;
const T = (name, fn, opts = {}) => test(name, { timeout: 30000, ...opts }, (t) => srv.guard(fn)(t));

const isArr = Array.isArray;
let HK; let me; let other;

before(withLog(() => srv, async () => {
    // the examples are not loaded by default: add the C one (EXAMPLE_ECHO)
    // and the Lua one (EXAMPLE_UPPER), next to the test fixture
    srv = await startServer({
        lua_dirs: [FIXTURES_DIR],
        plugins_add: ['example_rpc'],
        lua_scripts_add: ['examples/example_rpc.lua', 'failing.lua'],
    });
    me = await C.rawReady(srv.url);
    // learn the history keeper id the way the web app does (34-zero channel)
    const j = await me.join('0'.repeat(34));
    HK = j.members.find(id => id.length === 16);
    await me.leave('0'.repeat(34));
    other = await C.rawReady(srv.url);
}));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
});

// One anonymous RPC; checks the ACK and the reply framing, returns the reply.
const rpc = async (payload, { r = me, ms = 5000 } = {}) => {
    const res = await C.rawRpc(r, HK, payload, { ms });
    assert.deepEqual(res.ack.slice(1), ['ACK'], `ACK of ${C.short(payload)}: ${C.short(res.ack)}`);
    assert.equal(res.ack.length, 2);
    const f = res.frame;
    assert.deepEqual(f.slice(0, 4), [0, HK, 'MSG', r.id], `reply frame ${C.short(f)}`);
    assert.ok(f.length === 5 || (f.length === 6 && (f[5] === null || [1, 2, 3].includes(f[5]))), `reply frame shape ${C.short(f)}`);
    return res;
};

const stillServing = async (what) => {
    assert.ok(srv.alive(), `server alive after ${what}`);
    const p = await other.ping(3000);
    assert.deepEqual(p.slice(1), ['ACK'], `another client's PING after ${what}`);
    const { reply, txid } = await rpc(['EXAMPLE_ECHO', { after: what }]);
    assert.deepEqual(reply, [txid, null, { after: what }, null], `EXAMPLE_ECHO after ${what}`);
};

T('the history keeper id has 16 characters', async () => {
    assert.equal(typeof HK, 'string');
    assert.equal(HK.length, 16);
});

T('EXAMPLE_ECHO returns its argument verbatim', async () => {
    const values = [
        { a: 1 }, 'str', 42, 0, -1.5, true, false, [1, 2, 3], [], {},
        { nested: { list: [1, 'two', null, { three: 3 }] }, unicode: 'ünïcødé ✓ 😀', quote: '"\\' },
    ];
    for (const v of values) {
        const { reply, txid } = await rpc(['EXAMPLE_ECHO', v]);
        assert.deepEqual(reply, [txid, null, v, null], `EXAMPLE_ECHO ${C.short(v)}`);
    }
});

T('EXAMPLE_ECHO with null is an EINVAL error', async () => {
    const { reply, txid } = await rpc(['EXAMPLE_ECHO', null]);
    assert.deepEqual(reply, [txid, 'ERROR', 'EINVAL']);
});

T('EXAMPLE_UPPER upper-cases a string, EINVAL otherwise', async () => {
    for (const [input, out] of [['Hello, World 1', 'HELLO, WORLD 1'], ['', ''], ['abc-xyz_09', 'ABC-XYZ_09']]) {
        const { reply, txid } = await rpc(['EXAMPLE_UPPER', input]);
        assert.deepEqual(reply, [txid, null, out, null], `EXAMPLE_UPPER ${JSON.stringify(input)}`);
    }
    for (const bad of [42, null, {}, ['a'], true]) {
        const { reply, txid } = await rpc(['EXAMPLE_UPPER', bad]);
        assert.deepEqual(reply, [txid, 'ERROR', 'EINVAL'], `EXAMPLE_UPPER ${C.short(bad)}`);
    }
});

T('envelope errors: unknown command, wrong payload length, empty payload', async () => {
    let res = await rpc(['NO_SUCH_COMMAND', 1]);
    assert.deepEqual(res.reply, [res.txid, 'ERROR', 'INVALID_ANON_RPC_COMMAND']);
    res = await rpc(['EXAMPLE_ECHO', 1, 2]);
    assert.deepEqual(res.reply, [res.txid, 'ERROR', 'INVALID_ARG_FORMAT'], 'payload of 3 elements');
    res = await rpc([]);
    assert.deepEqual(res.reply, [res.txid, 'ERROR', 'INSUFFICIENT_ARGS'], 'empty payload');
    res = await rpc('EXAMPLE_ECHO');
    assert.deepEqual(res.reply, [res.txid, 'ERROR', 'INVALID_ARG_FORMAT'], 'payload not an array');
    res = await rpc(['EXAMPLE_ECHO']);
    assert.deepEqual(res.reply, [res.txid, 'ERROR', 'INVALID_ARG_FORMAT'], 'payload of 1 element');
    await stillServing('envelope errors');
});

T('several RPCs in flight are all answered with their own txid', async () => {
    const N = 50;
    const jobs = [];
    for (let i = 0; i < N; i++) {
        const cmd = i % 2 ? 'EXAMPLE_ECHO' : 'EXAMPLE_UPPER';
        const arg = i % 2 ? { i } : `item${i}`;
        jobs.push(rpc([cmd, arg], { ms: 10000 }).then(({ reply, txid }) => {
            assert.deepEqual(reply, [txid, null, i % 2 ? { i } : `ITEM${i}`, null]);
        }));
    }
    await Promise.all(jobs);
});

T('a Lua command that raises an error returns [txid,"ERROR",code]', async () => {
    const { reply, txid } = await rpc(['TEST_LUA_FAIL', { x: 1 }]);
    assert.equal(reply.length, 3, `reply ${C.short(reply)}`);
    assert.equal(reply[0], txid);
    assert.equal(reply[1], 'ERROR');
    assert.equal(typeof reply[2], 'string');
    assert.ok(reply[2].length > 0, 'non-empty error code');
    await stillServing('TEST_LUA_FAIL');
});

T('a Lua command that never returns is interrupted and returns [txid,"ERROR",code]', async () => {
    const { reply, txid } = await rpc(['TEST_LUA_LOOP', null], { ms: 20000 });
    assert.equal(reply.length, 3, `reply ${C.short(reply)}`);
    assert.equal(reply[0], txid);
    assert.equal(reply[1], 'ERROR');
    assert.equal(typeof reply[2], 'string');
    assert.ok(reply[2].length > 0, 'non-empty error code');
    await stillServing('TEST_LUA_LOOP');
    // and a second time, to make sure the Lua state is still usable
    const again = await rpc(['TEST_LUA_LOOP', 1], { ms: 20000 });
    assert.equal(again.reply[1], 'ERROR');
    const up = await rpc(['EXAMPLE_UPPER', 'still ok']);
    assert.deepEqual(up.reply, [up.txid, null, 'STILL OK', null], 'Lua commands still work');
}, { timeout: 60000 });

T('an asynchronous Lua command replies later from a timer', async () => {
    const args = { later: [1, 'two', { three: 3 }] };
    const t0 = Date.now();
    const { reply, txid } = await rpc(['TEST_LUA_LATER', args]);
    const dt = Date.now() - t0;
    assert.deepEqual(reply, [txid, null, args, null]);
    assert.ok(dt >= 40, `reply came after the 50 ms timer (${dt} ms)`);
    // several at once, from two connections
    const jobs = [];
    for (let i = 0; i < 10; i++) {
        jobs.push(rpc(['TEST_LUA_LATER', i], { r: i % 2 ? me : other }).then(({ reply: rp, txid: tx }) => {
            assert.deepEqual(rp, [tx, null, i, null]);
        }));
    }
    await Promise.all(jobs);
});

T('RPC through the real netflux client (sendto the history keeper)', async () => {
    const net = await C.connect(srv.url);
    const wc = await C.join(net, C.ephemeralId());
    const hk = wc.members.find(id => id.length === 16);
    assert.equal(hk, HK);
    const got = [];
    net.on('message', (msg, sender) => got.push({ msg, sender }));
    const txid = C.txid();
    await C.withTimeout(net.sendto(hk, JSON.stringify([txid, ['EXAMPLE_ECHO', { a: 1 }]])), 5000, 'ACK of the RPC');
    await C.waitFor(() => got.find(g => { try { return JSON.parse(g.msg)[0] === txid; } catch (e) { return false; } }), 5000, 'RPC reply');
    const g = got.find(x => JSON.parse(x.msg)[0] === txid);
    assert.equal(g.sender, hk);
    assert.deepEqual(JSON.parse(g.msg), [txid, null, { a: 1 }, null]);
    net.close();
});

T('server exits 0 on SIGTERM', async () => {
    C.closeAll();
    const code = await srv.stop();
    assert.equal(code, 0, 'exit code after SIGTERM');
});
