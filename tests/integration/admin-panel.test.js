'use strict';
// The admin panel's other sub-commands (docs/protocol/admin.md §3, §7,
// §8.5, §8.6), each with its reply shape and its errors: what the panel
// sends when it opens (statistics, invitations, users, moderators,
// limits), the account report (pin activity, pin list, storage stats, pin
// log status, online state, TOTP), documents (status, size, archive with
// the members' notice, restore, removal, batches) and the users and
// support tabs (invitations, known users, moderators and /api/config
// moderatorKeys).  Ids that would become paths are refused.
//
// CPSD_CLUSTER=1 runs it on a 2x2x2 topology (statistics gathered from
// every node, documents on the storage node owning them).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const { startServer, withLog, tmpDir, channelFile, writeStored, existsStored, readStored } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');
const AD = require('./lib/admin');
const L = require('./lib/cluster');

const CLUSTER = process.env.CPSD_CLUSTER === '1';
const ROOT = tmpDir('cpsd-adminpanel-');
const DATA = Path.join(ROOT, 'data');

const A = R.keyPair();
const U = R.keyPair();          // a user with a pin log
const N = R.keyPair();          // a key with nothing
let srv;
let adm;
const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv.guard(fn)(t));

// The directory of the storage node holding `id` (the single server's data
// directory, or storage-<i>'s on the cluster).
const dirOf = (id) => (CLUSTER ? srv.cluster.storageDir(L.place(id, 2)) : DATA);

const writePinLog = (key, lines) => {
    const safe = R.safeKey(key.pub);
    const file = Path.join(dirOf(safe), 'data', 'pins', safe.slice(0, 2), `${safe}.ndjson`);
    writeStored(file, lines.map(l => JSON.stringify(l) + '\n').join(''));
};

before(withLog(() => srv, async () => {
    srv = await startServer({ admin: { keys: [A.pub] } }, { dir: ROOT });
    adm = await AD.adminClient(srv.url, A);
}));

after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
});

const isObj = (x) => x !== null && typeof x === 'object' && !Array.isArray(x);

// ------------------------------------------------------------ statistics

T('what the panel sends when it opens answers with the shapes it reads', async () => {
    const [sessions, unique] = await adm.call('ACTIVE_SESSIONS');
    assert.ok(Number.isInteger(sessions) && sessions >= 1, `${sessions}`);
    assert.ok(Number.isInteger(unique) && unique >= 1 && unique <= sessions);
    const [pads] = await adm.call('ACTIVE_PADS');
    assert.ok(Number.isInteger(pads) && pads >= 0);
    const [fds] = await adm.call('GET_FILE_DESCRIPTOR_COUNT');
    assert.ok(Number.isInteger(fds) && fds > 0);
    assert.ok(isObj((await adm.call('GET_WORKER_PROFILES'))[0]));
    assert.ok(isObj((await adm.call('GET_ALL_INVITATIONS'))[0]));
    assert.ok(isObj((await adm.call('GET_ALL_USERS'))[0]));
    assert.deepEqual(await adm.call('GET_MODERATORS', {}), [{}]);
    assert.ok(isObj((await adm.call('GET_LIMITS'))[0]));
    assert.ok(isObj((await adm.call('DISK_USAGE'))[0]));
    const [cache] = await adm.call('GET_CACHE_STATS');
    assert.equal(typeof cache.metadata, 'number');
    assert.equal(await adm.fail('SHUTDOWN'), 'E_NOT_IMPLEMENTED');
    assert.equal(await adm.fail('SET_LAST_EVICTION', 'x'), 'INVALID_ARGS');
    assert.deepEqual(await adm.call('SET_LAST_EVICTION', 0), []);
    assert.equal(await adm.fail('GET_PIN_HISTORY'), 'NOT_IMPLEMENTED');
});

T('DISK_USAGE: bytes per kind of data, summed over every storage node; a new blob counts', async () => {
    const KEYS = ['total', 'pin', 'blob', 'blobstage', 'block', 'datastore'];
    const [before] = await adm.call('DISK_USAGE');
    assert.deepEqual(Object.keys(before).sort(), [...KEYS].sort());
    for (const k of KEYS) { assert.ok(Number.isInteger(before[k]) && before[k] >= 0, `${k}: ${before[k]}`); }
    const B = C.hex(24);
    writeStored(Path.join(dirOf(B), 'blob', B.slice(0, 2), B), Buffer.alloc(12345, 7));
    const P = C.padId();
    writeStored(channelFile(dirOf(P), P), JSON.stringify([0, 'u', 'MSG', P, 'x'.repeat(1000), 1]) + '\n');
    const [after] = await adm.call('DISK_USAGE');
    assert.equal(after.blob - before.blob, 12345);
    assert.ok(after.datastore - before.datastore >= 1000, `${after.datastore} ${before.datastore}`);
    assert.ok(after.total >= after.blob + after.pin + after.block + after.datastore);
});

T('GET_WORKER_PROFILES: seconds per kind of work, numbers the panel can sort', async () => {
    const Y = C.padId();
    const r = await C.rawReady(srv.url);
    await r.request(['JOIN', Y]);
    await r.request(['MSG', Y, 'timed']);
    r.close();
    const [prof] = await adm.call('GET_WORKER_PROFILES');
    assert.ok(isObj(prof));
    assert.ok(Object.keys(prof).length > 0, JSON.stringify(prof));
    for (const [k, v] of Object.entries(prof)) { assert.ok(typeof v === 'number' && v >= 0, `${k}: ${v}`); }
    assert.equal(typeof prof.storage_append_seconds, 'number', JSON.stringify(prof));
});

T('ACTIVE_SESSIONS counts every connection, ACTIVE_PADS every joined channel', async () => {
    const [before] = await adm.call('ACTIVE_SESSIONS');
    const [padsBefore] = await adm.call('ACTIVE_PADS');
    const r1 = await C.rawReady(srv.url);
    const r2 = await C.rawReady(srv.url);
    const chan = C.padId();
    await r1.request(['JOIN', chan]);
    const [after, unique] = await adm.call('ACTIVE_SESSIONS');
    assert.equal(after, before + 2);
    assert.ok(unique >= 1 && unique <= after);
    assert.equal((await adm.call('ACTIVE_PADS'))[0], padsBefore + 1);
    r1.close(); r2.close();
});

// ------------------------------------------------------------ accounts

const PINS = [
    ['RESET', ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa#drive'], 1718000000000],
    ['PIN', ['bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'cccccccccccccccccccccccccccccccccccccccccccccccc',
        'dddddddddddddddddddddddddddddddddddddddddddd#block'], 1718000100000],
    ['UNPIN', ['bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'], 1718000200000],
];

T('the account report: pin activity, pin list, storage stats, pin log status (vectors of §8.5)', async () => {
    writePinLog(U, PINS);
    assert.deepEqual(await adm.call('GET_PIN_ACTIVITY', U.pub), [{ first: 1718000000000, latest: 1718000200000 }]);
    assert.deepEqual(await adm.call('GET_PIN_LIST', U.pub),
        ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'cccccccccccccccccccccccccccccccccccccccccccccccc']);
    assert.deepEqual(await adm.call('GET_USER_STORAGE_STATS', U.pub), [{ channels: 1, files: 1 }]);
    assert.deepEqual(await adm.call('GET_PIN_LOG_STATUS', U.pub), [{ live: true, archived: false }]);
    assert.deepEqual(await adm.call('GET_USER_TOTAL_SIZE', U.pub), [0]);
    // a key without a pin log
    assert.equal(await adm.fail('GET_PIN_ACTIVITY', N.pub), 'ENOENT');
    assert.deepEqual(await adm.call('GET_PIN_LIST', N.pub), []);
    assert.deepEqual(await adm.call('GET_PIN_LOG_STATUS', N.pub), [{ live: false, archived: false }]);
    // bad keys, before any path is built
    for (const bad of ['short', null, 42, '../../../../../../../../../../../etc/passwd=', 'x'.repeat(44)]) {
        assert.equal(await adm.fail('GET_PIN_LIST', bad), 'EINVAL', JSON.stringify(bad));
    }
});

T('REGISTERED_USERS counts the pin logs of every storage node: one more after a new key pins', async () => {
    const [before] = await adm.call('REGISTERED_USERS', null);
    assert.ok(isObj(before) && Number.isInteger(before.users), JSON.stringify(before));
    const r = await C.rawReady(srv.url);
    const hk = await R.learnHk(r);
    const rpc = R.client(r, hk, R.keyPair());
    await rpc.call('PIN', ['eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee']);
    const [now] = await adm.call('REGISTERED_USERS', null);
    assert.deepEqual(now, { users: before.users + 1 });
    r.close();
});

T('IS_USER_ONLINE: true while a connection is authenticated with the key', async () => {
    assert.deepEqual(await adm.call('IS_USER_ONLINE', N.pub), [false]);
    const u = await AD.adminClient(srv.url, U);
    await u.rpc.call('COOKIE', '');
    assert.deepEqual(await adm.call('IS_USER_ONLINE', U.pub), [true]);
    assert.deepEqual(await adm.call('IS_USER_ONLINE', U.safe), [true]);
    assert.equal(await adm.fail('IS_USER_ONLINE', 'nope'), 'EINVAL');
    u.close();
});

T('login blocks: status with TOTP "DISABLED"; DISABLE_MFA without TOTP is MFA_ERROR', async () => {
    assert.deepEqual(await adm.call('GET_DOCUMENT_STATUS', N.pub), [{ live: false, archived: false, totp: 'DISABLED' }]);
    assert.equal(await adm.fail('DISABLE_MFA', N.pub), 'MFA_ERROR');
    assert.equal(await adm.fail('DISABLE_MFA', '../x'), 'EINVAL');
    assert.equal(await adm.fail('ARCHIVE_BLOCK', null), 'INVALID_ARGS');
    assert.equal(await adm.fail('ARCHIVE_BLOCK', { key: 'x' }), 'EINVAL');
});

// The file of login block `key` (its safe form) on its storage node, live or archived.
const blockFile = (key, archived) => {
    const safe = R.safeKey(key);
    return Path.join(dirOf(safe), ...(archived ? ['data', 'archive'] : []), 'block', safe.slice(0, 2), safe);
};

T('RESTORE_ARCHIVED_BLOCK: the archived block back, its placeholder gone; never over a live one', async () => {
    const K = R.keyPair();
    writeStored(blockFile(K.pub), 'the login block');
    assert.deepEqual(await adm.call('ARCHIVE_BLOCK', { key: K.pub, reason: 'abuse' }), []);
    assert.ok(!existsStored(blockFile(K.pub)));
    assert.deepEqual(await adm.call('GET_DOCUMENT_STATUS', K.pub),
        [{ live: false, archived: true, placeholder: 'MODERATION_BLOCK:abuse', totp: 'DISABLED' }]);
    assert.deepEqual(await adm.call('RESTORE_ARCHIVED_BLOCK', { key: K.pub, reason: 'oops' }), []);
    assert.equal(readStored(blockFile(K.pub), 'utf8'), 'the login block');
    assert.ok(!existsStored(blockFile(K.pub, true)));
    assert.deepEqual(await adm.call('GET_DOCUMENT_STATUS', K.pub), [{ live: true, archived: false, totp: 'DISABLED' }]);
    // nothing archived any more
    assert.equal(await adm.fail('RESTORE_ARCHIVED_BLOCK', { key: K.pub }), 'ENOENT');
    // a live block in the way: nothing moves
    assert.deepEqual(await adm.call('ARCHIVE_BLOCK', { key: K.pub, reason: 'again' }), []);
    writeStored(blockFile(K.pub), 'a new block');
    assert.equal(await adm.fail('RESTORE_ARCHIVED_BLOCK', { key: K.pub }), 'EEXIST');
    assert.equal(readStored(blockFile(K.pub), 'utf8'), 'a new block');
    assert.equal(readStored(blockFile(K.pub, true), 'utf8'), 'the login block');
    // both copies: `archived` looks into the archive itself, not at the placeholder
    assert.deepEqual(await adm.call('GET_DOCUMENT_STATUS', K.pub),
        [{ live: true, archived: true, placeholder: 'MODERATION_BLOCK:again', totp: 'DISABLED' }]);
    // bad input, before any path is built
    assert.equal(await adm.fail('RESTORE_ARCHIVED_BLOCK', null), 'INVALID_ARGS');
    assert.equal(await adm.fail('RESTORE_ARCHIVED_BLOCK', { key: '../../../../../../../../../../etc/passwd=' }), 'EINVAL');
    assert.equal(await adm.fail('RESTORE_ARCHIVED_BLOCK', { key: 'x'.repeat(44) }), 'EINVAL');
});

// ------------------------------------------------------------ documents

const X = '0123456789abcdef0123456789abcdef';

T('a channel that never existed: status, size, last time, metadata (§8.5)', async () => {
    assert.deepEqual(await adm.call('GET_DOCUMENT_STATUS', X), [{ live: false, archived: false }]);
    assert.deepEqual(await adm.call('GET_DOCUMENT_SIZE', X), [0]);
    assert.equal(await adm.fail('GET_LAST_CHANNEL_TIME', X), 'ENOENT');
    assert.equal(await adm.fail('GET_CACHED_CHANNEL_METADATA', X), 'ENOENT');
    assert.equal(await adm.fail('GET_STORED_METADATA', 'abc'), 'INVALID_CHAN');
    assert.equal(await adm.fail('GET_DOCUMENT_SIZE', '../../etc/passwd'), 'INVALID_CHAN');
    assert.equal(await adm.fail('GET_DOCUMENT_STATUS', 'abc'), 'EINVAL');
    assert.equal(await adm.fail('GET_DOCUMENT_STATUS', null), 'EINVAL');
    assert.deepEqual(await adm.call('GET_METADATA_HISTORY', X), []);
    assert.equal(await adm.fail('ARCHIVE_DOCUMENT', { id: `${X}0`, reason: 'x' }), 'INVALID_ID_LENGTH');
    assert.equal(await adm.fail('ARCHIVE_DOCUMENT', null), 'EINVAL');
    assert.equal(await adm.fail('REMOVE_DOCUMENT', { id: X, reason: 'x' }), 'E_REMOVE_CHANNEL');
    assert.deepEqual(await adm.call('ARCHIVE_DOCUMENT', { id: X, reason: 'spam' }), []);
});

T('archiving a live channel tells its member, moves its files; restore brings it back', async () => {
    const Y = C.padId();
    const r = await C.rawReady(srv.url);
    const hk = await R.learnHk(r);
    await r.request(['JOIN', Y]);
    await r.request(['MSG', Y, 'first message']);
    await C.waitFor(async () => (await adm.call('GET_DOCUMENT_SIZE', Y))[0] > 0, 5000, 'the message stored');
    const [st] = await adm.call('GET_DOCUMENT_STATUS', Y);
    assert.equal(st.live, true);
    // a key pinning it (and a missing channel): its total is the channel's size
    const V = R.keyPair();
    writePinLog(V, [['RESET', [Y, C.padId()], Date.now()]]);
    assert.deepEqual(await adm.call('GET_USER_TOTAL_SIZE', V.pub), await adm.call('GET_DOCUMENT_SIZE', Y));
    const [t] = await adm.call('GET_LAST_CHANNEL_TIME', Y);
    assert.ok(Math.abs(t - Date.now()) < 60000, `${t}`);
    assert.deepEqual(await adm.call('GET_CACHED_CHANNEL_METADATA', Y).then(x => typeof x[0]), 'object');

    // a script's message to the channel's sessions
    assert.deepEqual(await adm.call('NOTIFY_CHANNEL', { channel: Y, message: '{"notice":"maintenance at noon"}' }), [1]);
    const told = await r.next((f) => Array.isArray(f) && f[0] === 0 && f[1] === hk && f[2] === 'MSG' &&
        typeof f[4] === 'string' && f[4].includes('maintenance at noon'), 5000);
    assert.equal(told[3], r.id);
    assert.equal(await adm.fail('NOTIFY_CHANNEL', { channel: '../x', message: 'm' }), 'EINVAL');

    assert.deepEqual(await adm.call('ARCHIVE_DOCUMENT', { id: Y, reason: 'spam' }), []);
    const notice = await r.next((f) => Array.isArray(f) && f[0] === 0 && f[1] === hk && f[2] === 'MSG' &&
        typeof f[4] === 'string' && f[4].includes('EDELETED'), 5000);
    assert.deepEqual(JSON.parse(notice[4]), { error: 'EDELETED', message: 'MODERATION_PAD:spam', channel: Y });
    const file = Path.join(dirOf(Y), 'datastore', Y.slice(0, 2), `${Y}.ndjson`);
    assert.ok(!existsStored(file));
    assert.ok(existsStored(Path.join(dirOf(Y), 'data', 'archive', 'datastore', Y.slice(0, 2), `${Y}.ndjson`)));
    assert.deepEqual(await adm.call('GET_DOCUMENT_STATUS', Y),
        [{ live: false, archived: true, placeholder: 'MODERATION_PAD:spam' }]);

    assert.deepEqual(await adm.call('RESTORE_ARCHIVED_DOCUMENT', { id: Y, reason: 'oops' }), []);
    assert.ok(existsStored(file));
    const [back] = await adm.call('GET_DOCUMENT_STATUS', Y);
    assert.equal(back.live, true);
    assert.equal(back.placeholder, undefined);
    assert.equal(await adm.fail('RESTORE_ARCHIVED_DOCUMENT', Y), 'UNARCHIVE_CHANNEL_CONFLICT');
    assert.equal(await adm.fail('RESTORE_ARCHIVED_DOCUMENT', C.padId()), 'ENOENT');
    // archived again, then a live log or metadata log in the way: CryptPad's conflict names
    assert.deepEqual(await adm.call('ARCHIVE_DOCUMENT', { id: Y, reason: 'again' }), []);
    writeStored(channelFile(dirOf(Y), Y, '.metadata.ndjson'), JSON.stringify({ channel: Y }) + '\n');
    assert.equal(await adm.fail('RESTORE_ARCHIVED_DOCUMENT', Y), 'UNARCHIVE_METADATA_CONFLICT');
    writeStored(file, JSON.stringify([0, 'u', 'MSG', Y, 'new', Date.now()]) + '\n');
    assert.equal(await adm.fail('RESTORE_ARCHIVED_DOCUMENT', Y), 'UNARCHIVE_CHANNEL_CONFLICT');
    r.close();
});

T('RESTORE_ARCHIVED_DOCUMENT of a blob: the blob and its metadata back, the placeholder gone', async () => {
    const B = C.hex(24);
    const blob = Path.join(dirOf(B), 'blob', B.slice(0, 2), B);
    const owner = R.keyPair();
    writeStored(blob, 'encrypted bytes');
    writeStored(`${blob}.metadata.ndjson`, JSON.stringify({ channel: B, owners: [owner.pub] }) + '\n');
    assert.deepEqual((await adm.call('GET_STORED_METADATA', B))[0].owners, [owner.pub]);
    assert.deepEqual(await adm.call('ARCHIVE_DOCUMENT', { id: B, reason: 'spam' }), []);
    assert.equal(await adm.fail('GET_STORED_METADATA', B), 'MODERATION_PAD:spam');
    assert.ok(!existsStored(blob));
    assert.ok(!existsStored(`${blob}.metadata.ndjson`));
    assert.deepEqual(await adm.call('GET_DOCUMENT_STATUS', B),
        [{ live: false, archived: true, placeholder: 'MODERATION_PAD:spam' }]);
    assert.deepEqual(await adm.call('RESTORE_ARCHIVED_DOCUMENT', { id: B, reason: 'oops' }), []);
    assert.equal(readStored(blob, 'utf8'), 'encrypted bytes');
    assert.deepEqual((await adm.call('GET_STORED_METADATA', B))[0].owners, [owner.pub]);
    assert.deepEqual(await adm.call('GET_DOCUMENT_STATUS', B), [{ live: true, archived: false }]);
    assert.equal(await adm.fail('RESTORE_ARCHIVED_DOCUMENT', B), 'ENOENT');
    // a live blob in the way: nothing moves
    assert.deepEqual(await adm.call('ARCHIVE_DOCUMENT', B), []);
    writeStored(blob, 'other bytes');
    assert.equal(await adm.fail('RESTORE_ARCHIVED_DOCUMENT', { id: B }), 'EEXIST');
    assert.equal(readStored(blob, 'utf8'), 'other bytes');
    assert.equal(await adm.fail('RESTORE_ARCHIVED_DOCUMENT', { id: '../'.repeat(16) }), 'EINVAL');
    assert.equal(await adm.fail('RESTORE_ARCHIVED_DOCUMENT', null), 'EINVAL');
});

T('REMOVE_DOCUMENT: a channel for good, its member told MODERATION_DESTROY; a blob (its metadata stays)', async () => {
    const Y = C.padId();
    const r = await C.rawReady(srv.url);
    const hk = await R.learnHk(r);
    await r.request(['JOIN', Y]);
    await r.request(['MSG', Y, 'to be removed']);
    await C.waitFor(async () => (await adm.call('GET_DOCUMENT_SIZE', Y))[0] > 0, 5000, 'the message stored');
    assert.deepEqual(await adm.call('REMOVE_DOCUMENT', { id: Y, reason: 'illegal' }), []);
    const notice = await r.next((f) => Array.isArray(f) && f[0] === 0 && f[1] === hk && f[2] === 'MSG' &&
        typeof f[4] === 'string' && f[4].includes('EDELETED'), 5000);
    assert.deepEqual(JSON.parse(notice[4]), { error: 'EDELETED', message: 'MODERATION_DESTROY:illegal', channel: Y });
    assert.ok(!existsStored(channelFile(dirOf(Y), Y)));
    assert.ok(!existsStored(Path.join(dirOf(Y), 'data', 'archive', 'datastore', Y.slice(0, 2), `${Y}.ndjson`)));
    r.close();

    const B = C.hex(24);
    const blob = Path.join(dirOf(B), 'blob', B.slice(0, 2), B);
    writeStored(blob, 'bytes');
    writeStored(`${blob}.metadata.ndjson`, JSON.stringify({ channel: B, owners: [] }) + '\n');
    assert.deepEqual(await adm.call('REMOVE_DOCUMENT', B), []);
    assert.ok(!existsStored(blob));
    assert.ok(existsStored(`${blob}.metadata.ndjson`));
    assert.equal(await adm.fail('REMOVE_DOCUMENT', B), 'ENOENT');
    assert.equal(await adm.fail('REMOVE_DOCUMENT', 'x'.repeat(40)), 'INVALID_ID_LENGTH');
    assert.equal(await adm.fail('REMOVE_DOCUMENT', 'X'.repeat(48)), 'INVALID_ID');
    assert.equal(await adm.fail('REMOVE_DOCUMENT', `../${'a'.repeat(29)}`), 'EINVAL');
    assert.equal(await adm.fail('REMOVE_DOCUMENT', null), 'EINVAL');
});

T('ARCHIVE_DOCUMENTS: {state, failed}: a missing blob fails, a missing channel does not', async () => {
    const blob = C.hex(24);
    const [res] = await adm.call('ARCHIVE_DOCUMENTS', { list: [C.padId(), blob], reason: 'r' });
    assert.deepEqual(res, { state: true, failed: [blob] });
    assert.equal(await adm.fail('ARCHIVE_DOCUMENTS', { list: 'x' }), 'EINVAL');
});

T('ARCHIVE_ACCOUNT: what the key alone owns, its pin log; the report; RESTORE_ACCOUNT brings the channels back', async () => {
    const W = R.keyPair();
    const other = R.keyPair();
    const writePad = (id, owners) => {
        const f = channelFile(dirOf(id), id);
        writeStored(channelFile(dirOf(id), id, '.metadata.ndjson'), JSON.stringify({ channel: id, created: Date.now(), owners }) + '\n');
        writeStored(f, JSON.stringify([0, 'u', 'MSG', id, 'hello', Date.now()]) + '\n');
    };
    const Q = C.padId();
    const Q2 = C.padId();
    writePad(Q, [W.pub]);
    writePad(Q2, [W.pub, other.pub]);
    const B = C.hex(24);
    const blob = Path.join(dirOf(B), 'blob', B.slice(0, 2), B);
    writeStored(blob, 'encrypted bytes');
    writeStored(`${blob}.metadata.ndjson`, JSON.stringify({ channel: B, owners: [W.pub] }) + '\n');
    const WB = R.keyPair();       // W's login block, named by its pin log
    writeStored(blockFile(WB.pub), 'W block');
    writePinLog(W, [['RESET', [Q, Q2, B], Date.now()], ['PIN', [`${WB.pub}#block`], Date.now()]]);

    const [meta] = await adm.call('GET_STORED_METADATA', Q2);
    assert.deepEqual(meta.owners, [W.pub, other.pub]);
    assert.deepEqual(await adm.call('GET_METADATA_HISTORY', Q2), [{ channel: Q2, created: meta.created, owners: [W.pub, other.pub] }]);
    assert.deepEqual(await adm.call('GET_STORED_METADATA', C.padId()), []);
    assert.equal(await adm.fail('ARCHIVE_ACCOUNT', null), 'EINVAL');
    assert.equal(await adm.fail('ARCHIVE_ACCOUNT', { key: '../../x', reason: 'r' }), 'EINVAL');
    assert.deepEqual(await adm.call('ARCHIVE_ACCOUNT', { key: W.pub, reason: 'abuse' }), [{ state: true }]);
    assert.deepEqual(await adm.call('GET_DOCUMENT_STATUS', Q),
        [{ live: false, archived: true, placeholder: 'MODERATION_ACCOUNT:abuse' }]);
    assert.equal((await adm.call('GET_DOCUMENT_STATUS', Q2))[0].live, true);
    assert.deepEqual(await adm.call('GET_DOCUMENT_STATUS', B),
        [{ live: false, archived: true, placeholder: 'MODERATION_ACCOUNT:abuse' }]);
    assert.deepEqual(await adm.call('GET_PIN_LOG_STATUS', W.pub), [{ live: false, archived: true }]);
    assert.equal(await adm.fail('GET_STORED_METADATA', Q), 'MODERATION_ACCOUNT:abuse');
    assert.ok(!existsStored(blockFile(WB.pub)));
    assert.deepEqual(await adm.call('GET_ACCOUNT_ARCHIVE_STATUS', { key: W.pub }),
        [{ key: W.safe, channels: [Q], blobs: [B], blockId: WB.pub, reason: 'abuse' }]);

    const [res] = await adm.call('RESTORE_ACCOUNT', { key: W.pub });
    assert.deepEqual(res, { state: true, errors: [] });
    assert.equal((await adm.call('GET_DOCUMENT_STATUS', Q))[0].live, true);
    // the blob, the pin log and the login block are back too
    assert.deepEqual(await adm.call('GET_DOCUMENT_STATUS', B), [{ live: true, archived: false }]);
    assert.deepEqual(await adm.call('GET_PIN_LOG_STATUS', W.pub), [{ live: true, archived: false }]);
    assert.deepEqual(await adm.call('GET_PIN_LIST', W.pub), [Q, Q2, B]);
    assert.equal(readStored(blockFile(WB.pub), 'utf8'), 'W block');
    assert.equal(await adm.fail('GET_ACCOUNT_ARCHIVE_STATUS', { key: W.pub }), 'ENOENT');
    assert.equal(await adm.fail('RESTORE_ACCOUNT', { key: W.pub }), 'ENOENT');

    // archived again, with a live pin log in the way at restore: the rest
    // comes back, the pin log is listed in `errors` and left as it is
    assert.deepEqual(await adm.call('ARCHIVE_ACCOUNT', { key: W.pub, reason: 'again' }), [{ state: true }]);
    writePinLog(W, [['RESET', [Q2], Date.now()]]);
    const [res2] = await adm.call('RESTORE_ACCOUNT', { key: W.pub });
    assert.deepEqual(res2, { state: true, errors: [`${W.safe}#pins`] });
    assert.deepEqual(await adm.call('GET_PIN_LIST', W.pub), [Q2]);
    assert.equal((await adm.call('GET_DOCUMENT_STATUS', Q))[0].live, true);
    assert.equal((await adm.call('GET_DOCUMENT_STATUS', B))[0].live, true);
});

T('broadcasts: an admin\'s authenticated connection may post to the admin channel, nobody else', async () => {
    const ADMIN_CHANNEL = '0'.repeat(33);
    const msg = JSON.stringify({ uid: C.hex(8), type: 'BROADCAST_CUSTOM', content: { defaultLanguage: 'en', content: { en: 'hi' } } });
    // adm's connection signed calls with the admin key
    const [time] = await R.anon(adm.r, adm.hk, 'WRITE_PRIVATE_MESSAGE', [ADMIN_CHANNEL, msg]);
    assert.equal(typeof time, 'number');
    const u = await AD.adminClient(srv.url, U);
    await u.rpc.call('COOKIE', '');
    const { reply } = await u.anon('WRITE_PRIVATE_MESSAGE', [ADMIN_CHANNEL, msg]);
    assert.deepEqual(reply.slice(1), ['ERROR', 'INSUFFICIENT_PERMISSIONS']);
    u.close();
    const r = await C.rawReady(srv.url);
    const hk = await R.learnHk(r);
    const { reply: anonReply } = await R.anonRaw(r, hk, 'WRITE_PRIVATE_MESSAGE', [ADMIN_CHANNEL, msg]);
    assert.deepEqual(anonReply.slice(1), ['ERROR', 'INSUFFICIENT_PERMISSIONS']);
    r.close();
});

// ------------------------------------------------------------ users and support

T('invitations: create, list, delete; an id with a path is refused', async () => {
    const [id] = await adm.call('CREATE_INVITATION', { alias: 'bob', email: '' });
    assert.match(id, /^[0-9a-v]{8,64}$/);
    const [all] = await adm.call('GET_ALL_INVITATIONS');
    assert.equal(all[id].alias, 'bob');
    assert.equal(all[id].email, '');
    assert.equal(all[id].createdBy, A.pub);
    assert.equal(typeof all[id].time, 'number');
    const rec = Path.join(CLUSTER ? srv.cluster.storageDir(0) : DATA, 'data', 'invitations', id.slice(0, 2), id);
    assert.ok(existsStored(rec), rec);
    assert.deepEqual(await adm.call('DELETE_INVITATION', id), [true]);
    assert.deepEqual(await adm.call('GET_ALL_INVITATIONS'), [{}]);
    assert.equal(await adm.fail('DELETE_INVITATION', '../../../etc'), 'EINVAL');
    assert.equal(await adm.fail('CREATE_INVITATION', null), 'EINVAL');
});

T('known users: add, list by safe key, update, delete; EEXIST; paths refused', async () => {
    assert.deepEqual(await adm.call('ADD_KNOWN_USER', { edPublic: U.pub, alias: 'u', email: 'u@example.org' }), []);
    assert.equal(await adm.fail('ADD_KNOWN_USER', { edPublic: U.pub, alias: 'again' }), 'EEXIST');
    let [all] = await adm.call('GET_ALL_USERS');
    assert.equal(all[U.safe].alias, 'u');
    assert.equal(all[U.safe].type, 'manual');
    assert.deepEqual(await adm.call('UPDATE_KNOWN_USER', { edPublic: U.safe, changes: { alias: 'v', email: false } }), []);
    [all] = await adm.call('GET_ALL_USERS');
    assert.equal(all[U.safe].alias, 'v');
    assert.equal(all[U.safe].email, undefined);
    assert.equal(await adm.fail('UPDATE_KNOWN_USER', { edPublic: U.safe, changes: { alias: 'x'.repeat(400) } }), 'E_TOO_LONG');
    assert.equal(await adm.fail('UPDATE_KNOWN_USER', { edPublic: '../../x', changes: {} }), 'EINVAL');
    assert.equal(await adm.fail('DELETE_KNOWN_USER', '../../../../etc/passwd'), 'EINVAL');
    assert.equal(await adm.fail('ADD_KNOWN_USER', null), 'EINVAL');
    assert.deepEqual(await adm.call('DELETE_KNOWN_USER', U.safe), [true]);
    assert.deepEqual(await adm.call('GET_ALL_USERS'), [{}]);
});

T('moderators: ADD_MODERATOR shows in /api/config moderatorKeys on every front; REMOVE_MODERATOR', async () => {
    const M = R.keyPair();
    const curve = R.keyPair().pub;
    assert.deepEqual(await adm.call('ADD_MODERATOR', { name: 'mod', edPublic: M.pub, curvePublic: curve, mailbox: 'x', profile: '' }), []);
    assert.equal(await adm.fail('ADD_MODERATOR', { name: 'mod', edPublic: M.pub, curvePublic: curve }), 'EEXIST');
    assert.equal(await adm.fail('ADD_MODERATOR', { name: 'mod' }), 'EINVAL');
    const [mods] = await adm.call('GET_MODERATORS', {});
    assert.equal(mods[M.pub].name, 'mod');
    for (let i = 0; i < (CLUSTER ? 4 : 1); i++) {      // the proxy alternates fronts
        assert.deepEqual((await AD.httpModule(srv.port, '/api/config')).moderatorKeys, [M.pub]);
    }
    assert.deepEqual(await adm.call('REMOVE_MODERATOR', M.pub), [true]);
    assert.deepEqual(await adm.call('GET_MODERATORS', {}), [{}]);
    assert.deepEqual((await AD.httpModule(srv.port, '/api/config')).moderatorKeys, []);
});

// ------------------------------------------------------------ customize

// A 1x1 PNG.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');

T('UPLOAD_LOGO: an image only, not too large; /api/logo serves it on every front; REMOVE_LOGO', async () => {
    assert.equal(await adm.fail('UPLOAD_LOGO', null), 'EINVAL');
    assert.equal(await adm.fail('UPLOAD_LOGO', {}), 'E_TOO_LARGE');
    assert.equal(await adm.fail('UPLOAD_LOGO', { dataURL: `data:image/png;base64,${'A'.repeat(273091)}` }), 'E_TOO_LARGE');
    // better than main: an HTML page is no logo
    assert.equal(await adm.fail('UPLOAD_LOGO', { dataURL: `data:text/html;base64,${Buffer.from('<script>1</script>').toString('base64')}` }), 'EINVAL');
    assert.equal(await adm.fail('UPLOAD_LOGO', { dataURL: 'data:image/png;base64,@@@' }), 'EINVAL');
    assert.deepEqual(await adm.call('UPLOAD_LOGO', { dataURL: `data:image/png;base64,${PNG.toString('base64')}` }), [true]);
    for (let i = 0; i < (CLUSTER ? 2 : 1); i++) {
        const res = await fetch(`http://127.0.0.1:${srv.port}/api/logo?${Date.now()}`);
        assert.equal(res.status, 200);
        assert.match(res.headers.get('content-type'), /^image\/png/);
        assert.deepEqual(Buffer.from(await res.arrayBuffer()), PNG);
    }
    const lines = AD.decreeLines(CLUSTER ? srv.cluster.storageDir(0) : DATA);
    assert.ok(lines.some(l => l[0] === 'SET_LOGO_MIME' && l[1][0] === 'image/png' && l[2] === A.pub));
    assert.deepEqual(await adm.call('REMOVE_LOGO', {}), []);
    assert.equal(await adm.fail('REMOVE_LOGO', {}), 'ENOENT');
    const res = await fetch(`http://127.0.0.1:${srv.port}/api/logo`, { redirect: 'manual' });
    assert.notEqual(res.status, 200);
    // not for admins: the scripts' own decree door
    assert.equal(await adm.fail('ADMIN_DECREE_AS', { decree: ['RESTRICT_REGISTRATION', [true]] }), 'FORBIDDEN');
});

T('ARCHIVE_SUPPORT: EINVAL without support keys; archives what the support key pins', async () => {
    assert.equal(await adm.fail('ARCHIVE_SUPPORT', {}), 'EINVAL');
    const S = R.keyPair();
    const Z = C.padId();
    const r = await C.rawReady(srv.url);
    await r.request(['JOIN', Z]);
    await r.request(['MSG', Z, 'support ticket']);
    r.close();
    writePinLog(S, [['RESET', [Z], Date.now()]]);
    await adm.decree('SET_SUPPORT_KEYS', [R.keyPair().pub, S.pub]);
    assert.deepEqual(await adm.call('ARCHIVE_SUPPORT', {}), []);
    assert.deepEqual(await adm.call('GET_DOCUMENT_STATUS', Z),
        [{ live: false, archived: true, placeholder: 'MODERATION_PAD:DISABLE_SUPPORT' }]);
    assert.equal((await AD.httpModule(srv.port, '/api/config')).supportMailboxKey.length, 44);
    await adm.decree('SET_SUPPORT_KEYS', ['', '']);
    assert.equal(await adm.fail('ARCHIVE_SUPPORT', {}), 'EINVAL');
});
