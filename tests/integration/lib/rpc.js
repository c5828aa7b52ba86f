'use strict';
// Signed and anonymous RPC over a raw client (spec docs/protocol/rpc.md §1-§3), the way
// CryptPad's src/common/rpc.js does it:
//
//   const R = require('./lib/rpc');
//   const keys = R.keyPair();
//   const rpc = R.client(r, HK, keys);      // r: a C.rawReady() socket
//   await rpc.call('COOKIE', '');           // -> reply.slice(2) ([])
//   await rpc.call('GET_LIMIT');            // -> [52428800, "", ""]
//   await R.anon(r, HK, 'GET_FILE_SIZE', id) // -> [value]
//
// call(): COOKIE first (cookie null) when no cookie is known yet; the
// cookie is taken from every reply (`reply[1]` when it contains `|`); on
// NO_COOKIE it runs COOKIE again and resends once with a new txid.  An
// error reply `[txid, "ERROR", code]` throws an RpcError (.code, .reply).
//
// Lower level: payload() builds [sig, pubKey, cookie, cmd, args] with any
// part replaced (bad signatures, other keys, ...); send() sends one payload
// and returns { ack, reply, frame, txid } without any recovery.

const Crypto = require('node:crypto');
const Nacl = require('tweetnacl');
const C = require('./client');

const b64 = (u8) => Buffer.from(u8).toString('base64');

// { publicKey, secretKey (Uint8Array), pub (base64, unsafe form), safe }
const keyPair = (seed) => {
    const kp = seed ? Nacl.sign.keyPair.fromSeed(seed) : Nacl.sign.keyPair();
    const pub = b64(kp.publicKey);
    return { publicKey: kp.publicKey, secretKey: kp.secretKey, pub, safe: safeKey(pub) };
};

// A key pair whose base64 public key satisfies pred (e.g. contains '/').
const keyPairWhere = (pred, tries = 10000) => {
    for (let i = 0; i < tries; i++) {
        const k = keyPair();
        if (pred(k.pub)) { return k; }
    }
    throw new Error('no key pair matching the predicate');
};

// docs/protocol/storage.md §2: '/' -> '-'
const safeKey = (pub) => pub.replace(/\//g, '-');

// The exact text the client signs (docs/protocol/rpc.md §3.2).
const signedText = (cookie, cmd, args) => JSON.stringify([cookie, cmd, args === undefined ? null : args]);

const sign = (secretKey, text) => b64(Nacl.sign.detached(Buffer.from(text, 'utf8'), secretKey));

// [sig, pubKey, cookie, cmd, args].  Options:
//   pub      the public key element (default keys.pub; any JSON value)
//   signer   the secret key used to sign (default keys.secretKey)
//   text     the text signed (default signedText(cookie, cmd, args))
//   sig      the signature element itself (overrides everything above)
const payload = (keys, cookie, cmd, args, o = {}) => {
    const a = args === undefined ? null : args;
    const text = o.text !== undefined ? o.text : signedText(cookie, cmd, a);
    const sig = Object.prototype.hasOwnProperty.call(o, 'sig') ? o.sig : sign(o.signer || keys.secretKey, text);
    const pub = Object.prototype.hasOwnProperty.call(o, 'pub') ? o.pub : keys.pub;
    return [sig, pub, cookie, cmd, a];
};

// One RPC frame: [seq,"MSG",hk,JSON.stringify([txid, payload])]; waits for the
// ACK and the reply carrying txid.
const send = (r, hk, pl, { ms = C.DEFAULT_TIMEOUT, txid = C.txid() } = {}) => C.rawRpc(r, hk, pl, { ms, id: txid });

class RpcError extends Error {
    constructor (cmd, reply) {
        super(`RPC ${cmd} failed: ${C.short(reply)}`);
        this.code = reply[2];
        this.reply = reply;
    }
}

const isCookie = (x) => typeof x === 'string' && x.includes('|');

// Anonymous RPC: [value] or throws RpcError.
const anon = async (r, hk, cmd, args, { ms } = {}) => {
    const { reply } = await send(r, hk, [cmd, args === undefined ? null : args], { ms });
    if (reply[1] === 'ERROR') { throw new RpcError(cmd, reply); }
    return [reply[2]];
};

// Anonymous RPC returning the raw reply ([txid, null, value, null] or
// [txid, "ERROR", code]).
const anonRaw = async (r, hk, cmd, args, { ms } = {}) => {
    const { reply, txid } = await send(r, hk, [cmd, args === undefined ? null : args], { ms });
    return { reply, txid };
};

// The signed-call client of one connection and one key.
const client = (r, hk, keys, { ms = C.DEFAULT_TIMEOUT } = {}) => {
    const st = {
        r, hk, keys, cookie: null,
        replies: [],            // every reply received, in order
        cookieCalls: 0,         // COOKIE calls made by the helper
        retries: 0,             // resends after NO_COOKIE
    };
    const once = async (cmd, args) => {
        const res = await send(r, hk, payload(keys, st.cookie, cmd, args), { ms });
        st.replies.push(res.reply);
        if (isCookie(res.reply[1])) { st.cookie = res.reply[1]; }
        return res;
    };
    st.cookieOnce = async () => {
        st.cookieCalls++;
        const res = await send(r, hk, payload(keys, null, 'COOKIE', ''), { ms });
        st.replies.push(res.reply);
        if (res.reply[1] === 'ERROR') { throw new RpcError('COOKIE', res.reply); }
        if (isCookie(res.reply[1])) { st.cookie = res.reply[1]; }
        return res;
    };
    // Full reply of a signed call, after the client's recovery.
    st.callRaw = async (cmd, args) => {
        if (cmd === 'COOKIE') { return st.cookieOnce(); }
        if (st.cookie === null) { await st.cookieOnce(); }
        let res = await once(cmd, args);
        if (res.reply[1] === 'ERROR' && res.reply[2] === 'NO_COOKIE') {
            await st.cookieOnce();
            st.retries++;
            res = await once(cmd, args);
        }
        return res;
    };
    // reply.slice(2), or throws RpcError.
    st.call = async (cmd, args) => {
        const { reply } = await st.callRaw(cmd, args);
        if (reply[1] === 'ERROR') { throw new RpcError(cmd, reply); }
        return reply.slice(2);
    };
    // The error code of a call that must fail (throws if it succeeds).
    st.fail = async (cmd, args) => {
        const { reply } = await st.callRaw(cmd, args);
        if (reply[1] !== 'ERROR') { throw new Error(`RPC ${cmd} ${C.short(args, 120)} should fail, got ${C.short(reply)}`); }
        return reply[2];
    };
    // One signed call with the current cookie, no recovery, any part
    // replaced (see payload()).
    st.raw = (cmd, args, o = {}) => {
        const cookie = Object.prototype.hasOwnProperty.call(o, 'cookie') ? o.cookie : st.cookie;
        return send(r, hk, payload(keys, cookie, cmd, args, o), { ms, txid: o.txid });
    };
    return st;
};

// The history keeper id, learnt from the member list of a fresh pad
// (the pad is left again).
const learnHk = async (r) => {
    const chan = C.padId();
    const j = await r.join(chan);
    const hk = j.members.find(id => id.length === 16);
    await r.leave(chan);
    if (!hk) { throw new Error(`no history keeper in the member list ${C.short(j.members)}`); }
    return hk;
};

// docs/protocol/rpc.md §7.2: base64(sha512(JSON.stringify(sorted unique ids))).
const pinHash = (ids) => {
    const list = Array.from(new Set(ids)).sort();
    return Crypto.createHash('sha512').update(JSON.stringify(list), 'utf8').digest('base64');
};

// Cookie parts: { time, pid, token } (null when not a 3-part cookie).
const parseCookie = (c) => {
    if (typeof c !== 'string') { return null; }
    const p = c.split('|');
    if (p.length !== 3) { return null; }
    return { time: Number(p[0]), pid: p[1], token: p[2] };
};

module.exports = {
    keyPair, keyPairWhere, safeKey, signedText, sign, payload, send, anon, anonRaw, client,
    learnHk, pinHash, parseCookie, isCookie, RpcError, b64,
};
