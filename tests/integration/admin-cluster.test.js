'use strict';
// Administration on a 2x2x2 cluster (docs/protocol/admin.md §4.7 and
// docs/protocol/cluster.md): a decree is applied by every node before its
// reply (both fronts' /api/config show it at once); while storage:0, which
// writes the decree log, is stopped, every node keeps serving the decree
// state, writes fail with EUNAVAILABLE and the statistics name the node
// that did not answer, without hanging; a restarted core reads the log
// again; a restarted storage:0 replays it.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const { startCluster } = require('./lib/cluster');
const { tmpDir } = require('./lib/server');
const C = require('./lib/client');
const R = require('./lib/rpc');
const AD = require('./lib/admin');

const A = R.keyPair();
const LUA = tmpDir('cpsd-admincl-lua-');
let cl;
const T = (name, fn, opts = {}) => test(name, { timeout: 90000, ...opts }, (t) => cl.guard(fn)(t));

const RUN_SCRIPT = `
cps.admin_command("OPERATOR_RUN", "run an admin command as the operator", function(p, ctx)
    cps.admin_call(p.name, p.args, function(err, value) ctx:reply({ err = err, value = value }) end)
end)
`;

before(async () => {
    Fs.mkdirSync(Path.join(LUA, 'admin'), { recursive: true });
    Fs.writeFileSync(Path.join(LUA, 'admin', 'run.lua'), RUN_SCRIPT);
    cl = await startCluster({ config: { admin: { keys: [A.pub] }, lua_dirs: [LUA], listen: { extra_ports: [] } } });
    await cl.waitLinks();
    // every node has read the log from storage:0
    await C.waitFor(async () => {
        for (const i of [0, 1]) {
            const cfg = await AD.httpModule(cl.port(`front:${i}`), '/api/config').catch(() => null);
            if (!cfg || cfg.adminKeys[0] !== A.pub) { return false; }
        }
        return true;
    }, 20000, 'the admin list on both fronts');
});

after(async () => {
    C.closeAll();
    if (cl) { await cl.stop(); }
    Fs.rmSync(LUA, { recursive: true, force: true });
});

const config = (i) => AD.httpModule(cl.port(`front:${i}`), '/api/config');
const admin = (i = 0) => AD.adminClient(cl.frontUrl(i), A);

T('a decree sent through front 0 is on both fronts when its reply comes', async () => {
    const a = await admin(0);
    await a.decree('SET_ADMIN_EMAIL', ['ops@example.org']);
    assert.equal((await config(0)).adminEmail, 'ops@example.org');
    assert.equal((await config(1)).adminEmail, 'ops@example.org');
    await a.decree('RESTRICT_REGISTRATION', [true]);
    for (const i of [0, 1]) {
        assert.equal((await config(i)).restrictRegistration, true);
        const res = await AD.registerBlock(cl.port(`front:${i}`));
        assert.match(res.text, /E_RESTRICTED/);
    }
    await a.decree('RESTRICT_REGISTRATION', [false]);
    const lines = AD.decreeLines(cl.storageDir(0));
    assert.deepEqual(lines.slice(-3).map(l => l[0]), ['SET_ADMIN_EMAIL', 'RESTRICT_REGISTRATION', 'RESTRICT_REGISTRATION']);
    // only storage:0 keeps the log
    assert.deepEqual(AD.decreeLines(cl.storageDir(1)), []);
    a.close();
});

T('storage:0 stopped: decree state still served, writes EUNAVAILABLE, statistics say who is down', async () => {
    const a = await admin(1);
    await a.call('INSTANCE_STATUS');              // cookie first, while all is well
    cl.kill('storage:0', 'SIGSTOP');
    try {
        for (const i of [0, 1]) {
            const cfg = await config(i);
            assert.deepEqual(cfg.adminKeys, [A.pub]);
            assert.equal(cfg.adminEmail, 'ops@example.org');
        }
        const [st] = await a.call('INSTANCE_STATUS');
        assert.deepEqual(st.admins.map(x => x.edPublic), [A.pub]);
        const t0 = Date.now();
        assert.equal(await a.decreeFail('SET_ADMIN_EMAIL', ['other@example.org']), 'EUNAVAILABLE');
        assert.ok(Date.now() - t0 < 30000);
        assert.equal((await config(0)).adminEmail, 'ops@example.org');
        const [run] = await a.call('OPERATOR_RUN', { name: 'stats', args: [] });
        const rows = Object.fromEntries(run.value.map(r => [r.node, r.status]));
        assert.equal(rows['storage:0'], 'down');
        assert.equal(rows['front:0'], 'up');
        assert.equal(rows['core:1'], 'up');
        assert.equal(await a.fail('ACTIVE_PADS'), 'EUNAVAILABLE');
    } finally {
        cl.kill('storage:0', 'SIGCONT');
    }
    await a.decree('SET_ADMIN_EMAIL', ['back@example.org']);
    assert.equal((await config(0)).adminEmail, 'back@example.org');
    assert.equal((await config(1)).adminEmail, 'back@example.org');
    a.close();
});

T('a restarted core reads the log again; a restarted storage:0 replays it', async () => {
    for (const node of ['core:1', 'storage:0']) {
        const old = cl.pid(node);
        cl.kill(node, 'SIGKILL');
        await cl.waitRestart(node, old);
        await cl.waitLinks();
        // every connection (users are spread over both cores) sees the state
        await C.waitFor(async () => {
            for (let k = 0; k < 4; k++) {
                const a = await admin(k % 2);
                try {
                    const [st] = await a.call('INSTANCE_STATUS');
                    if (st.admins.length !== 1) { return false; }
                } catch (e) {
                    return false;
                } finally { a.close(); }
            }
            return true;
        }, 30000, `the admin list after ${node} restarted`);
        const a = await admin(0);
        await a.decree('SET_INSTANCE_NAME', [node]);
        for (const i of [0, 1]) {
            assert.deepEqual((await AD.httpModule(cl.port(`front:${i}`), '/api/instance')).name, { default: node });
            assert.equal((await config(i)).adminEmail, 'back@example.org');
        }
        a.close();
    }
});
