'use strict';
// The first admin of a fresh instance (docs/protocol/admin.md §1.4, §6,
// §8.2): the install token printed at start as <origin>/install/#<token>
// and kept as an ADD_INSTALL_TOKEN decree, the anonymous ADD_FIRST_ADMIN
// with its checks in CryptPad's order, and, better than CryptPad, the
// token spent once an admin exists (a replay of it is refused, also after a
// restart, which prints no link any more).  An instance with a configured
// admin has no token at all.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const { startServer, withLog, tmpDir } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');
const AD = require('./lib/admin');

const CLUSTER = process.env.CPSD_CLUSTER === '1';
const ROOT = tmpDir('cpsd-onboard-');
const DATA = Path.join(ROOT, 'data');
const K = R.keyPair();       // the first admin
const O = R.keyPair();       // somebody else

let srv;
const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv.guard(fn)(t));
const logDir = () => (CLUSTER ? srv.cluster.storageDir(0) : DATA);
let token;

before(withLog(() => srv, async () => {
    srv = await startServer({}, { dir: ROOT });
    await C.waitFor(() => AD.installLinks(srv.stderr()).length > 0, 10000, 'the install link');
}));

after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
});

const addFirst = async (args) => {
    const a = await AD.adminClient(srv.url, O);
    const { reply } = await a.anon('ADD_FIRST_ADMIN', args);
    a.close();
    return reply;
};

T('a fresh instance prints the onboarding link once, and logs the token as a decree', async () => {
    const links = AD.installLinks(srv.stderr());
    assert.equal(links.length, 1, srv.stderr());
    token = links[0].token;
    if (!CLUSTER) { assert.equal(links[0].origin, `http://127.0.0.1:${srv.port}`); }
    assert.match(srv.stderr(), /=============================\nCreate your first admin account and customize your instance by visiting\n/);
    const lines = AD.decreeLines(logDir());
    const tok = lines.filter(l => l[0] === 'ADD_INSTALL_TOKEN');
    assert.equal(tok.length, 1);
    assert.deepEqual(tok[0].slice(0, 3), ['ADD_INSTALL_TOKEN', [token], '']);
    assert.ok(lines.some(l => l[0] === 'SET_BEARER_SECRET' && l[2] === 'INTERNAL' &&
        Buffer.from(l[1][0], 'base64').length === 32 && l[1][0].length === 44));
    assert.ok(lines.some(l => l[0] === 'PROOFS_MIGRATED' && l[1] === 1 && l[2] === 'server'));
    assert.deepEqual((await AD.httpModule(srv.port, '/api/config')).adminKeys, []);
    // the instance is usable without an admin: registration is open
    assert.equal((await AD.registerBlock(srv.port)).status, 200);
});

T('ADD_FIRST_ADMIN refuses bad input in CryptPad\'s order, and changes nothing', async () => {
    const code = (reply) => (reply[1] === 'ERROR' ? reply[2] : `ok ${JSON.stringify(reply)}`);
    assert.equal(code(await addFirst({ token })), 'MISSING_ARGS');
    assert.equal(code(await addFirst(null)), 'MISSING_ARGS');
    assert.equal(code(await addFirst('x')), 'MISSING_ARGS');
    assert.equal(code(await addFirst({ token: '', edPublic: K.pub })), 'MISSING_ARGS');
    assert.equal(code(await addFirst({ token: 'abc', edPublic: K.pub })), 'INVALID_ARGS');
    assert.equal(code(await addFirst({ token, edPublic: 'short' })), 'INVALID_ARGS');
    assert.equal(code(await addFirst({ token: C.hex(32), edPublic: K.pub })), 'FORBIDDEN');
    // better than main: 44 characters that are no key
    assert.equal(code(await addFirst({ token, edPublic: 'x'.repeat(44) })), 'INVALID_ARGS');
    assert.deepEqual((await AD.httpModule(srv.port, '/api/config')).adminKeys, []);
    assert.ok(!AD.decreeLines(logDir()).some(l => l[0] === 'ADD_ADMIN_KEY'));
});

T('ADD_FIRST_ADMIN with the token: [txid, null, null, null], the key is admin, the token is spent', async () => {
    const a = await AD.adminClient(srv.url, K);
    assert.equal(await a.fail('INSTANCE_STATUS'), 'FORBIDDEN');
    const { reply, txid } = await a.anon('ADD_FIRST_ADMIN', { token, edPublic: K.pub });
    assert.deepEqual(reply, [txid, null, null, null]);
    const line = AD.decreeLines(logDir()).filter(l => l[0] === 'ADD_ADMIN_KEY');
    assert.equal(line.length, 1);
    assert.deepEqual(line[0].slice(0, 3), ['ADD_ADMIN_KEY', [K.pub], '']);
    const [st] = await a.call('INSTANCE_STATUS');
    assert.deepEqual(st.admins, [{ edPublic: K.pub, first: true, hardcoded: false }]);
    assert.deepEqual((await AD.httpModule(srv.port, '/api/config')).adminKeys, [K.pub]);
    // the install page's last steps
    assert.deepEqual(await a.decree('SET_INSTANCE_NAME', ['My CryptPad']), []);
    assert.deepEqual(await a.call('FLUSH_CACHE', {}), [true]);
    // replaying the token: refused, for this key or another
    assert.equal((await addFirst({ token, edPublic: O.pub }))[2], 'EEXISTS');
    const { reply: again } = await a.anon('ADD_FIRST_ADMIN', { token, edPublic: K.pub });
    assert.deepEqual(again.slice(1), ['ERROR', 'EEXISTS']);
    a.close();
});

T('after a restart: no link, the admin stays, the token stays spent', async () => {
    C.closeAll();
    await srv.stop();
    srv = await startServer({}, { dir: ROOT });
    await C.waitFor(() => /decree log replayed/.test(srv.stderr()), 10000, 'replay');
    assert.deepEqual(AD.installLinks(srv.stderr()), []);
    assert.deepEqual((await AD.httpModule(srv.port, '/api/config')).adminKeys, [K.pub]);
    assert.equal((await addFirst({ token, edPublic: O.pub }))[2], 'EEXISTS');
    const a = await AD.adminClient(srv.url, K);
    const [st] = await a.call('INSTANCE_STATUS');
    assert.deepEqual(st.instanceName, { default: 'My CryptPad' });
    a.close();
}, { skip: CLUSTER && 'restarts the single server' });

T('an instance with a configured admin has no install token: ADD_FIRST_ADMIN is EINVAL', async () => {
    const dir = tmpDir('cpsd-onboard2-');
    const other = await startServer({ admin: { keys: [K.pub] } }, { dir, single: true });
    try {
        await C.waitFor(() => /decree log replayed/.test(other.stderr()), 10000, 'replay');
        assert.deepEqual(AD.installLinks(other.stderr()), []);
        const a = await AD.adminClient(other.url, O);
        const { reply } = await a.anon('ADD_FIRST_ADMIN', { token: C.hex(32), edPublic: O.pub });
        assert.deepEqual(reply.slice(1), ['ERROR', 'EINVAL']);
        a.close();
        assert.ok(!AD.decreeLines(Path.join(dir, 'data')).some(l => l[0] === 'ADD_INSTALL_TOKEN'));
    } finally {
        await other.stop();
        Fs.rmSync(dir, { recursive: true, force: true });
    }
});

T('a decree log that cannot be read: the server starts, serves its state, refuses to write', async () => {
    const dir = tmpDir('cpsd-onboard3-');
    // a directory where the log should be: unreadable as a file
    Fs.mkdirSync(AD.decreeFile(Path.join(dir, 'data')), { recursive: true });
    const other = await startServer({ admin: { keys: [K.pub] } }, { dir, single: true });
    try {
        await C.waitFor(() => /decree log replayed/.test(other.stderr()), 10000, 'start');
        assert.match(other.stderr(), /decree log unreadable .*read-only/);
        const a = await AD.adminClient(other.url, K);
        const [st] = await a.call('INSTANCE_STATUS');
        assert.deepEqual(st.admins.map(x => x.edPublic), [K.pub]);
        assert.equal(await a.decreeFail('RESTRICT_REGISTRATION', [true]), 'EIO');
        assert.equal((await AD.httpModule(other.port, '/api/config')).restrictRegistration, false);
        a.close();
    } finally {
        await other.stop();
        Fs.rmSync(dir, { recursive: true, force: true });
    }
});
