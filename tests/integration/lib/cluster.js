'use strict';
// Start and stop a cpsd cluster (front x core x storage nodes on loopback)
// through the supervisor (`cpsd --topology FILE`).
//
//   const { startCluster } = require('./lib/cluster');
//   const cl = await startCluster();              // 2 x 2 x 2, waits for every link
//   cl.frontUrl(1)                                 // ws://127.0.0.1:P/cryptpad_websocket
//   cl.pid('core:1'), cl.kill('core:1', 'SIGKILL') // by pid, one child
//   await cl.waitRestart('core:1', oldPid)         // the supervisor's new child
//   await cl.waitLinks()                           // every node: all links up
//                                                  // (links_up_total - links_lost_total)
//   await cl.metrics('core:0')                     // { cpsd_links_up_total: 5, ... }
//   cl.stderr(), cl.mark(), cl.since(mark)         // the shared log of the cluster
//   startCluster({ args: ['--log-level', 'debug'] })  // more supervisor arguments
//   startCluster({ env: { CPSD_LINK_NO_AES: '1' } })      // more environment, for every node
//   await cl.stop()                                // SIGTERM to the supervisor, then
//                                                  // SIGKILL by pid to any child left
//
// Only pids this helper started (the supervisor) or read from the
// supervisor's "node X started, pid N" lines are ever signalled, and a child
// pid is signalled only while /proc/<pid>/cmdline still names our topology
// file (no pid reuse accidents).  Also: jump hash placement (place(), padOn()).

const Fs = require('node:fs');
const Path = require('node:path');
const Net = require('node:net');
const Http = require('node:http');
const Crypto = require('node:crypto');
const ChildProcess = require('node:child_process');
const { binPath, toLua, tmpDir, storageConfig } = require('./server');

const sleep = (ms) => new Promise(r => setTimeout(r, ms));
const ROLES = ['front', 'core', 'storage'];
const MAX_LOG = 8 * 1024 * 1024;

// ------------------------------------------------------------ placement

// docs/protocol/cluster.md §3.1: jump consistent hash of the first 8 characters
// ('/' -> '-', padded with '0'), read as a little-endian u64.
const place = (id, n) => {
    const s = (String(id).replace(/\//g, '-') + '00000000').slice(0, 8);
    const bytes = Buffer.from(s, 'utf8').subarray(0, 8);
    let key = 0n;
    for (let i = 7; i >= 0; i--) { key = (key << 8n) | BigInt(bytes[i] || 0); }
    const M = (1n << 64n) - 1n;
    let b = -1; let j = 0;
    while (j < n) {
        b = j;
        key = (key * 2862933555777941757n + 1n) & M;
        j = Math.floor(((b + 1) * 2147483648) / (Number(key >> 33n) + 1));
    }
    return b;
};

// A random 32-hex pad id placed on node index `idx` of `n`.
const padOn = (idx, n = 2, len = 32) => {
    for (;;) {
        const id = Crypto.randomBytes(len / 2).toString('hex');
        if (place(id, n) === idx) { return id; }
    }
};

// ------------------------------------------------------------ helpers

const freePort = () => new Promise((resolve, reject) => {
    const s = Net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
    });
});

const freePorts = async (n) => {
    const out = new Set();
    while (out.size < n) { out.add(await freePort()); }
    return Array.from(out);
};

// GET http://127.0.0.1:port/path -> { status, body } (bounded).
const httpGet = (port, path, timeoutMs = 2000) => new Promise((resolve, reject) => {
    const req = Http.get({ host: '127.0.0.1', port, path, timeout: timeoutMs }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { body += d; });
        res.on('end', () => resolve({ status: res.statusCode, body }));
        res.on('error', reject);
    });
    req.on('timeout', () => { req.destroy(new Error(`GET :${port}${path} timed out`)); });
    req.on('error', reject);
});

const parseMetrics = (text) => {
    const out = {};
    for (const line of String(text).split('\n')) {
        const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(-?[0-9.eE+-]+)\s*$/.exec(line);
        if (m) { out[m[1] + (m[2] || '')] = Number(m[3]); }
    }
    return out;
};

const pidAlive = (pid) => {
    try { process.kill(pid, 0); return true; } catch (e) { return e.code === 'EPERM'; }
};

// true while /proc/<pid>/cmdline still shows a cpsd run on `file`
const isOurs = (pid, file) => {
    try {
        const cmd = Fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (!cmd.includes(file)) { return false; }
        const st = Fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        return !/^\d+ \(.*\) Z /.test(st);     // a zombie needs no signal
    } catch (e) { return false; }
};

const liveClusters = new Set();
process.on('exit', () => {
    // last resort if a test file dies without running its `after` hooks
    for (const cl of liveClusters) { cl.killAllSync(); }
});

// ------------------------------------------------------------ topology file

const renderTopology = (topo) => `-- generated by tests/integration/lib/cluster.js\nreturn ${toLua(topo)}\n`;

// A topology object: { key, front: [{host, port}], core: [...], storage: [...], config }.
const makeTopology = ({ key, ports, counts, config }) => {
    const topo = { key };
    let k = 0;
    for (const role of ROLES) {
        topo[role] = [];
        for (let i = 0; i < counts[role]; i++) { topo[role].push({ host: '127.0.0.1', port: ports[k++] }); }
    }
    topo.config = config;
    return topo;
};

// ------------------------------------------------------------ the cluster

// Options: counts ({front, core, storage}, default 2 each), config (merged
// into the shared `config` table), key (base64; default random),
// startTimeoutMs (default 20000), dir (default a fresh temp dir, removed by
// stop() unless keepDir).
const startCluster = async (opts = {}) => {
    const bin = opts.bin || binPath();
    if (!Fs.existsSync(bin)) { throw new Error(`cpsd binary not found at ${bin} (set CPSD_BIN)`); }
    const counts = { front: 2, core: 2, storage: 2, ...(opts.counts || {}) };
    const total = counts.front + counts.core + counts.storage;
    const dir = opts.dir || tmpDir('cpsd-cluster-');
    const dataDir = Path.join(dir, 'data');
    Fs.mkdirSync(dataDir, { recursive: true });
    const key = opts.key || Crypto.randomBytes(32).toString('base64');
    const ports = await freePorts(total);
    const config = {
        data_dir: dataDir,
        log: { level: 'info' },
        // no sandbox port: six nodes on one host cannot share one
        listen: { extra_ports: [] },
        // "?web": the default configuration has a `web` section, which is an
        // error unless the plugin is in use; optional so that a build
        // without it still runs
        plugins: ['storage-fs', 'rpc-channel', 'rpc-pin', 'example_rpc', '?web', '?blob', '?auth'],
        limits: { max_frame: 1048576, max_send_queue: 1048576 },
        front: { ping_after_ms: 15000, drop_after_ms: 60000, check_every_ms: 5000 },
        ...storageConfig(dataDir),
        ...(opts.config || {}),
    };
    const topo = makeTopology({ key, ports, counts, config });
    const file = Path.join(dir, 'topology.lua');
    Fs.writeFileSync(file, renderTopology(topo));

    const nodes = [];
    const portOf = {};
    for (const role of ROLES) {
        topo[role].forEach((n, i) => { nodes.push(`${role}:${i}`); portOf[`${role}:${i}`] = n.port; });
    }

    const sup = ChildProcess.spawn(bin, ['--topology', file, ...(opts.args || [])],
        { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir, env: { ...process.env, ...(opts.env || {}) } });
    let log = '';
    let dropped = 0;           // characters dropped from the front of `log`
    const pids = {};           // node id -> current pid (null while dead)
    const allPids = new Set(); // every child pid ever announced
    const events = [];         // { t, node, kind: 'started'|'exited', pid?, text }
    let lineBuf = '';
    const onLine = (line) => {
        let m = /\[supervisor\] node (\S+) started, pid (\d+)/.exec(line);
        if (m) {
            const pid = Number(m[2]);
            pids[m[1]] = pid;
            allPids.add(pid);
            events.push({ t: Date.now(), node: m[1], kind: 'started', pid, text: line });
            return;
        }
        m = /\[supervisor\] node (\S+) exited (.*)$/.exec(line);
        if (m) {
            events.push({ t: Date.now(), node: m[1], kind: 'exited', pid: pids[m[1]], text: line });
            pids[m[1]] = null;
        }
    };
    const append = (d) => {
        const s = String(d);
        log += s;
        if (log.length > MAX_LOG) {
            const cut = log.length - MAX_LOG / 2;
            log = log.slice(cut);
            dropped += cut;
        }
        lineBuf += s;
        const parts = lineBuf.split('\n');
        lineBuf = parts.pop();
        for (const p of parts) { onLine(p); }
    };
    sup.stdout.on('data', append);
    sup.stderr.on('data', append);
    let exitInfo = null;
    const exited = new Promise((resolve) => {
        sup.on('exit', (code, signal) => { exitInfo = { code, signal }; resolve(exitInfo); });
    });
    sup.on('error', (e) => append(`\n[spawn error] ${e.message}\n`));

    const cl = {
        dir, dataDir, file, key, topo, nodes, counts, ports: portOf, bin,
        supPid: sup.pid, sup, exited,
        exitInfo: () => exitInfo,
        stderr: () => log,
        // a position in the log; since(mark) is what was logged after it
        mark: () => dropped + log.length,
        since: (mark) => log.slice(Math.max(0, mark - dropped)),
        events,
        pid: (node) => pids[node] || null,
        pids: () => ({ ...pids }),
        port: (node) => portOf[node],
        frontUrl: (i = 0) => `ws://127.0.0.1:${portOf[`front:${i}`]}/cryptpad_websocket`,
        linkUrl: (node) => `ws://127.0.0.1:${portOf[node]}/cpsd-link`,
        storageDir: (i) => Path.join(dataDir, `storage-${i}`),
        nodeDir: (node) => Path.join(dataDir, node.replace(':', '-')),
    };

    cl.metrics = async (node, timeoutMs = 2000) => {
        const { status, body } = await httpGet(portOf[node], '/metrics', timeoutMs);
        if (status !== 200) { throw new Error(`GET /metrics on ${node}: HTTP ${status}`); }
        return parseMetrics(body);
    };

    // Links currently up on a node: links_up_total - links_lost_total
    // (null if the node does not answer).
    cl.linksUp = async (node) => {
        try {
            const m = await cl.metrics(node, 1000);
            return (m.cpsd_links_up_total || 0) - (m.cpsd_links_lost_total || 0);
        } catch (e) { return null; }
    };

    // Wait until every node (or the listed ones) has all its links up.
    cl.waitLinks = async (timeoutMs = 20000, which = nodes, { atLeast = false } = {}) => {
        const want = nodes.length - 1;
        const end = Date.now() + timeoutMs;
        let last = {};
        for (;;) {
            last = {};
            let ok = true;
            for (const n of which) {
                const up = await cl.linksUp(n);
                last[n] = up;
                if (up === null || (atLeast ? up < want : up !== want)) { ok = false; }
            }
            if (ok) { return last; }
            if (exitInfo) { throw new Error(`the supervisor exited (${JSON.stringify(exitInfo)}) while waiting for links`); }
            if (Date.now() > end) {
                throw new Error(`timeout after ${timeoutMs} ms waiting for every link (want ${want} up per node, got ${JSON.stringify(last)})`);
            }
            await sleep(100);
        }
    };

    // Wait for the supervisor to start `node` again (a pid other than oldPid).
    cl.waitRestart = async (node, oldPid, timeoutMs = 15000) => {
        const end = Date.now() + timeoutMs;
        for (;;) {
            const p = pids[node];
            if (p && p !== oldPid) { return p; }
            if (Date.now() > end) { throw new Error(`timeout after ${timeoutMs} ms: the supervisor did not restart ${node} (pid ${oldPid})`); }
            await sleep(50);
        }
    };

    // Signal one child by its pid (as read from the supervisor's log).
    cl.kill = (node, signal = 'SIGKILL') => {
        const p = pids[node];
        if (!p) { throw new Error(`no running pid known for ${node}`); }
        if (!isOurs(p, file)) { throw new Error(`pid ${p} of ${node} is not a cpsd of this cluster any more`); }
        process.kill(p, signal);
        return p;
    };
    // Pause/resume the supervisor itself (so a killed node stays down).
    cl.pauseSupervisor = () => { if (!exitInfo) { process.kill(sup.pid, 'SIGSTOP'); } };
    cl.resumeSupervisor = () => { if (!exitInfo) { process.kill(sup.pid, 'SIGCONT'); } };

    cl.killAllSync = () => {
        if (!exitInfo) { try { process.kill(sup.pid, 'SIGKILL'); } catch (e) { /* gone */ } }
        for (const p of allPids) {
            if (pidAlive(p) && isOurs(p, file)) { try { process.kill(p, 'SIGKILL'); } catch (e) { /* gone */ } }
        }
    };

    let stopping = null;
    cl.stop = (timeoutMs = 10000) => {
        if (stopping) { return stopping; }
        stopping = (async () => {
            const res = { supervisor: null, killed: [] };
            if (!exitInfo) {
                try { process.kill(sup.pid, 'SIGCONT'); } catch (e) { /* gone */ }
                try { process.kill(sup.pid, 'SIGTERM'); } catch (e) { /* gone */ }
                let t;
                const timedOut = await Promise.race([
                    exited.then(() => false),
                    new Promise(r => { t = setTimeout(() => r(true), timeoutMs); }),
                ]);
                clearTimeout(t);
                if (timedOut) {
                    append(`\n[test harness] supervisor still running ${timeoutMs} ms after SIGTERM: SIGKILL\n`);
                    try { process.kill(sup.pid, 'SIGKILL'); } catch (e) { /* gone */ }
                    await exited;
                    res.supervisor = 'SIGKILL';
                } else {
                    res.supervisor = exitInfo.code !== null ? exitInfo.code : exitInfo.signal;
                }
            } else {
                res.supervisor = exitInfo.code !== null ? exitInfo.code : exitInfo.signal;
            }
            // children the supervisor did not take down
            const end = Date.now() + 3000;
            for (;;) {
                const left = Array.from(allPids).filter(p => pidAlive(p) && isOurs(p, file));
                if (!left.length) { break; }
                if (Date.now() > end) {
                    for (const p of left) {
                        append(`\n[test harness] child pid ${p} still alive after the supervisor: SIGKILL\n`);
                        try { process.kill(p, 'SIGKILL'); } catch (e) { /* gone */ }
                        res.killed.push(p);
                    }
                    break;
                }
                await sleep(50);
            }
            liveClusters.delete(cl);
            if (!opts.keepDir && !opts.dir) { Fs.rmSync(dir, { recursive: true, force: true }); }
            return res;
        })();
        return stopping;
    };

    // Wrap a test body: on failure, append the tail of the cluster's log.
    cl.guard = (fn, chars = 8000) => async (...a) => {
        try {
            return await fn(...a);
        } catch (e) {
            const tail = log.slice(-chars);
            const extra = `\n--- cluster log (last ${tail.length} chars; pids ${JSON.stringify(pids)}${exitInfo ? `; supervisor exited ${JSON.stringify(exitInfo)}` : ''}) ---\n${tail}`;
            if (e && typeof e === 'object') {
                try { e.message = String(e.message) + extra; } catch (x) { /* read-only */ }
                throw e;
            }
            throw new Error(String(e) + extra);
        }
    };

    liveClusters.add(cl);
    try {
        const startTimeoutMs = opts.startTimeoutMs || 20000;
        const end = Date.now() + startTimeoutMs;
        while (nodes.some(n => !pids[n])) {
            if (exitInfo) { throw new Error(`the supervisor exited during startup (${JSON.stringify(exitInfo)})`); }
            if (Date.now() > end) { throw new Error(`not every node was started within ${startTimeoutMs} ms: ${JSON.stringify(pids)}`); }
            await sleep(50);
        }
        if (opts.waitLinks !== false) { await cl.waitLinks(Math.max(1000, end - Date.now())); }
    } catch (e) {
        e.message += `\n--- cluster log ---\n${log.slice(-8000)}`;
        await cl.stop();
        throw e;
    }
    return cl;
};

module.exports = {
    startCluster, place, padOn, httpGet, parseMetrics, freePorts, renderTopology, makeTopology, isOurs, pidAlive,
};

// ------------------------------------------------------------ link handshake (host/link.c)

// The HELLO a dialer sends, built as link.c's seal() does:
//   text  = "cpsd-link|HELLO|<from>|<to>|<t>|<base64 eph>|"      (extra = "")
//   frame = JSON ["HELLO", from, to, t, base64 nonce, base64 eph, base64 secretbox(text)]
// secretbox = crypto_secretbox_easy (XSalsa20-Poly1305, MAC first) under the
// 32-byte node key.  Options: t (ms, default now), eph (32 bytes), nonce
// (24 bytes), kind ("HELLO"), text (override the sealed text).
const sealLink = (keyB64, from, to, o = {}) => {
    const Nacl = require('tweetnacl');
    const key = Buffer.from(keyB64, 'base64');
    const kind = o.kind || 'HELLO';
    const t = o.t === undefined ? Date.now() : o.t;
    const eph = o.eph || Nacl.box.keyPair().publicKey;
    const nonce = o.nonce || Crypto.randomBytes(24);
    const ephs = Buffer.from(eph).toString('base64');
    const text = o.text !== undefined ? o.text : `cpsd-link|${kind}|${from}|${to}|${t}|${ephs}|${o.extra || ''}`;
    const box = Nacl.secretbox(new Uint8Array(Buffer.from(text, 'utf8')), new Uint8Array(nonce), new Uint8Array(key));
    const frame = [kind, from, to, t, Buffer.from(nonce).toString('base64'), ephs, Buffer.from(box).toString('base64')];
    return { frame, text: JSON.stringify(frame), nonce: Buffer.from(nonce), eph: Buffer.from(eph), t };
};

// Open a WELCOME (or HELLO) frame with the key: the plaintext, or null if it
// does not open.
const openLink = (keyB64, frame) => {
    const Nacl = require('tweetnacl');
    try {
        const key = new Uint8Array(Buffer.from(keyB64, 'base64'));
        const nonce = new Uint8Array(Buffer.from(frame[4], 'base64'));
        const box = new Uint8Array(Buffer.from(frame[6], 'base64'));
        const plain = Nacl.secretbox.open(box, nonce, key);
        return plain ? Buffer.from(plain).toString('utf8') : null;
    } catch (e) { return null; }
};

// A raw websocket to a node's /cpsd-link (subprotocol "cpsd-link") that
// records frames and the close.
const linkSocket = (url, { protocol = 'cpsd-link', timeoutMs = 5000 } = {}) => {
    const WebSocket = require('ws');
    const ws = new WebSocket(url, protocol ? [protocol] : [], { perMessageDeflate: false });
    const s = { ws, frames: [], closeInfo: null, errors: [] };
    s.closed = new Promise((resolve) => {
        ws.on('close', (code, reason) => { s.closeInfo = { code, reason: String(reason) }; resolve(s.closeInfo); });
    });
    ws.on('error', (e) => s.errors.push(e));
    ws.on('message', (data, isBinary) => { s.frames.push({ binary: isBinary, data: Buffer.from(data) }); });
    s.opened = new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`link socket ${url}: no open within ${timeoutMs} ms`)), timeoutMs);
        ws.once('open', () => { clearTimeout(t); resolve(); });
        ws.once('close', (code) => { clearTimeout(t); reject(new Error(`link socket ${url} closed before open (${code})`)); });
    });
    s.opened.catch(() => { /* awaited by callers */ });
    // resolves 'closed' | 'frame' | 'timeout', whichever first
    s.outcome = (ms) => new Promise((resolve) => {
        const t0 = Date.now();
        const tick = () => {
            if (s.frames.length) { return resolve('frame'); }
            if (s.closeInfo) { return resolve('closed'); }
            if (Date.now() - t0 > ms) { return resolve('timeout'); }
            setTimeout(tick, 20);
        };
        tick();
    });
    s.close = () => { try { ws.terminate(); } catch (e) { /* ignore */ } };
    return s;
};

module.exports.sealLink = sealLink;
module.exports.openLink = openLink;
module.exports.linkSocket = linkSocket;
