'use strict';
// Blobs (spec docs/protocol/rpc.md §5, §6, §8; docs/protocol/http.md §6, §8; docs/protocol/storage.md §4-§5), served
// by the plugin blob: uploads through signed RPC (UPLOAD_STATUS, UPLOAD,
// UPLOAD_CANCEL, UPLOAD_COMPLETE, OWNED_UPLOAD_COMPLETE) and through
// POST /upload-blob with upload cookies, downloads at /blob/<xx>/<id>
// (ranges, HEAD, CORS), quotas, owners' removal, GET_FILE_SIZE, and paths
// or bodies that must change nothing.
//
// Upload cookies come from POST /api/auth (UPLOAD_COOKIE) when that
// endpoint exists; until then from a small Lua fixture command that asks
// the storage role's BLOB_UPLOAD_COOKIE, as the /api/auth plugin will.
//
// Two servers: one with the defaults and one with
// instance = { max_upload_size = 5000, default_storage_limit = 4500 }.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const Http = require('node:http');
const Crypto = require('node:crypto');
const Nacl = require('tweetnacl');
const { startServer, withLog, tmpDir, listFiles } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');

const ROOT = tmpDir('cpsd-blob-');
const DATA = Path.join(ROOT, 'data');
// The data directory without data/challenges/: the auth plugin saves its
// index of outstanding challenges there on its own timer (up to a second
// after a challenge), which is not what these checks are about.
const blobFiles = () => {
    const f = listFiles(DATA);
    for (const k of Object.keys(f)) { if (k.startsWith('data/challenges')) { delete f[k]; } }
    return f;
};
const ROOT2 = tmpDir('cpsd-blob2-');
const DATA2 = Path.join(ROOT2, 'data');

// An authenticated Lua command giving the caller an upload cookie.
const COOKIE_LUA = `
cps.register_rpc("TEST_BLOB_COOKIE", function(args, ctx)
    local safe = (ctx.key:gsub("/", "-"))
    cps.query(cps.owner("storage", safe), "BLOB_UPLOAD_COOKIE", { key = ctx.key }, function(err, data)
        if err then ctx:error(err) else ctx:reply(data.cookie) end
    end)
end, "auth")
`;

let srv;
let srv2;
let HK;
let HK2;
const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv.guard(fn)(t));
const T2 = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv2.guard(fn)(t));

const config = (dir, extra = {}) => ({
    listen: { host: '127.0.0.1', port: 0, extra_ports: [] },
    lua_dirs: [dir],
    lua_scripts: ['blobcookie.lua'],
    ...extra,
});

before(withLog(() => srv2 || srv, async () => {
    for (const d of [ROOT, ROOT2]) {
        Fs.mkdirSync(Path.join(d, 'data'), { recursive: true });
        Fs.writeFileSync(Path.join(d, 'blobcookie.lua'), COOKIE_LUA);
    }
    srv = await startServer(config(ROOT), { dir: ROOT });
    srv2 = await startServer(config(ROOT2, {
        instance: { max_upload_size: 5000, default_storage_limit: 4500 },
    }), { dir: ROOT2 });
    let r = await C.rawReady(srv.url);
    HK = await R.learnHk(r);
    r.close();
    r = await C.rawReady(srv2.url);
    HK2 = await R.learnHk(r);
    r.close();
}));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
    if (srv2) { await srv2.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
    Fs.rmSync(ROOT2, { recursive: true, force: true });
});

// ------------------------------------------------------------ helpers

const blobId = () => Crypto.randomBytes(24).toString('hex');
const blobFile = (data, id) => Path.join(data, 'blob', id.slice(0, 2), id);
const stageFile = (data, keys) => Path.join(data, 'data', 'blobstage', keys.safe.slice(0, 2), keys.safe);
const size = (p) => { try { return Fs.statSync(p).size; } catch (e) { return null; } };

// One HTTP request with the exact path given (no normalisation).
const http = (port, method, path, { headers = {}, body } = {}) => new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(body);
    // A Content-Length, not chunked encoding (the host reads bodies by length).
    if (data) { headers = { ...headers, 'content-length': String(data.length) }; }
    const req = Http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
        const parts = [];
        res.on('data', (c) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts) }));
        res.on('error', reject);
    });
    req.setTimeout(15000, () => req.destroy(new Error(`${method} ${path}: timeout`)));
    // The server may answer (413) and close before it has read the body.
    req.on('error', (e) => { if (!['EPIPE', 'ECONNRESET'].includes(e.code)) { reject(e); } });
    if (data) { req.write(data); }
    req.end();
});

const getBlob = (port, id, headers = {}) => http(port, 'GET', `/blob/${id.slice(0, 2)}/${id}`, { headers });

const session = async (url, hk, keys = R.keyPair()) => {
    const r = await C.rawReady(url);
    const rpc = R.client(r, hk, keys);
    await rpc.call('COOKIE', '');
    return { r, rpc, keys };
};

// The websocket upload path (docs/protocol/rpc.md §8.2): unsigned UPLOAD with the cookie.
const uploadWs = async (rpc, id, bytes) => {
    const { reply } = await rpc.raw('UPLOAD', { chunk: R.b64(bytes), id }, { sig: null });
    if (R.isCookie(reply[1])) { rpc.cookie = reply[1]; }
    return reply;
};

const uploadRpc = async (rpc, id, content, chunk = 100000) => {
    assert.deepEqual(await rpc.call('UPLOAD_STATUS', { id, size: content.length }), [false]);
    for (let off = 0; off < content.length; off += chunk) {
        const part = content.subarray(off, off + chunk);
        const reply = await uploadWs(rpc, id, part);
        assert.notEqual(reply[1], 'ERROR', `UPLOAD: ${C.short(reply)}`);
        assert.deepEqual(reply.slice(2), [part.length]);
    }
};

// An upload cookie: POST /api/auth UPLOAD_COOKIE (docs/protocol/http.md §9) if served,
// else the Lua fixture.
let authMissing = null;
const uploadCookie = async (port, s, id) => {
    if (authMissing !== true) {
        const cmd = { command: 'UPLOAD_COOKIE', id, publicKey: s.keys.pub, nonce: R.b64(Crypto.randomBytes(24)) };
        const body = JSON.stringify(cmd);
        const r1 = await http(port, 'POST', '/api/auth', { body, headers: { 'content-type': 'application/json' } });
        if (r1.status === 404) {
            authMissing = true;
        } else {
            assert.equal(r1.status, 200, `UPLOAD_COOKIE round 1: ${r1.status} ${r1.body}`);
            const { txid, date } = JSON.parse(r1.body);
            const text = JSON.stringify({ ...cmd, txid, date });
            const sig = R.b64(Nacl.sign.detached(Buffer.from(text, 'utf8'), s.keys.secretKey));
            const r2 = await http(port, 'POST', '/api/auth', { body: JSON.stringify({ sig, txid }), headers: { 'content-type': 'application/json' } });
            assert.equal(r2.status, 200, `UPLOAD_COOKIE round 2: ${r2.status} ${r2.body}`);
            return JSON.parse(r2.body).cookie;
        }
    }
    return (await s.rpc.call('TEST_BLOB_COOKIE', id))[0];
};

const postChunk = (port, id, { chunk, cookie, keys, signer, edPublic }) => {
    const sig = R.b64(Nacl.sign(Buffer.from(cookie, 'utf8'), (signer || keys).secretKey));
    const body = JSON.stringify({ chunk: R.b64(chunk), sig, edPublic: edPublic || keys.pub });
    return http(port, 'POST', `/upload-blob/${id.slice(0, 2)}/${id}`, { body, headers: { 'content-type': 'application/json' } });
};

const json = (res) => JSON.parse(res.body.toString('utf8'));

// ------------------------------------------------------------ RPC uploads

T('upload through RPC, then GET returns the exact bytes; GET_FILE_SIZE counts them', async () => {
    const s = await session(srv.url, HK);
    const id = blobId();
    const content = Crypto.randomBytes(250000);
    await uploadRpc(s.rpc, id, content);
    assert.equal(size(stageFile(DATA, s.keys)), content.length, 'staged under data/blobstage/<xx>/<safeKey>');
    assert.deepEqual(await s.rpc.call('UPLOAD_COMPLETE', id), [id]);
    assert.equal(size(stageFile(DATA, s.keys)), null, 'the staging file moved');
    assert.ok(Fs.readFileSync(blobFile(DATA, id)).equals(content), 'stored at blob/<xx>/<id>');
    const res = await getBlob(srv.port, id);
    assert.equal(res.status, 200);
    assert.ok(res.body.equals(content), 'GET returns the uploaded bytes');
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    assert.equal(res.headers['content-length'], String(content.length));
    assert.equal(res.headers['accept-ranges'], 'bytes');
    assert.equal(res.headers['access-control-allow-origin'], '*');
    assert.match(res.headers['cache-control'], /max-age=31536000/);
    const r = await C.rawReady(srv.url);
    assert.deepEqual(await R.anon(r, HK, 'GET_FILE_SIZE', id), [content.length]);
    assert.deepEqual(await R.anon(r, HK, 'GET_FILE_SIZE', blobId()), [0], 'a missing blob has size 0');
    const multi = await R.anon(r, HK, 'GET_MULTIPLE_FILE_SIZE', [id]);
    assert.deepEqual(multi, [{ [id]: content.length }]);
    r.close();
    s.r.close();
});

T('completion onto an existing blob: RENAME_ERR, the blob unchanged; bad ids refused', async () => {
    const s = await session(srv.url, HK);
    const id = blobId();
    const first = Crypto.randomBytes(1000);
    await uploadRpc(s.rpc, id, first);
    assert.deepEqual(await s.rpc.call('UPLOAD_COMPLETE', id), [id]);
    await uploadRpc(s.rpc, blobId(), Crypto.randomBytes(500));
    assert.equal(await s.rpc.fail('UPLOAD_COMPLETE', id), 'RENAME_ERR');
    assert.equal(await s.rpc.fail('OWNED_UPLOAD_COMPLETE', id), 'EEXISTS');
    assert.ok(Fs.readFileSync(blobFile(DATA, id)).equals(first), 'the existing blob is left unchanged');
    assert.equal(Fs.existsSync(blobFile(DATA, id) + '.metadata.ndjson'), false, 'no owner added to it');
    assert.equal(size(stageFile(DATA, s.keys)), 500, 'the staged upload stays');
    for (const bad of ['../../../etc', id.toUpperCase(), id.slice(1), id + '0', 42, null]) {
        assert.equal(await s.rpc.fail('UPLOAD_COMPLETE', bad), 'INVALID_ID');
        assert.equal(await s.rpc.fail('OWNED_UPLOAD_COMPLETE', bad), 'EINVAL_ID');
    }
    // Nothing staged: RENAME_ERR, nothing created.
    const other = await session(srv.url, HK);
    const id2 = blobId();
    assert.equal(await other.rpc.fail('UPLOAD_COMPLETE', id2), 'RENAME_ERR');
    assert.notEqual(await other.rpc.fail('OWNED_UPLOAD_COMPLETE', id2), undefined);
    assert.equal(Fs.existsSync(blobFile(DATA, id2)), false);
    assert.equal(Fs.existsSync(blobFile(DATA, id2) + '.metadata.ndjson'), false, 'the metadata of a failed completion is removed');
    s.r.close();
    other.r.close();
});

T('UPLOAD rules: NOT_READY before UPLOAD_STATUS, E_OVER_LIMIT past the announced size, NO_COOKIE, cancel', async () => {
    const s = await session(srv.url, HK);
    const id = blobId();
    let reply = await uploadWs(s.rpc, id, Buffer.from('abc'));
    assert.deepEqual(reply.slice(1), ['ERROR', 'NOT_READY']);
    assert.equal(size(stageFile(DATA, s.keys)), null);

    assert.deepEqual(await s.rpc.call('UPLOAD_STATUS', { id, size: 10 }), [false]);
    reply = await uploadWs(s.rpc, id, Buffer.alloc(20, 1));            // the last chunk may overshoot
    assert.deepEqual(reply.slice(2), [20]);
    reply = await uploadWs(s.rpc, id, Buffer.alloc(5, 2));
    assert.deepEqual(reply.slice(1), ['ERROR', 'E_OVER_LIMIT']);
    assert.equal(size(stageFile(DATA, s.keys)), 20, 'a refused chunk appends nothing');

    // An UPLOAD whose cookie is not valid appends nothing.
    const { reply: bad } = await s.rpc.raw('UPLOAD', { chunk: R.b64(Buffer.alloc(3)), id }, { sig: null, cookie: '1|2|3' });
    assert.deepEqual(bad.slice(1), ['ERROR', 'NO_COOKIE']);
    assert.equal(size(stageFile(DATA, s.keys)), 20);

    // A staged upload: UPLOAD_STATUS says true; cancel; then false, from zero.
    assert.deepEqual(await s.rpc.call('UPLOAD_STATUS', { id, size: 10 }), [true]);
    assert.equal(await s.rpc.fail('UPLOAD_CANCEL', { id, size: 0 }), 'INVALID_FILESIZE');
    assert.equal(await s.rpc.fail('UPLOAD_CANCEL', { id }), 'INVALID_FILESIZE');
    assert.deepEqual(await s.rpc.call('UPLOAD_CANCEL', { id, size: 7 }), []);
    assert.equal(size(stageFile(DATA, s.keys)), null, 'the staging file is deleted');
    assert.equal(await s.rpc.fail('UPLOAD_CANCEL', { id, size: 7 }), 'E_UNLINK');
    assert.deepEqual(await s.rpc.call('UPLOAD_STATUS', { id, size: 7 }), [false]);
    const content = Buffer.from('1234567');
    reply = await uploadWs(s.rpc, id, content);
    assert.deepEqual(reply.slice(2), [7]);
    assert.deepEqual(await s.rpc.call('UPLOAD_COMPLETE', id), [id]);
    assert.ok((await getBlob(srv.port, id)).body.equals(content), 'nothing of the cancelled upload');
    // After completion a new upload starts with UPLOAD_STATUS again.
    reply = await uploadWs(s.rpc, id, Buffer.from('x'));
    assert.deepEqual(reply.slice(1), ['ERROR', 'NOT_READY']);
    assert.equal(await s.rpc.fail('UPLOAD_STATUS', { id, size: -1 }), 'E_INVALID_SIZE');
    assert.equal(await s.rpc.fail('UPLOAD_STATUS', { id, size: 'big' }), 'E_INVALID_SIZE');
    s.r.close();
});

// ------------------------------------------------------------ downloads

T('Range, HEAD, 416 and OPTIONS on /blob', async () => {
    const s = await session(srv.url, HK);
    const id = blobId();
    const content = Crypto.randomBytes(5000);
    await uploadRpc(s.rpc, id, content);
    await s.rpc.call('UPLOAD_COMPLETE', id);
    s.r.close();

    let res = await getBlob(srv.port, id, { range: 'bytes=0-1' });
    assert.equal(res.status, 206);
    assert.equal(res.headers['content-range'], 'bytes 0-1/5000');
    assert.equal(res.headers['accept-ranges'], 'bytes');
    assert.ok(res.body.equals(content.subarray(0, 2)));
    res = await getBlob(srv.port, id, { range: 'bytes=2-4001' });
    assert.equal(res.status, 206);
    assert.equal(res.headers['content-range'], 'bytes 2-4001/5000');
    assert.ok(res.body.equals(content.subarray(2, 4002)));
    res = await getBlob(srv.port, id, { range: 'bytes=4990-' });
    assert.equal(res.headers['content-range'], 'bytes 4990-4999/5000');
    assert.ok(res.body.equals(content.subarray(4990)));
    res = await getBlob(srv.port, id, { range: 'bytes=-100' });
    assert.equal(res.status, 206);
    assert.ok(res.body.equals(content.subarray(4900)));
    res = await getBlob(srv.port, id, { range: 'bytes=4000-999999' });
    assert.equal(res.headers['content-range'], 'bytes 4000-4999/5000');
    assert.equal(res.body.length, 1000);
    for (const r of ['bytes=5000-', 'bytes=6000-7000', 'bytes=-0']) {
        res = await getBlob(srv.port, id, { range: r });
        assert.equal(res.status, 416, r);
        assert.equal(res.headers['content-range'], 'bytes */5000', r);
        assert.equal(res.body.length, 0);
    }
    // Not one plain range: the whole blob.
    for (const r of ['bytes=0-1,5-6', 'items=0-1', 'bytes=5-2', 'bytes=x-y']) {
        res = await getBlob(srv.port, id, { range: r });
        assert.equal(res.status, 200, r);
        assert.ok(res.body.equals(content), r);
    }
    res = await http(srv.port, 'HEAD', `/blob/${id.slice(0, 2)}/${id}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], '5000');
    assert.equal(res.body.length, 0);
    assert.equal(res.headers['access-control-expose-headers'], 'Content-Length');
    assert.equal(res.headers['access-control-allow-headers'], 'Content-Length');
    assert.equal(res.headers['access-control-allow-origin'], '*');
    res = await http(srv.port, 'OPTIONS', `/blob/${id.slice(0, 2)}/${id}`);
    assert.equal(res.status, 204);
    assert.equal(res.headers['access-control-allow-methods'], 'GET, OPTIONS');
    assert.match(res.headers['access-control-allow-headers'], /Range/);
    assert.equal(res.headers['access-control-max-age'], '1728000');
    assert.equal(res.headers['access-control-allow-origin'], '*');
    res = await getBlob(srv.port, blobId());
    assert.equal(res.status, 404, 'a missing blob');
    res = await http(srv.port, 'HEAD', `/blob/${id.slice(0, 2)}/${blobId()}`);
    assert.equal(res.status, 404);
});

T('paths that try to leave the blob store answer 404 and read nothing', async () => {
    let id = blobId();
    while (!/^[a-f][0-9]/.test(id)) { id = blobId(); }   // uppercase and swapped prefixes differ
    const secretRel = Path.join('blob', id.slice(0, 2), 'x');
    Fs.mkdirSync(Path.dirname(Path.join(DATA, secretRel)), { recursive: true });
    Fs.writeFileSync(Path.join(DATA, secretRel), 'SECRET');
    Fs.writeFileSync(blobFile(DATA, id), 'BLOB');
    Fs.writeFileSync(blobFile(DATA, id) + '.metadata.ndjson', 'META');
    const xx = id.slice(0, 2);
    const paths = [
        '/blob/..%2f..%2fconfig.lua', '/blob/../config.lua', '/blob/%2e%2e/%2e%2e/config.lua',
        `/blob/${xx}/..%2f..%2f..%2fconfig.lua`, `/blob/${xx}/${id.slice(0, 47)}`, `/blob/${xx}/${id}0`,
        `/blob/${xx}/${id.toUpperCase()}`, `/blob/${xx.toUpperCase()}/${id}`,
        `/blob/${id[1]}${id[0]}/${id}`, `/blob/${xx}/${id}.metadata.ndjson`, `/blob/${xx}/x`,
        `/blob/${xx}/${id}/`, `/blob/${xx}/${id}/x`, `/blob/${id}`,
        `/blob/${xx}/${id.slice(0, 46)}%30`, '/blob/', '/blob/placeholder.txt',
    ];
    for (const p of paths) {
        const res = await http(srv.port, 'GET', p);
        assert.equal(res.status, 404, p);
        assert.ok(!res.body.includes('SECRET') && !res.body.includes('META') && !res.body.includes('return'), p);
    }
    // libwebsockets decodes %2f and merges "//" before routing: these are
    // the blob's own path.
    for (const p of [`/blob/${xx}%2f${id}`, `/blob/${xx}//${id}`]) {
        const res = await http(srv.port, 'GET', p);
        assert.ok(res.status === 404 || res.body.toString() === 'BLOB', `${p}: the blob or nothing`);
    }
    const ok = await getBlob(srv.port, id);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.toString(), 'BLOB');
});

// ------------------------------------------------------------ HTTP uploads

T('upload through POST /upload-blob with cookies; refused chunks append nothing', async () => {
    const s = await session(srv.url, HK);
    const id = blobId();
    const parts = [Crypto.randomBytes(128 * 1024 + 16), Crypto.randomBytes(128 * 1024 + 16), Crypto.randomBytes(777)];
    const total = parts.reduce((n, p) => n + p.length, 0);
    assert.deepEqual(await s.rpc.call('UPLOAD_STATUS', { id, size: total }), [false]);
    if (authMissing === null) { /* first use decides */ }
    let cookie = await uploadCookie(srv.port, s, id);
    if (authMissing) { test.diagnostic?.('POST /api/auth answers 404: cookies from the Lua fixture (BLOB_UPLOAD_COOKIE)'); }
    assert.match(cookie, /^[0-9a-f]{32}$/);
    const cookieFile = stageFile(DATA, s.keys) + '.cookie';
    assert.equal(Fs.readFileSync(cookieFile, 'utf8'), cookie, 'blobstage/<xx>/<safeKey>.cookie holds it');

    let res = await postChunk(srv.port, id, { chunk: parts[0], cookie, keys: s.keys });
    assert.equal(res.status, 200, String(res.body));
    assert.equal(res.headers['access-control-allow-origin'], '*');
    const used = cookie;
    cookie = json(res).cookie;
    assert.match(cookie, /^[0-9a-f]{32}$/);
    assert.notEqual(cookie, used);
    assert.equal(size(stageFile(DATA, s.keys)), parts[0].length);

    // A used cookie, an invented one, another key's signature, a bad key.
    const before = blobFiles();
    res = await postChunk(srv.port, id, { chunk: parts[1], cookie: used, keys: s.keys });
    assert.equal(res.status, 403);
    assert.deepEqual(json(res), { error: 'INVALID_COOKIE' });
    res = await postChunk(srv.port, id, { chunk: parts[1], cookie: 'ab'.repeat(16), keys: s.keys });
    assert.deepEqual([res.status, json(res)], [403, { error: 'INVALID_COOKIE' }]);
    const other = R.keyPair();
    res = await postChunk(srv.port, id, { chunk: parts[1], cookie, keys: s.keys, signer: other });
    assert.deepEqual([res.status, json(res)], [403, { error: 'INVALID_KEY' }]);
    res = await postChunk(srv.port, id, { chunk: parts[1], cookie, keys: s.keys, edPublic: 'AAAA' });
    assert.deepEqual([res.status, json(res)], [403, { error: 'INVALID_KEY' }]);
    // The other key's own chunk, signed correctly, over the first key's cookie.
    res = await postChunk(srv.port, id, { chunk: parts[1], cookie, keys: other });
    assert.deepEqual([res.status, json(res)], [403, { error: 'INVALID_COOKIE' }]);
    assert.deepEqual(blobFiles(), before, 'refused chunks change nothing');

    // The fresh cookie still works after those refusals.
    res = await postChunk(srv.port, id, { chunk: parts[1], cookie, keys: s.keys });
    assert.equal(res.status, 200, String(res.body));
    cookie = json(res).cookie;
    res = await postChunk(srv.port, id, { chunk: parts[2], cookie, keys: s.keys });
    assert.equal(res.status, 200, String(res.body));
    assert.deepEqual(await s.rpc.call('UPLOAD_COMPLETE', id), [id]);
    assert.equal(Fs.existsSync(cookieFile), false, 'completion deletes the cookie');
    const got = await getBlob(srv.port, id);
    assert.ok(got.body.equals(Buffer.concat(parts)), 'the chunks in order');
    // A cookie from before completion is dead.
    res = await postChunk(srv.port, id, { chunk: parts[2], cookie: json(res).cookie, keys: s.keys });
    assert.equal(res.status, 403);

    res = await http(srv.port, 'OPTIONS', `/upload-blob/${id.slice(0, 2)}/${id}`);
    assert.equal(res.status, 204);
    assert.equal(res.headers['access-control-allow-methods'], 'POST, OPTIONS');
    assert.equal(res.headers['access-control-allow-origin'], '*');
    s.r.close();
});

T('malformed and oversized /upload-blob bodies: the right status, nothing changes', async () => {
    const s = await session(srv.url, HK);
    const id = blobId();
    assert.deepEqual(await s.rpc.call('UPLOAD_STATUS', { id, size: 1000 }), [false]);
    const cookie = await uploadCookie(srv.port, s, id);
    const path = `/upload-blob/${id.slice(0, 2)}/${id}`;
    const sig = R.b64(Nacl.sign(Buffer.from(cookie), s.keys.secretKey));
    const before = blobFiles();
    const post = (body) => http(srv.port, 'POST', path, { body, headers: { 'content-type': 'application/json' } });
    let res = await post('{not json');
    assert.equal(res.status, 400);
    res = await post('');
    assert.equal(res.status, 400);
    res = await post('[1,2]');
    assert.equal(res.status, 500);
    res = await post(JSON.stringify({ sig, edPublic: s.keys.pub }));
    assert.equal(res.status, 500, 'no chunk');
    res = await post(JSON.stringify({ chunk: 'AAAA', edPublic: s.keys.pub }));
    assert.equal(res.status, 403, 'no signature');
    res = await post(JSON.stringify({ chunk: 'AAAA', sig: 'bm90IGEgc2lnbmF0dXJl', edPublic: s.keys.pub }));
    assert.equal(res.status, 403, 'a signature too short');
    const big = JSON.stringify({ chunk: 'A'.repeat(600 * 1024), sig, edPublic: s.keys.pub });
    res = await post(big);
    assert.equal(res.status, 413);
    assert.deepEqual(blobFiles(), before, 'nothing written');
    // The cookie was not used up by any of them.
    res = await postChunk(srv.port, id, { chunk: Buffer.from('ok'), cookie, keys: s.keys });
    assert.equal(res.status, 200, String(res.body));
    // A body just under the limit is read (and refused by size rules only).
    res = await http(srv.port, 'GET', path);
    assert.equal(res.status, 404, 'GET /upload-blob is no route');
    s.r.close();
});

// ------------------------------------------------------------ owners

T('OWNED_UPLOAD_COMPLETE, then REMOVE_OWNED_CHANNEL by another key and by the owner', async () => {
    const owner = await session(srv.url, HK, R.keyPairWhere(k => k.includes('/')));
    const id = blobId();
    const content = Crypto.randomBytes(3000);
    await uploadRpc(owner.rpc, id, content);
    assert.deepEqual(await owner.rpc.call('OWNED_UPLOAD_COMPLETE', id), [id]);
    assert.equal(Fs.readFileSync(blobFile(DATA, id) + '.metadata.ndjson', 'utf8'),
        `{"owners":["${owner.keys.pub}"]}\n`, 'the owner in unsafe form');
    assert.ok((await getBlob(srv.port, id)).body.equals(content));

    const other = await session(srv.url, HK);
    assert.equal(await other.rpc.fail('REMOVE_OWNED_CHANNEL', { channel: id, reason: 'x' }), 'INSUFFICIENT_PERMISSIONS');
    assert.ok((await getBlob(srv.port, id)).body.equals(content), 'the blob is untouched');
    // An unowned blob cannot be removed by anyone.
    const id2 = blobId();
    await uploadRpc(other.rpc, id2, Buffer.from('unowned'));
    await other.rpc.call('UPLOAD_COMPLETE', id2);
    assert.equal(await other.rpc.fail('REMOVE_OWNED_CHANNEL', { channel: id2, reason: '' }), 'INSUFFICIENT_PERMISSIONS');
    assert.equal((await getBlob(srv.port, id2)).status, 200);
    assert.equal(await other.rpc.fail('REMOVE_OWNED_CHANNEL', { channel: id.toUpperCase() }), 'INVALID_ARGUMENTS');

    assert.deepEqual(await owner.rpc.call('REMOVE_OWNED_CHANNEL', { channel: id, reason: 'gone' }), ['OK']);
    assert.equal((await getBlob(srv.port, id)).status, 404, '404 afterwards');
    assert.equal(Fs.existsSync(blobFile(DATA, id)), false);
    assert.ok(Fs.readFileSync(Path.join(DATA, 'data', 'archive', 'blob', id.slice(0, 2), id)).equals(content), 'archived');
    assert.ok(Fs.existsSync(Path.join(DATA, 'data', 'archive', 'blob', id.slice(0, 2), id + '.metadata.ndjson')));
    const r = await C.rawReady(srv.url);
    assert.deepEqual(await R.anon(r, HK, 'GET_FILE_SIZE', id), [0]);
    r.close();
    assert.equal(await owner.rpc.fail('REMOVE_OWNED_CHANNEL', { channel: id, reason: 'again' }), 'INSUFFICIENT_PERMISSIONS');
    owner.r.close();
    other.r.close();
});

// ------------------------------------------------------------ quota

T2('quota: TOO_LARGE beyond max_upload_size, NOT_ENOUGH_SPACE beyond the free space', async () => {
    const s = await session(srv2.url, HK2);
    const id = blobId();
    assert.equal(await s.rpc.fail('UPLOAD_STATUS', { id, size: 5001 }), 'TOO_LARGE');
    assert.equal(await s.rpc.fail('UPLOAD_STATUS', { id, size: 4500 }), 'NOT_ENOUGH_SPACE');
    // Pinned data counts: 3000 bytes pinned leave 1500 free (size must be below).
    const content = Crypto.randomBytes(3000);
    await uploadRpc(s.rpc, id, content);
    await s.rpc.call('UPLOAD_COMPLETE', id);
    assert.deepEqual(await s.rpc.call('PIN', [id]), []);
    assert.deepEqual(await s.rpc.call('GET_TOTAL_SIZE'), [3000]);
    assert.equal(await s.rpc.fail('UPLOAD_STATUS', { id: blobId(), size: 1500 }), 'NOT_ENOUGH_SPACE');
    assert.equal(size(stageFile(DATA2, s.keys)), null, 'nothing staged by a refusal');
    assert.deepEqual(await s.rpc.call('UPLOAD_STATUS', { id: blobId(), size: 1499 }), [false]);
    s.r.close();
});

// Last: both servers stop cleanly (under -DCPS_SANITIZE=ON this also means
// no leak and no sanitizer report from the upload paths above).
test('the servers shut down cleanly', { timeout: 30000 }, async () => {
    for (const s of [srv, srv2]) {
        const code = await s.stop();
        assert.equal(code, 0, s.stderr().slice(-4000));
        assert.doesNotMatch(s.stderr(), /Sanitizer|runtime error/, s.stderr().slice(-4000));
    }
});
