'use strict';
// Who may read GET /metrics (metrics.from, docs/operator-guide.md §7.1,
// issue 12): by default loopback only (metrics.test.js scrapes it so); a
// peer not listed gets 404 like any unknown path, and "*" opens it to all.
// Every test connects from 127.0.0.1, so listing another address shows
// that the list is what decides.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, withLog } = require('./lib/server');

const servers = [];
after(async () => { for (const s of servers) { await s.stop(); } });

const start = async (cfg) => { const s = await startServer(cfg); servers.push(s); return s; };
const get = (srv, path) => fetch(`http://127.0.0.1:${srv.port}${path}`);

test('a peer not in metrics.from gets 404, the rest of the server answers it', { timeout: 60000 }, async () => {
    const srv = await start({ metrics: { from: ['192.0.2.1'] } });
    await withLog(() => srv, async () => {
        const res = await get(srv, '/metrics');
        assert.equal(res.status, 404);
        assert.doesNotMatch(await res.text(), /cpsd_/);
    })();
});

test('"*" in metrics.from lets any peer read it', { timeout: 60000 }, async () => {
    const srv = await start({ metrics: { from: ['*'] } });
    await withLog(() => srv, async () => {
        const res = await get(srv, '/metrics');
        assert.equal(res.status, 200);
        assert.match(await res.text(), /^# HELP cpsd_/m);
    })();
});

test('the default: loopback may read it', { timeout: 60000 }, async () => {
    const srv = await start({});
    await withLog(() => srv, async () => {
        const res = await get(srv, '/metrics');
        assert.equal(res.status, 200);
    })();
});
