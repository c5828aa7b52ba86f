'use strict';
// Choosing the storage backend (docs/storage-pg.md): an unknown
// storage_backend stops the start with the backends available; "pg" alone
// loads storage-pg; an unreachable database is named (without its password)
// and stops the start; a database lost while running fails the affected
// messages (no ACK) and service comes back by itself when it returns.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Os = require('node:os');
const Path = require('node:path');
const { execFileSync } = require('node:child_process');
const { startServer, runCpsd, binPath, tmpDir, renderConfig, TESTS_DIR, PG_SCHEMA_V1 } = require('./lib/server');
const C = require('./lib/client');

const PG_ENV = Path.resolve(TESTS_DIR, '../pg/pg_env.sh');
const SO = Path.join(Path.dirname(binPath()), 'plugins', 'storage-pg.so');
const NO_PLUGIN = !Fs.existsSync(SO) && 'storage-pg.so is not built (libpq-dev missing)';
const NO_PG = NO_PLUGIN || (!Fs.existsSync('/usr/lib/postgresql/15/bin/initdb') && 'PostgreSQL 15 is not installed');

// A configuration file in a fresh directory; returns its path.
const configFile = (extra) => {
    const dir = tmpDir('cpsd-backend-');
    const file = Path.join(dir, 'config.lua');
    Fs.writeFileSync(file, renderConfig({
        listen: { host: '127.0.0.1', port: 0, extra_ports: [] }, data_dir: Path.join(dir, 'data'), ...extra,
    }));
    return { dir, file };
};

test('an unknown storage_backend stops the start, listing the backends available', async () => {
    const { dir, file } = configFile({ storage_backend: 'nosuch' });
    try {
        const res = await runCpsd(['--config', file]);
        assert.notEqual(res.code, 0, res.stderr);
        assert.match(res.stderr, /storage_backend = "nosuch": no such backend \(no plugin storage-nosuch\.so\); available: [^\n]*\bfs\b/);
        const chk = await runCpsd(['--check-config', file]);
        assert.notEqual(chk.code, 0);
        assert.match(chk.stderr, /storage_backend: no plugin storage-nosuch\.so/);
    } finally {
        Fs.rmSync(dir, { recursive: true, force: true });
    }
});

test('an unreachable database: the conninfo named without the password, a non-zero exit', { skip: NO_PLUGIN }, async () => {
    const { dir, file } = configFile({
        storage_backend: 'pg',
        storage_pg: { conninfo: `host=${Path.join(Os.tmpdir(), 'cps-no-such-pg')} port=5999 dbname=cpsdb user=cpsuser password=hunter2` },
    });
    try {
        const res = await runCpsd(['--config', file]);
        assert.notEqual(res.code, 0, res.stderr);
        assert.match(res.stderr, /cannot connect to PostgreSQL \(host=\S*cps-no-such-pg port=5999 dbname=cpsdb user=cpsuser\)/);
        assert.doesNotMatch(res.stderr, /hunter2/);
    } finally {
        Fs.rmSync(dir, { recursive: true, force: true });
    }
});

test('storage_backend = "pg" alone; a database lost fails messages, then service resumes by itself', { skip: NO_PG, timeout: 180000 }, async () => {
    // A PostgreSQL of this test's own, which it can stop and start again.
    const pgdir = Fs.mkdtempSync(Path.join(Os.tmpdir(), 'cpspg-'));
    execFileSync('sh', [PG_ENV, 'start', pgdir], { stdio: 'pipe' });
    let srv = null;
    try {
        // The default `plugins` list does not name storage-pg.
        srv = await startServer({ storage_backend: 'pg', storage_pg: { conninfo: `host=${pgdir} dbname=cps user=cps` } },
            { single: true });
        await srv.guard(async () => {
            // "listening on" comes before the plugins load: wait for "ready".
            await C.waitFor(() => / ready \(/.test(srv.stderr()), 20000, 'cpsd ready');
            assert.match(srv.stderr(), /loaded plugin 'storage-pg'/);
            const r = await C.rawReady(srv.url);
            const P = C.padId();
            const j = await r.join(P);
            const HK = j.members.find(id => id.length === 16);
            assert.deepEqual((await r.msg(P, 'one')).slice(1), ['ACK']);

            execFileSync('sh', [PG_ENV, 'halt', pgdir], { stdio: 'pipe' });
            const lost = await r.msg(P, 'two');
            assert.notEqual(lost[1], 'ACK', `no ACK for a message the database did not take: ${C.short(lost)}`);

            execFileSync('sh', [PG_ENV, 'resume', pgdir], { stdio: 'pipe' });
            // Reconnection has a back-off of at most 5 s: bounded tries.
            let back = null;
            for (let i = 0; i < 60; i++) {
                back = await r.msg(P, 'three');
                if (back[1] === 'ACK') { break; }
                await C.sleep(250);
            }
            assert.equal(back[1], 'ACK', `service resumed: ${C.short(back)}`);

            const c = await C.rawReady(srv.url);
            await c.join(P);
            const h = await C.getHistory(c, HK, P, { txid: 'after' });
            const lines = h.items.filter(p => Array.isArray(p) && p[2] === 'MSG').map(p => p[4]);
            assert.deepEqual(lines, ['one', 'three'], 'the refused message was not stored');
            r.close(); c.close();
        })();
        assert.equal(await srv.stop(), 0, 'a clean exit (nothing leaked under ASan)');
        srv = null;
    } finally {
        if (srv) { await srv.stop(); }
        execFileSync('sh', [PG_ENV, 'stop', pgdir], { stdio: 'pipe' });
    }
});

test('a database of schema version 1 is upgraded at start: its logs served, the chunk foreign key gone', { skip: NO_PG, timeout: 120000 }, async () => {
    const pgdir = Fs.mkdtempSync(Path.join(Os.tmpdir(), 'cpspg-'));
    execFileSync('sh', [PG_ENV, 'start', pgdir], { stdio: 'pipe' });
    const psql = (sql) => execFileSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-h', pgdir, '-U', 'cps', '-d', 'cps'],
        { input: sql, encoding: 'utf8' }).trim();
    let srv = null;
    try {
        // A channel log as version 1 stored it (one object row, one chunk).
        const P = C.padId();
        const log = JSON.stringify([0, C.hex(16), 'MSG', P, 'stored by version 1', Date.now()]) + '\n';
        psql(PG_SCHEMA_V1 + "WITH o AS (INSERT INTO cps_object (kind, ns, id, arch, size) VALUES " +
            `('L', '', '${P}', false, ${Buffer.byteLength(log)}) RETURNING oid) ` +
            `INSERT INTO cps_chunk (oid, off, data) SELECT oid, 0, decode('${Buffer.from(log).toString('hex')}', 'hex') FROM o;`);
        const fk = "SELECT count(*) FROM pg_constraint WHERE conrelid = 'cps_chunk'::regclass AND contype = 'f'";
        assert.equal(psql(fk), '1', 'version 1 has the foreign key');

        srv = await startServer({ storage_backend: 'pg', storage_pg: { conninfo: `host=${pgdir} dbname=cps user=cps` } },
            { single: true });
        await srv.guard(async () => {
            await C.waitFor(() => / ready \(/.test(srv.stderr()), 20000, 'cpsd ready');
            assert.equal(psql('SELECT max(version) FROM cps_schema_version'), '2');
            assert.equal(psql(fk), '0', 'version 2 has none');
            const r = await C.rawReady(srv.url);
            const j = await r.join(P);
            const HK = j.members.find(id => id.length === 16);
            assert.deepEqual((await r.msg(P, 'stored by version 2')).slice(1), ['ACK']);
            const h = await C.getHistory(r, HK, P, { txid: 'upgrade' });
            const lines = h.items.filter(p => Array.isArray(p) && p[2] === 'MSG').map(p => p[4]);
            assert.deepEqual(lines, ['stored by version 1', 'stored by version 2']);
            r.close();
        })();
        assert.equal(await srv.stop(), 0);
        srv = null;
    } finally {
        if (srv) { await srv.stop(); }
        execFileSync('sh', [PG_ENV, 'stop', pgdir], { stdio: 'pipe' });
    }
});

// Trains of appends go from the loop (docs/storage-pg.md, "Trains on the
// loop"), or with storage_pg.trains_on_loop = false through a pool thread:
// the same outcomes either way, and the counter says which path ran.
for (const onLoop of [true, false]) {
    test(`trains ${onLoop ? 'on the loop' : 'through the pool'}: 8 pads at once, every message ACKed in order and stored once`,
        { skip: NO_PG, timeout: 120000 }, async () => {
            const pgdir = Fs.mkdtempSync(Path.join(Os.tmpdir(), 'cpspg-'));
            execFileSync('sh', [PG_ENV, 'start', pgdir], { stdio: 'pipe' });
            let srv = null;
            try {
                srv = await startServer({ storage_backend: 'pg',
                    storage_pg: { conninfo: `host=${pgdir} dbname=cps user=cps`, trains_on_loop: onLoop } }, { single: true });
                await srv.guard(async () => {
                    await C.waitFor(() => / ready \(/.test(srv.stderr()), 20000, 'cpsd ready');
                    const PADS = 8; const N = 25;
                    const pads = Array.from({ length: PADS }, () => C.padId());
                    const writers = [];
                    for (const P of pads) { const r = await C.rawReady(srv.url); await r.join(P); writers.push(r); }
                    const HK = (await writers[0].join(pads[0])).members.find(id => id.length === 16);
                    const seqs = writers.map(() => []);
                    for (let i = 0; i < N; i++) {
                        writers.forEach((r, k) => { const seq = r.nextSeq(); seqs[k].push(seq); r.send([seq, 'MSG', pads[k], `p${k}-${i}`]); });
                    }
                    for (let k = 0; k < PADS; k++) {
                        const replies = await Promise.all(seqs[k].map(seq =>
                            writers[k].next(f => Array.isArray(f) && f[0] === seq, 60000, `answer to ${seq}`)));
                        for (const f of replies) { assert.equal(f[1], 'ACK', `pad ${k}: ${C.short(f)}`); }
                        const order = writers[k].log.filter(f => Array.isArray(f) && f[1] === 'ACK').map(f => f[0]);
                        assert.deepEqual(order.filter(s => seqs[k].includes(s)), seqs[k], `pad ${k}: ACK order`);
                    }
                    const reader = await C.rawReady(srv.url);
                    for (let k = 0; k < PADS; k++) {
                        await reader.join(pads[k]);
                        const h = await C.getHistory(reader, HK, pads[k], { txid: C.txid() }, 60000);
                        const stored = h.items.filter(Array.isArray).map(m => m[4]);
                        assert.deepEqual(stored, Array.from({ length: N }, (_, i) => `p${k}-${i}`), `pad ${k}: history`);
                    }
                    const m = await (await fetch(`http://127.0.0.1:${srv.port}/metrics`)).text();
                    const loop = Number((m.match(/^cpsd_storage_pg_loop_trains_total (\S+)$/m) || [0, 0])[1]);
                    const commits = Number((m.match(/^cpsd_storage_pg_append_transactions_total (\S+)$/m) || [0, 0])[1]);
                    if (onLoop) {
                        assert.ok(loop > 0, `trains sent from the loop: ${loop}`);
                    } else {
                        assert.equal(loop, 0, 'no train from the loop when trains_on_loop = false');
                    }
                    assert.ok(commits > 0 && commits < PADS * N, `group commit: ${commits} transactions`);
                    writers.forEach(r => r.close()); reader.close();
                })();
                assert.equal(await srv.stop(), 0, 'a clean exit');
                srv = null;
            } finally {
                if (srv) { await srv.stop(); }
                execFileSync('sh', [PG_ENV, 'stop', pgdir], { stdio: 'pipe' });
            }
        });
}
