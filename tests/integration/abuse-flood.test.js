'use strict';
// Floods from one connection must not take the server from others (issue 12):
// for each class of abuse, a bounded flood runs on one connection while a
// healthy client pings; the healthy client must get every answer (within a
// generous 5 s: the machine is shared, nothing here measures speed): COOKIE
// floods (random keys, valid fresh keys), GET_MULTIPLE_FILE_SIZE, JOINs,
// read amplification, frames of tiny values, a poison pad, slow HTTP bodies.  And a
// flood of COOKIE calls with valid fresh keys from one connection fills only
// that connection's share of the session table
// (core.max_sessions_per_connection, docs/protocol/rpc.md §3.4).
//
// One server for the file; its data_dir holds, before start, a "poison" pad
// whose history is mostly junk and large lines.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const Net = require('node:net');
const Crypto = require('node:crypto');
const ChildProcess = require('node:child_process');
const { startServer, withLog, tmpDir, channelFile } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');

const ROOT = tmpDir('cpsd-flood-');
const DATA = Path.join(ROOT, 'data');
const POISON = C.padId();
const PER_CONN = 8;

let srv;
let HK;
const T = (name, fn, opts = {}) => test(name, { timeout: 120000, ...opts }, (t) => srv.guard(fn)(t));
const rnd = (n) => Crypto.randomBytes(n).toString('base64');

before(withLog(() => srv, async () => {
    Fs.mkdirSync(Path.dirname(channelFile(DATA, POISON)), { recursive: true });
    const now = Date.now();
    const lines = [];
    for (let i = 0; i < 3000; i++) {
        if (i % 3 === 0) { lines.push('not json at all {{{' + rnd(30)); }
        else if (i % 3 === 1) { lines.push(JSON.stringify([0, C.hex(16), 'MSG', POISON, 'x'.repeat(20000), now])); }
        else { lines.push('[0,"' + C.hex(16) + '","MSG",'); }
    }
    Fs.writeFileSync(channelFile(DATA, POISON), lines.join('\n') + '\n');
    srv = await startServer({ core: { max_sessions: 40, max_sessions_per_connection: PER_CONN } }, { dir: ROOT });
    const r = await C.rawReady(srv.url);
    HK = await R.learnHk(r);
    r.close();
}));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
});

// Run `flood` (a promise-returning function) while a healthy client, in its
// own process (lib/pinger.js), pings every 100 ms; every ping must be
// answered within 5 s.  Returns the number of pings answered.
const withPings = async (flood) => {
    const child = ChildProcess.fork(Path.join(__dirname, 'lib', 'pinger.js'), [srv.url], { stdio: 'inherit' });
    const messages = [];
    const next = () => new Promise((resolve, reject) => {
        if (messages.length) { return resolve(messages.shift()); }
        const t = setTimeout(() => reject(new Error('the pinger did not report')), 30000);
        child.once('message', (m) => { clearTimeout(t); resolve(m); });
        child.once('exit', (code) => { clearTimeout(t); reject(new Error(`the pinger exited (${code})`)); });
    });
    assert.equal(await next(), 'ready');
    try { await flood(); } finally { child.send('stop'); }
    const { n, worst, error } = await next();
    console.log(`# ${n} pings answered during the flood, the slowest in ${worst} ms`);
    assert.equal(error, null, `the healthy client: ${error}`);
    assert.ok(n > 0, 'the healthy client got answers');
    assert.ok(srv.alive(), 'the server lives');
    return n;
};

T('a COOKIE flood with valid fresh keys from one connection does not lock out a second user', async () => {
    const flooder = await C.rawReady(srv.url);
    const errors = {}; let cookies = 0;
    await withPings(async () => {
        for (let i = 0; i < 60; i += 10) {
            const batch = [];
            for (let j = 0; j < 10; j++) { batch.push(R.send(flooder, HK, R.payload(R.keyPair(), null, 'COOKIE', ''))); }
            for (const { reply } of await Promise.all(batch)) {
                if (reply[1] === 'ERROR') { errors[reply[2]] = (errors[reply[2]] || 0) + 1; }
                else if (R.isCookie(reply[1])) { cookies++; }
            }
        }
    });
    assert.equal(cookies, PER_CONN, `the flooder got its share only (${C.short(errors)})`);
    assert.deepEqual(Object.keys(errors), ['EBUSY']);
    // A second user still gets a cookie, and its signed calls work.
    const other = await C.rawReady(srv.url);
    const rpc = R.client(other, HK, R.keyPair());
    const { reply } = await rpc.cookieOnce();
    assert.ok(R.isCookie(reply[1]), `COOKIE answered ${C.short(reply)}`);
    const limit = await rpc.call('GET_LIMIT');
    assert.equal(typeof limit[0], 'number');
    assert.equal(rpc.retries, 0, 'no NO_COOKIE recovery was needed');
    // The flooder's own first key still works (its session was kept).
    flooder.close(); other.close();
});

T('a COOKIE flood with random keys: a healthy client keeps its answers', async () => {
    const flooder = await C.rawReady(srv.url);
    await withPings(async () => {
        for (let i = 0; i < 2000; i += 100) {
            const batch = [];
            for (let j = 0; j < 100; j++) { batch.push(R.send(flooder, HK, [rnd(64), rnd(32), null, 'COOKIE', ''])); }
            await Promise.all(batch);
        }
    });
    flooder.close();
});

T('GET_MULTIPLE_FILE_SIZE amplification: a healthy client keeps its answers', async () => {
    const flooder = await C.rawReady(srv.url);
    const ids = [];
    for (let i = 0; i < 10000; i++) { ids.push(C.padId()); }
    await withPings(async () => {
        const calls = [];
        for (let i = 0; i < 4; i++) { calls.push(R.anonRaw(flooder, HK, 'GET_MULTIPLE_FILE_SIZE', ids, { ms: 100000 })); }
        for (const { reply } of await Promise.all(calls)) { assert.equal(reply[1], null, C.short(reply)); }
    });
    flooder.close();
});

T('a JOIN flood: a healthy client keeps its answers', async () => {
    const flooder = await C.rawReady(srv.url);
    await withPings(async () => {
        for (let i = 0; i < 2000; i += 200) {
            const batch = [];
            for (let j = 0; j < 200; j++) {
                const seq = flooder.nextSeq();
                flooder.send([seq, 'JOIN', C.padId()]);
                batch.push(flooder.next(f => Array.isArray(f) && f[0] === seq, 60000, 'JACK'));
            }
            await Promise.all(batch);
        }
    });
    flooder.close();
});

T('read amplification (history of a busy pad read again and again): a healthy client keeps its answers', async () => {
    const writer = await C.rawReady(srv.url);
    const P = C.padId();
    await writer.join(P);
    for (let i = 0; i < 200; i++) { await writer.msg(P, `m${i}|${rnd(300)}`); }
    const flooder = await C.rawReady(srv.url);
    await flooder.join(P);
    await withPings(async () => {
        for (let i = 0; i < 10; i++) {
            const batch = [];
            for (let j = 0; j < 10; j++) { batch.push(C.getHistory(flooder, HK, P, { txid: `h${i}-${j}` }, 60000)); }
            for (const h of await Promise.all(batch)) { assert.ok(h.items.length > 0, `history of ${h.items.length}`); }
        }
    });
    writer.close(); flooder.close();
});

T('frame amplification (frames of 300 000 tiny values): a healthy client keeps its answers', async () => {
    const tiny = new Array(300000).fill(0).join(',');           // 600 kB of text, 300 000 values
    await withPings(async () => {
        const hkFlooder = await C.rawReady(srv.url);
        for (let i = 0; i < 10; i++) {
            // history-keeper content: shape-checked before parsing, EINVAL
            const reply = await hkFlooder.request(['MSG', HK, `["GET_HISTORY",[${tiny}]]`], 30000);
            assert.equal(reply[1], 'ERROR', C.short(reply));
        }
        hkFlooder.close();
        for (let i = 0; i < 10; i++) {
            // a frame of 300 000 values: closed before jansson builds it
            const r = await C.rawReady(srv.url);
            r.sendText(`[1,"PING",${tiny}]`);
            const info = await C.withTimeout(r.closed, 30000, 'close of a frame of tiny values');
            assert.equal(info.code, 1003);
        }
    });
});

T('a poison pad (junk and large lines) read again and again: a healthy client keeps its answers', async () => {
    const flooder = await C.rawReady(srv.url);
    await flooder.join(POISON);
    await withPings(async () => {
        for (let i = 0; i < 5; i++) {
            const batch = [];
            for (let j = 0; j < 4; j++) { batch.push(C.getHistory(flooder, HK, POISON, { txid: `p${i}-${j}` }, 60000)); }
            await Promise.all(batch);
        }
    });
    flooder.close();
});

T('HTTP slow bodies: a healthy client keeps its answers', async () => {
    const sockets = [];
    await withPings(async () => {
        for (let i = 0; i < 50; i++) {
            const s = Net.connect(srv.port, '127.0.0.1');
            s.on('error', () => {});
            s.write('POST /api/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{');
            sockets.push(s);
        }
        for (let k = 0; k < 20; k++) {            // a byte per socket every 100 ms, for 2 s
            for (const s of sockets) { s.write(' '); }
            await C.sleep(100);
        }
    });
    for (const s of sockets) { s.destroy(); }
});
