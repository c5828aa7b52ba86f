'use strict';
// The example plugins and scripts: not loaded by the default configuration
// (their commands and routes are absent), loaded by a file that adds them
// with plugins_add / lua_scripts_add (and then they answer).

const { test, before, after, describe } = require('node:test');
const assert = require('node:assert/strict');
const Http = require('node:http');
const Fs = require('node:fs');
const Path = require('node:path');
const { startServer, withLog, tmpDir, EXAMPLES } = require('./lib/server');
const C = require('./lib/client');

const request = (port, path, body, headers = {}) => new Promise((resolve, reject) => {
    const req = Http.request({ host: '127.0.0.1', port, path, method: body ? 'POST' : 'GET', headers }, (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { data += d; });
        res.on('end', () => resolve({ status: res.statusCode, body: data, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
});

// The history keeper's id, learnt as the web app does (the 34-zero channel).
const keeper = async (r) => {
    const j = await r.join('0'.repeat(34));
    await r.leave('0'.repeat(34));
    return j.members.find(id => id.length === 16);
};

const anon = async (r, hk, payload) => (await C.rawRpc(r, hk, payload, { ms: 5000 })).reply;

after(() => C.closeAll());

describe('default configuration: no examples', () => {
    let srv;
    before(withLog(() => srv, async () => { srv = await startServer({}, { single: true }); }));
    after(async () => { if (srv) { await srv.stop(); } });

    test('EXAMPLE_ECHO and EXAMPLE_UPPER are unknown commands', async () => {
        await srv.guard(async () => {
            const r = await C.rawReady(srv.url);
            const hk = await keeper(r);
            for (const cmd of ['EXAMPLE_ECHO', 'EXAMPLE_UPPER']) {
                const reply = await anon(r, hk, [cmd, 'x']);
                assert.deepEqual(reply.slice(1), ['ERROR', 'INVALID_ANON_RPC_COMMAND'], cmd);
            }
            r.close();
        })();
    });

    test('/example/echo is not served', async () => {
        await srv.guard(async () => {
            const res = await request(srv.port, '/example/echo');
            assert.equal(res.status, 404);
        })();
    });
});

describe('examples added by plugins_add and lua_scripts_add', () => {
    let srv;
    const ROOT = tmpDir('cpsd-examples-');
    const FILE = 'abcdefghijklmnopqrstuvwxyz0123456789';
    before(withLog(() => srv, async () => {
        Fs.mkdirSync(Path.join(ROOT, 'data', 'example'), { recursive: true });
        Fs.writeFileSync(Path.join(ROOT, 'data', 'example', 'f.txt'), FILE);
        srv = await startServer({ ...EXAMPLES }, { single: true, dir: ROOT });
    }));
    after(async () => { if (srv) { await srv.stop(); } Fs.rmSync(ROOT, { recursive: true, force: true }); });

    test('/example/file honours one byte range (206, 416), else the whole file', async () => {
        await srv.guard(async () => {
            let res = await request(srv.port, '/example/file/f.txt');
            assert.equal(res.status, 200);
            assert.equal(res.body, FILE);
            res = await request(srv.port, '/example/file/f.txt', undefined, { Range: 'bytes=2-5' });
            assert.equal(res.status, 206, res.body);
            assert.equal(res.body, 'cdef');
            assert.equal(res.headers['content-range'], `bytes 2-5/${FILE.length}`);
            res = await request(srv.port, '/example/file/f.txt', undefined, { Range: 'bytes=-3' });
            assert.equal(res.status, 206);
            assert.equal(res.body, '789');
            res = await request(srv.port, '/example/file/f.txt', undefined, { Range: 'bytes=100-' });
            assert.equal(res.status, 416);
            assert.equal(res.headers['content-range'], `bytes */${FILE.length}`);
            res = await request(srv.port, '/example/file/f.txt', undefined, { Range: 'bytes=5-2' });
            assert.equal(res.status, 200);          // inverted: ignored, the whole file
            assert.equal(res.body, FILE);
            res = await request(srv.port, '/example/file/nope.txt');
            assert.equal(res.status, 404);
        })();
    });

    test('the default plugins are still loaded next to the examples', async () => {
        // plugins load after the listener is up: wait for the "ready" line
        await C.waitFor(() => / ready \(/.test(srv.stderr()), 5000, 'cpsd ready');
        assert.match(srv.stderr(), /loaded plugin 'rpc-pin'/);
        for (const name of EXAMPLES.plugins_add) {
            assert.match(srv.stderr(), new RegExp(`loaded plugin '${name}'`), name);
        }
        for (const name of EXAMPLES.lua_scripts_add) {
            assert.match(srv.stderr(), new RegExp(`loaded Lua script \\S*${name}`), name);
        }
    });

    test('EXAMPLE_ECHO (C) and EXAMPLE_UPPER (Lua) answer', async () => {
        await srv.guard(async () => {
            const r = await C.rawReady(srv.url);
            const hk = await keeper(r);
            let res = await C.rawRpc(r, hk, ['EXAMPLE_ECHO', { a: [1, 'b'] }], { ms: 5000 });
            assert.deepEqual(res.reply, [res.txid, null, { a: [1, 'b'] }, null]);
            res = await C.rawRpc(r, hk, ['EXAMPLE_UPPER', 'quiet'], { ms: 5000 });
            assert.deepEqual(res.reply, [res.txid, null, 'QUIET', null]);
            r.close();
        })();
    });

    test('/example/echo (C route) describes the request', async () => {
        await srv.guard(async () => {
            const res = await request(srv.port, '/example/echo/x?y=1', 'hi');
            assert.equal(res.status, 200, res.body);
            const j = JSON.parse(res.body);
            assert.equal(j.method, 'POST');
            assert.equal(j.path, '/example/echo/x');
            assert.equal(j.query, 'y=1');
            assert.equal(j.body, 'hi');
        })();
    });
});
