'use strict';
// The web side (docs/protocol/http.md §3-§5), served by the plugin `web`: the
// configuration endpoints (/api/config byte-exact, /api/broadcast,
// /api/instance, /extensions.js, /api/logo) and the static files of a small
// fake CryptPad checkout written in a temporary directory, on the main port
// and the sandbox port (listen.extra_ports): lookup order, content types,
// headers (CSP and its office variant, COEP, CORP, ACAO, Cache-Control),
// HEAD, conditional and range requests, 404 page, path traversal.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Net = require('node:net');
const Http = require('node:http');
const Path = require('node:path');
const Zlib = require('node:zlib');
const { startServer, withLog, tmpDir } = require('./lib/server');

const ROOT = tmpDir('cpsd-web-');
const CP = Path.join(ROOT, 'cryptpad');      // the fake checkout
const SECRET = 'top secret, outside the checkout\n';
let srv;        // with the checkout
let bare;       // without cryptpad_root
let MAIN; let SANDBOX; let BARE;
let MAIN_ORIGIN; let SANDBOX_ORIGIN;

const PLUGINS = ['storage-fs', 'web'];

const freePort = () => new Promise((resolve, reject) => {
    const s = Net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
    });
});

const write = (rel, data) => {
    const p = Path.join(CP, rel);
    Fs.mkdirSync(Path.dirname(p), { recursive: true });
    Fs.writeFileSync(p, data);
};

const BIG_JS = 'console.log("compressed");\n'.repeat(200);
const TYPES = {
    html: 'text/html', js: 'application/javascript', mjs: 'application/javascript', css: 'text/css',
    json: 'application/json', svg: 'image/svg+xml', png: 'image/png', jpg: 'image/jpeg', gif: 'image/gif',
    ico: 'image/x-icon', woff: 'font/woff', woff2: 'font/woff2', ttf: 'font/ttf', wasm: 'application/wasm',
    map: 'application/json', txt: 'text/plain', md: 'text/markdown', pdf: 'application/pdf',
    xml: 'application/xml', webp: 'image/webp', mp3: 'audio/mpeg', mp4: 'video/mp4', webm: 'video/webm',
    less: 'text/less', bin: 'application/octet-stream',
};

const makeCheckout = () => {
    write('package.json', JSON.stringify({ name: 'cryptpad', version: '1.2.3' }));
    write('www/index.html', '<p>www index</p>\n');
    write('www/common/x.js', 'www common x\n');
    write('www/common/both.js', 'from www/common\n');
    write('src/common/both.js', 'from src/common\n');
    write('src/common/y.js', 'src common y\n');
    write('www/pad/index.html', '<p>pad</p>\n');
    write('www/sheet/inner.html', '<p>sheet inner</p>\n');
    write('www/common/onlyoffice/x.html', '<p>oo</p>\n');
    write('www/common/onlyoffice/dist/v8/fonts/f.woff2', 'font');
    write('www/common/onlyoffice/dist/v7/.keep', '');
    write('www/common/feedback.html', '<p>feedback</p>\n');
    write('www/override.js', 'from www\n');
    write('customize/www/override.js', 'from customize/www\n');
    write('www/common/big.js', BIG_JS);
    write('www/common/big.js.gz', Zlib.gzipSync(BIG_JS));
    write('customize.dist/a.css', 'customize.dist a\n');
    write('customize/a.css', 'customize a\n');
    write('customize.dist/b.css', 'customize.dist b\n');
    write('customize.dist/contact.html', '<p>dist contact</p>\n');
    write('customize.dist/features.html', '<p>dist features</p>\n');
    write('customize/features.html', '<p>custom features</p>\n');
    write('customize.dist/favicon.ico', 'ico');
    write('customize.dist/CryptPad_logo_hero.svg', '<svg>dist logo</svg>');
    write('customize.dist/404.html', '<p>dist 404</p>\n');
    write('customize/404.html', '<p>custom 404</p>\n');
    for (const ext of Object.keys(TYPES)) { write(`www/t/f.${ext}`, `f.${ext}`); }
    write('www/t/range.txt', '0123456789');
    // outside the checkout, and links that lead there
    Fs.writeFileSync(Path.join(ROOT, 'secret.txt'), SECRET);
    Fs.mkdirSync(Path.join(ROOT, 'outside'), { recursive: true });
    Fs.writeFileSync(Path.join(ROOT, 'outside', 'secret.txt'), SECRET);
    Fs.symlinkSync(Path.join(ROOT, 'outside'), Path.join(CP, 'www', 'evil'));
    Fs.symlinkSync(Path.join(ROOT, 'secret.txt'), Path.join(CP, 'www', 'secret.txt'));
};

// One request with a raw path (Node sends it as given).
const get = (port, path, { method = 'GET', headers = {} } = {}) => new Promise((resolve, reject) => {
    const req = Http.request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
        const chunks = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => {
            const body = Buffer.concat(chunks);
            resolve({ status: res.statusCode, headers: res.headers, body, text: body.toString('utf8') });
        });
        res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error(`timeout on ${path}`)));
    req.end();
});

before(withLog(() => bare || srv, async () => {
    makeCheckout();
    [MAIN, SANDBOX, BARE] = [await freePort(), await freePort(), await freePort()];
    MAIN_ORIGIN = `http://127.0.0.1:${MAIN}`;
    SANDBOX_ORIGIN = `http://127.0.0.1:${SANDBOX}`;
    srv = await startServer({
        listen: { host: '127.0.0.1', port: MAIN, extra_ports: [SANDBOX] },
        plugins: PLUGINS,
        admin: { keys: ['AdminKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='] },
        instance: {
            main_origin: MAIN_ORIGIN + '/',           // a trailing slash is dropped
            sandbox_origin: SANDBOX_ORIGIN,
            restrict_registration: true,
            default_storage_limit: 1234567,
            max_upload_size: 7654321,
            premium_upload_size: 9999999,
        },
        web: {
            cryptpad_root: CP,
            fresh_key: 'fk42',
            admin_email: 'admin@example.org',
            instance_name: 'Test instance',
            instance_description: { default: 'A test', fr: 'Un test' },
            accent_color: '#123456',
            last_broadcast_hash: 'bh',
            survey_url: 'https://survey.example',
            maintenance: { start: 1, end: Date.now() + 86400000 },
        },
    }, { dir: Path.join(ROOT, 'srv') });
    // the quota /api/config announces is the one rpc-pin enforces
    bare = await startServer({
        listen: { host: '127.0.0.1', port: BARE, extra_ports: [] },
        plugins: ['storage-fs', 'rpc-pin', 'web'],
        instance: { default_storage_limit: 4444444 },
    }, { dir: Path.join(ROOT, 'bare') });
}));

after(async () => {
    if (srv) { await srv.stop(); }
    if (bare) { await bare.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
});

const T = (name, fn) => test(name, { timeout: 30000 }, () => srv.guard(fn)());

const PREFIX = 'define(function(){;\nreturn ';
const SUFFIX = ';\n});';

// The module wrapper clients slice at fixed offsets (§5.1).
const sliced = (text) => {
    assert.equal(PREFIX.length, 27);
    assert.ok(text.startsWith(PREFIX), `prefix of ${JSON.stringify(text.slice(0, 40))}`);
    assert.ok(text.endsWith(SUFFIX), `suffix of ${JSON.stringify(text.slice(-20))}`);
    const obj = JSON.parse(text.slice(27, -5));
    // byte for byte what Node's JSON.stringify(obj, null, '\t') writes
    assert.equal(text, PREFIX + JSON.stringify(obj, null, '\t') + SUFFIX);
    return obj;
};

const commonHeaders = (h, { csp = true } = {}) => {
    assert.equal(h['x-content-type-options'], 'nosniff');
    assert.equal(h['x-xss-protection'], '1; mode=block');
    assert.equal(h['referrer-policy'], 'same-origin');
    assert.equal(h['permissions-policy'], 'interest-cohort=()');
    assert.equal(h['cross-origin-resource-policy'], 'cross-origin');
    assert.equal(h['cross-origin-embedder-policy'], 'require-corp');
    assert.equal(h['access-control-allow-origin'], SANDBOX_ORIGIN);
    if (csp) { assert.ok(h['content-security-policy'], 'a CSP'); }
    else { assert.equal(h['content-security-policy'], undefined); }
};

const expectedCsp = (office) => [
    "default-src 'none'",
    `style-src 'unsafe-inline' 'self' ${MAIN_ORIGIN}`,
    `font-src 'self' data: ${MAIN_ORIGIN}`,
    `child-src ${MAIN_ORIGIN}`,
    `frame-src 'self' blob: ${SANDBOX_ORIGIN}`,
    `connect-src 'self' blob: ${MAIN_ORIGIN} ${SANDBOX_ORIGIN} ws://127.0.0.1:${MAIN}`,
    `img-src 'self' data: blob: ${MAIN_ORIGIN}`,
    'media-src blob:',
    `frame-ancestors 'self' ${MAIN_ORIGIN}`,
    "worker-src 'self'",
    office ? `script-src 'self' 'unsafe-eval' 'unsafe-inline' resource: ${MAIN_ORIGIN}`
        : `script-src 'self' resource: ${MAIN_ORIGIN}`,
].join('; ');

// ------------------------------------------------------------ §5 endpoints

T('/api/config: byte-exact wrapper, fields from the configuration, both ports', async () => {
    for (const port of [MAIN, SANDBOX]) {
        for (const path of ['/api/config', '/api/config?cb=0123abcd']) {
            const r = await get(port, path);
            assert.equal(r.status, 200);
            assert.equal(r.headers['content-type'], 'text/javascript');
            commonHeaders(r.headers, { csp: false });
            assert.equal(r.headers['cache-control'], 'no-cache');
            const c = sliced(r.text);
            assert.deepEqual(c.requireConf, { waitSeconds: 600, urlArgs: 'ver=1.2.3-fk42' });
            assert.equal(Object.keys(c)[0], 'requireConf');
            assert.equal(c.httpUnsafeOrigin, MAIN_ORIGIN);
            assert.equal(c.httpSafeOrigin, SANDBOX_ORIGIN);
            assert.deepEqual(c.adminKeys, ['AdminKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=']);
            assert.deepEqual(c.moderatorKeys, []);
            assert.equal(c.restrictRegistration, true);
            assert.equal(c.restrictSsoRegistration, false);
            assert.equal(c.defaultStorageLimit, 1234567);
            assert.equal(c.maxUploadSize, 7654321);
            assert.equal(c.premiumUploadSize, 9999999);
            assert.equal(c.adminEmail, 'admin@example.org');
            assert.equal(c.enableEmbedding, false);
            assert.equal(c.removeDonateButton, false);
            assert.equal(c.sso, false);
            assert.deepEqual(c.appsToDisable, []);
            // the v* directories of www/common/onlyoffice/dist
            assert.deepEqual(c.onlyOffice.availableVersions.slice().sort(), ['v7', 'v8']);
            assert.ok(!('websocketPath' in c), 'default websocket path left out');
            assert.ok(!('fileHost' in c));
        }
    }
});

T('/api/broadcast: same wrapper, curvePublic, maintenance', async () => {
    const r = await get(MAIN, `/api/broadcast?${Date.now()}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/javascript');
    commonHeaders(r.headers, { csp: false });
    const b = sliced(r.text);
    assert.equal(Buffer.from(b.curvePublic, 'base64').length, 32);
    assert.equal(Buffer.from(b.curvePublic, 'base64').toString('base64'), b.curvePublic);
    assert.equal(b.lastBroadcastHash, 'bh');
    assert.equal(b.surveyURL, 'https://survey.example');
    assert.equal(b.maintenance.start, 1);
    assert.ok(b.maintenance.end > Date.now());
    // the key is the same for every request of this process
    const again = sliced((await get(SANDBOX, '/api/broadcast')).text);
    assert.equal(again.curvePublic, b.curvePublic);
});

T('/api/instance: AMD module with the instance texts', async () => {
    const r = await get(MAIN, '/api/instance');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/javascript');
    commonHeaders(r.headers);
    const pre = 'define(function (){\n    return ';
    assert.ok(r.text.startsWith(pre));
    assert.ok(r.text.endsWith(';\n});'));
    const i = JSON.parse(r.text.slice(pre.length, -5));
    assert.deepEqual(i, {
        color: '#123456',
        name: { default: 'Test instance' },
        description: { default: 'A test', fr: 'Un test' },
        location: {},
        notice: {},
    });
});

T('/extensions.js: a loader defining the (empty) plugin list', async () => {
    const r = await get(MAIN, '/extensions.js');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/javascript');
    commonHeaders(r.headers);
    assert.match(r.text, /^let extensions = \[\];\nlet styles = \[\];\n/);
    assert.match(r.text, /define\(paths, function \(\) \{/);
    // it runs as an AMD module and yields []
    let got;
    // eslint-disable-next-line no-new-func
    new Function('window', 'define', r.text)({ cryptpadLanguage: 'en' }, (paths, fn) => { got = [paths, fn()]; });
    assert.deepEqual(got, [[], []]);
});

T('/api/logo: the checkout logo inline; without a checkout a redirect', async () => {
    const r = await get(MAIN, '/api/logo?ver=1.2.3');
    assert.equal(r.status, 200);
    assert.equal(r.text, '<svg>dist logo</svg>');
    assert.equal(r.headers['content-type'], 'image/svg+xml');
    assert.equal(r.headers['content-disposition'], 'inline');
    commonHeaders(r.headers);
    const b = await get(BARE, '/api/logo');
    assert.equal(b.status, 302);
    assert.equal(b.headers.location, '/customize/CryptPad_logo_hero.svg');
});

// ------------------------------------------------------------ §3 static

T('lookup order: customize/www, www, src/common, customize, customize.dist', async () => {
    const cases = [
        ['/', '<p>www index</p>\n'],
        ['/override.js', 'from customize/www\n'],
        ['/common/x.js', 'www common x\n'],
        ['/common/both.js', 'from www/common\n'],
        ['/common/y.js', 'src common y\n'],
        ['/customize/a.css', 'customize a\n'],
        ['/customize/b.css', 'customize.dist b\n'],
        ['/customize.dist/a.css', 'customize.dist a\n'],
        ['/contact.html', '<p>dist contact</p>\n'],
        ['/features.html', '<p>custom features</p>\n'],
        ['/favicon.ico', 'ico'],
        ['/pad/', '<p>pad</p>\n'],
        ['/pad/index.html', '<p>pad</p>\n'],
        ['/common/feedback.html?NEW_PAD=1', '<p>feedback</p>\n'],
    ];
    for (const port of [MAIN, SANDBOX]) {
        for (const [path, body] of cases) {
            const r = await get(port, path);
            assert.equal(r.status, 200, `${path} on ${port}`);
            assert.equal(r.text, body, path);
        }
    }
});

T('a directory without its slash is redirected', async () => {
    const r = await get(MAIN, '/pad?x=1');
    assert.equal(r.status, 301);
    assert.equal(r.headers.location, '/pad/?x=1');
    commonHeaders(r.headers);
    // never to another host
    const r2 = await get(MAIN, '//pad');
    if (r2.status === 301) { assert.ok(!r2.headers.location.startsWith('//'), r2.headers.location); }
});

T('content types by extension', async () => {
    for (const [ext, type] of Object.entries(TYPES)) {
        const r = await get(MAIN, `/t/f.${ext}`);
        assert.equal(r.status, 200, ext);
        assert.equal(r.text, `f.${ext}`);
        assert.equal(r.headers['content-type'].split(';')[0], type, ext);
    }
    assert.equal((await get(MAIN, '/t/f.html')).headers['content-type'], 'text/html; charset=UTF-8');
});

T('pre-compressed .gz sibling when the client takes gzip', async () => {
    const z = await get(MAIN, '/common/big.js', { headers: { 'accept-encoding': 'gzip, deflate' } });
    assert.equal(z.status, 200);
    assert.equal(z.headers['content-encoding'], 'gzip');
    assert.match(z.headers['content-type'], /^application\/javascript/);
    assert.equal(z.headers.vary, 'Accept-Encoding');
    assert.equal(Zlib.gunzipSync(z.body).toString(), BIG_JS);
    const p = await get(MAIN, '/common/big.js');
    assert.equal(p.headers['content-encoding'], undefined);
    assert.equal(p.text, BIG_JS);
    const q0 = await get(MAIN, '/common/big.js', { headers: { 'accept-encoding': 'gzip;q=0' } });
    assert.equal(q0.text, BIG_JS);
});

T('headers: CSP (office variant on the OnlyOffice pages), COEP+CORP, ACAO, Cache-Control', async () => {
    for (const port of [MAIN, SANDBOX]) {
        const std = await get(port, '/pad/');
        commonHeaders(std.headers);
        assert.equal(std.headers['content-security-policy'], expectedCsp(false));
        assert.equal(std.headers['cache-control'], 'no-cache');
        for (const path of ['/sheet/inner.html', '/sheet/inner.html?ver=1', '/common/onlyoffice/x.html']) {
            const o = await get(port, path);
            assert.equal(o.status, 200, path);
            assert.equal(o.headers['content-security-policy'], expectedCsp(true), path);
        }
        const v = await get(port, '/common/x.js?ver=1.2.3-fk42');
        assert.equal(v.headers['cache-control'], 'max-age=31536000');
        const v2 = await get(port, '/common/x.js?a=1&ver=2');
        assert.equal(v2.headers['cache-control'], 'max-age=31536000');
        const v3 = await get(port, '/common/x.js?version=2');
        assert.equal(v3.headers['cache-control'], 'no-cache');
    }
    // OnlyOffice fonts requested by the main origin may be read by it
    const f = await get(MAIN, '/common/onlyoffice/dist/v8/fonts/f.woff2', { headers: { origin: MAIN_ORIGIN } });
    assert.equal(f.headers['access-control-allow-origin'], MAIN_ORIGIN);
    const f2 = await get(MAIN, '/common/onlyoffice/dist/v8/fonts/f.woff2');
    assert.equal(f2.headers['access-control-allow-origin'], SANDBOX_ORIGIN);
});

T('HEAD: headers and length, no body (both ports)', async () => {
    for (const port of [MAIN, SANDBOX]) {
        const r = await get(port, '/common/feedback.html?NEW_PAD=1', { method: 'HEAD' });
        assert.equal(r.status, 200);
        assert.equal(r.headers['content-length'], String('<p>feedback</p>\n'.length));
        assert.equal(r.body.length, 0);
        commonHeaders(r.headers);
        const c = await get(port, '/api/config', { method: 'HEAD' });
        assert.equal(c.status, 200);
        assert.equal(c.body.length, 0);
        assert.ok(Number(c.headers['content-length']) > 27);
    }
});

T('conditional and range requests', async () => {
    const r = await get(MAIN, '/t/range.txt');
    assert.ok(r.headers.etag);
    assert.ok(r.headers['last-modified']);
    const nm = await get(MAIN, '/t/range.txt', { headers: { 'if-none-match': r.headers.etag } });
    assert.equal(nm.status, 304);
    assert.equal(nm.body.length, 0);
    const ims = await get(MAIN, '/t/range.txt', { headers: { 'if-modified-since': r.headers['last-modified'] } });
    assert.equal(ims.status, 304);
    const part = await get(MAIN, '/t/range.txt', { headers: { range: 'bytes=2-5' } });
    assert.equal(part.status, 206);
    assert.equal(part.text, '2345');
    assert.equal(part.headers['content-range'], 'bytes 2-5/10');
    const tail = await get(MAIN, '/t/range.txt', { headers: { range: 'bytes=-3' } });
    assert.equal(tail.text, '789');
    const bad = await get(MAIN, '/t/range.txt', { headers: { range: 'bytes=20-' } });
    assert.equal(bad.status, 416);
});

T('404: the customize 404 page, as text/html', async () => {
    for (const port of [MAIN, SANDBOX]) {
        for (const path of ['/nothing-here', '/common/nope.js', '/customize/nope.css', '/a/b/c']) {
            const r = await get(port, path);
            assert.equal(r.status, 404, path);
            assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
            assert.equal(r.text, '<p>custom 404</p>\n');
            commonHeaders(r.headers);
        }
    }
});

T('path traversal never leaves the checkout', async () => {
    const paths = [
        '/../../etc/passwd', '/../secret.txt', '/%2e%2e/%2e%2e/etc/passwd', '/%2e%2e/secret.txt',
        '/common/%2e%2e/%2e%2e/%2e%2e/secret.txt', '/common/..%2f..%2f..%2fsecret.txt',
        '/customize/../../secret.txt', '/customize.dist/%2e%2e/%2e%2e/secret.txt',
        '//etc/passwd', '///etc/passwd', `/${ROOT}/secret.txt`, `//${ROOT.slice(1)}/secret.txt`,
        '/%252e%252e/secret.txt', '/evil/secret.txt', '/secret.txt', '/..', '/.%2e/secret.txt',
        '/x%00.js', '/%00', '/common/x.js%00.html', '/a%zz',
    ];
    for (const port of [MAIN, SANDBOX]) {
        for (const path of paths) {
            let r;
            try {
                r = await get(port, path);
            } catch (e) {
                // the HTTP parser may drop a request with an encoded NUL
                assert.match(path, /%00/, `${path}: ${e.message}`);
                continue;
            }
            assert.ok(!r.text.includes('top secret') && !r.text.includes('root:'), `${path} leaked`);
            // lws resolves "/.." to "/"; it also decodes %00 and the host
            // cuts the path there ("/x%00.js" reaches the plugin as "/x"):
            // whatever that shorter path serves is still inside the checkout
            if (path !== '/..' && !path.includes('%00')) {
                assert.ok([400, 403, 404].includes(r.status), `${path}: ${r.status}`);
            }
        }
    }
    assert.ok(srv.alive());
});

// ------------------------------------------------------------ no checkout

test('without cryptpad_root: a page saying how to set it, the API still answers', { timeout: 30000 },
    () => bare.guard(async () => {
        const r = await get(BARE, '/');
        assert.equal(r.status, 200);
        assert.match(r.headers['content-type'], /^text\/html/);
        assert.match(r.text, /cpsd is running/);
        assert.match(r.text, /cryptpad_root/);
        const n = await get(BARE, '/pad/');
        assert.equal(n.status, 404);
        const c = await get(BARE, '/api/config');
        assert.equal(c.status, 200);
        const cfg = sliced(c.text);
        // origins from listen.host/listen.port; no extra port: one origin
        assert.equal(cfg.httpUnsafeOrigin, `http://127.0.0.1:${BARE}`);
        assert.equal(cfg.httpSafeOrigin, `http://127.0.0.1:${BARE}`);
        assert.equal(cfg.requireConf.urlArgs.startsWith('ver=0.0.0-'), true);
        assert.equal(cfg.onlyOffice, false);
        assert.equal(cfg.defaultStorageLimit, 4444444);
        // instance.max_upload_size (20 MiB by default)
        assert.equal(typeof cfg.maxUploadSize, 'number');
        assert.ok(cfg.premiumUploadSize === false || cfg.premiumUploadSize >= cfg.maxUploadSize);
        assert.equal(typeof cfg.restrictRegistration, 'boolean');
        assert.deepEqual(cfg.adminKeys, []);
        assert.equal(c.headers['access-control-allow-origin'], `http://127.0.0.1:${BARE}`);
    })());

// Last: a clean shutdown (under ASan, also no leak report) after all of the
// above, with requests still arriving while it stops.
test('SIGTERM: both servers exit 0', { timeout: 30000 }, async () => {
    const pending = [];
    for (let i = 0; i < 20; i++) { pending.push(get(MAIN, '/common/big.js').catch(() => null)); }
    const [a, b] = [srv, bare];
    srv = null; bare = null;
    const codes = [await a.stop(), await b.stop()];
    await Promise.all(pending);
    assert.deepEqual(codes, [0, 0], a.stderr().slice(-4000) + b.stderr().slice(-4000));
});
