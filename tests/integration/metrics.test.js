'use strict';
// GET /metrics (docs/operator-guide.md §7): the Prometheus text exposition
// format, checked strictly by the parser below and by `promtool check
// metrics` (Debian's prometheus package; required on CI), the process
// metrics, cpsd_build_info, the sessions gauge, the latency histograms (RPC,
// storage appends, history streams), and in a 2x2x2 cluster the per-node
// and per-link families.

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const ChildProcess = require('node:child_process');
const WebSocket = require('ws');
const { startServer, withLog } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');
const L = require('./lib/cluster');

// ------------------------------------------------------------ the checker

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const VALUE = /^([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?Inf|NaN)$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

// label set `{a="x",b="y"}` -> { a: 'x', b: 'y' }; values may escape \\ \" \n
const parseLabels = (s, where) => {
    const out = {};
    let i = 0;
    while (i < s.length) {
        const m = /^([^=]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(s.slice(i));
        if (!m) { throw new Error(`${where}: bad label set {${s}}`); }
        if (!LABEL.test(m[1])) { throw new Error(`${where}: bad label name "${m[1]}"`); }
        if (m[1] in out) { throw new Error(`${where}: label ${m[1]} twice`); }
        out[m[1]] = m[2].replace(/\\(.)/g, (x, c) => (c === 'n' ? '\n' : c));
        i += m[0].length;
    }
    return out;
};

// The sample names a family of this type may have.
const sampleNames = (family, type) => {
    if (type === 'histogram') { return [`${family}_bucket`, `${family}_sum`, `${family}_count`]; }
    if (type === 'summary') { return [family, `${family}_sum`, `${family}_count`]; }
    return [family];
};

// A histogram without other labels: buckets with an `le` label in
// increasing order ending at +Inf, cumulative (never decreasing), one _sum
// and one _count, the +Inf bucket equal to _count.
const checkHistogram = (f) => {
    const buckets = f.samples.filter(x => x.name === `${f.name}_bucket`);
    const one = (suffix) => {
        const xs = f.samples.filter(x => x.name === `${f.name}_${suffix}`);
        if (xs.length !== 1) { throw new Error(`histogram ${f.name}: ${xs.length} _${suffix} samples`); }
        return xs[0].value;
    };
    const count = one('count');
    one('sum');
    if (!buckets.length) { throw new Error(`histogram ${f.name} has no bucket`); }
    let le = -Infinity; let n = 0;
    for (const b of buckets) {
        if (!('le' in b.labels)) { throw new Error(`histogram ${f.name}: a bucket without le`); }
        const v = Number(b.labels.le.replace(/Inf$/, 'Infinity'));
        if (Number.isNaN(v) || v <= le) { throw new Error(`histogram ${f.name}: le="${b.labels.le}" out of order`); }
        if (!(b.value >= n)) { throw new Error(`histogram ${f.name}: bucket le="${b.labels.le}" is not cumulative`); }
        le = v; n = b.value;
    }
    if (le !== Infinity) { throw new Error(`histogram ${f.name}: no le="+Inf" bucket`); }
    if (n !== count) { throw new Error(`histogram ${f.name}: +Inf bucket ${n} but _count ${count}`); }
};

// Parse the exposition text; throw on the first departure from the format.
// Returns Map family -> { type, help, samples: [{ name, labels, value }] }.
const parseExposition = (text) => {
    if (!text.endsWith('\n')) { throw new Error('the text must end with a newline'); }
    const families = new Map();
    const seenSamples = new Set();
    let cur = null;       // the family whose lines are being read
    const family = (name, where) => {
        if (!NAME.test(name)) { throw new Error(`${where}: bad metric name "${name}"`); }
        if (cur && cur.name === name) { return cur; }
        if (families.has(name)) { throw new Error(`${where}: family ${name} appears twice (not contiguous)`); }
        cur = { name, type: null, help: null, samples: [] };
        families.set(name, cur);
        return cur;
    };
    text.slice(0, -1).split('\n').forEach((line, n) => {
        const where = `line ${n + 1}`;
        if (line === '') { throw new Error(`${where}: empty line`); }
        if (line.startsWith('#')) {
            const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
            if (!m) { return; }   // a plain comment
            const f = family(m[2], where);
            if (m[1] === 'HELP') {
                if (f.help !== null) { throw new Error(`${where}: second HELP for ${f.name}`); }
                if (!m[3]) { throw new Error(`${where}: empty HELP for ${f.name}`); }
                f.help = m[3];
            } else {
                if (f.type !== null) { throw new Error(`${where}: second TYPE for ${f.name}`); }
                if (f.samples.length) { throw new Error(`${where}: TYPE for ${f.name} after its samples`); }
                if (!TYPES.has(m[3])) { throw new Error(`${where}: unknown type "${m[3]}"`); }
                f.type = m[3];
            }
            return;
        }
        const m = /^([^\s{]+)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
        if (!m) { throw new Error(`${where}: not a sample: ${line}`); }
        const [, name, labelText, value] = m;
        if (!NAME.test(name)) { throw new Error(`${where}: bad metric name "${name}"`); }
        if (!cur || !cur.type) { throw new Error(`${where}: sample ${name} without a preceding TYPE`); }
        if (!sampleNames(cur.name, cur.type).includes(name)) {
            throw new Error(`${where}: sample ${name} in family ${cur.name} (${cur.type})`);
        }
        if (!VALUE.test(value)) { throw new Error(`${where}: value "${value}" is not a float`); }
        const labels = labelText ? parseLabels(labelText, where) : {};
        const key = `${name}{${Object.keys(labels).sort().map(k => `${k}=${labels[k]}`).join(',')}}`;
        if (seenSamples.has(key)) { throw new Error(`${where}: duplicate sample ${key}`); }
        seenSamples.add(key);
        const v = Number(value.replace(/Inf$/, 'Infinity'));
        if (cur.type === 'counter' && !(v >= 0)) { throw new Error(`${where}: counter ${name} is ${value}`); }
        cur.samples.push({ name, labels, value: v });
    });
    for (const f of families.values()) {
        if (!f.type) { throw new Error(`family ${f.name} has no TYPE`); }
        if (!f.help) { throw new Error(`family ${f.name} has no HELP`); }
        if (!f.samples.length) { throw new Error(`family ${f.name} has no sample`); }
        if (f.type === 'histogram') { checkHistogram(f); }
    }
    return families;
};

// ------------------------------------------------------------ the server

let srv;
before(withLog(() => srv, async () => { srv = await startServer(); }));
after(async () => { if (srv) { await srv.stop(); } });

const getMetrics = async () => {
    const res = await fetch(`http://127.0.0.1:${srv.port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    return res.text();
};

const value = (fams, name) => {
    const f = fams.get(name);
    assert.ok(f, `no family ${name}`);
    return f.samples[0].value;
};

test('the checker refuses what the format does not allow', () => {
    const bad = [
        'cpsd_x 1\n',                                              // no TYPE
        '# TYPE cpsd_x gauge\ncpsd_x one\n',                       // value
        '# TYPE cpsd_x gauge\n# HELP cpsd_x h\ncpsd_x 1\n# TYPE cpsd_x gauge\n',
        '# HELP cpsd_x h\n# TYPE cpsd_x gauge\ncpsd_x 1\n# HELP cpsd_y h\n# TYPE cpsd_y gauge\ncpsd_y 1\n# HELP cpsd_x h\n',
        '# HELP 9x h\n# TYPE 9x gauge\n9x 1\n',                    // name
        '# HELP cpsd-x h\n# TYPE cpsd-x gauge\ncpsd-x 1\n',
        '# HELP cpsd_x h\n# TYPE cpsd_x gauge\ncpsd_x{a="1",a="2"} 1\n',
        '# HELP cpsd_x h\n# TYPE cpsd_x gauge\ncpsd_x 1\ncpsd_x 2\n', // duplicate sample
        '# HELP cpsd_x h\n# TYPE cpsd_x counter\ncpsd_x -1\n',
        '# HELP cpsd_x h\n# TYPE cpsd_x gauge\ncpsd_y 1\n',
        '# HELP cpsd_x h\n# TYPE cpsd_x gauge\ncpsd_x 1',          // no final newline
        ...[                                                       // histograms
            'cpsd_h_bucket{le="1"} 2\ncpsd_h_bucket{le="+Inf"} 1\ncpsd_h_sum 1\ncpsd_h_count 1\n',
            'cpsd_h_bucket{le="2"} 1\ncpsd_h_bucket{le="1"} 1\ncpsd_h_bucket{le="+Inf"} 1\ncpsd_h_sum 1\ncpsd_h_count 1\n',
            'cpsd_h_bucket{le="1"} 1\ncpsd_h_sum 1\ncpsd_h_count 1\n',
            'cpsd_h_bucket{le="+Inf"} 2\ncpsd_h_sum 1\ncpsd_h_count 1\n',
            'cpsd_h_bucket{le="+Inf"} 1\ncpsd_h_count 1\n',
            'cpsd_h_bucket{le="+Inf"} 1\ncpsd_h_sum 1\ncpsd_h_count 1\ncpsd_h 1\n',
        ].map(t => `# HELP cpsd_h h\n# TYPE cpsd_h histogram\n${t}`),
    ];
    for (const text of bad) { assert.throws(() => parseExposition(text), undefined, JSON.stringify(text)); }
    const good = '# HELP a_b h\n# TYPE a_b gauge\na_b{x="1\\"q"} 1.5e3\na_b{x="2"} +Inf\n';
    assert.equal(parseExposition(good).get('a_b').samples.length, 2);
    const hist = '# HELP h h\n# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="1"} 3\n' +
        'h_bucket{le="+Inf"} 3\nh_sum 1.7\nh_count 3\n';
    assert.equal(parseExposition(hist).get('h').samples.length, 5);
});

test('/metrics is valid exposition text with HELP and TYPE for every family', withLog(() => srv, async () => {
    const fams = parseExposition(await getMetrics());
    for (const f of fams.values()) {
        if (['cpsd_rpc_duration_seconds', 'cpsd_storage_append_seconds', 'cpsd_history_stream_seconds'].includes(f.name)) {
            assert.equal(f.type, 'histogram');
        } else if (['cpsd_node_info', 'cpsd_router_queue_depth', 'cpsd_router_pending_queries'].includes(f.name)) {
            assert.equal(f.type, 'gauge');
        } else if (f.name.startsWith('cpsd_') && f.name !== 'cpsd_build_info') {
            assert.equal(f.type, f.name.endsWith('_total') ? 'counter' : 'gauge', f.name);
        }
    }
    // a host counter has its own HELP, a plugin's names its plugin
    assert.match(fams.get('cpsd_frames_in_total').help, /^Websocket messages received/);
    assert.match(fams.get('cpsd_storage_messages_stored_total').help, /"storage_messages_stored_total" of plugin storage/);
}));

test('process metrics, build info and the sessions gauge', withLog(() => srv, async () => {
    const fams = parseExposition(await getMetrics());
    const now = Date.now() / 1000;
    const start = value(fams, 'process_start_time_seconds');
    assert.ok(start <= now + 1 && start > now - 600, `start time ${start}, now ${now}`);
    assert.ok(value(fams, 'process_cpu_seconds_total') > 0);
    const rss = value(fams, 'process_resident_memory_bytes');
    assert.ok(rss > 1e6 && rss < 1e10, `rss ${rss}`);
    assert.ok(value(fams, 'process_open_fds') >= 3);
    assert.equal(fams.get('process_cpu_seconds_total').type, 'counter');

    const cps = Fs.readFileSync(Path.join(__dirname, '..', '..', 'api', 'cps.h'), 'utf8');
    const abi = ['MAJOR', 'MINOR'].map(k => new RegExp(`#define CPS_ABI_${k}\\s+(\\d+)`).exec(cps)[1]).join('.');
    const info = fams.get('cpsd_build_info');
    assert.equal(info.type, 'gauge');
    assert.equal(info.samples.length, 1);
    assert.equal(info.samples[0].value, 1);
    assert.equal(info.samples[0].labels.abi, abi);
    assert.match(info.samples[0].labels.version, /^\d+\.\d+\.\d+$/);

    assert.equal(fams.get('cpsd_sessions').type, 'gauge');
    const before0 = value(fams, 'cpsd_sessions');
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/cryptpad_websocket`);
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    assert.equal(value(parseExposition(await getMetrics()), 'cpsd_sessions'), before0 + 1);
    ws.close();
    await new Promise((resolve) => ws.once('close', resolve));
}));

test('RPC calls are observed by the cpsd_rpc_duration_seconds histogram', withLog(() => srv, async () => {
    const hist = (fams) => {
        const f = fams.get('cpsd_rpc_duration_seconds');
        assert.ok(f, 'no family cpsd_rpc_duration_seconds');
        assert.equal(f.type, 'histogram');
        assert.match(f.help, /RPC/);
        const get = (suffix) => f.samples.find(x => x.name === `${f.name}_${suffix}`).value;
        const buckets = f.samples.filter(x => x.name === `${f.name}_bucket`);
        return { count: get('count'), sum: get('sum'), buckets };
    };
    const before0 = hist(parseExposition(await getMetrics()));
    const calls0 = value(parseExposition(await getMetrics()), 'cpsd_rpc_calls_total');

    const r = await C.rawReady(srv.url);
    try {
        // the history keeper's id, as the web app learns it (34-zero channel)
        const j = await r.join('0'.repeat(34));
        const HK = j.members.find(id => id.length === 16);
        await r.leave('0'.repeat(34));
        const N = 5;
        for (let i = 0; i < N; i++) {
            // an unknown blob: the answer (a size or an error) is what counts
            await R.anonRaw(r, HK, 'GET_FILE_SIZE', 'ab'.repeat(24));
        }
        const fams = parseExposition(await getMetrics());
        const after0 = hist(fams);
        const calls = value(fams, 'cpsd_rpc_calls_total') - calls0;
        assert.ok(calls >= N, `rpc_calls_total grew by ${calls}`);
        // every call counted is answered by now: _count follows rpc_calls_total
        assert.equal(after0.count - before0.count, calls);
        assert.ok(after0.sum >= before0.sum);
        // cumulative: each bucket holds at least what the one before holds,
        // the +Inf bucket is _count, and no bucket went down
        after0.buckets.forEach((b, i) => {
            if (i > 0) { assert.ok(b.value >= after0.buckets[i - 1].value, `bucket le=${b.labels.le}`); }
            assert.equal(b.labels.le, before0.buckets[i].labels.le);
            assert.ok(b.value >= before0.buckets[i].value, `bucket le=${b.labels.le} went down`);
        });
        assert.equal(after0.buckets.at(-1).labels.le, '+Inf');
        assert.equal(after0.buckets.at(-1).value, after0.count);
        assert.ok(after0.buckets.length >= 10, 'buckets from 1 ms to 10 s');
        assert.equal(after0.buckets.find(b => b.labels.le === '10').value, after0.count, 'a call over 10 s');
    } finally {
        C.closeAll();
    }
}));

test('the Grafana dashboard uses only documented families', () => {
    const root = Path.join(__dirname, '..', '..');
    const dash = JSON.parse(Fs.readFileSync(Path.join(root, 'contrib', 'grafana-cpsd.json'), 'utf8'));
    const guide = Fs.readFileSync(Path.join(root, 'docs', 'operator-guide.md'), 'utf8');
    const exprs = [];
    const walk = (p) => { (p.targets || []).forEach(t => exprs.push(t.expr)); (p.panels || []).forEach(walk); };
    dash.panels.forEach(walk);
    assert.ok(exprs.length > 10);
    const names = new Set(exprs.flatMap(e => e.match(/\b(cpsd|process)_[a-z_]+/g) || [])
        .map(n => n.replace(/_(bucket|sum|count)$/, '')));
    for (const n of ['cpsd_sessions', 'cpsd_rpc_duration_seconds', 'process_cpu_seconds_total',
        'process_resident_memory_bytes', 'cpsd_storage_messages_stored_total',
        'cpsd_storage_append_seconds', 'cpsd_history_stream_seconds', 'cpsd_link_up', 'cpsd_link_queue_bytes',
        'cpsd_link_messages_sent_total', 'cpsd_link_bytes_received_total', 'cpsd_node_info',
        'cpsd_router_queue_depth', 'cpsd_router_pending_queries']) {
        assert.ok(names.has(n), `the dashboard lacks ${n}`);
    }
    for (const n of names) { assert.ok(guide.includes(`\`${n}`), `${n} is not in operator-guide.md §7.1`); }
});

// promtool comes with Debian's prometheus package (contrib/install-deps.sh).
// A developer's machine without it skips these checks; CI (CI=true) fails.
const promtool = (() => {
    const r = ChildProcess.spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
})();
const promtoolSkip = promtool || process.env.CI === 'true' ? false : 'promtool is not installed';

const promtoolCheck = (text, what) => {
    assert.ok(promtool, 'promtool is not installed (contrib/install-deps.sh installs the prometheus package)');
    const r = ChildProcess.spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(r.status, 0, `promtool on ${what}: ${r.stdout}${r.stderr}`);
};

test('promtool check metrics accepts /metrics', { skip: promtoolSkip },
    withLog(() => srv, async () => {
        promtoolCheck(await getMetrics(), 'one process');
    }));

// _count of a histogram family, 0 while it is not listed yet (a plugin's
// histogram appears with its first observation).
const histCount = (fams, name) => {
    const f = fams.get(name);
    if (!f) { return 0; }
    assert.equal(f.type, 'histogram', name);
    return f.samples.find(x => x.name === `${name}_count`).value;
};

test('a write moves cpsd_storage_append_seconds, a history read cpsd_history_stream_seconds', withLog(() => srv, async () => {
    const before0 = parseExposition(await getMetrics());
    const r = await C.rawReady(srv.url);
    try {
        const j = await r.join('0'.repeat(34));
        const HK = j.members.find(id => id.length === 16);
        await r.leave('0'.repeat(34));
        const chan = C.padId();
        await r.join(chan);
        const N = 3;
        for (let i = 0; i < N; i++) {
            assert.deepEqual((await r.msg(chan, `metrics-${i}`)).slice(1), ['ACK']);
        }
        const mid = parseExposition(await getMetrics());
        const appended = histCount(mid, 'cpsd_storage_append_seconds') - histCount(before0, 'cpsd_storage_append_seconds');
        assert.ok(appended >= N, `append histogram grew by ${appended} for ${N} messages`);
        assert.equal(histCount(mid, 'cpsd_history_stream_seconds'), histCount(before0, 'cpsd_history_stream_seconds'),
            'no history read yet');
        const res = await C.getHistory(r, HK, chan, { txid: 'metrics' });
        assert.ok(res.end && res.end.state === 1, `history ends with its end marker: ${C.short(res.items)}`);
        assert.ok(res.items.length > N, `history of ${res.items.length} items`);
        const after0 = parseExposition(await getMetrics());
        assert.equal(histCount(after0, 'cpsd_history_stream_seconds') - histCount(before0, 'cpsd_history_stream_seconds'), 1);
        assert.match(after0.get('cpsd_storage_append_seconds').help, /append/);
        assert.match(after0.get('cpsd_history_stream_seconds').help, /GET_HISTORY/);
    } finally {
        C.closeAll();
    }
}));

test('one process: its nodes in cpsd_node_info, the router gauges, no link families', withLog(() => srv, async () => {
    const fams = parseExposition(await getMetrics());
    const nodes = fams.get('cpsd_node_info');
    assert.ok(nodes, 'no cpsd_node_info');
    assert.equal(nodes.type, 'gauge');
    const ids = nodes.samples.map(x => x.labels.node);
    for (const n of ['front:0', 'core:0', 'storage:0']) { assert.ok(ids.includes(n), `${n} in ${ids}`); }
    for (const x of nodes.samples) {
        assert.equal(x.value, 1);
        assert.equal(x.labels.role, x.labels.node.split(':')[0]);
    }
    assert.equal(fams.get('cpsd_router_queue_depth').type, 'gauge');
    assert.equal(fams.get('cpsd_router_pending_queries').type, 'gauge');
    assert.ok(!fams.has('cpsd_link_up'), 'a single process has no link');
}));

// ------------------------------------------------------------ a cluster

describe('a 2x2x2 cluster', () => {
    let cl;
    before(async () => { cl = await L.startCluster(); });
    after(async () => {
        C.closeAll();
        if (cl) { cl.resumeSupervisor(); await cl.stop(); }
    });

    const text = async (node) => {
        const { status, body } = await L.httpGet(cl.port(node), '/metrics');
        assert.equal(status, 200, `GET /metrics on ${node}`);
        return body;
    };
    const linkValues = (fams, family) =>
        Object.fromEntries((fams.get(family)?.samples || []).map(x => [x.labels.peer, x.value]));

    test('every node: valid text, its node, one link gauge per peer, traffic counted', { timeout: 60000 }, async () => {
        // some traffic between nodes: a write goes front -> core -> storage
        const r = await C.rawReady(cl.frontUrl(0));
        const chan = C.padId();
        await r.join(chan);
        assert.deepEqual((await r.msg(chan, 'cluster-metrics')).slice(1), ['ACK']);
        r.close();
        let sent = 0;
        for (const n of cl.nodes) {
            const fams = parseExposition(await text(n));
            const info = fams.get('cpsd_node_info');
            assert.deepEqual(info.samples.map(x => x.labels), [{ node: n, role: n.split(':')[0] }]);
            const up = linkValues(fams, 'cpsd_link_up');
            assert.deepEqual(Object.keys(up).sort(), cl.nodes.filter(x => x !== n).sort(), `${n}: one link per peer`);
            for (const [peer, v] of Object.entries(up)) { assert.equal(v, 1, `${n} -> ${peer} up`); }
            for (const f of ['cpsd_link_queue_bytes', 'cpsd_link_messages_sent_total', 'cpsd_link_messages_received_total',
                'cpsd_link_bytes_sent_total', 'cpsd_link_bytes_received_total']) {
                assert.equal(Object.keys(linkValues(fams, f)).length, 5, `${n}: ${f} per peer`);
            }
            const s = linkValues(fams, 'cpsd_link_messages_sent_total');
            const b = linkValues(fams, 'cpsd_link_bytes_sent_total');
            for (const p of Object.keys(s)) { assert.ok(b[p] >= s[p], `${n} -> ${p}: bytes with messages`); }
            sent += Object.values(s).reduce((x, y) => x + y, 0);
        }
        assert.ok(sent > 0, 'messages went through links');
    });

    test('promtool check metrics accepts every node\'s /metrics', { skip: promtoolSkip, timeout: 60000 }, async () => {
        for (const n of cl.nodes) { promtoolCheck(await text(n), n); }
    });

    test('a killed peer: its link gauge drops to 0 on the other nodes', { timeout: 60000 }, async () => {
        cl.pauseSupervisor();    // keep it down while we look
        cl.kill('storage:1', 'SIGKILL');
        const end = Date.now() + 20000;
        let up;
        for (;;) {
            up = linkValues(parseExposition(await text('core:0')), 'cpsd_link_up');
            if (up['storage:1'] === 0) { break; }
            assert.ok(Date.now() < end, `core:0 still shows storage:1 up: ${JSON.stringify(up)}`);
            await C.sleep(100);
        }
        assert.equal(up['front:0'], 1, 'the other links stay up');
        assert.equal(linkValues(parseExposition(await text('front:1')), 'cpsd_link_queue_bytes')['storage:1'] >= 0, true);
        cl.resumeSupervisor();
    });
});

module.exports = { parseExposition };
