'use strict';
// `cpsd migrate` (docs/operations.md §9): a CryptPad data directory copied to
// PostgreSQL and back is byte-identical; a second run skips what is there;
// an interrupted run resumes; bad command lines change nothing.  The copies
// through PostgreSQL run when the suite has one (CPS_TEST_STORAGE=pg, with
// PGHOST... from tests/pg/pg_env.sh); the command-line checks always run.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const Crypto = require('node:crypto');
const ChildProcess = require('node:child_process');
const { tmpDir, listFiles } = require('./lib/server');

const BIN = process.env.CPSD_BIN ? Path.resolve(process.env.CPSD_BIN) : Path.resolve(__dirname, '../../build/cpsd');
const HAVE_PG = !!process.env.PGHOST && process.env.CPS_TEST_STORAGE === 'pg';
const NO_PG = HAVE_PG ? false : 'needs the suite\'s PostgreSQL (CPS_TEST_STORAGE=pg)';

const migrate = (args, opts = {}) => ChildProcess.spawnSync(BIN, ['migrate', ...args],
    { encoding: 'utf8', timeout: 120000, ...opts });

const put = (root, rel, data) => {
    const p = Path.join(root, rel);
    Fs.mkdirSync(Path.dirname(p), { recursive: true });
    Fs.writeFileSync(p, data);
};

const KEY = 'Vz3lV9m0mSPr8l7kZ0dM6u2cHfhW+Q2x1E-4r7JH0Ak=';
const KEY2 = 'Ab3lV9m0mSPr8l7kZ0dM6u2cHfhW+Q2x1E-4r7JH0Ak=';
const hex = (n) => Crypto.randomBytes(n / 2).toString('hex');

// A data directory in CryptPad's layout, with every kind of entry.
const makeStore = (root, bigBlobBytes = 3 * 1024 * 1024) => {
    const fixture = Path.resolve(__dirname, '..', 'fixtures', 'datastore');
    for (const f of Fs.readdirSync(fixture, { recursive: true })) {
        const src = Path.join(fixture, f);
        if (Fs.statSync(src).isFile() && f.endsWith('.ndjson')) { put(root, Path.join('datastore', f), Fs.readFileSync(src)); }
    }
    const ch = 'c0' + hex(30);
    const lines = [];
    for (let i = 0; i < 300; i++) { lines.push(JSON.stringify([0, 'u', 'MSG', ch, `line ${i} ` + 'x'.repeat(i % 97), 1700000000000 + i])); }
    put(root, `datastore/c0/${ch}.ndjson`, lines.join('\n') + '\n');
    put(root, `datastore/c0/${ch}.metadata.ndjson`, JSON.stringify({ channel: ch, owners: [] }) + '\n');
    put(root, `datastore/e0/e0${hex(30)}.ndjson`, '');                         // an empty log
    const arch = 'd0' + hex(30);
    put(root, `data/archive/datastore/d0/${arch}.ndjson`, '["archived",1]\n');
    put(root, `data/archive/datastore/d0/${arch}.metadata.ndjson`, '{"channel":"x"}\n');
    put(root, `datastore/d0/${arch}.ndjson.placeholder`, 'ARCHIVED:1700000000000');
    put(root, `data/pins/${KEY.slice(0, 2)}/${KEY}.ndjson`, '["PIN",["a1b2c3d4e5f60718293a4b5c6d7e8f90"],1]\n');
    put(root, `data/archive/pins/${KEY2.slice(0, 2)}/${KEY2}.ndjson`, '["RESET",[],2]\n');
    const blob = hex(48);
    put(root, `blob/${blob.slice(0, 2)}/${blob}`, Crypto.randomBytes(bigBlobBytes));
    const blob2 = hex(48);
    put(root, `data/archive/blob/${blob2.slice(0, 2)}/${blob2}`, Crypto.randomBytes(1000));
    put(root, `block/${KEY.slice(0, 2)}/${KEY}`, Crypto.randomBytes(300));
    put(root, `data/blobstage/${KEY.slice(0, 2)}/${KEY}`, Crypto.randomBytes(5000));
    put(root, 'data/challenges/ab/abcdefABCDEF0123', '{"a":1}');              // a record
    return { torn: `datastore/c0/${ch}.ndjson` };
};

const files = (root) => {
    const out = {};
    for (const [rel, size] of Object.entries(listFiles(root))) {
        if (size === 'dir') { continue; }
        out[rel] = Crypto.createHash('sha256').update(Fs.readFileSync(Path.join(root, rel))).digest('hex');
    }
    return out;
};

const createdb = () => {
    const db = 'cps_migrate_' + hex(12);
    const r = ChildProcess.spawnSync('createdb', [db], { encoding: 'utf8' });
    assert.equal(r.status, 0, `createdb: ${r.stderr}`);
    return db;
};

test('command-line mistakes: usage, exit 2, nothing touched', () => {
    const dir = tmpDir('cpsd-migrate-cli-');
    makeStore(dir, 1000);
    const before = files(dir);
    for (const args of [[], ['--from', `fs:${dir}`], ['--from', `fs:${dir}`, '--to', `fs:${dir}2`],
        ['--from', 'fs', '--to', 'pg'], ['--from', 'FS:x', '--to', 'pg'], ['--bogus']]) {
        const r = migrate(args);
        assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /usage|both|needs a directory|unknown argument/);
    }
    // A backend no plugin provides: a clear error, exit 1.
    const r = migrate(['--from', `fs:${dir}`, '--to', 'nosuchbackend']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /storage-nosuchbackend/);
    assert.deepEqual(files(dir), before);
    assert.equal(Fs.existsSync(`${dir}2`), false);
});

test('fs -> pg -> fs is byte-identical; a second run skips; counts and checksums checked',
    { skip: NO_PG, timeout: 240000 }, () => {
        const a = tmpDir('cpsd-migrate-a-');
        const { torn } = makeStore(a);
        // A torn last line (a crash mid-write) is not part of the log.
        const whole = Fs.readFileSync(Path.join(a, torn));
        Fs.appendFileSync(Path.join(a, torn), '[0,"u","MSG","torn');
        const db = createdb();
        let r = migrate(['--from', `fs:${a}`, '--to', `pg:dbname=${db}`]);
        assert.equal(r.status, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /counts and checksums equal/);
        r = migrate(['--from', `fs:${a}`, '--to', `pg:dbname=${db}`]);
        assert.equal(r.status, 0, r.stdout + r.stderr);
        const m = /copied (\d+) entries .*; (\d+) already there/.exec(r.stdout);
        assert.ok(m && m[1] === m[2] && Number(m[1]) > 10, `second run skips everything: ${r.stdout}`);
        const b = tmpDir('cpsd-migrate-b-');
        r = migrate(['--from', `pg:dbname=${db}`, '--to', `fs:${b}`]);
        assert.equal(r.status, 0, r.stdout + r.stderr);
        const fa = files(a);
        const fb = files(b);
        Fs.writeFileSync(Path.join(a, torn), whole);
        fa[torn] = files(a)[torn];
        assert.deepEqual(Object.keys(fb).sort(), Object.keys(fa).sort(), 'the same files');
        for (const k of Object.keys(fa)) { assert.equal(fb[k], fa[k], `same bytes: ${k}`); }
    });

test('an interrupted migration resumes and ends verified', { skip: NO_PG, timeout: 240000 }, async () => {
    const a = tmpDir('cpsd-migrate-r-');
    makeStore(a, 40 * 1024 * 1024);
    const db = createdb();
    const child = ChildProcess.spawn(BIN, ['migrate', '--from', `fs:${a}`, '--to', `pg:dbname=${db}`],
        { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise((resolve) => setTimeout(resolve, 400));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('exit', resolve));
    const r = migrate(['--from', `fs:${a}`, '--to', `pg:dbname=${db}`]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /counts and checksums equal/);
    // And back: the big blob is whole.
    const b = tmpDir('cpsd-migrate-rb-');
    const r2 = migrate(['--from', `pg:dbname=${db}`, '--to', `fs:${b}`]);
    assert.equal(r2.status, 0, r2.stdout + r2.stderr);
    assert.deepEqual(files(b), files(a));
});

test('a destination that held other entries is reported, exit 1', { skip: NO_PG, timeout: 120000 }, () => {
    const a = tmpDir('cpsd-migrate-x-');
    makeStore(a, 1000);
    const db = createdb();
    let r = migrate(['--from', `fs:${a}`, '--to', `pg:dbname=${db}`]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const c = tmpDir('cpsd-migrate-y-');
    put(c, `datastore/f0/f0${hex(30)}.ndjson`, '["other"]\n');
    r = migrate(['--from', `fs:${c}`, '--to', `pg:dbname=${db}`]);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /held data before/);
});
