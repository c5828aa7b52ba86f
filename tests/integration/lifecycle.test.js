'use strict';
// The cpsd program itself: command line, configuration checking, clean
// shutdown on SIGTERM, and a port that is already taken.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const { startServer, runCpsd, renderConfig, tmpDir } = require('./lib/server');
const C = require('./lib/client');

const servers = [];
const dirs = [];
after(async () => {
    C.closeAll();
    for (const s of servers) { await s.stop(); }
    for (const d of dirs) { Fs.rmSync(d, { recursive: true, force: true }); }
});

const writeFile = (name, text) => {
    const dir = tmpDir('cpsd-cfg-');
    dirs.push(dir);
    const file = Path.join(dir, name);
    Fs.writeFileSync(file, text);
    return file;
};

const checkConfig = (file) => runCpsd(['--check-config', file]);

const out = (r) => `exit ${r.code} signal ${r.signal}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

test('--help exits 0 and prints usage', async () => {
    const r = await runCpsd(['--help']);
    assert.equal(r.code, 0, out(r));
    assert.match(r.stdout + r.stderr, /usage/i, out(r));
    assert.match(r.stdout + r.stderr, /--config/, `--help mentions --config\n${out(r)}`);
});

test('--version prints the version, the git revision and the plugin ABI', async () => {
    const r = await runCpsd(['--version']);
    assert.equal(r.code, 0, out(r));
    // docs/operator-guide.md, "Version": three lines, on stdout
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 3, out(r));
    assert.match(lines[0], /^cpsd \d+\.\d+\.\d+$/, out(r));
    assert.match(lines[1], /^revision (unknown|[0-9a-f]{7,}(-dirty)?|\S+-g[0-9a-f]{7,}(-dirty)?)$/, out(r));
    const abi = /^#define CPS_ABI_(MAJOR|MINOR)\s+(\d+)/gm;
    const cps = Fs.readFileSync(Path.join(__dirname, '..', '..', 'api', 'cps.h'), 'utf8');
    const v = {};
    for (const m of cps.matchAll(abi)) { v[m[1]] = m[2]; }
    assert.equal(lines[2], `plugin ABI ${v.MAJOR}.${v.MINOR}`, out(r));
});

test('--check-config accepts a valid file', async () => {
    const dir = tmpDir('cpsd-cfg-');
    dirs.push(dir);
    const file = Path.join(dir, 'good.lua');
    Fs.writeFileSync(file, renderConfig({
        listen: { host: '127.0.0.1', port: 0 },
        data_dir: Path.join(dir, 'data'),
        limits: { max_frame: 1048576, max_send_queue: 1048576 },
        front: { ping_after_ms: 15000, drop_after_ms: 60000, check_every_ms: 5000 },
    }));
    const r = await checkConfig(file);
    assert.equal(r.code, 0, out(r));
    // an empty table is valid too: every key has a default
    const empty = writeFile('empty.lua', 'return {}\n');
    const r2 = await checkConfig(empty);
    assert.equal(r2.code, 0, out(r2));
});

test('--check-config names every bad key with its line', async () => {
    const file = writeFile('bad.lua', [
        '-- a configuration with three mistakes',
        'return {',
        '  listen = { port = "abc" },',
        '  limits = { max_frame = -5 },',
        '  bogus = 1,',
        '}',
        '',
    ].join('\n'));
    const r = await checkConfig(file);
    assert.notEqual(r.code, 0, out(r));
    const text = r.stdout + r.stderr;
    assert.match(text, /listen\.port/, `mentions listen.port\n${out(r)}`);
    assert.match(text, /limits\.max_frame/, `mentions limits.max_frame\n${out(r)}`);
    assert.match(text, /bogus/, `mentions bogus\n${out(r)}`);
    assert.match(text, /:\d+:/, `gives a line number (:N:)\n${out(r)}`);
    // and the server refuses to start with it
    const s = await runCpsd(['--config', file]);
    assert.notEqual(s.code, 0, `server started with a bad config\n${out(s)}`);
});

test('a Lua syntax error is reported with the file name', async () => {
    const file = writeFile('broken.lua', 'return {\n  listen = { port = 1 \n  data_dir = \n');
    const r = await checkConfig(file);
    assert.notEqual(r.code, 0, out(r));
    assert.match(r.stdout + r.stderr, /broken\.lua/, out(r));
    const s = await runCpsd(['--config', file]);
    assert.notEqual(s.code, 0, out(s));
    assert.match(s.stdout + s.stderr, /broken\.lua/, out(s));
});

test('SIGTERM with 5 connected clients: exit 0, the clients see their sockets closed', async () => {
    const srv = await startServer();
    servers.push(srv);
    await srv.guard(async () => {
        const chan = C.padId();
        const clients = [];
        for (let i = 0; i < 4; i++) {
            const r = await C.rawReady(srv.url);
            await r.join(chan);
            clients.push(r);
        }
        const net = await C.connect(srv.url);
        await C.join(net, chan);
        let disconnected = false;
        net.on('disconnect', () => { disconnected = true; });
        const code = await srv.stop();
        assert.equal(code, 0, 'exit code after SIGTERM');
        for (const r of clients) {
            await C.withTimeout(r.closed, 5000, 'client sees its socket closed');
        }
        await C.waitFor(() => disconnected, 5000, 'netflux client sees the disconnect');
        net.close();
    })();
});

test('a second server on the same port fails with a message naming the port', async () => {
    const first = await startServer();
    servers.push(first);
    await first.guard(async () => {
        const dir = tmpDir('cpsd-cfg-');
        dirs.push(dir);
        const file = Path.join(dir, 'second.lua');
        Fs.mkdirSync(Path.join(dir, 'data'));
        Fs.writeFileSync(file, renderConfig({
            listen: { host: '127.0.0.1', port: first.port },
            data_dir: Path.join(dir, 'data'),
        }));
        const r = await runCpsd(['--config', file], { timeoutMs: 10000 });
        assert.notEqual(r.code, 0, out(r));
        assert.equal(r.signal, null, `exited by itself, not killed by the timeout\n${out(r)}`);
        assert.match(r.stdout + r.stderr, new RegExp(String(first.port)), `mentions port ${first.port}\n${out(r)}`);
        // the first one is unaffected
        const a = await C.rawReady(first.url);
        assert.deepEqual((await a.ping()).slice(1), ['ACK']);
        a.close();
        assert.equal(await first.stop(), 0);
    })();
});

test('--check-config names unknown keys inside sections, missing plugins and scripts, bad removals', async () => {
    const file = writeFile('nested.lua', [
        'return {',
        '  listen = { prot = 3000 },',
        '  limits = { max_fram = 1048576 },',
        '  web = { admin_key = {} },',
        '  plugins_add = { "no_such_plugin" },',
        '  plugins_remove = { "not_in_the_list" },',
        '  lua_scripts_add = { "no_such_script.lua" },',
        '}',
        '',
    ].join('\n'));
    const r = await checkConfig(file);
    assert.notEqual(r.code, 0, out(r));
    const text = r.stdout + r.stderr;
    assert.match(text, /:2: unknown key listen\.prot/, out(r));
    assert.match(text, /:3: unknown key limits\.max_fram/, out(r));
    assert.match(text, /:4: unknown key web\.admin_key/, out(r));
    assert.match(text, /:6: plugins_remove: "not_in_the_list" is not in plugins/, out(r));
    // the server refuses to start with it, as with an unknown top-level key
    const s = await runCpsd(['--config', file]);
    assert.notEqual(s.code, 0, `server started with a bad config\n${out(s)}`);
    assert.match(s.stdout + s.stderr, /unknown key limits\.max_fram/, out(s));

    // once the keys are right, the files that are not there are named
    const files = writeFile('files.lua', [
        'return {',
        '  plugins_add = { "no_such_plugin", "?optional_missing" },',
        '  lua_scripts_add = { "no_such_script.lua" },',
        '}',
        '',
    ].join('\n'));
    const f = await checkConfig(files);
    assert.notEqual(f.code, 0, out(f));
    assert.match(f.stdout + f.stderr, /:2: plugins: no plugin no_such_plugin\.so/, out(f));
    assert.match(f.stdout + f.stderr, /:3: lua_scripts: no script no_such_script\.lua/, out(f));
    assert.doesNotMatch(f.stdout + f.stderr, /optional_missing/, out(f));
});
