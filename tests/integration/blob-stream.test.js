'use strict';
// Large objects streamed through the storage backend (docs/protocol/http.md
// §6, §7; docs/plugin-guide.md "Serving stored objects"): GET /blob and
// GET /block read the object with obj_size and obj_read a chunk at a time,
// never through a file path.  Checked here on objects far larger than one
// chunk: exact bytes for the whole object and for ranges that straddle
// chunk boundaries, HEAD reading nothing, clients that leave mid-download
// (the server stops reading and leaks nothing: the ASan build's clean exit),
// and a blob deleted mid-download (the connection is cut, never a short
// "complete" 200).
//
// The objects are put in place as files of the file store's layout
// (<data>/blob/<xx>/<id>, <data>/block/<xx>/<key>), as an existing
// CryptPad datastore would hold them.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const Http = require('node:http');
const Crypto = require('node:crypto');
const { startServer, withLog, tmpDir } = require('./lib/server');

const ROOT = tmpDir('cpsd-blobstream-');
const DATA = Path.join(ROOT, 'data');
const CHUNK = 64 * 1024;                  // the server's read size (objserve.h)
const BIG = 24 * 1024 * 1024 + 12345;     // not a multiple of a chunk

let srv;
const T = (name, fn) => test(name, { timeout: 120000 }, (t) => srv.guard(fn)(t));

before(withLog(() => srv, async () => {
    Fs.mkdirSync(DATA, { recursive: true });
    srv = await startServer({ listen: { host: '127.0.0.1', port: 0, extra_ports: [] } }, { dir: ROOT, single: true });
}));
after(async () => {
    if (srv) { await srv.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
});

// ------------------------------------------------------------ helpers

const blobId = () => Crypto.randomBytes(24).toString('hex');
const blobFile = (id) => Path.join(DATA, 'blob', id.slice(0, 2), id);
const blobPath = (id) => `/blob/${id.slice(0, 2)}/${id}`;

const putBlob = (id, bytes) => {
    Fs.mkdirSync(Path.dirname(blobFile(id)), { recursive: true });
    Fs.writeFileSync(blobFile(id), bytes);
};

// One request; the body is collected unless `onResponse` takes over.
const request = (method, path, headers = {}) => new Promise((resolve, reject) => {
    const req = Http.request({ host: '127.0.0.1', port: srv.port, method, path, headers, agent: false }, (res) => {
        const parts = [];
        res.on('data', (c) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts) }));
        res.on('error', reject);
    });
    req.setTimeout(60000, () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    req.end();
});

const metric = async (name) => {
    const res = await request('GET', '/metrics');
    const m = res.body.toString().match(new RegExp(`^${name} (\\d+)$`, 'm'));
    return m ? Number(m[1]) : 0;
};

const sha = (b) => Crypto.createHash('sha256').update(b).digest('hex');

// A GET that stops reading after `keep` bytes: `then` decides what happens
// next (destroy the socket, or wait).  Resolves with what was received and
// whether the response completed.
const partialGet = (path, keep, then) => new Promise((resolve, reject) => {
    const req = Http.request({ host: '127.0.0.1', port: srv.port, method: 'GET', path, agent: false }, (res) => {
        let got = 0;
        let acted = false;
        const finish = () => resolve({ status: res.statusCode, length: Number(res.headers['content-length']), got, complete: res.complete });
        res.on('data', (c) => {
            got += c.length;
            if (!acted && got >= keep) {
                acted = true;
                then(req, res);
            }
        });
        res.on('end', finish);
        res.on('close', finish);
        res.on('error', () => { /* an aborted response: seen in `complete` */ });
    });
    req.setTimeout(60000, () => req.destroy(new Error(`GET ${path}: timeout`)));
    req.on('error', (e) => { if (!['ECONNRESET', 'EPIPE'].includes(e.code) && e.message !== 'aborted') { reject(e); } });
    req.end();
});

// ------------------------------------------------------------ tests

let bigId;
let bigBytes;

T('a blob far larger than a read chunk: the exact bytes, Content-Length, cache and CORS headers', async () => {
    bigId = blobId();
    bigBytes = Crypto.randomBytes(BIG);
    putBlob(bigId, bigBytes);
    const res = await request('GET', blobPath(bigId));
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], String(BIG));
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    assert.equal(res.headers['accept-ranges'], 'bytes');
    assert.match(res.headers['cache-control'], /max-age/);
    assert.ok(res.headers['access-control-allow-origin']);
    assert.equal(res.body.length, BIG);
    assert.equal(sha(res.body), sha(bigBytes));
});

T('HEAD on the big blob: its length, no body, and nothing read from the store', async () => {
    const before = await metric('cpsd_objserve_bytes_read_total');
    assert.ok(before >= BIG, 'the GET above was read through the backend');
    const res = await request('HEAD', blobPath(bigId));
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], String(BIG));
    assert.equal(res.body.length, 0);
    assert.equal(await metric('cpsd_objserve_bytes_read_total'), before);
});

T('ranges across chunk boundaries answer 206 with exactly those bytes', async () => {
    const spans = [
        [0, 0], [CHUNK - 1, CHUNK], [CHUNK - 3, 3 * CHUNK + 7], [5 * CHUNK, 9 * CHUNK - 1],
        [BIG - CHUNK - 10, BIG - 1], [BIG - 1, BIG - 1], [12345678, 12345678 + 2 * CHUNK],
    ];
    for (const [a, b] of spans) {
        const res = await request('GET', blobPath(bigId), { range: `bytes=${a}-${b}` });
        assert.equal(res.status, 206, `bytes=${a}-${b}`);
        assert.equal(res.headers['content-range'], `bytes ${a}-${b}/${BIG}`);
        assert.equal(res.headers['content-length'], String(b - a + 1));
        assert.ok(res.body.equals(bigBytes.subarray(a, b + 1)), `bytes=${a}-${b}`);
    }
    let res = await request('GET', blobPath(bigId), { range: `bytes=${BIG - 1000}-` });
    assert.equal(res.status, 206);
    assert.ok(res.body.equals(bigBytes.subarray(BIG - 1000)));
    res = await request('GET', blobPath(bigId), { range: `bytes=-${CHUNK + 1}` });
    assert.equal(res.status, 206);
    assert.equal(res.headers['content-range'], `bytes ${BIG - CHUNK - 1}-${BIG - 1}/${BIG}`);
    assert.ok(res.body.equals(bigBytes.subarray(BIG - CHUNK - 1)));
    res = await request('HEAD', blobPath(bigId), { range: `bytes=${CHUNK}-${2 * CHUNK}` });
    assert.equal(res.status, 206);
    assert.equal(res.headers['content-length'], String(CHUNK + 1));
    assert.equal(res.body.length, 0);
    // Unsatisfiable: 416 with the size; several or inverted ranges: the whole blob.
    res = await request('GET', blobPath(bigId), { range: `bytes=${BIG}-` });
    assert.equal(res.status, 416);
    assert.equal(res.headers['content-range'], `bytes */${BIG}`);
    for (const r of ['bytes=0-1,5-6', `bytes=${CHUNK}-10`]) {
        res = await request('GET', blobPath(bigId), { range: r });
        assert.equal(res.status, 200, r);
        assert.equal(res.body.length, BIG, r);
    }
});

T('clients leaving mid-download: the server stops reading, and serves the next one', async () => {
    const before = await metric('cpsd_objserve_bytes_read_total');
    const LEAVERS = 8;
    const runs = [];
    for (let i = 0; i < LEAVERS; i++) {
        // Half leave at once; half stop reading first, so that the server
        // waits on a full socket (a chunk queued, no read asked) when they go.
        runs.push(partialGet(blobPath(bigId), 64 * 1024, (req, res) => {
            if (i % 2) { req.destroy(); return; }
            res.pause();
            setTimeout(() => req.destroy(), 300);
        }));
    }
    const results = await Promise.all(runs);
    for (const r of results) {
        assert.equal(r.status, 200);
        assert.equal(r.complete, false);
        assert.ok(r.got < BIG);
    }
    // Give the server a few loop turns to see the sockets go (bounded wait).
    let read = 0;
    for (let i = 0; i < 20; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        read = (await metric('cpsd_objserve_bytes_read_total')) - before;
    }
    // What the server read for them is bounded by what the sockets could
    // take before the clients left, far below 8 whole blobs.
    assert.ok(read > 0 && read < LEAVERS * BIG / 2, `read ${read} bytes for ${LEAVERS} clients that left early`);
    const res = await request('GET', blobPath(bigId), { range: 'bytes=100-199' });
    assert.equal(res.status, 206);
    assert.ok(res.body.equals(bigBytes.subarray(100, 200)));
});

T('a blob deleted mid-download: the connection is cut, never a short complete 200', async () => {
    const id = blobId();
    putBlob(id, bigBytes);
    const abortedBefore = await metric('cpsd_objserve_streams_aborted_total');
    const r = await partialGet(blobPath(id), 64 * 1024, (req, res) => {
        // Stop reading (the server stalls on a full socket), delete, go on.
        res.pause();
        Fs.unlinkSync(blobFile(id));
        setTimeout(() => res.resume(), 200);
    });
    assert.equal(r.status, 200);
    assert.equal(r.length, BIG);
    assert.equal(r.complete, false, 'the response must not end as if complete');
    assert.ok(r.got < BIG, `got ${r.got} of ${BIG}`);
    assert.equal(await metric('cpsd_objserve_streams_aborted_total'), abortedBefore + 1);
    assert.equal((await request('GET', blobPath(id))).status, 404);
});

T('a slow client gets the whole blob, however long the download takes', async () => {
    // About 3 MB/s: the 24 MB blob takes some 8 s, past lws's 5 s content
    // timeout, which used to cut every download at 5 s whatever its pace.
    const RATE = 3 * 1024 * 1024;
    const r = await new Promise((resolve, reject) => {
        const req = Http.request({ host: '127.0.0.1', port: srv.port, method: 'GET', path: blobPath(bigId), agent: false }, (res) => {
            const t0 = Date.now();
            const hash = Crypto.createHash('sha256');
            let got = 0;
            res.on('data', (c) => {
                hash.update(c);
                got += c.length;
                const ahead = got / RATE * 1000 - (Date.now() - t0);
                if (ahead > 0) {
                    res.pause();
                    setTimeout(() => res.resume(), ahead);
                }
            });
            const finish = () => resolve({ status: res.statusCode, got, complete: res.complete, sha: hash.digest('hex') });
            res.on('end', finish);
            res.on('aborted', () => resolve({ status: res.statusCode, got, complete: false }));
            res.on('error', () => { /* seen as incomplete */ });
        });
        req.setTimeout(60000, () => req.destroy(new Error('slow GET: timeout')));
        req.on('error', (e) => { if (!['ECONNRESET', 'EPIPE'].includes(e.code) && e.message !== 'aborted') { reject(e); } });
        req.end();
    });
    assert.equal(r.status, 200);
    assert.equal(r.complete, true, `cut after ${r.got} of ${BIG} bytes`);
    assert.equal(r.got, BIG);
    assert.equal(r.sha, sha(bigBytes));
});

T('a login block larger than a read chunk is served whole through the backend, HEAD too', async () => {
    let key = '';
    while (!key || key.includes('+')) { key = Crypto.randomBytes(32).toString('base64').replace(/\//g, '-'); }
    const bytes = Crypto.randomBytes(CHUNK * 2 + 99);
    const file = Path.join(DATA, 'block', key.slice(0, 2), key);
    Fs.mkdirSync(Path.dirname(file), { recursive: true });
    Fs.writeFileSync(file, bytes);
    let res = await request('GET', `/block/${key.slice(0, 2)}/${key}`);
    assert.equal(res.status, 200, res.body.toString().slice(0, 200));
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    assert.equal(res.headers['cache-control'], 'public, max-age=0');
    assert.equal(res.headers['content-length'], String(bytes.length));
    assert.ok(res.body.equals(bytes));
    res = await request('HEAD', `/block/${key.slice(0, 2)}/${key}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], String(bytes.length));
    Fs.unlinkSync(file);
    res = await request('GET', `/block/${key.slice(0, 2)}/${key}`);
    assert.equal(res.status, 404);
});

// Last: under -DCPS_SANITIZE=ON a clean exit also means that the streams
// cut above (clients gone, blob deleted) left no leak and no report.
test('the server shuts down cleanly', { timeout: 30000 }, async () => {
    const code = await srv.stop();
    assert.equal(code, 0, srv.stderr().slice(-4000));
    assert.doesNotMatch(srv.stderr(), /Sanitizer|runtime error/, srv.stderr().slice(-4000));
});
