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
