'use strict';
// `cpsd admin` and the control socket (host/control.c, host/admin_cli.c;
// docs/operations.md "cpsd admin"):
//
//   1. one process: help lists every admin command with its summary, among
//      them a test plugin's (tests/unit/plugins/tp_admin.c) and a script
//      dropped into a lua_dirs directory; a call renders the handler's answer
//      as key/value lines, a table, or --json; an unknown command, bad
//      arguments and bad options exit non-zero with a clear message and
//      change nothing; the socket is mode 0600; another user (nobody) is
//      refused by the file mode, and by the server's peer check when the
//      mode is loosened, and changes nothing; a second server on the same
//      data_dir refuses to start; the socket goes at shutdown, after which
//      the client exits 3 naming the path; a stale socket of a killed
//      server is replaced;
//   2. a 2x2x2 cluster: a command registered only on the core processes is
//      listed and run through a storage node's socket.
//
// The admin commands used here are the test's own, so the file does not
// depend on which real admin commands the build ships.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const ChildProcess = require('node:child_process');
const { startServer, binPath, tmpDir, runCpsd } = require('./lib/server');
const L = require('./lib/cluster');

const PLUGIN_DIR = Path.join(Path.dirname(binPath()), 'tests', 'plugins');

// The drop-in script: admin commands with summaries where the build has
// cps.admin_command, plain admin RPC registrations otherwise.
const SCRIPT = `-- written by admin-cli.test.js
local state = { greeting = "hello" }
local function admin(name, summary, fn)
  if cps.admin_command then cps.admin_command(name, summary, fn)
  else cps.register_rpc(name, fn, "admin") end
end
admin("test-set", "set KEY VALUE (test script)", function(args, ctx)
  if type(args) ~= "table" or #args ~= 2 then error("EINVAL", 0) end
  state[args[1]] = args[2]
  return "set"
end)
admin("test-get", "list the keys (test script)", function(args, ctx)
  local rows = {}
  for k, v in pairs(state) do rows[#rows + 1] = { key = k, value = v } end
  table.sort(rows, function(a, b) return a.key < b.key end)
  return rows
end)
`;

const writeScript = (dir) => {
    const luaDir = Path.join(dir, 'lua');
    Fs.mkdirSync(luaDir, { recursive: true });
    Fs.writeFileSync(Path.join(luaDir, 'admin_test.lua'), SCRIPT);
    return luaDir;
};

// Run a program to completion with a bound: { code, stdout, stderr }.
const run = (file, args, timeoutMs = 20000) => new Promise((resolve, reject) => {
    const child = ChildProcess.spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = ''; let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch (e) { /* gone */ } }, timeoutMs);
    child.on('error', (e) => { clearTimeout(t); reject(e); });
    child.on('close', (code, signal) => { clearTimeout(t); resolve({ code, signal, stdout, stderr }); });
});

// Poll cond() until true, bounded.
const waitFor = async (cond, what, ms = 10000) => {
    const end = Date.now() + ms;
    while (!cond()) {
        if (Date.now() > end) { throw new Error(`timed out waiting for ${what}`); }
        await new Promise(r => setTimeout(r, 50));
    }
};
const ready = (s) => waitFor(() => /cpsd \S+ ready/.test(s.stderr()), 'the ready line');

const admin = (args) => run(binPath(), ['admin', ...args]);
// The same, as the user nobody (CI runs as root).
const adminAsNobody = (args) => run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups',
    binPath(), 'admin', ...args]);

describe('cpsd admin: one process', () => {
    let srv; let dir; let cfg; let sock;
    const cli = (...args) => admin(['--config', cfg, ...args]);
    const state = async () => {
        const r = await cli('--json', 'test-get');
        assert.equal(r.code, 0, r.stderr);
        return JSON.parse(r.stdout);
    };

    before(async () => {
        assert.ok(Fs.existsSync(Path.join(PLUGIN_DIR, 'tp_admin.so')), `tp_admin.so not built in ${PLUGIN_DIR}`);
        dir = tmpDir('cpsd-admin-');
        const luaDir = writeScript(dir);
        srv = await startServer({
            lua_dirs: [luaDir],
            lua_scripts_add: ['admin_test.lua'],
            plugin_dirs: [PLUGIN_DIR],
            plugins_add: ['tp_admin'],
        }, { dir });
        cfg = srv.configFile;
        sock = Path.join(srv.config.data_dir, 'cpsd.sock');
        await ready(srv);
    });
    after(async () => {
        if (srv) { await srv.stop(); }
        if (dir) { Fs.rmSync(dir, { recursive: true, force: true }); }
    });

    test('the start log names the socket, which is a socket of mode 0600', () => srv.guard(async () => {
        assert.match(srv.stderr(), new RegExp(`admin socket ${sock.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
        const st = Fs.lstatSync(sock);
        assert.ok(st.isSocket());
        assert.equal(st.mode & 0o777, 0o600);
    })());

    test('help lists every admin command with its summary, the dropped-in script\'s too', () => srv.guard(async () => {
        const r = await cli('help');
        assert.equal(r.code, 0, r.stderr);
        const lines = r.stdout.trimEnd().split('\n');
        assert.match(lines[0], /^COMMAND\s+DESCRIPTION$/);
        assert.ok(lines.some(l => /^help\s+list the admin commands/.test(l)), r.stdout);
        assert.ok(lines.some(l => /^test-plugin-stats\s+answers its arguments \(test plugin\)$/.test(l)), r.stdout);
        assert.ok(lines.some(l => /^test-get\b/.test(l)), r.stdout);
        assert.ok(lines.some(l => /^test-set\b/.test(l)), r.stdout);
        // `list` is the same listing; --json gives the rows
        const j = await cli('--json', 'list');
        assert.equal(j.code, 0, j.stderr);
        const rows = JSON.parse(j.stdout);
        assert.deepEqual(rows.find(x => x.command === 'test-plugin-stats'),
            { command: 'test-plugin-stats', description: 'answers its arguments (test plugin)' });
        assert.ok(rows.find(x => x.command === 'test-set'));
        // only admin commands: no other client RPC (e.g. the anonymous ones)
        assert.ok(!rows.find(x => x.command === 'GET_FILE_SIZE' || x.command === 'IS_NEW_CHANNEL'), j.stdout);
    })());

    test('a call answers as the operator: key/value lines, a table, --json', () => srv.guard(async () => {
        let r = await cli('test-plugin-stats', 'a', 'b c');
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, 'answered_by  tp_admin\nargs         ["a","b c"]\noperator     true\n');
        r = await cli('--json', 'test-plugin-stats', 'x');
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(JSON.parse(r.stdout), { answered_by: 'tp_admin', args: ['x'], operator: true });
        r = await cli('test-set', 'colour', 'blue');
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, 'set\n');
        r = await cli('test-get');
        assert.equal(r.code, 0, r.stderr);
        // a table; its columns in the order the script's tables give them
        assert.ok(['KEY       VALUE\ncolour    blue\ngreeting  hello\n',
            'VALUE  KEY\nblue   colour\nhello  greeting\n'].includes(r.stdout), r.stdout);
    })());

    test('a wrong command, wrong arguments or options: a clear message, non-zero, nothing changed', () => srv.guard(async () => {
        const before = await state();
        let r = await cli('no-such-command', 'x');
        assert.equal(r.code, 2);
        assert.match(r.stderr, /unknown command 'no-such-command'.*cpsd admin help/);
        assert.equal(r.stdout, '');
        r = await cli('test-set', 'only-one');
        assert.equal(r.code, 2);
        assert.match(r.stderr, /test-set: invalid arguments/);
        r = await cli('test-plugin-stats', 'fail');          // the handler's own error
        assert.equal(r.code, 1);
        assert.match(r.stderr, /test-plugin-stats: failed with EIO/);
        r = await cli();                                     // no command
        assert.equal(r.code, 2);
        assert.match(r.stderr, /no command given/);
        r = await cli('--bogus', 'help');
        assert.equal(r.code, 2);
        assert.match(r.stderr, /unknown or incomplete option '--bogus'/);
        r = await admin(['--role', 'core', 'help']);
        assert.equal(r.code, 2);
        assert.deepEqual(await state(), before);
    })());

    test('a raw client: malformed and oversized requests get an error line, the server lives on', () => srv.guard(async () => {
        const Net = require('node:net');
        const talk = (payload) => new Promise((resolve, reject) => {
            const c = Net.connect(sock);
            let got = '';
            const t = setTimeout(() => { c.destroy(); reject(new Error('no answer')); }, 10000);
            c.on('data', (d) => { got += d; if (got.includes('\n')) { clearTimeout(t); c.destroy(); resolve(got); } });
            c.on('error', (e) => { clearTimeout(t); reject(e); });
            c.on('close', () => { clearTimeout(t); resolve(got); });
            c.write(payload);
        });
        let a = JSON.parse(await talk('not json\n'));
        assert.equal(a.error, 'EINVAL');
        assert.match(a.message, /not JSON/);
        a = JSON.parse(await talk('{"cmd":"test-get","args":[1]}\n'));
        assert.equal(a.error, 'EINVAL');
        a = JSON.parse(await talk('x'.repeat(70000)));
        assert.equal(a.error, 'EINVAL');
        assert.match(a.message, /longer than the limit/);
        // two requests on one connection, answered in order
        const two = await new Promise((resolve, reject) => {
            const c = Net.connect(sock);
            let got = '';
            const t = setTimeout(() => { c.destroy(); reject(new Error(`no answers: ${got}`)); }, 10000);
            c.on('data', (d) => {
                got += d;
                if (got.split('\n').length > 2) { clearTimeout(t); c.destroy(); resolve(got); }
            });
            c.on('error', reject);
            c.write('{"cmd":"test-plugin-stats","args":["1"]}\n{"cmd":"test-plugin-stats","args":["2"]}\n');
        });
        const [x, y] = two.trim().split('\n').map(l => JSON.parse(l));
        assert.deepEqual(x.ok.args, ['1']);
        assert.deepEqual(y.ok.args, ['2']);
        assert.equal((await cli('help')).code, 0);
    })());

    test('another user is refused, by the file mode and by the server, and changes nothing', () => srv.guard(async () => {
        const before = await state();
        // mode 0600 (and the private test directory): the kernel refuses
        let r = await adminAsNobody(['--socket', sock, 'test-set', 'colour', 'red']);
        assert.equal(r.code, 3, r.stderr);
        assert.match(r.stderr, /permission denied/);
        // with the mode loosened by mistake, the server's peer check refuses
        const dirs = [dir, Path.dirname(sock)];
        const modes = dirs.map(d => Fs.statSync(d).mode & 0o777);
        try {
            for (const d of dirs) { Fs.chmodSync(d, 0o755); }
            Fs.chmodSync(sock, 0o666);
            r = await adminAsNobody(['--socket', sock, 'test-set', 'colour', 'red']);
            assert.equal(r.code, 3, r.stderr);
            assert.match(r.stderr, /refused: uid \d+ is neither the server's user/);
            assert.match(srv.stderr(), /control socket: connection from uid \d+ .*refused/);
        } finally {
            Fs.chmodSync(sock, 0o600);
            dirs.forEach((d, i) => Fs.chmodSync(d, modes[i]));
        }
        assert.deepEqual(await state(), before);
    })());

    test('a second server on the same data_dir refuses to start and leaves the socket alone', () => srv.guard(async () => {
        const r = await runCpsd(['--config', cfg], { timeoutMs: 15000 });
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /another cpsd is running with this data_dir/);
        assert.equal((await cli('test-get')).code, 0);
    })());

    test('shutdown removes the socket; then the client exits 3 naming the path', async () => {
        await srv.stop();
        srv = null;
        assert.ok(!Fs.existsSync(sock), 'socket left after a clean shutdown');
        const r = await cli('help');
        assert.equal(r.code, 3);
        assert.ok(r.stderr.includes(sock), r.stderr);
        assert.match(r.stderr, /no server is listening/);
    });

    test('the stale socket of a killed server is replaced at the next start', async () => {
        let s = await startServer({ lua_dirs: [Path.join(dir, 'lua')], lua_scripts_add: ['admin_test.lua'] }, { dir });
        await ready(s);
        process.kill(s.pid, 'SIGKILL');
        await s.exited;
        assert.ok(Fs.existsSync(sock), 'a killed server leaves its socket');
        s = await startServer({ lua_dirs: [Path.join(dir, 'lua')], lua_scripts_add: ['admin_test.lua'] }, { dir });
        srv = s;
        await s.guard(async () => {
            await ready(s);
            assert.match(s.stderr(), /removed the stale socket/);
            const r = await admin(['--config', s.configFile, 'test-get']);
            assert.equal(r.code, 0, r.stderr);
        })();
    });
});

describe('cpsd admin: a 2x2x2 cluster', () => {
    let cl; let dir;
    const at = (node, ...args) => {
        const [role, index] = node.split(':');
        return admin(['--topology', cl.file, '--role', role, '--index', index, ...args]);
    };

    before(async () => {
        dir = tmpDir('cpsd-admin-lua-');
        const luaDir = writeScript(dir);
        // the script runs only on the core processes
        cl = await L.startCluster({ config: { lua_dirs: [luaDir], lua_scripts: ['core:admin_test.lua'] } });
    });
    after(async () => {
        if (cl) { await cl.stop(); }
        if (dir) { Fs.rmSync(dir, { recursive: true, force: true }); }
    });

    test('every node has its own socket', () => cl.guard(async () => {
        for (const node of cl.nodes) {
            const st = Fs.lstatSync(Path.join(cl.nodeDir(node), 'cpsd.sock'));
            assert.ok(st.isSocket(), node);
            assert.equal(st.mode & 0o777, 0o600, node);
        }
    })());

    test('a storage node\'s socket lists and runs the commands of the core nodes', () => cl.guard(async () => {
        let r = await at('storage:0', 'help');
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^test-get\b/m);
        assert.match(r.stdout, /^test-set\b/m);
        r = await at('storage:0', 'test-set', 'shared', 'yes');
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, 'set\n');
        // another storage node's socket reaches the same core node
        r = await at('storage:1', '--json', 'test-get');
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(JSON.parse(r.stdout), [{ key: 'greeting', value: 'hello' }, { key: 'shared', value: 'yes' }]);
        // the same by --socket, from a front, as a table (columns in the
        // order the script's tables give them)
        r = await admin(['--socket', Path.join(cl.nodeDir('front:1'), 'cpsd.sock'), 'test-get']);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^(KEY\s+VALUE|VALUE\s+KEY)\n/);
        assert.match(r.stdout, /^(shared\s+yes|yes\s+shared)$/m);
    })());

    test('a command no node has: usage error, exit 2', () => cl.guard(async () => {
        const r = await at('storage:0', 'no-such-command');
        assert.equal(r.code, 2);
        assert.match(r.stderr, /unknown command 'no-such-command'/);
    })());
});
