'use strict';
// Logs and signals (docs/operator-guide.md §7): log.format = "json" (one
// object a line), --log-level over log.level, log.file, and SIGHUP, which
// reopens the log file (after logrotate renamed it) and never stops the
// server.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const { startServer, runCpsd, renderConfig, tmpDir } = require('./lib/server');

const servers = [];
const dirs = [];
after(async () => {
    for (const s of servers) { await s.stop(); }
    for (const d of dirs) { Fs.rmSync(d, { recursive: true, force: true }); }
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// startServer returns at "listening on": wait for the end of the startup
const start = async (overrides, opts) => {
    const s = await startServer(overrides, { single: true, ...opts });
    servers.push(s);
    const log = () => {
        if (!overrides.log || !overrides.log.file) { return s.stderr(); }
        try { return Fs.readFileSync(Path.join(s.dir, overrides.log.file), 'utf8'); } catch (e) { return ''; }
    };
    await waitFor('"ready"', () => /cpsd \S+ ready/.test(log()));
    return s;
};

const waitFor = async (what, fn, ms = 5000) => {
    for (const until = Date.now() + ms; Date.now() < until; await sleep(25)) {
        const v = fn();
        if (v) { return v; }
    }
    throw new Error(`timed out waiting for ${what}`);
};

const metricsOk = async (s) => {
    const res = await fetch(`http://127.0.0.1:${s.port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /^cpsd_build_info\{/m);
};

const LEVELS = new Set(['error', 'warn', 'info', 'debug']);

const parseJsonLines = (text) => text.split('\n').filter(Boolean).map((line) => {
    const r = JSON.parse(line);
    assert.deepEqual(Object.keys(r), ['time', 'level', 'who', 'msg'], line);
    assert.match(r.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, line);
    assert.ok(LEVELS.has(r.level), line);
    assert.equal(typeof r.who, 'string', line);
    assert.equal(typeof r.msg, 'string', line);
    return r;
});

test('log.format = "json": every stderr line is one JSON record', async () => {
    const s = await start({ log: { format: 'json' } });
    const r = parseJsonLines(s.stderr());
    assert.ok(r.some(x => x.who === 'server' && /^listening on 127\.0\.0\.1:\d+$/.test(x.msg)), s.stderr());
    assert.ok(r.some(x => x.who === 'cpsd' && /^cpsd .* ready/.test(x.msg)), s.stderr());
    assert.ok(r.some(x => x.who === 'storage-fs'), 'a plugin names itself');
    assert.equal(await s.stop(), 0);
    const all = parseJsonLines(s.stderr());
    assert.ok(all.some(x => /^SIGTERM: shutting down/.test(x.msg)), s.stderr());
});

test('--log-level overrides log.level', async () => {
    // at "error" the "listening on" and "ready" lines (info) would not be
    // logged at all: start() would time out
    const s = await start({ log: { level: 'error' } }, { args: ['--log-level', 'info'] });
    assert.match(s.stderr(), / info  \[server\] listening on/);
    const bad = await runCpsd(['--log-level', 'loud', '--print-config']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--log-level: expected error, warn, info or debug, got 'loud'/);
});

test('the log settings are checked', async () => {
    const dir = tmpDir('cpsd-log-');
    dirs.push(dir);
    const file = Path.join(dir, 'bad.lua');
    Fs.writeFileSync(file, renderConfig({ log: { format: 'xml', file: 5 } }));
    const r = await runCpsd(['--check-config', file]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /log\.format: expected "text" or "json"/);
    assert.match(r.stderr, /log\.file: expected a string, got an integer/);
    const unwritable = Path.join(dir, 'unwritable.lua');
    Fs.writeFileSync(unwritable, renderConfig({ listen: { port: 0, extra_ports: [] }, data_dir: Path.join(dir, 'data'),
        log: { file: Path.join(dir, 'no', 'such', 'dir.log') } }));
    const r2 = await runCpsd(['--config', unwritable]);
    assert.equal(r2.code, 1, r2.stderr);
    assert.match(r2.stderr, /cannot open log file .*dir\.log/);
});

test('SIGHUP without a log file: logged, and the server keeps serving', async () => {
    const s = await start({});
    process.kill(s.pid, 'SIGHUP');
    await waitFor('the SIGHUP line', () => /SIGHUP: log reopened \(stderr\)/.test(s.stderr()));
    assert.ok(s.alive());
    await metricsOk(s);
    process.kill(s.pid, 'SIGHUP');
    await waitFor('a second SIGHUP line', () => (s.stderr().match(/SIGHUP: log reopened/g) || []).length === 2);
    await metricsOk(s);
    assert.equal(await s.stop(), 0);
});

// Issue 12 item 6: SIGHUP also reloads what can be reloaded (log.level) and
// names what changed but applies only at the next start; a file that no
// longer loads changes nothing, and the server serves on.
test('SIGHUP reloads log.level, names settings that need a restart, survives a broken file', async () => {
    const s = await start({ log: { level: 'info' }, limits: { max_sessions: 1000 } });
    const file = Path.join(s.dir, 'config.lua');
    const text = Fs.readFileSync(file, 'utf8');
    assert.match(text, /level = "info"/);
    Fs.writeFileSync(file, text.replace('level = "info"', 'level = "warn"').replace('max_sessions = 1000', 'max_sessions = 2000'));
    process.kill(s.pid, 'SIGHUP');
    await waitFor('the new level', () => /SIGHUP: log\.level is now warn/.test(s.stderr()));
    await waitFor('the restart line', () => /SIGHUP: changed in \S+, applied only at the next start: limits\n/.test(s.stderr()));
    // at warn, the next SIGHUP's info line is not written
    process.kill(s.pid, 'SIGHUP');
    await sleep(500);
    assert.equal((s.stderr().match(/SIGHUP: log reopened/g) || []).length, 1);
    assert.equal((s.stderr().match(/SIGHUP: log\.level is now/g) || []).length, 1);
    Fs.writeFileSync(file, 'return { this is not lua');
    process.kill(s.pid, 'SIGHUP');
    await waitFor('the refusal', () => /SIGHUP: \S+ does not load \(.*\): nothing reloaded/.test(s.stderr()));
    assert.ok(s.alive());
    await metricsOk(s);
    assert.equal(await s.stop(), 0);
});

test('log.file: records go to the file; after a rename, SIGHUP starts a fresh one', async () => {
    const s = await start({ log: { file: 'cpsd.log', format: 'json' } }, { keepDir: true });
    dirs.push(s.dir);
    const path = Path.join(s.dir, 'cpsd.log');
    const rotated = `${path}.1`;
    assert.equal(s.stderr(), '', 'nothing on stderr');
    const first = parseJsonLines(Fs.readFileSync(path, 'utf8'));
    assert.ok(first.some(x => /^listening on/.test(x.msg)));
    Fs.renameSync(path, rotated);
    process.kill(s.pid, 'SIGHUP');
    const fresh = await waitFor('the fresh log file', () => {
        try { return /SIGHUP: log reopened/.test(Fs.readFileSync(path, 'utf8')) && Fs.readFileSync(path, 'utf8'); }
        catch (e) { return false; }
    });
    const r = parseJsonLines(fresh);
    assert.equal(r[0].msg, 'SIGHUP: log reopened (cpsd.log)');
    assert.ok(!r.some(x => /^listening on/.test(x.msg)), 'the old lines stay in the old file');
    assert.ok(!/SIGHUP/.test(Fs.readFileSync(rotated, 'utf8')));
    await metricsOk(s);
    assert.equal(await s.stop(), 0);
    assert.ok(parseJsonLines(Fs.readFileSync(path, 'utf8')).some(x => /^SIGTERM: shutting down/.test(x.msg)));
    assert.equal(s.stderr(), '', 'nothing on stderr');
});

test('a cluster: --log-level reaches the nodes; SIGHUP to the supervisor stops nothing', async () => {
    const { startCluster } = require('./lib/cluster');
    // log.level = "error" in the shared configuration: a node logs its
    // "listening on" line (info) only if the supervisor's --log-level got to it
    const cl = await startCluster({ counts: { front: 1, core: 1, storage: 1 },
        config: { log: { level: 'error' } }, args: ['--log-level', 'info'] });
    try {
        assert.match(cl.stderr(), /\[server\] listening on/);
        process.kill(cl.supPid, 'SIGHUP');
        await sleep(300);
        assert.equal(cl.exitInfo(), null, 'the supervisor is alive');
        const m = await cl.metrics('front:0');
        assert.ok('cpsd_sessions' in m, JSON.stringify(m));
    } finally {
        await cl.stop();
    }
});
