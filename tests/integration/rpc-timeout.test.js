'use strict';
// An RPC handler that never answers (issue 12 item 7): the client is
// answered ETIMEDOUT after limits.rpc_timeout_ms (docs/operations.md §6)
// instead of waiting forever, and the server goes on answering.  The
// handler is a Lua script in a lua_dirs directory that returns nothing and
// never calls ctx:reply.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const { startServer, withLog, tmpDir } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');

const ROOT = tmpDir('cpsd-rpctimeout-');
let srv;

before(async () => {
    Fs.mkdirSync(Path.join(ROOT, 'lua'), { recursive: true });
    Fs.writeFileSync(Path.join(ROOT, 'lua', 'never.lua'),
        '-- answers nothing, ever\ncps.register_rpc("NEVER_ANSWERS", function(args, ctx) end)\n' +
        'cps.register_rpc("ANSWERS", function(args, ctx) return args end)\n');
    srv = await startServer({
        lua_dirs: [Path.join(ROOT, 'lua')], lua_scripts_add: ['never.lua'],
        limits: { rpc_timeout_ms: 300 },
    }, { dir: ROOT });
});
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
});

test('a handler that never answers: ETIMEDOUT, and the server answers the next call', { timeout: 60000 }, async () => {
    await withLog(() => srv, async () => {
        await C.waitFor(() => / ready \(/.test(srv.stderr()), 10000, 'cpsd ready');
        const r = await C.rawReady(srv.url);
        const hk = await R.learnHk(r);
        // two at once: each is answered, once
        const [a, b] = await Promise.all([
            C.rawRpc(r, hk, ['NEVER_ANSWERS', 1], { ms: 30000 }),
            C.rawRpc(r, hk, ['NEVER_ANSWERS', 2], { ms: 30000 }),
        ]);
        for (const { reply } of [a, b]) { assert.deepEqual(reply.slice(1, 3), ['ERROR', 'ETIMEDOUT'], C.short(reply)); }
        const { reply } = await C.rawRpc(r, hk, ['ANSWERS', 'x'], { ms: 30000 });
        assert.deepEqual(reply.slice(1, 3), [null, 'x'], C.short(reply));
        assert.match(srv.stderr(), /RPC NEVER_ANSWERS timed out/);
        r.close();
    })();
});
