#!/usr/bin/env node
// The Node.js reference for the relay benchmarks: chainpad-server (the relay
// CryptPad runs) on a ws server, with a history keeper that stores nothing,
// i.e. the same work cpsd does before history storage exists.
//   node ref-relay.js PORT
'use strict';
const WebSocket = require('ws');
const Netflux = require('chainpad-server');
const HK = '0123456789abcdef';
const port = Number(process.argv[2] || 3099);
const wss = new WebSocket.Server({ host: '127.0.0.1', port, path: '/cryptpad_websocket' });
const server = Netflux.create(wss);
server.on('channelOpen', (S, channel, userId, wait) => {
    const next = wait();
    next(undefined, undefined, () => { S.send(userId, [0, HK, 'JOIN', channel]); });
});
server.on('channelMessage', (S, channel, msg, cb) => cb());
server.register(HK, (S, seq, userId) => { S.send(userId, [seq, 'ACK']); });
wss.on('listening', () => process.stderr.write(`listening on 127.0.0.1:${port}\n`));
process.on('SIGTERM', () => process.exit(0));
