'use strict';
// Expired channels (docs/protocol/history.md §9.1): an access to a channel whose expiry
// passed more than a day ago archives it (the scheduled archival evidently
// did not run), with the reason EXPIRED for later readers.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Fs = require('node:fs');
const Path = require('node:path');
const { startServer, withLog, tmpDir, writeStored, readStored, existsStored } = require('./lib/server');
const C = require('./lib/client');

const ROOT = tmpDir('cpsd-expiry-');
const DATA = Path.join(ROOT, 'data');
const CH = 'e1' + 'ab'.repeat(15);
const file = (...p) => Path.join(DATA, 'datastore', CH.slice(0, 2), ...p);
let srv;

before(withLog(() => srv, async () => {
    const day = 24 * 3600 * 1000;
    writeStored(file(CH + '.metadata.ndjson'),
        JSON.stringify({ channel: CH, created: Date.now() - 3 * day, expire: Date.now() - 2 * day }) + '\n');
    writeStored(file(CH + '.ndjson'),
        JSON.stringify([0, 'f'.repeat(32), 'MSG', CH, 'old message', Date.now() - 3 * day]) + '\n');
    srv = await startServer({}, { dir: ROOT, single: true });
}));
after(async () => { if (srv) { await srv.stop(); } Fs.rmSync(ROOT, { recursive: true, force: true }); });

const history = async (r, txid) => {
    const HK = '0123456789abcdef';
    r.send([r.nextSeq(), 'MSG', HK, JSON.stringify(['GET_HISTORY', CH, { txid }])]);
    const f = await r.next((x) => Array.isArray(x) && x[1] === HK && x[2] === 'MSG' && x[4].includes(`"txid":"${txid}"`), 5000, 'history answer');
    return JSON.parse(f[4]);
};

test('a channel expired more than a day ago: EEXPIRED, then archived, then EDELETED with reason EXPIRED', async () => {
    const r = await C.rawReady(srv.url);
    assert.equal((await history(r, 't1')).error, 'EEXPIRED');
    // archived: the log left the live directory, a placeholder says why
    await C.waitFor(() => !existsStored(file(CH + '.ndjson')), 5000, 'log archived');
    assert.equal(readStored(file(CH + '.ndjson.placeholder'), 'utf8'), 'EXPIRED');
    assert.ok(existsStored(Path.join(DATA, 'data', 'archive', 'datastore', CH.slice(0, 2), CH + '.ndjson')));
    const again = await history(r, 't2');
    assert.equal(again.error, 'EDELETED');
    assert.equal(again.message, 'EXPIRED');
    r.close();
});
