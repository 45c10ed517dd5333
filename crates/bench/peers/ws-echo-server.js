// Bench peer: a WebSocket echo server on the `ws` npm package.
// Run with `node crates/bench/peers/ws-echo-server.js --port 9003` after
// `npm ci --prefix crates/bench/peers`.
//
// Echoes every text and binary message with its type; `ws` answers pings itself.
// permessage-deflate is off (ws's server default), as for every other peer.
'use strict';

const { WebSocketServer } = require('ws');

const i = process.argv.indexOf('--port');
const port = i >= 0 ? Number(process.argv[i + 1]) : NaN;
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: ws-echo-server.js --port N');
  process.exit(2);
}

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => ws.terminate());
});
wss.on('listening', () => console.log('listening'));
wss.on('error', (err) => {
  console.error(err.message);
  process.exit(1);
});
