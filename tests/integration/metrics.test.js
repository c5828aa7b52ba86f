'use strict';
// GET /metrics (docs/operator-guide.md §7): the Prometheus text exposition
// format, checked strictly by the parser below (and by `promtool check
// metrics` when Debian's prometheus package happens to be installed), the
// process metrics, cpsd_build_info and the sessions gauge.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const ChildProcess = require('node:child_process');
const WebSocket = require('ws');
const { startServer, withLog } = require('./lib/server');

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
    ];
    for (const text of bad) { assert.throws(() => parseExposition(text), undefined, JSON.stringify(text)); }
    const good = '# HELP a_b h\n# TYPE a_b gauge\na_b{x="1\\"q"} 1.5e3\na_b{x="2"} +Inf\n';
    assert.equal(parseExposition(good).get('a_b').samples.length, 2);
});

test('/metrics is valid exposition text with HELP and TYPE for every family', withLog(() => srv, async () => {
    const fams = parseExposition(await getMetrics());
    for (const f of fams.values()) {
        if (f.name.startsWith('cpsd_') && f.name !== 'cpsd_build_info') {
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

const promtool = (() => {
    const r = ChildProcess.spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
})();

test('promtool check metrics accepts /metrics', { skip: promtool ? false : 'promtool is not installed' },
    withLog(() => srv, async () => {
        const r = ChildProcess.spawnSync(promtool, ['check', 'metrics'], { input: await getMetrics(), encoding: 'utf8' });
        assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
    }));

module.exports = { parseExposition };
