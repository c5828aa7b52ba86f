'use strict';
// The ADMIN RPC and the decrees (docs/protocol/admin.md §2-§4, §8): who may
// call it (FORBIDDEN, UNHANDLED_ADMIN_COMMAND), INSTANCE_STATUS, every
// decree's validation and effect on /api/config, /api/broadcast,
// /api/instance and on behaviour (registration closed, a user's quota),
// the decree log in CryptPad's place and format, its replay after a
// restart with malformed lines skipped, and an operator's admin command
// dropped into a lua_dirs directory (one that errors, one that loops).
//
// CPSD_CLUSTER=1 runs the same file against a 2x2x2 topology: each call
// may land on another front, and the decree state must be the same there.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const { startServer, withLog, tmpDir } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');
const AD = require('./lib/admin');

const CLUSTER = process.env.CPSD_CLUSTER === '1';
const ROOT = tmpDir('cpsd-admin-');
const DATA = Path.join(ROOT, 'data');
const LUA = Path.join(ROOT, 'lua');

const A = R.keyPair();          // the configured admin, as a user id string
const N = R.keyPair();          // anybody else
const U = R.keyPair();          // a user whose quota is set
const ALICE = `[alice@example.org/${A.safe}]`;

// An operator's command, dropped into lua_dirs/admin/ (lua/README.md).
const OPERATOR_SCRIPT = `
cps.admin_command("OPERATOR_ECHO", "echo the parameter and who asked", function(p, ctx)
    return { echo = p, key = ctx.key, operator = ctx.key == nil }
end)
cps.admin_command("OPERATOR_BROKEN", "raises a Lua error", function(p, ctx)
    local t = nil
    return t.field
end)
cps.admin_command("OPERATOR_LOOP", "never ends", function(p, ctx)
    while true do end
end)
-- runs another admin command as the operator does (cpsd admin NAME WORDS...)
cps.admin_command("OPERATOR_RUN", "run an admin command as the operator", function(p, ctx)
    local ok, code = cps.admin_call(p.name, p.args, function(err, value)
        ctx:reply({ err = err, value = value })
    end)
    if not ok then return { err = code } end
end)
`;

let srv;
const T = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, (t) => srv.guard(fn)(t));
const conf = () => ({
    plugins_add: ['example_rpc'],
    'rpc-pin': { limits: { [N.safe]: { limit: 7777777, plan: 'conf', note: 'from the configuration' } } },
    admin: { keys: [ALICE] },
    lua_dirs: [LUA],
    lua: { max_instructions: 2000000 },
});
// The data directory of the log: the single server's, or storage:0's.
const logDir = () => (CLUSTER ? srv.cluster.storageDir(0) : DATA);

let adm;   // the admin's client
let any;   // a non-admin's client

const open = async () => {
    adm = await AD.adminClient(srv.url, A);
    any = await AD.adminClient(srv.url, N);
};

before(withLog(() => srv, async () => {
    Fs.mkdirSync(Path.join(LUA, 'admin'), { recursive: true });
    Fs.writeFileSync(Path.join(LUA, 'admin', 'operator.lua'), OPERATOR_SCRIPT);
    srv = await startServer(conf(), { dir: ROOT });
    await open();
}));

after(async () => {
    C.closeAll();
    if (srv) { await srv.stop(); }
    Fs.rmSync(ROOT, { recursive: true, force: true });
});

// ------------------------------------------------------------ dispatch

T('a non-admin gets FORBIDDEN, whatever the sub-command or its argument', async () => {
    assert.equal(await any.fail('INSTANCE_STATUS'), 'FORBIDDEN');
    assert.equal(await any.fail('NO_SUCH_COMMAND'), 'FORBIDDEN');
    assert.equal(await any.fail('ADMIN_DECREE', ['ADD_ADMIN_KEY', [N.pub]]), 'FORBIDDEN');
    const { reply } = await any.raw(null);
    assert.deepEqual(reply.slice(1), ['ERROR', 'FORBIDDEN']);
});

T('an admin: unknown sub-command or a malformed argument is UNHANDLED_ADMIN_COMMAND', async () => {
    assert.equal(await adm.fail('NO_SUCH_COMMAND'), 'UNHANDLED_ADMIN_COMMAND');
    for (const bad of [null, 'INSTANCE_STATUS', 42, {}, [], [7], [null]]) {
        const { reply } = await adm.raw(bad);
        assert.deepEqual(reply.slice(1), ['ERROR', 'UNHANDLED_ADMIN_COMMAND'], JSON.stringify(bad));
    }
    // an RPC command of another kind is not an admin command
    assert.equal(await adm.fail('GET_LIMIT'), 'UNHANDLED_ADMIN_COMMAND');
});

T('INSTANCE_STATUS: the panel\'s members, the config admin hard-coded with its name', async () => {
    const [st] = await adm.call('INSTANCE_STATUS');
    assert.deepEqual(st.admins, [{ edPublic: A.pub, hardcoded: true, name: 'alice' }]);
    for (const k of ['restrictRegistration', 'enableEmbedding', 'disableIntegratedEviction', 'enableProfiling',
        'consentToContact', 'listMyInstance', 'provideAggregateStatistics', 'blockDailyCheck']) {
        assert.equal(typeof st[k], 'boolean', k);
    }
    for (const k of ['launchTime', 'currentTime', 'defaultStorageLimit', 'profilingWindow', 'maxUploadSize', 'lastEviction']) {
        assert.equal(typeof st[k], 'number', k);
    }
    for (const k of ['instanceName', 'instanceDescription', 'instanceJurisdiction', 'instanceNotice']) {
        assert.equal(typeof st[k], 'object', k);
    }
    assert.equal(st.defaultStorageLimit, 52428800);
    assert.ok(Math.abs(st.currentTime - Date.now()) < 60000);
});

T('/api/config adminKeys is the admin list', async () => {
    const cfg = await AD.httpModule(srv.port, '/api/config');
    assert.deepEqual(cfg.adminKeys, [A.pub]);
});

// ------------------------------------------------------------ decrees

T('RESTRICT_REGISTRATION: applied, logged once, /api/config, and registration really refused', async () => {
    assert.equal((await AD.registerBlock(srv.port)).status, 200);
    const before = AD.decreeLines(logDir()).length;
    assert.deepEqual(await adm.decree('RESTRICT_REGISTRATION', [true]), []);
    let lines = AD.decreeLines(logDir());
    assert.equal(lines.length, before + 1);
    const last = lines[lines.length - 1];
    assert.deepEqual(last.slice(0, 3), ['RESTRICT_REGISTRATION', [true], A.pub]);
    assert.ok(Number.isInteger(last[3]) && Math.abs(last[3] - Date.now()) < 60000);
    assert.equal((await AD.httpModule(srv.port, '/api/config')).restrictRegistration, true);
    const refused = await AD.registerBlock(srv.port);
    assert.notEqual(refused.status, 200, refused.text);
    assert.match(refused.text, /E_RESTRICTED/);
    // the same value again: no change, nothing written
    assert.deepEqual(await adm.decree('RESTRICT_REGISTRATION', [true]), []);
    assert.equal(AD.decreeLines(logDir()).length, before + 1);
    await adm.decree('RESTRICT_REGISTRATION', [false]);
    assert.equal((await AD.registerBlock(srv.port)).status, 200);
    lines = AD.decreeLines(logDir());
    assert.deepEqual(lines[lines.length - 1].slice(0, 2), ['RESTRICT_REGISTRATION', [false]]);
});

T('decrees of the wrong shape get main\'s errors and change nothing', async () => {
    const before = AD.decreeLines(logDir()).length;
    assert.equal(await adm.decreeFail('RESTRICT_REGISTRATION', ['yes']), 'Error: INVALID_ARGS');
    assert.equal(await adm.decreeFail('NOPE', [1]), 'Error: DECREE_UNSUPPORTED_COMMAND');
    assert.equal(await adm.fail('ADMIN_DECREE', 'RESTRICT_REGISTRATION'), 'INVALID_DECREE');
    assert.equal(await adm.fail('ADMIN_DECREE', null), 'INVALID_DECREE');
    assert.equal(await adm.decreeFail('SET_PROFILING_WINDOW', [0]), 'Error: INVALID_ARGS');
    assert.equal(await adm.decreeFail('SET_PROFILING_WINDOW', null), 'Error: INVALID_ARGS');
    assert.equal(await adm.decreeFail('SET_MAINTENANCE', [{ start: 1 }]), 'Error: INVALID_ARGS');
    assert.equal(await adm.decreeFail('RM_ADMIN_KEY', [A.pub]), 'Error: CANT_REMOVE_CONFIG');
    assert.equal(await adm.decreeFail('RM_QUOTA', [N.pub]), 'Error: ENOENT');
    // better than main: any 44 characters are not a key
    assert.equal(await adm.decreeFail('ADD_ADMIN_KEY', ['x'.repeat(44)]), 'Error: INVALID_KEY');
    assert.equal(await adm.decreeFail('ADD_ADMIN_KEY', ['../../../../etc/passwd/aaaaaaaaaaaaaaaaaaaa=']), 'Error: INVALID_KEY');
    assert.equal(await adm.decreeFail('SET_QUOTA', [U.pub, { limit: 1, plan: 'p', note: 'n', extra: 1 }]), 'Error: INVALID_ARGS');
    assert.equal(AD.decreeLines(logDir()).length, before);
    const [st] = await adm.call('INSTANCE_STATUS');
    assert.equal(st.profilingWindow, 10000);
    assert.deepEqual(st.admins.map(a => a.edPublic), [A.pub]);
});

T('SET_INSTANCE_NAME and friends: /api/instance; a number changes nothing', async () => {
    await adm.decree('SET_INSTANCE_NAME', [{ default: 'Pad', fr: 'Bloc' }]);
    await adm.decree('SET_INSTANCE_DESCRIPTION', ['A test instance']);
    const before = AD.decreeLines(logDir()).length;
    assert.deepEqual(await adm.decree('SET_INSTANCE_NAME', [42]), []);
    assert.equal(AD.decreeLines(logDir()).length, before);
    const inst = await AD.httpModule(srv.port, '/api/instance');
    assert.deepEqual(inst.name, { default: 'Pad', fr: 'Bloc' });
    assert.deepEqual(inst.description, { default: 'A test instance' });
    const [st] = await adm.call('INSTANCE_STATUS');
    assert.deepEqual(st.instanceName, { default: 'Pad', fr: 'Bloc' });
});

T('SET_MAINTENANCE, SET_SURVEY_URL, SET_LAST_BROADCAST_HASH: /api/broadcast', async () => {
    await adm.decree('SET_MAINTENANCE', [{ start: 1718000000000, end: 4102444800000 }]);
    await adm.decree('SET_SURVEY_URL', ['https://survey.example/']);
    await adm.decree('SET_LAST_BROADCAST_HASH', ['abc']);
    const b = await AD.httpModule(srv.port, '/api/broadcast');
    assert.deepEqual(b.maintenance, { start: 1718000000000, end: 4102444800000 });
    assert.equal(b.surveyURL, 'https://survey.example/');
    assert.equal(b.lastBroadcastHash, 'abc');
});

T('ADD_ADMIN_KEY / RM_ADMIN_KEY: the new admin may call ADMIN, /api/config follows', async () => {
    const other = await AD.adminClient(srv.url, N);
    assert.equal(await other.fail('INSTANCE_STATUS'), 'FORBIDDEN');
    await adm.decree('ADD_ADMIN_KEY', [N.safe]);          // the safe form is the same key
    assert.deepEqual((await AD.httpModule(srv.port, '/api/config')).adminKeys, [A.pub, N.pub]);
    const [st] = await other.call('INSTANCE_STATUS');
    assert.deepEqual(st.admins.find(a => a.edPublic === N.pub), { edPublic: N.pub, first: true, hardcoded: false });
    await adm.decree('RM_ADMIN_KEY', [N.pub]);
    assert.equal(await other.fail('INSTANCE_STATUS'), 'FORBIDDEN');
    assert.deepEqual((await AD.httpModule(srv.port, '/api/config')).adminKeys, [A.pub]);
    other.close();
});

T('SET_QUOTA: GET_LIMITS, GET_USER_QUOTA and the user\'s own GET_LIMIT; RM_QUOTA undoes it', async () => {
    const id = `[alice@example.org/${U.safe}]`;     // user ids carry the safe form
    await adm.decree('SET_QUOTA', [id, { limit: 2147483648, plan: 'buddy', note: 'thanks' }]);
    const lines = AD.decreeLines(logDir());
    assert.deepEqual(lines[lines.length - 1].slice(0, 2),
        ['SET_QUOTA', [id, { limit: 2147483648, plan: 'buddy', note: 'thanks', origin: 'decree' }]]);
    const [limits] = await adm.call('GET_LIMITS');
    assert.deepEqual(limits[U.pub], { limit: 2147483648, plan: 'buddy', note: 'thanks', origin: 'decree' });
    assert.deepEqual(await adm.call('GET_USER_QUOTA', U.pub), [2147483648, 'buddy', 'thanks']);
    assert.deepEqual(await adm.call('GET_USER_QUOTA', N.pub), [7777777, 'conf', 'from the configuration']);
    assert.deepEqual(limits[N.pub], { limit: 7777777, plan: 'conf', note: 'from the configuration', origin: 'config' });
    assert.deepEqual(await adm.call('GET_USER_QUOTA', R.keyPair().pub), [52428800, '', '']);
    assert.equal(await adm.fail('GET_USER_QUOTA', 'short'), 'EINVAL');
    assert.equal(await adm.fail('GET_USER_QUOTA', null), 'EINVAL');
    // the user's own view, through rpc-pin
    const u = await AD.adminClient(srv.url, U);
    assert.deepEqual(await u.rpc.call('GET_LIMIT'), [2147483648, 'buddy', 'thanks']);
    await adm.decree('RM_QUOTA', [U.pub]);
    assert.deepEqual(await u.rpc.call('GET_LIMIT'), [52428800, '', '']);
    u.close();
});

T('UPDATE_DEFAULT_STORAGE and SET_MAX_UPLOAD_SIZE: /api/config and INSTANCE_STATUS', async () => {
    await adm.decree('UPDATE_DEFAULT_STORAGE', [104857600]);
    await adm.decree('SET_MAX_UPLOAD_SIZE', [1048576]);
    const cfg = await AD.httpModule(srv.port, '/api/config');
    assert.equal(cfg.defaultStorageLimit, 104857600);
    assert.equal(cfg.maxUploadSize, 1048576);
    const [st] = await adm.call('INSTANCE_STATUS');
    assert.equal(st.defaultStorageLimit, 104857600);
    assert.deepEqual(await adm.call('GET_USER_QUOTA', U.pub), [104857600, '', '']);
});

T('ENABLE_EMBEDDING: /api/config and the headers of the next response', async () => {
    const acao = async () => (await fetch(`http://127.0.0.1:${srv.port}/api/instance`)).headers.get('access-control-allow-origin');
    assert.notEqual(await acao(), '*');
    await adm.decree('ENABLE_EMBEDDING', [true]);
    assert.equal((await AD.httpModule(srv.port, '/api/config')).enableEmbedding, true);
    assert.equal(await acao(), '*');
    const csp = (await fetch(`http://127.0.0.1:${srv.port}/api/instance`)).headers.get('content-security-policy');
    assert.match(csp, /frame-ancestors 'self' http: vector:/);
    await adm.decree('ENABLE_EMBEDDING', [false]);
    assert.notEqual(await acao(), '*');
    assert.equal((await AD.httpModule(srv.port, '/api/config')).enableEmbedding, false);
});

T('FLUSH_CACHE answers true and changes /api/config urlArgs', async () => {
    const before = (await AD.httpModule(srv.port, '/api/config')).requireConf.urlArgs;
    await C.sleep(5);
    assert.deepEqual(await adm.call('FLUSH_CACHE', {}), [true]);
    const after = (await AD.httpModule(srv.port, '/api/config')).requireConf.urlArgs;
    assert.notEqual(after, before);
    assert.match(after, /^ver=[^-]+-\d+$/);
});

T('CHANGE_COLOR: true, /api/instance color; a non-string colour is refused', async () => {
    assert.deepEqual(await adm.call('CHANGE_COLOR', { color: '#ff0073' }), [true]);
    assert.equal((await AD.httpModule(srv.port, '/api/instance')).color, '#ff0073');
    assert.equal(await adm.fail('CHANGE_COLOR', null), 'EINVAL');
    assert.equal(await adm.fail('CHANGE_COLOR', { color: 7 }), 'Error: INVALID_ARGS');
});

T('TEST_DECREE / CHECK_TEST_DECREE (the prototype\'s test)', async () => {
    const v = C.hex(16);
    assert.deepEqual(await adm.decree('TEST_DECREE', v), []);
    assert.deepEqual(await adm.call('CHECK_TEST_DECREE', []), [v]);
});

// ------------------------------------------------------------ Lua

T('an operator\'s admin command dropped into lua_dirs/admin/ answers ADMIN', async () => {
    const [res] = await adm.call('OPERATOR_ECHO', { x: [1, 'two'] });
    assert.deepEqual(res, { echo: { x: [1, 'two'] }, key: A.pub, operator: false });
    assert.equal(await any.fail('OPERATOR_ECHO', 1), 'FORBIDDEN');
});

T('a C plugin\'s admin command (example_rpc) answers ADMIN, and only to an admin', async () => {
    const r = await C.rawReady(srv.url);
    const hk = await R.learnHk(r);
    await R.anon(r, hk, 'EXAMPLE_ECHO', 'x');
    r.close();
    const [res] = await adm.call('EXAMPLE_ECHO_CALLS');
    assert.equal(res.asked_by, A.pub);
    // counted per process: on a cluster the echo may have run on the other core
    assert.ok(CLUSTER ? Number.isInteger(res.echoes) : res.echoes >= 1);
    assert.equal(await any.fail('EXAMPLE_ECHO_CALLS'), 'FORBIDDEN');
    const op = (await adm.call('OPERATOR_RUN', { name: 'EXAMPLE_ECHO_CALLS', args: [] }))[0];
    assert.equal(op.value.asked_by, 'operator');
});

T('a Lua admin command that errors or loops gets an error; the server carries on', async () => {
    assert.equal(await adm.fail('OPERATOR_BROKEN'), 'EINTERNAL');
    assert.equal(await adm.fail('OPERATOR_LOOP'), 'ETIMEDOUT');
    const [st] = await adm.call('INSTANCE_STATUS');
    assert.deepEqual(st.admins.map(a => a.edPublic), [A.pub]);
});

T('the operator\'s commands (what cpsd admin runs): stats, sessions, decree, admin, quota, pad, install-link', async () => {
    const run = async (name, ...args) => (await adm.call('OPERATOR_RUN', { name, args }))[0];
    const echo = await run('OPERATOR_ECHO', 'w');
    assert.deepEqual(echo.value, { echo: ['w'], operator: true });
    const stats = await run('stats');
    assert.equal(stats.err, undefined);
    const nodes = CLUSTER ? ['front:0', 'front:1', 'core:0', 'core:1', 'storage:0', 'storage:1'] : ['front:0', 'core:0', 'storage:0'];
    assert.deepEqual(stats.value.map(r => r.node), nodes);
    for (const row of stats.value) {
        assert.equal(row.status, 'up');
        assert.equal(typeof row.fds, 'number');
    }
    const ses = await run('sessions');
    assert.ok(ses.value.total >= 2, JSON.stringify(ses));
    // decrees from the command line: words parsed as JSON when they are
    const d = await run('decree', 'set', 'SET_ADMIN_EMAIL', 'ops@example.org');
    assert.deepEqual(d.value, { decree: 'SET_ADMIN_EMAIL', changed: true });
    assert.equal((await AD.httpModule(srv.port, '/api/config')).adminEmail, 'ops@example.org');
    const lines = AD.decreeLines(logDir());
    assert.deepEqual(lines[lines.length - 1].slice(0, 3), ['SET_ADMIN_EMAIL', ['ops@example.org'], 'cli']);
    assert.equal((await run('decree', 'set', 'RESTRICT_REGISTRATION', 'maybe')).err, 'INVALID_ARGS');
    assert.ok((await run('decree', 'list')).value.some(r => r.decree === 'SET_QUOTA'));
    assert.equal((await run('decree', 'nope')).err, 'EINVAL');
    // admins
    assert.deepEqual((await run('admin', 'list')).value.map(a => a.edPublic), [A.pub]);
    assert.equal((await run('admin', 'add', 'not-a-key')).err, 'INVALID_KEY');
    assert.deepEqual((await run('admin', 'add', N.pub)).value, { key: N.pub, changed: true });
    assert.deepEqual((await any.call('INSTANCE_STATUS'))[0].admins.length, 2);
    assert.deepEqual((await run('admin', 'remove', N.pub)).value, { key: N.pub, changed: true });
    assert.equal(await any.fail('INSTANCE_STATUS'), 'FORBIDDEN');
    // quotas
    assert.deepEqual((await run('quota', 'set', U.pub, '1048576', 'small')).value, { key: U.pub, limit: 1048576, plan: 'small' });
    assert.deepEqual((await run('quota', 'get', U.pub)).value, { key: U.pub, limit: 1048576, plan: 'small', note: '' });
    assert.equal((await run('quota', 'set', U.pub, 'lots')).err, 'EINVAL');
    assert.deepEqual((await run('quota', 'rm', U.pub)).value, { key: U.pub, removed: true });
    assert.equal((await run('quota', 'rm', U.pub)).err, 'ENOENT');
    // documents
    assert.equal((await run('pad', 'status', '../../etc/passwd')).err, 'EINVAL');
    const id = C.padId();
    assert.deepEqual((await run('pad', 'status', id)).value, { id, live: false, archived: false });
    // onboarding is over: there is an admin
    assert.equal((await run('install-link')).err, 'EEXISTS');
    assert.equal(typeof (await run('flush-cache')).value.fresh_key, 'number');
    // arguments that are not words
    assert.equal((await adm.call('OPERATOR_RUN', { name: 'quota', args: [1, 2] }))[0].err, 'EINVAL');
    assert.equal((await run('no-such-command')).err, 'ENOENT');
});

// ------------------------------------------------------------ replay

T('restart: the decree log is replayed, malformed lines logged and skipped', async () => {
    C.closeAll();
    await srv.stop();
    const file = AD.decreeFile(DATA);
    const good = Fs.readFileSync(file, 'utf8');
    Fs.appendFileSync(file, [
        'not json',
        '{"a":1}',
        JSON.stringify(['NOPE', [], A.pub, 2]),
        JSON.stringify(['SET_MAX_UPLOAD_SIZE', ['big'], A.pub, 3]),
        JSON.stringify(['SET_MAX_UPLOAD_SIZE', [2097152], A.pub, 4]),
        '["RESTRICT_REGISTRATION",[tr',             // torn: no end of line
    ].join('\n'));
    const written = Fs.readFileSync(file, 'utf8');
    srv = await startServer(conf(), { dir: ROOT });
    await open();
    await C.waitFor(() => /decree log replayed/.test(srv.stderr()), 10000, 'replay');
    const log = srv.stderr();
    assert.equal((log.match(/DECREE_LINE_ERR/g) || []).length, 2, log);
    assert.match(log, /DECREE_HANDLER_WEIRD_LINE/);
    assert.equal((log.match(/DECREE_COMMAND_ERR/g) || []).length, 2);
    const [st] = await adm.call('INSTANCE_STATUS');
    assert.equal(st.maxUploadSize, 2097152);
    assert.equal(st.defaultStorageLimit, 104857600);
    assert.deepEqual(st.instanceName, { default: 'Pad', fr: 'Bloc' });
    assert.equal(st.restrictRegistration, false);
    const cfg = await AD.httpModule(srv.port, '/api/config');
    assert.equal(cfg.maxUploadSize, 2097152);
    assert.deepEqual(cfg.adminKeys, [A.pub]);
    assert.equal((await AD.httpModule(srv.port, '/api/instance')).color, '#ff0073');
    // the replay changed nothing but ending the torn line
    assert.equal(Fs.readFileSync(file, 'utf8'), written.replace(/\n$/, '') + '\n');
    assert.ok(written.startsWith(good));
    // an admin exists: no onboarding link
    assert.deepEqual(AD.installLinks(log), []);
    // the torn last line was ended: the next decree is a line of its own
    assert.match(log, /the last line was torn/);
    await adm.decree('SET_ADMIN_EMAIL', ['after@example.org']);
    const lines = AD.decreeLines(DATA);
    assert.deepEqual(lines[lines.length - 1].slice(0, 2), ['SET_ADMIN_EMAIL', ['after@example.org']]);
    assert.equal(lines[lines.length - 2], '["RESTRICT_REGISTRATION",[tr');
}, { skip: CLUSTER && 'restarts the single server' });
