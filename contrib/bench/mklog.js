#!/usr/bin/env node
// Writes a CryptPad channel log of about SIZE_MB megabytes (messages of
// ~1 KB, a checkpoint every 100 lines) for the big-history benchmark.
//   node mklog.js DATA_DIR CHANNEL_ID SIZE_MB
'use strict';
const Fs = require('node:fs');
const Path = require('node:path');
const [dir, chan, mb] = process.argv.slice(2);
const file = Path.join(dir, 'datastore', chan.slice(0, 2), chan + '.ndjson');
Fs.mkdirSync(Path.dirname(file), { recursive: true });
const fd = Fs.openSync(file, 'w');
const body = Buffer.alloc(750, 'a').toString('base64').slice(0, 1000);
let size = 0, n = 0; const target = Number(mb) * 1048576; const sender = 'f'.repeat(32);
while (size < target) {
    const content = (n % 100 === 0 ? `cp|${n.toString(36).padStart(8, '0')}|` : '') + n + body;
    const line = JSON.stringify([0, sender, 'MSG', chan, content, 1700000000000 + n]) + '\n';
    Fs.writeSync(fd, line); size += line.length; n++;
}
Fs.closeSync(fd);
console.log(`${file}: ${n} lines, ${size} bytes`);
