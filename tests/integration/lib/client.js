'use strict';
// Client helpers: the real netflux-websocket client, and a raw `ws` client
// that records every frame for exact protocol assertions.  Every wait has a
// timeout.

const Crypto = require('node:crypto');
const WebSocket = require('ws');
const Netflux = require('netflux-websocket');

const DEFAULT_TIMEOUT = 5000;

const sleep = (ms) => new Promise(r => setTimeout(r, ms));
const hex = (bytes) => Crypto.randomBytes(bytes).toString('hex');
const padId = () => hex(16);                 // 32 hex: stored channel
const ephemeralId = () => hex(17);           // 34 hex: relay-only channel
const ADMIN_CHANNEL = '0'.repeat(33);
const txid = () => Crypto.randomBytes(6).toString('base64url');

const withTimeout = (promise, ms, what, onTimeout) => {
    let t;
    return Promise.race([
        promise,
        new Promise((_, rej) => {
            t = setTimeout(() => {
                if (onTimeout) { try { onTimeout(); } catch (e) { /* ignore */ } }
                rej(new Error(`timeout after ${ms} ms: ${what}`));
            }, ms);
        }),
    ]).finally(() => clearTimeout(t));
};

// Poll `cond` until it is truthy (or throw after timeoutMs).
const waitFor = async (cond, timeoutMs, what, everyMs = 20) => {
    const end = Date.now() + timeoutMs;
    for (;;) {
        const v = await cond();
        if (v) { return v; }
        if (Date.now() > end) { throw new Error(`timeout after ${timeoutMs} ms: ${what}`); }
        await sleep(everyMs);
    }
};

const short = (x, n = 300) => {
    let s;
    try { s = JSON.stringify(x); } catch (e) { s = String(x); }
    if (s === undefined) { s = String(x); }
    return s.length > n ? s.slice(0, n) + `...(${s.length} chars)` : s;
};

// Every socket/client created here, so that `closeAll()` can clean up.
const allClients = new Set();

// ------------------------------------------------------------ netflux

// Dead stand-in handed to the netflux client if it tries to reconnect after
// we closed it: no network activity, no timers.
const deadSocket = () => ({ readyState: 3, send () {}, close () {}, terminate () {} });

// Connect through netflux-websocket 1.3.0.  Resolves with the network
// object, extended with:
//   net.sockets       every ws the client created
//   net.kill()        terminate the current socket without a close frame
//   net.close()       disconnect and never reconnect
const connect = (url, { timeoutMs = DEFAULT_TIMEOUT } = {}) => {
    let closed = false;
    const sockets = [];
    const makeWs = (u) => {
        if (closed) { return deadSocket(); }
        const ws = new WebSocket(u, { perMessageDeflate: false });
        ws.on('error', () => { /* reported through onclose */ });
        sockets.push(ws);
        return ws;
    };
    const handle = {
        close () {
            if (closed) { return; }
            closed = true;
            allClients.delete(handle);
            try { if (net) { net.disconnect(); } } catch (e) { /* ignore */ }
            for (const ws of sockets) { try { ws.terminate(); } catch (e) { /* ignore */ } }
        },
    };
    let net = null;
    allClients.add(handle);
    return withTimeout(Netflux.connect(url, makeWs), timeoutMs, `netflux connect ${url}`, () => handle.close())
        .then((n) => {
            net = n;
            n.sockets = sockets;
            n.close = () => handle.close();
            n.kill = () => {
                closed = true;  // do not reconnect
                for (const ws of sockets) { try { ws.terminate(); } catch (e) { /* ignore */ } }
            };
            return n;
        });
};

const join = (net, chan, timeoutMs = DEFAULT_TIMEOUT) =>
    withTimeout(net.join(chan), timeoutMs, `netflux join ${chan}`);

// ------------------------------------------------------------ raw ws

// A raw websocket that records every frame.
//   r.frames            frames not consumed yet (parsed JSON; unparsable
//                       text is recorded as { unparsable: text })
//   r.log               every frame ever received, in order
//   await r.next(pred, ms)      first unconsumed frame matching pred, consumed
//   await r.none(pred, ms)      asserts nothing matching arrives within ms
//   r.send(array) / r.sendText(str) / r.sendBuffer(buf, binary)
//   await r.request([cmd, ...args]) -> reply frame for an automatically numbered seq
//   r.id                the IDENT id, after `await r.ready`
//   r.closed            promise of { code, reason } when the socket closes
// Options: autoPong (default true) answers server PINGs with PONG;
// onFrame(f) -> true to swallow a frame (also settable later as r.onFrame).
const raw = (url, { autoPong = true, timeoutMs = DEFAULT_TIMEOUT, maxPayload, onFrame = null } = {}) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...(maxPayload ? { maxPayload } : {}) });
    const r = {
        ws,
        frames: [],
        log: [],
        errors: [],
        id: null,
        seq: 1,
        autoPong,
        onFrame,
        closeInfo: null,
        waiters: new Set(),
    };
    allClients.add(r);
    r.closed = new Promise((resolve) => {
        ws.on('close', (code, reason) => {
            r.closeInfo = { code, reason: String(reason) };
            allClients.delete(r);
            for (const w of Array.from(r.waiters)) { w.onClose(); }
            resolve(r.closeInfo);
        });
    });
    ws.on('error', (e) => { r.errors.push(e); });
    const check = () => {
        for (const w of Array.from(r.waiters)) { w.check(); }
    };
    ws.on('message', (data, isBinary) => {
        let f;
        const text = String(data);
        try { f = JSON.parse(text); } catch (e) { f = { unparsable: text }; }
        if (isBinary) { f = { binary: text }; }
        if (Array.isArray(f) && f[0] === 0 && f[2] === 'PING' && r.autoPong) {
            const pong = f.slice(); pong[2] = 'PONG';
            r.send(pong);
        }
        // a hook may take a frame (return true): it is then neither logged
        // nor queued (used for bulk traffic)
        if (r.onFrame && r.onFrame(f)) { return; }
        r.log.push(f);
        r.frames.push(f);
        check();
    });

    r.opened = new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('close', (code) => reject(new Error(`socket closed before open (code ${code})`)));
        ws.once('error', reject);
    });
    r.opened.catch(() => { /* surfaced through ready */ });

    // Wait for the first unconsumed frame matching pred and consume it.
    r.next = (pred = () => true, ms = timeoutMs, what = 'frame') => new Promise((resolve, reject) => {
        const w = {
            check () {
                const i = r.frames.findIndex((f) => { try { return pred(f); } catch (e) { return false; } });
                if (i === -1) { return false; }
                const [f] = r.frames.splice(i, 1);
                finish(null, f);
                return true;
            },
            onClose () {
                if (w.check()) { return; }
                finish(new Error(`socket closed (${short(r.closeInfo)}) while waiting for ${what}; unconsumed frames: ${short(r.frames, 600)}`));
            },
        };
        const t = setTimeout(() => finish(new Error(`timeout after ${ms} ms waiting for ${what}; unconsumed frames: ${short(r.frames, 600)}`)), ms);
        const finish = (err, f) => {
            clearTimeout(t);
            r.waiters.delete(w);
            if (err) { reject(err); } else { resolve(f); }
        };
        r.waiters.add(w);
        if (w.check()) { return; }
        if (r.closeInfo) { w.onClose(); }
    });

    // Resolve (true) if nothing matching arrives within ms; reject with the
    // frame if something does.  Matching frames are not consumed.
    r.none = (pred, ms, what = 'frame') => new Promise((resolve, reject) => {
        const match = () => r.frames.find((f) => { try { return pred(f); } catch (e) { return false; } });
        const w = {
            check () {
                const f = match();
                if (f !== undefined) { finish(new Error(`unexpected ${what}: ${short(f)}`)); }
            },
            onClose () { w.check(); },
        };
        const t = setTimeout(() => finish(null), ms);
        const finish = (err) => {
            clearTimeout(t);
            r.waiters.delete(w);
            if (err) { reject(err); } else { resolve(true); }
        };
        r.waiters.add(w);
        w.check();
    });

    r.isOpen = () => ws.readyState === WebSocket.OPEN;
    r.send = (arr) => { ws.send(JSON.stringify(arr)); };
    r.sendText = (text) => { ws.send(text); };
    r.sendBuffer = (buf, binary = false, cb) => { ws.send(buf, { binary }, cb); };
    r.nextSeq = () => {
        // odd numbers and big jumps on purpose: the server must not assume 1,2,3...
        r.seq += 2;
        return r.seq;
    };
    // Send [seq, ...rest] and wait for the reply with that seq.
    r.request = async (rest, ms = timeoutMs) => {
        const seq = r.nextSeq();
        r.send([seq, ...rest]);
        return r.next(f => Array.isArray(f) && f[0] === seq, ms, `reply to ${short([seq, ...rest], 120)}`);
    };
    r.ping = (ms = timeoutMs) => r.request(['PING'], ms);
    r.join = async (chan, ms = timeoutMs) => {
        const seq = r.nextSeq();
        r.send([seq, 'JOIN', chan]);
        const jack = await r.next(f => Array.isArray(f) && f[0] === seq, ms, `JACK for ${chan}`);
        if (jack[1] !== 'JACK') { throw new Error(`JOIN ${chan} answered ${short(jack)}`); }
        // then until own JOIN: collect JOIN events of this channel
        const members = [];
        for (;;) {
            const f = await r.next(x => Array.isArray(x) && x[0] === 0 && x[2] === 'JOIN' && x[3] === chan, ms, `own JOIN in ${chan}`);
            members.push(f[1]);
            if (f[1] === r.id) { break; }
        }
        return { jack, members };
    };
    r.leave = (chan, ms = timeoutMs) => r.request(['LEAVE', chan, null], ms);
    r.msg = (target, content, ms = timeoutMs) => r.request(['MSG', target, content], ms);
    r.close = () => { try { ws.close(); } catch (e) { /* ignore */ } };
    r.terminate = () => { try { ws.terminate(); } catch (e) { /* ignore */ } };
    // Drop every recorded frame not consumed yet.
    r.clear = () => { r.frames.length = 0; };

    r.ready = (async () => {
        await withTimeout(r.opened, timeoutMs, `websocket open ${url}`);
        const ident = await r.next(f => Array.isArray(f) && f[2] === 'IDENT', timeoutMs, 'IDENT');
        r.id = ident[3];
        r.ident = ident;
        return r;
    })();
    r.ready.catch(() => { /* awaited by callers */ });
    return r;
};

// raw() + wait for IDENT.
const rawReady = async (url, opts) => {
    const r = raw(url, opts);
    await r.ready;
    return r;
};

// Anonymous RPC over a raw client: [seq,"MSG",hk,JSON([txid,payload])] ->
// ACK, then the reply direct message whose txid matches.  Returns
// { ack, reply } (reply parsed).
const rawRpc = async (r, hk, payload, { ms = DEFAULT_TIMEOUT, id = txid() } = {}) => {
    const seq = r.nextSeq();
    r.send([seq, 'MSG', hk, JSON.stringify([id, payload])]);
    const ack = await r.next(f => Array.isArray(f) && f[0] === seq, ms, `ACK of RPC ${short(payload, 100)}`);
    const frame = await r.next((f) => {
        if (!Array.isArray(f) || f[0] !== 0 || f[1] !== hk || f[2] !== 'MSG' || typeof f[4] !== 'string') { return false; }
        const p = JSON.parse(f[4]);
        return Array.isArray(p) && p[0] === id;
    }, ms, `RPC reply for txid ${id} (${short(payload, 100)})`);
    return { ack, frame, reply: JSON.parse(frame[4]), txid: id };
};

// ------------------------------------------------------------ history keeper

const parseOrUndef = (s) => { try { return JSON.parse(s); } catch (e) { return undefined; } };

// A direct message from the history keeper: [0, hk, "MSG", me, text(, priority)].
const isHkFrame = (hk) => (f) => Array.isArray(f) && f[0] === 0 && f[1] === hk && f[2] === 'MSG' &&
    typeof f[4] === 'string';

// Send [seq, "MSG", hk, text] (cmd: an array, JSON-encoded here, or a raw
// string); returns seq.
const hkSend = (r, hk, cmd) => {
    const seq = r.nextSeq();
    r.send([seq, 'MSG', hk, typeof cmd === 'string' ? cmd : JSON.stringify(cmd)]);
    return seq;
};

// Send a history command and collect its answer, in arrival order, until
// `done(parsedContent)` is true or the reply to seq is an ERROR.  Resolves
// with { seq, reply, frames, items, end, order }: reply = the frame answering
// seq (ACK/ERROR) or null, frames = the HK frames, items = their parsed
// contents, end = the terminating item (null if ended by an ERROR reply),
// order = 'reply'/'hk' in arrival order.
const hkCollect = async (r, hk, cmd, done, ms = DEFAULT_TIMEOUT) => {
    const seq = hkSend(r, hk, cmd);
    const out = { seq, reply: null, frames: [], items: [], end: null, order: [] };
    const deadline = Date.now() + ms;
    const isHk = isHkFrame(hk);
    for (;;) {
        const left = deadline - Date.now();
        let f;
        try {
            f = await r.next(x => (Array.isArray(x) && x[0] === seq) || isHk(x), Math.max(left, 1),
                `answer to ${short(cmd, 150)}`);
        } catch (e) {
            e.message += `\n  collected so far: reply ${short(out.reply)} items ${short(out.items, 1500)}`;
            throw e;
        }
        if (f[0] === seq) {
            out.reply = f;
            out.order.push('reply');
            if (f[1] === 'ERROR') { return out; }
            continue;
        }
        const p = parseOrUndef(f[4]);
        out.frames.push(f);
        out.items.push(p);
        out.order.push('hk');
        let stop = false;
        try { stop = done(p); } catch (e) { stop = false; }
        if (stop) { out.end = p; return out; }
    }
};

const isPlainObj = (p) => p !== null && typeof p === 'object' && !Array.isArray(p);

// GET_HISTORY: ends at the end marker or an error object for the channel.
const getHistory = (r, hk, chan, cfg, ms) => hkCollect(r, hk, ['GET_HISTORY', chan, cfg],
    p => isPlainObj(p) && p.channel === chan && (p.state === 1 || typeof p.error === 'string'), ms);

// GET_FULL_HISTORY: ends at ["FULL_HISTORY_END", chan] or ["ERROR", chan, ...].
const getFullHistory = (r, hk, chan, ms, extra = []) => hkCollect(r, hk, ['GET_FULL_HISTORY', chan, ...extra],
    p => Array.isArray(p) && (p[0] === 'FULL_HISTORY_END' || p[0] === 'ERROR') && p[1] === chan, ms);

// GET_HISTORY_RANGE: ends at HISTORY_RANGE_END / HISTORY_RANGE_ERROR.
const getHistoryRange = (r, hk, chan, cfg, ms) => hkCollect(r, hk, ['GET_HISTORY_RANGE', chan, cfg],
    p => Array.isArray(p) && (p[0] === 'HISTORY_RANGE_END' || p[0] === 'HISTORY_RANGE_ERROR'), ms);

const closeAll = () => {
    for (const c of Array.from(allClients)) {
        try {
            if (c.ws) { c.ws.terminate(); } else { c.close(); }
        } catch (e) { /* ignore */ }
    }
    allClients.clear();
};

const isUserId = (s) => typeof s === 'string' && /^[0-9a-f]{32}$/.test(s);

module.exports = {
    connect, join, raw, rawReady, rawRpc, closeAll,
    sleep, hex, padId, ephemeralId, txid, ADMIN_CHANNEL, withTimeout, waitFor, short, isUserId,
    DEFAULT_TIMEOUT,
    isHkFrame, hkSend, hkCollect, getHistory, getFullHistory, getHistoryRange,
};
