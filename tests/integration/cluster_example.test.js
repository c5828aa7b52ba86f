'use strict';
// The shipped cluster example (config/topology-example.lua) runs as it is
// (docs/operator-guide.md, "The cluster"): a copy of the file with only
// data_dir changed, started from another working directory, creates its
// key_file next to itself (mode 0600), binds the ports `--list` names (each
// front its own sandbox port, no clash), links its six nodes, and a client
// on one front talks to a client on the other.  The supervisor is stopped by
// the pid this test started.
//
// The example's ports are fixed (3010-3031): the test fails early, naming
// the port, if one is already taken.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Net = require('node:net');
const Path = require('node:path');
const ChildProcess = require('node:child_process');
const { binPath, tmpDir } = require('./lib/server');
const C = require('./lib/client');
const L = require('./lib/cluster');

const EXAMPLE = Path.join(__dirname, '..', '..', 'config', 'topology-example.lua');
const dir = tmpDir('cpsd-example-');
const cwd = tmpDir('cpsd-example-cwd-');
let sup = null;
let log = '';

after(async () => {
    C.closeAll();
    if (sup && sup.exitCode === null && sup.signalCode === null) {
        const gone = new Promise(r => sup.once('exit', r));
        sup.kill('SIGTERM');
        const t = setTimeout(() => { try { sup.kill('SIGKILL'); } catch (e) { /* gone */ } }, 10000);
        await gone;
        clearTimeout(t);
    }
    Fs.rmSync(dir, { recursive: true, force: true });
    Fs.rmSync(cwd, { recursive: true, force: true });
});

const portFree = (port) => new Promise((resolve) => {
    const s = Net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
});

// "front:0 127.0.0.1:3010 127.0.0.1:3012" -> { id: 'front:0', ports: [3010, 3012] }
const parseList = (text) => text.trim().split('\n').map((line) => {
    const [id, ...addrs] = line.split(' ');
    return { id, ports: addrs.map(a => Number(a.slice(a.lastIndexOf(':') + 1))) };
});

test('the shipped topology example starts as it is and carries a message', { timeout: 60000 }, async () => {
    const text = Fs.readFileSync(EXAMPLE, 'utf8');
    const data = Path.join(dir, 'data');
    const copy = text.replace('data_dir = "./data"', `data_dir = ${JSON.stringify(data)}`);
    assert.notEqual(copy, text, 'the example sets data_dir = "./data"');
    assert.match(copy, /key_file = "cluster\.key"/, 'the example names a key_file');
    const file = Path.join(dir, 'topology-example.lua');
    Fs.writeFileSync(file, copy);
    const keyFile = Path.join(dir, 'cluster.key');
    const bin = binPath();

    // --list: every node with every port it binds; only fronts have extra ports
    const list = parseList(ChildProcess.execFileSync(bin, ['--topology', file, '--list'], { cwd, encoding: 'utf8', timeout: 5000 }));
    assert.deepEqual(list.map(n => n.id), ['front:0', 'front:1', 'core:0', 'core:1', 'storage:0', 'storage:1']);
    for (const n of list) {
        assert.equal(n.ports.length, n.id.startsWith('front:') ? 2 : 1, `${n.id}: ${n.ports}`);
    }
    const all = list.flatMap(n => n.ports);
    assert.equal(new Set(all).size, all.length, `no port twice: ${all}`);
    assert.ok(!Fs.existsSync(keyFile), '--list creates no key');
    for (const p of all) { assert.ok(await portFree(p), `port ${p} of the example is already in use on this machine`); }

    // the supervisor, from a working directory that is neither the build
    // tree nor the topology's directory
    sup = ChildProcess.spawn(bin, ['--topology', file], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    sup.stdout.on('data', (d) => { log += d; });
    sup.stderr.on('data', (d) => { log += d; });
    const guard = async (fn) => {
        try { return await fn(); } catch (e) { e.message += `\n--- supervisor log ---\n${log.slice(-6000)}`; throw e; }
    };
    await guard(async () => {
        await C.waitFor(() => Fs.existsSync(keyFile), 10000, 'the key file is created');
        const st = Fs.statSync(keyFile);
        assert.equal(st.mode & 0o777, 0o600, 'key file mode 0600');
        const key = Fs.readFileSync(keyFile, 'utf8');
        assert.match(key, /^[A-Za-z0-9+/]{43}=\n$/, 'one line of base64');
        assert.equal(Buffer.from(key.trim(), 'base64').length, 32);
        await C.waitFor(() => /created the cluster key file .*cluster\.key \(mode 0600\)/.test(log), 10000,
            'the supervisor says it created the key file');

        // every node up and linked to the five others
        for (const n of list) {
            await C.waitFor(async () => {
                try {
                    const { status, body } = await L.httpGet(n.ports[0], '/metrics', 1000);
                    return status === 200 && L.parseMetrics(body).cpsd_links_up_total >= 5;
                } catch (e) { return false; }
            }, 30000, `${n.id} links up`, 100);
        }
        // a front's sandbox port answers HTTP too
        const fronts = list.filter(n => n.id.startsWith('front:'));
        for (const f of fronts) {
            const { status } = await L.httpGet(f.ports[1], '/metrics');
            assert.equal(status, 200, `${f.id} sandbox port ${f.ports[1]}`);
        }

        // a message from a client of front 0 reaches a client of front 1
        const url = (f) => `ws://127.0.0.1:${f.ports[0]}/cryptpad_websocket`;
        const a = await C.rawReady(url(fronts[0]));
        const b = await C.rawReady(url(fronts[1]));
        const chan = C.padId();
        await a.join(chan);
        await b.join(chan);
        const sent = await a.msg(chan, 'hello through the example');
        assert.deepEqual(sent.slice(1), ['ACK']);
        const got = await b.next(f => Array.isArray(f) && f[2] === 'MSG' && f[3] === chan, 10000, 'b gets the message');
        assert.deepEqual(got.slice(0, 5), [0, a.id, 'MSG', chan, 'hello through the example']);
        a.close();
        b.close();
    });

    // SIGTERM to the supervisor (by the pid started above) stops every node
    const gone = new Promise(r => sup.once('exit', (code, signal) => r({ code, signal })));
    sup.kill('SIGTERM');
    const res = await gone;
    assert.equal(res.code, 0, `supervisor exit ${JSON.stringify(res)}\n${log.slice(-3000)}`);
    for (const p of all) {
        await C.waitFor(() => portFree(p), 5000, `port ${p} released after the stop`, 100);
    }

    // a second run reuses the key (never overwritten)
    const before = Fs.readFileSync(keyFile, 'utf8');
    const r = ChildProcess.spawnSync(bin, ['keygen', keyFile], { encoding: 'utf8', timeout: 5000 });
    assert.equal(r.status, 1, 'keygen refuses an existing file');
    assert.match(r.stderr, /refusing to overwrite/);
    assert.equal(Fs.readFileSync(keyFile, 'utf8'), before);
});

test('cpsd keygen writes a fresh 32-byte key, mode 0600', () => {
    const bin = binPath();
    const keys = [];
    for (const name of ['one.key', 'two.key']) {
        const f = Path.join(dir, name);
        const r = ChildProcess.spawnSync(bin, ['keygen', f], { encoding: 'utf8', timeout: 5000 });
        assert.equal(r.status, 0, r.stderr);
        assert.equal(Fs.statSync(f).mode & 0o777, 0o600);
        const k = Fs.readFileSync(f, 'utf8');
        assert.equal(Buffer.from(k.trim(), 'base64').length, 32);
        keys.push(k);
    }
    assert.notEqual(keys[0], keys[1], 'two runs give two keys');
    const r = ChildProcess.spawnSync(bin, ['keygen'], { encoding: 'utf8', timeout: 5000 });
    assert.equal(r.status, 2, 'keygen without FILE is a usage error');
});
