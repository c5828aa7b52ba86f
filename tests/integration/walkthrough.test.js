'use strict';
// The README's plugin walkthroughs, exactly as written: the C plugin is
// extracted from README.md, compiled out of tree against the headers and
// pkg-config file that `cmake --install` puts under a prefix, and loaded
// with `plugins_add`; the Lua script is loaded with `lua_scripts_add`.
// Both commands are then called by a real client.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Os = require('node:os');
const Path = require('node:path');
const { execFileSync } = require('node:child_process');
const { startServer, withLog } = require('./lib/server');
const C = require('./lib/client');

const ROOT = Path.resolve(__dirname, '../..');
let srv; let tmp; let me; let HK;

// The fenced block that follows `<!-- walkthrough: NAME -->` in a README.
const walkthrough = (name, readme = 'README.md') => {
    const text = Fs.readFileSync(Path.join(ROOT, readme), 'utf8');
    const at = text.indexOf(`<!-- walkthrough: ${name} -->`);
    assert.ok(at >= 0, `README.md has the ${name} walkthrough`);
    const m = /```[a-z]*\n([\s\S]*?)```/.exec(text.slice(at));
    assert.ok(m, `a code block follows the ${name} marker`);
    return m[1];
};

before(withLog(() => srv, async () => {
    tmp = Fs.mkdtempSync(Path.join(Os.tmpdir(), 'cpsd-walkthrough-'));
    // the build tree of the binary under test ($CPSD_BUILD_DIR when CPSD_BIN
    // is a wrapper, e.g. valgrind's)
    const build = process.env.CPSD_BUILD_DIR
        || Path.dirname(Path.resolve(process.env.CPSD_BIN || Path.join(ROOT, 'build/cpsd')));
    const prefix = Path.join(tmp, 'prefix');
    execFileSync('cmake', ['--install', build, '--prefix', prefix], { stdio: 'pipe' });
    Fs.writeFileSync(Path.join(tmp, 'hello.c'), walkthrough('hello.c'));
    Fs.writeFileSync(Path.join(tmp, 'hello.lua'), walkthrough('hello.lua'));
    Fs.writeFileSync(Path.join(tmp, 'greet.lua'), walkthrough('greet.lua', 'lua/README.md'));
    const env = { ...process.env, PKG_CONFIG_PATH: Path.join(prefix, 'lib/pkgconfig') };
    const cflags = execFileSync('pkg-config', ['--cflags', 'cpsd'], { env }).toString().trim();
    // The README's command, with -Werror so a warning fails the test too.
    execFileSync('sh', ['-c', `cc -shared -fPIC -Wall -Wextra -Werror ${cflags} hello.c -o hello.so`],
        { cwd: tmp, env, stdio: 'pipe' });
    srv = await startServer({
        plugin_dirs: [tmp], plugins_add: ['hello'],
        lua_dirs: [tmp], lua_scripts_add: ['hello.lua', 'greet.lua'],
    });
    me = await C.rawReady(srv.url);
    const j = await me.join('0'.repeat(34));
    HK = j.members.find(id => id.length === 16);
    await me.leave('0'.repeat(34));
}));

after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
    if (tmp) { Fs.rmSync(tmp, { recursive: true, force: true }); }
});

const rpc = async (payload) => {
    const { reply, txid } = await C.rawRpc(me, HK, payload, { ms: 5000 });
    return { reply, txid };
};

test('the C walkthrough plugin answers HELLO', async () => {
    const { reply, txid } = await rpc(['HELLO', 'world']);
    assert.deepEqual(reply, [txid, null, 'hello, world', null]);
    const bad = await rpc(['HELLO', 42]);
    assert.deepEqual(bad.reply, [bad.txid, 'ERROR', 'EINVAL']);
});

test('the Lua walkthrough script answers HELLO_LUA', async () => {
    const { reply, txid } = await rpc(['HELLO_LUA', 'world']);
    assert.deepEqual(reply, [txid, null, 'hello, world', null]);
    const bad = await rpc(['HELLO_LUA', {}]);
    assert.deepEqual(bad.reply, [bad.txid, 'ERROR', 'EINVAL']);
});

test('the walkthrough of lua/README.md answers GREET', async () => {
    const { reply, txid } = await rpc(['GREET', 'Ada']);
    assert.deepEqual(reply, [txid, null, 'Hello, Ada!', null]);
    const bad = await rpc(['GREET', 42]);
    assert.deepEqual(bad.reply, [bad.txid, 'ERROR', 'EINVAL']);
});

test('the server says it loaded both', async () => {
    const log = srv.stderr();
    assert.match(log, /loaded plugin 'hello' 1\.0 \(ABI 2\.\d+\)/);   // the minor of the headers it was built with
    assert.match(log, /hello\.lua/);
    assert.match(log, /GREET registered/);
});

test('the unload hook of the Lua walkthrough runs at shutdown', async () => {
    await srv.stop();
    assert.match(srv.stderr(), /greet\.lua: greeted 1 time\(s\)/);
    srv = null;
});
