#!/usr/bin/env node
// Benchmark of blob downloads: K clients GET one large blob at the same
// moment; reports the throughput and the server's peak memory.
//   node blobget.js --url http://127.0.0.1:PORT --pid PID --data-dir DIR
//                   [--clients 20] [--mb 100] [--max-seconds 300] [--keep]
// The blob is written beforehand into DIR/blob/<xx>/<id> (the server's
// data_dir, storage-fs layout) and removed afterwards unless --keep.
//   --write-only: only write it (kept) and print {"id","sha256"} (run.sh
//   pg-blob seeds both backends with it); --id ID --sha256 HEX: read that
//   blob, already stored (any backend), instead of writing one.
'use strict';
const Fs = require('node:fs');
const Path = require('node:path');
const Http = require('node:http');
const Crypto = require('node:crypto');
const arg = (k, d) => { const i = process.argv.indexOf('--' + k); return i > 0 ? process.argv[i + 1] : d; };
const url = arg('url'); const pid = Number(arg('pid')); const dataDir = arg('data-dir');
const K = Number(arg('clients', 20)); const MB = Number(arg('mb', 100)); const MAX = Number(arg('max-seconds', 300));
const writeOnly = process.argv.includes('--write-only');
const given = arg('id');
const keep = process.argv.includes('--keep') || writeOnly || !!given;
if (!writeOnly && !/^http:\/\/(127\.|localhost|\[::1\])/.test(url || '')) { console.error('loopback --url required'); process.exit(2); }
if (!dataDir || (!pid && !writeOnly)) { console.error('--data-dir and --pid required'); process.exit(2); }
if (given && !(/^[0-9a-f]{48}$/.test(given) && /^[0-9a-f]{64}$/.test(arg('sha256', '')))) { console.error('--id needs 48 hex digits, --sha256 64'); process.exit(2); }
if (!(K >= 1 && K <= 1000 && MB >= 1 && MB <= 4096)) { console.error('bad --clients or --mb'); process.exit(2); }
const status = () => { try { return Fs.readFileSync(`/proc/${pid}/status`, 'utf8'); } catch (e) { return ''; } };
const kb = (k) => { const m = status().match(new RegExp(`${k}:\\s+(\\d+)`)); return m ? Number(m[1]) : 0; };

const id = given || Crypto.randomBytes(24).toString('hex');
const file = Path.join(dataDir, 'blob', id.slice(0, 2), id);
const cleanup = () => { if (!keep) { try { Fs.unlinkSync(file); } catch (e) { /* gone */ } } };
setTimeout(() => { console.error('watchdog'); cleanup(); process.exit(3); }, MAX * 1000).unref();

// The blob: MB MiB of random bytes, written 1 MiB at a time; its hash.
const write = () => {
    Fs.mkdirSync(Path.dirname(file), { recursive: true });
    const fd = Fs.openSync(file, 'w');
    const hash = Crypto.createHash('sha256');
    for (let i = 0; i < MB; i++) {
        const b = Crypto.randomBytes(1 << 20);
        hash.update(b);
        Fs.writeSync(fd, b);
    }
    Fs.closeSync(fd);
    return hash.digest('hex');
};
const want = given ? arg('sha256') : write();
const size = MB << 20;
if (writeOnly) { console.log(JSON.stringify({ id, sha256: want })); process.exit(0); }

const rssBefore = kb('VmRSS');
let peak = rssBefore;
const sampler = setInterval(() => { peak = Math.max(peak, kb('VmRSS')); }, 50);

// One client: a full GET; the first client also checks the bytes' hash.
const client = (i) => new Promise((resolve, reject) => {
    const u = new URL(`/blob/${id.slice(0, 2)}/${id}`, url);
    const req = Http.get({ host: u.hostname, port: u.port, path: u.pathname, agent: false }, (res) => {
        if (res.statusCode !== 200) { res.resume(); reject(new Error(`client ${i}: status ${res.statusCode}`)); return; }
        const h = i === 0 ? Crypto.createHash('sha256') : null;
        let bytes = 0;
        res.on('data', (c) => { bytes += c.length; if (h) { h.update(c); } });
        res.on('end', () => resolve({ bytes, ok: h ? h.digest('hex') === want : null }));
        res.on('error', reject);
    });
    req.on('error', reject);
});

(async () => {
    const t0 = Date.now();
    let res;
    try {
        res = await Promise.all(Array.from({ length: K }, (_, i) => client(i)));
    } catch (e) {
        clearInterval(sampler);
        cleanup();
        console.error(e.message);
        process.exit(1);
    }
    const secs = (Date.now() - t0) / 1000;
    clearInterval(sampler);
    peak = Math.max(peak, kb('VmRSS'));
    const total = res.reduce((n, r) => n + r.bytes, 0);
    const complete = res.every(r => r.bytes === size);
    const out = {
        clients: K, blob_mib: MB, seconds: secs, mib_per_s: +(total / (1 << 20) / secs).toFixed(1),
        all_complete: complete, hash_ok: res[0].ok,
        rss_before_kb: rssBefore, rss_peak_kb: peak, hwm_kb: kb('VmHWM'),
    };
    console.log(`${K} clients x ${MB} MiB blob: ${secs.toFixed(2)} s, ${out.mib_per_s} MiB/s total; ` +
        `server RSS ${rssBefore} -> peak ${peak} kB (VmHWM ${out.hwm_kb} kB); complete ${complete}, hash ${res[0].ok}`);
    console.log(JSON.stringify(out));
    cleanup();
    process.exit(complete && res[0].ok ? 0 : 1);
})();
