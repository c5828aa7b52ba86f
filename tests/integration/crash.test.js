'use strict';
// Crash safety of the history (docs/protocol/netflux.md §7.1: an ACKed message is in the
// log, even if the process is killed right after the ACK; docs/protocol/history.md §3).
//
// 4 writers send to one shared pad and one pad each, as fast as the ACKs
// allow; the server is killed with SIGKILL (by pid) and restarted on the
// same data_dir, 3 times; every ACKed message must then be in the log, in
// each writer's send order, once, and every line must parse.  Then a torn
// last line written by hand must be ignored on read and cut before the
// next append.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const { startServer, withLog, tmpDir, channelFile, readStored, statStored, existsStored, FS_ONLY } = require('./lib/server');
const C = require('./lib/client');

const isArr = Array.isArray;
const ROOT = tmpDir('cpsd-crash-');
const DATA = Path.join(ROOT, 'data');
const WRITERS = 4;
const CYCLES = 3;
const RUN_MS = 2000;

let srv;
const servers = [];
const T = (name, fn, opts = {}) => test(name, { timeout: 120000, ...opts }, (t) => srv.guard(fn)(t));

const start = async () => {
    srv = await startServer({}, { dir: ROOT });
    servers.push(srv);
    return srv;
};
const killServer = async () => {
    try { process.kill(srv.pid, 'SIGKILL'); } catch (e) { /* already gone */ }
    await C.withTimeout(srv.exited, 5000, 'server exit after SIGKILL');
};

before(withLog(() => srv, start));
after(async () => {
    C.closeAll();
    for (const s of servers) { await s.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
});

const SHARED = C.padId();
const OWN = Array.from({ length: WRITERS }, () => C.padId());
const PADS = [SHARED, ...OWN];
const counter = new Array(WRITERS).fill(0);
// acked[pad][i] = ns ACKed to writer i in pad, in order; sent likewise
// (sent includes messages whose ACK was lost in the crash)
const acked = {};
const sent = {};
for (const p of PADS) {
    acked[p] = Array.from({ length: WRITERS }, () => []);
    sent[p] = Array.from({ length: WRITERS }, () => new Set());
}
const content = (i, n) => `c${i}-${n}`;
const parseContent = (s) => {
    const m = /^c(\d+)-(\d+)$/.exec(s);
    return m ? { i: Number(m[1]), n: Number(m[2]) } : null;
};

const fileText = (id) => readStored(channelFile(DATA, id), 'utf8');

let HK = null;
const hkOf = async (r) => {
    const j = await r.join(C.padId());
    return j.members.find(id => id.length === 16);
};

// Read a pad back with GET_FULL_HISTORY; check the log file agrees and
// every line parses; returns the stored arrays.
const readBack = async (reader, pad) => {
    const res = await C.getFullHistory(reader, HK, pad, 15000);
    assert.deepEqual(res.reply, [res.seq, 'ACK'], `GET_FULL_HISTORY ${pad} ACK`);
    assert.deepEqual(res.end, ['FULL_HISTORY_END', pad], `GET_FULL_HISTORY ${pad} end`);
    const lines = res.items.slice(0, -1).map((p) => {
        assert.ok(isArr(p) && p[0] === 'FULL_HISTORY', `item ${C.short(p)}`);
        return p[1];
    });
    const text = fileText(pad);
    const parts = text.split('\n');
    const tail = parts.pop();
    assert.equal(tail, '', `${pad}: the log ends with a newline (torn tail: ${C.short(tail, 80)})`);
    parts.forEach((l, k) => {
        let p;
        assert.doesNotThrow(() => { p = JSON.parse(l); }, `${pad} line ${k + 1} parses: ${C.short(l, 120)}`);
        assert.ok(isArr(p) && p.length === 6 && p[0] === 0 && p[2] === 'MSG' && p[3] === pad &&
            typeof p[4] === 'string' && Number.isInteger(p[5]), `${pad} line ${k + 1} shape: ${l}`);
    });
    assert.equal(lines.length, parts.length, `${pad}: FULL_HISTORY returns every line of the file`);
    lines.forEach((p, k) => assert.equal(JSON.stringify(p), parts[k], `${pad} line ${k + 1} byte-identical`));
    return lines;
};

const verify = async (reader, when) => {
    for (const pad of PADS) {
        const lines = await readBack(reader, pad);
        const seen = new Set();
        const last = new Array(WRITERS).fill(0);
        for (const l of lines) {
            const c = parseContent(l[4]);
            assert.ok(c, `${when}: unexpected content ${C.short(l[4])} in ${pad}`);
            assert.ok(!seen.has(l[4]), `${when}: duplicate ${l[4]} in ${pad}`);
            seen.add(l[4]);
            assert.ok(sent[pad][c.i].has(c.n), `${when}: ${l[4]} in ${pad} was never sent there`);
            assert.ok(c.n > last[c.i], `${when}: ${l[4]} after c${c.i}-${last[c.i]} in ${pad}: not in send order`);
            last[c.i] = c.n;
        }
        for (let i = 0; i < WRITERS; i++) {
            const missing = acked[pad][i].filter(n => !seen.has(content(i, n)));
            assert.deepEqual(missing, [], `${when}: ACKed messages of writer ${i} missing from ${pad}`);
        }
    }
};

// Run the writers until the server is killed; returns how many were ACKed.
const writeAndKill = async (runMs) => {
    const clients = [];
    for (let i = 0; i < WRITERS; i++) {
        const r = await C.rawReady(srv.url);
        await r.join(SHARED);
        await r.join(OWN[i]);
        clients.push(r);
    }
    let stop = false;
    let count = 0;
    const errors = [];
    const loop = async (i, pad) => {
        const r = clients[i];
        while (!stop && r.isOpen()) {
            const n = ++counter[i];
            sent[pad][i].add(n);
            let f;
            try { f = await r.msg(pad, content(i, n), 5000); } catch (e) { break; }
            if (f[1] === 'ACK') { acked[pad][i].push(n); count++; }
            else { errors.push(f); }
        }
    };
    const loops = [];
    for (let i = 0; i < WRITERS; i++) { loops.push(loop(i, SHARED), loop(i, OWN[i])); }
    await C.sleep(runMs);
    await killServer();
    stop = true;
    await C.withTimeout(Promise.all(loops), 10000, 'writers stop after the kill');
    for (const r of clients) { r.terminate(); }
    assert.deepEqual(errors, [], 'no message refused');
    return count;
};

T(`every ACKed message survives SIGKILL (${CYCLES} kill/restart cycles)`, async (t) => {
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
        const n = await writeAndKill(RUN_MS);
        t.diagnostic(`cycle ${cycle}: ${n} messages ACKed before SIGKILL`);
        assert.ok(n > 50, `cycle ${cycle}: writers got ACKs (${n})`);
        await start();
        const reader = await C.rawReady(srv.url);
        HK = await hkOf(reader);
        await verify(reader, `after kill ${cycle}`);
        reader.close();
    }
    // the shared pad's history through GET_HISTORY too (no checkpoints: whole log)
    const reader = await C.rawReady(srv.url);
    const res = await C.getHistory(reader, HK, SHARED, { txid: 'all' }, 20000);
    const full = await readBack(reader, SHARED);
    assert.deepEqual(res.items.slice(0, -1).map(p => p[4]), full.map(l => l[4]), 'GET_HISTORY = GET_FULL_HISTORY');
    reader.close();
});

T('a torn last line is ignored on read and cut before the next append', async () => {
    const reader0 = await C.rawReady(srv.url);
    HK = await hkOf(reader0);
    const before = await readBack(reader0, SHARED);
    reader0.close();
    await killServer();
    const torn = `[0,"${C.hex(16)}","MSG","${SHARED}","torn-partial`;
    Fs.appendFileSync(channelFile(DATA, SHARED), torn);
    await start();

    const r = await C.rawReady(srv.url);
    HK = await hkOf(r);
    // reads skip the torn fragment
    const res = await C.getFullHistory(r, HK, SHARED, 15000);
    assert.deepEqual(res.end, ['FULL_HISTORY_END', SHARED]);
    assert.deepEqual(res.items.slice(0, -1).map(p => p[1]), before, 'GET_FULL_HISTORY without the torn line');
    const h = await C.getHistory(r, HK, SHARED, { txid: 't', lastKnownHash: -1 }, 20000);
    assert.ok(h.end && h.end.state === 1, `GET_HISTORY ends: ${C.short(h.end)}`);
    assert.deepEqual(h.items.slice(0, -1).map(p => p[4]), before.map(l => l[4]), 'GET_HISTORY without the torn line');
    // a new message appends cleanly
    await r.join(SHARED);
    const n = ++counter[0];
    sent[SHARED][0].add(n);
    const f = await r.msg(SHARED, content(0, n));
    assert.deepEqual(f.slice(1), ['ACK']);
    acked[SHARED][0].push(n);
    const after = await readBack(r, SHARED);   // checks every line of the file parses
    assert.deepEqual(after.slice(0, -1), before, 'old lines unchanged');
    assert.equal(after[after.length - 1][4], content(0, n), 'new message last');
    assert.ok(!fileText(SHARED).includes('torn-partial'), 'torn fragment removed from the log');
    await verify(r, 'after the torn line');
    r.close();
}, { skip: FS_ONLY });
