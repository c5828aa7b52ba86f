'use strict';
// Relay behaviour seen through the real client (netflux-websocket 1.3.0):
// joins, member lists, the history keeper, broadcast delivery and order,
// leaves, direct messages, ephemeral and admin channels.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, withLog } = require('./lib/server');
const C = require('./lib/client');

let srv;
const T = (name, fn, opts = {}) => test(name, { timeout: 30000, ...opts }, (t) => srv.guard(fn)(t));

before(withLog(() => srv, async () => { srv = await startServer(); }));
after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
});

const hkOf = (wc) => wc.members.filter(id => typeof id === 'string' && id.length === 16);

// Connect n netflux clients and join them to `chan` one after the other.
// Every user records the JOIN/LEAVE events and messages of its channel.
const joinUsers = async (n, chan) => {
    const users = [];
    for (let i = 0; i < n; i++) {
        const net = await C.connect(srv.url);
        const wc = await C.join(net, chan);
        const u = { i, net, wc, id: wc.myID, joins: [], leaves: [], msgs: [] };
        wc.on('join', (id) => u.joins.push(id));
        wc.on('leave', (id) => u.leaves.push(id));
        wc.on('message', (msg, sender) => u.msgs.push({ msg, sender }));
        users.push(u);
    }
    return users;
};

let users;       // 4 users in one 32-hex channel, shared by the tests below
const chan = C.padId();

T('users joining one channel see each other and the history keeper', async () => {
    users = await joinUsers(4, chan);
    for (const u of users) {
        assert.ok(C.isUserId(u.id), `user id ${u.id} is 32 lowercase hex`);
    }
    assert.equal(new Set(users.map(u => u.id)).size, 4, 'user ids are unique');
    // every member knows every other member (late JOINs may still be in flight)
    await C.waitFor(() => users.every(u => users.every(o => u.wc.members.includes(o.id))), 5000,
        'every user lists every other user');
    for (const u of users) {
        // earlier joiners got a JOIN event for each later joiner, once
        const later = users.slice(u.i + 1).map(o => o.id);
        await C.waitFor(() => later.every(id => u.joins.includes(id)), 5000, `user ${u.i} got JOIN events of later joiners`);
        for (const id of later) {
            assert.equal(u.joins.filter(x => x === id).length, 1, `user ${u.i} saw JOIN of ${id} once`);
        }
        assert.ok(!u.joins.includes(u.id), 'no JOIN event for oneself after joining');
    }
    // the history keeper: one member with a 16-char id, the same for everyone
    const hks = users.map(u => hkOf(u.wc));
    for (const h of hks) { assert.equal(h.length, 1, `exactly one 16-char member, got ${JSON.stringify(h)}`); }
    assert.equal(new Set(hks.map(h => h[0])).size, 1, 'same history keeper for everyone');
    for (const u of users) {
        const others = u.wc.members.filter(id => id.length !== 16);
        for (const id of others) { assert.ok(C.isUserId(id), `member ${id} is a 32-hex user id`); }
        assert.equal(u.wc.members.length, 5, `user ${u.i} members: ${JSON.stringify(u.wc.members)}`);
    }
});

T('broadcast: 3 senders x 20 messages, each delivered once to every other member, same order everywhere', async () => {
    assert.ok(users, 'previous test set up the users');
    const senders = users.slice(0, 3);
    const N = 20;
    for (const u of users) { u.msgs.length = 0; }
    const acks = [];
    for (let k = 0; k < N; k++) {
        for (const s of senders) {
            // pipelined: the next message is sent before the previous ACK
            acks.push(C.withTimeout(s.wc.bcast(`m|${s.i}|${k}|${C.hex(8)}`), 10000, `ACK of message ${k} from user ${s.i}`));
        }
    }
    await Promise.all(acks);
    const expected = (u) => senders.filter(s => s !== u).length * N;
    await C.waitFor(() => users.every(u => u.msgs.length >= expected(u)), 10000,
        `every member receives all messages (got ${users.map(u => u.msgs.length)})`);
    await C.sleep(300);   // duplicates and echoes would show up now
    for (const u of users) {
        assert.equal(u.msgs.length, expected(u), `user ${u.i} received exactly ${expected(u)} messages`);
        const seen = new Set();
        for (const { msg, sender } of u.msgs) {
            const [, si, k] = msg.split('|');
            const s = users[Number(si)];
            assert.notEqual(s, u, `user ${u.i} got its own message back: ${msg}`);
            assert.equal(sender, s.id, `sender of "${msg}" is user ${si}`);
            assert.ok(!seen.has(msg), `user ${u.i} got "${msg}" twice`);
            seen.add(msg);
            assert.ok(Number(k) < N);
        }
        // each sender's messages arrive in send order
        for (const s of senders) {
            const ks = u.msgs.filter(m => m.sender === s.id).map(m => Number(m.msg.split('|')[2]));
            assert.deepEqual(ks, ks.slice().sort((a, b) => a - b), `user ${u.i}: messages of user ${s.i} in send order`);
        }
    }
    // one global order: user 3 (not a sender) saw everything; every other
    // member saw the same sequence minus its own messages
    const global = users[3].msgs.map(m => m.msg);
    for (const u of senders) {
        const mine = global.filter(m => m.split('|')[1] !== String(u.i));
        assert.deepEqual(u.msgs.map(m => m.msg), mine, `user ${u.i} sees the global order`);
    }
});

T('leave: the others get a LEAVE for the user who left', async () => {
    const leaver = users[3];
    leaver.wc.leave('bye');
    const rest = users.slice(0, 3);
    await C.waitFor(() => rest.every(u => u.leaves.includes(leaver.id)), 5000, 'LEAVE reaches the other members');
    await C.sleep(200);
    for (const u of rest) {
        assert.equal(u.leaves.filter(x => x === leaver.id).length, 1, `user ${u.i} saw one LEAVE`);
        assert.ok(!u.wc.members.includes(leaver.id), 'the leaver is no longer listed');
    }
    // messages sent after the leave do not reach the leaver's client
    const nBefore = leaver.msgs.length;
    await C.withTimeout(users[0].wc.bcast('after-leave'), 5000, 'ACK');
    await C.waitFor(() => users[1].msgs.some(m => m.msg === 'after-leave'), 5000, 'member receives after-leave');
    await C.sleep(200);
    assert.equal(leaver.msgs.length, nBefore, 'leaver receives nothing more');
});

T('direct message to a user id arrives with the sender id', async () => {
    const [a, b] = users;
    const got = [];
    const onMsg = (msg, sender) => got.push({ msg, sender });
    b.net.on('message', onMsg);
    try {
        const text = `direct|${C.hex(8)}`;
        await C.withTimeout(a.net.sendto(b.id, text), 5000, 'ACK of the direct message');
        await C.waitFor(() => got.some(g => g.msg === text), 5000, 'direct message delivered');
        const g = got.find(x => x.msg === text);
        assert.equal(g.sender, a.id, 'sender id of the direct message');
        await C.sleep(200);
        assert.equal(got.filter(x => x.msg === text).length, 1, 'delivered once');
        // nobody else got it
        for (const u of users.slice(2)) {
            assert.ok(!u.msgs.some(m => m.msg === text), `user ${u.i} did not get the direct message`);
        }
    } finally {
        b.net.off('message', onMsg);
    }
});

T('ephemeral channel (34 hex) relays messages', async () => {
    const eph = C.ephemeralId();
    assert.equal(eph.length, 34);
    const [a, b] = users;
    const wa = await C.join(a.net, eph);
    const wb = await C.join(b.net, eph);
    assert.equal(hkOf(wa).length, 1, 'history keeper announced in ephemeral channel');
    await C.waitFor(() => wa.members.includes(b.id), 5000, 'a sees b in the ephemeral channel');
    const got = [];
    wb.on('message', (msg, sender) => got.push({ msg, sender }));
    const echo = [];
    wa.on('message', (msg) => echo.push(msg));
    for (let k = 0; k < 5; k++) {
        await C.withTimeout(wa.bcast(`eph|${k}`), 5000, 'ACK in ephemeral channel');
    }
    await C.waitFor(() => got.length >= 5, 5000, 'ephemeral messages relayed');
    await C.sleep(200);
    assert.deepEqual(got.map(g => g.msg), [0, 1, 2, 3, 4].map(k => `eph|${k}`));
    assert.ok(got.every(g => g.sender === a.id));
    assert.equal(echo.length, 0, 'no echo to the sender');
    wa.leave(); wb.leave();
});

T('admin channel (33 zeros) can be joined', async () => {
    const [a, b] = users;
    const wa = await C.join(a.net, C.ADMIN_CHANNEL);
    assert.equal(wa.id, C.ADMIN_CHANNEL);
    assert.equal(wa.myID, a.id);
    assert.equal(hkOf(wa).length, 1, `history keeper listed: ${JSON.stringify(wa.members)}`);
    assert.ok(wa.members.includes(a.id));
    const wb = await C.join(b.net, C.ADMIN_CHANNEL);
    assert.ok(wb.members.includes(b.id));
    assert.ok(!wb.members.includes(a.id), 'no member list is kept for the admin channel');
    wa.leave(); wb.leave();
});

T('connect/join/send/drop churn leaves no dead member listed', async () => {
    const chan = C.padId();
    const observer = await C.connect(srv.url);
    const ow = await C.join(observer, chan);
    const got = [];
    ow.on('message', (msg) => got.push(msg));
    const CYCLES = 30;
    const t0 = Date.now();
    await Promise.all([0, 1, 2].map(async (w) => {
        for (let k = 0; k < CYCLES / 3 && Date.now() - t0 < 20000; k++) {
            const net = await C.connect(srv.url);
            const wc = await C.join(net, chan);
            await C.withTimeout(wc.bcast(`churn|${w}|${k}`), 5000, 'ACK during churn');
            if (k % 2) { net.kill(); } else { net.close(); }   // with and without a close frame
        }
    }));
    await C.waitFor(() => ow.members.length === 2, 5000,
        `observer lists only itself and the history keeper (members: ${JSON.stringify(ow.members)})`);
    await C.waitFor(() => got.length >= CYCLES, 5000, `observer receives every churn message (${got.length})`);
    await C.sleep(200);
    assert.equal(got.length, CYCLES, 'observer received every churn message once');
    const late = await C.connect(srv.url);
    const lw = await C.join(late, chan);
    assert.deepEqual(lw.members.slice().sort(), [hkOf(lw)[0], ow.myID, lw.myID].sort(),
        'a newcomer sees only live members');
    late.close(); observer.close();
});

T('server exits 0 on SIGTERM', async () => {
    C.closeAll();
    const code = await srv.stop();
    assert.equal(code, 0, 'exit code after SIGTERM');
});
