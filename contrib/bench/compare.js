#!/usr/bin/env node
// Prints the comparison table of contrib/bench/run.sh's cpsload scenarios
// from the JSON lines cpsload and bench.js wrote (one per run).
//   node compare.js results.jsonl
'use strict';
const Fs = require('node:fs');
const rows = Fs.readFileSync(process.argv[2], 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const f = (x, d = 2) => (x === null || x === undefined || !Number.isFinite(Number(x))) ? '-' : Number(x).toFixed(d);
const pad = (s, n) => String(s).padEnd(n);
if (!rows.length) { console.log('no results'); process.exit(1); }
const sc = rows[0].scenario;
if (sc === 'broadcast') {
    // the reference: lwsbare's mean us/delivery in this same run
    const ref = rows.filter(r => r.label === 'lwsbare' && r.harness === 'cpsload' && r.metrics.server_us_per_delivery);
    const refUs = ref.length ? ref.reduce((s, r) => s + r.metrics.server_us_per_delivery, 0) / ref.length : null;
    console.log(`${pad('harness', 9)} ${pad('server', 16)} ${pad('ok', 5)} ${pad('deliv/s', 9)} ${pad('srv us/dlv', 11)} ${pad('x lwsbare', 10)} ${pad('client us/dlv', 14)} p50/p99 ms`);
    for (const r of rows) {
        const m = r.metrics;
        const n = m.receipts || 0;
        // bench.js has no send-phase figures: its whole-run CPU is the upper bound
        const sus = m.server_us_per_delivery !== undefined ? m.server_us_per_delivery : (m.server_cpu_s !== null && n ? m.server_cpu_s * 1e6 / n : null);
        const cus = m.client_us_per_delivery !== undefined ? m.client_us_per_delivery : (n ? m.client_cpu_s * 1e6 / n : null);
        console.log(`${pad(r.harness, 9)} ${pad(r.label, 16)} ${pad(r.ok, 5)} ${pad(m.delivered_per_sec, 9)} ${pad(f(sus), 11)} ${pad(refUs && sus ? f(sus / refUs) : '-', 10)} ${pad(f(cus), 14)} ${m.latency_ms ? `${m.latency_ms.p50}/${m.latency_ms.p99}` : '-'}`);
    }
    if (rows.some(r => r.harness === 'bench.js')) {
        for (const label of ['lwsbare', 'cpsd']) {
            const per = (h) => { const x = rows.filter(r => r.label === label && r.harness === h); return x.length ? x.reduce((s, r) => s + r.metrics.client_cpu_s / r.metrics.receipts, 0) / x.length * 1e6 : null; };
            const b = per('bench.js'); const c = per('cpsload');
            if (b && c) { console.log(`client CPU per delivery against ${label} (whole run): bench.js ${f(b)} us, cpsload ${f(c)} us => cpsload drives ${f(b / c, 1)}x the load per client CPU-second`); }
        }
    }
} else if (sc === 'idle') {
    console.log(`${pad('server', 16)} ${pad('ok', 5)} ${pad('joined', 7)} ${pad('bytes/conn', 11)} establish/s`);
    for (const r of rows) { const m = r.metrics; console.log(`${pad(r.label, 16)} ${pad(r.ok, 5)} ${pad(m.connected_joined, 7)} ${pad(m.bytes_per_conn, 11)} ${m.establish_per_sec}`); }
} else if (sc === 'history') {
    console.log(`${pad('server', 16)} ${pad('ok', 5)} ${pad('write msg/s', 12)} ${pad('MiB/s', 8)} ${pad('srv s/MiB', 10)} ${pad('wall ms', 8)} readers_ok`);
    for (const r of rows) { const m = r.metrics; console.log(`${pad(r.label, 16)} ${pad(r.ok, 5)} ${pad(m.write_msgs_per_sec, 12)} ${pad(m.history_mib_per_sec, 8)} ${pad(f(m.server_cpu_s_per_mib, 4), 10)} ${pad(m.wall_ms, 8)} ${m.readers_ok}`); }
} else if (sc === 'scale') {
    console.log(`${pad('server', 10)} ${pad('ok', 5)} ${pad('deliv/s', 9)} ${pad('p50 ms', 9)} ${pad('p99 ms', 9)} ${pad('srv CPU %', 10)} ${pad('srv us/dlv', 11)} RSS MiB setup/end`);
    for (const r of rows) { const m = r.metrics; console.log(`${pad(r.label, 10)} ${pad(r.ok, 5)} ${pad(m.delivered_per_sec, 9)} ${pad(m.latency_ms.p50, 9)} ${pad(m.latency_ms.p99, 9)} ${pad(m.server_cpu_pct, 10)} ${pad(m.server_us_per_delivery, 11)} ${f(m.server_rss_after_setup_bytes / 1048576, 1)}/${f(m.server_rss_end_bytes / 1048576, 1)}`); }
}
