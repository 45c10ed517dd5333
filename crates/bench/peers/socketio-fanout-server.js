// Fan-out peer of `protolab-bench hub`: the story's server written on Node's socket.io 4.
// `GET /notifs?msg=TEXT` emits the socket.io event `newmessage` `{message: TEXT}` to every
// connected socket, as the story's Flask-SocketIO app does. Binds 127.0.0.1 only and prints
// `listening` once bound.
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const portFlag = process.argv.indexOf('--port');
const port = portFlag > 0 ? Number(process.argv[portFlag + 1]) : NaN;
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node socketio-fanout-server.js --port PORT');
  process.exit(2);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (req.method === 'GET' && url.pathname === '/notifs') {
    io.emit('newmessage', { message: url.searchParams.get('msg') || '' });
    res.writeHead(202, { 'content-type': 'text/plain' });
    res.end('accepted\n');
    return;
  }
  // socket.io answers /socket.io/ itself before this listener runs.
  if (!url.pathname.startsWith('/socket.io/')) {
    res.writeHead(404);
    res.end();
  }
});
// The same defaults as the story's page: WebSocket and long-polling, the default namespace.
const io = new Server(server, { serveClient: false });
server.listen(port, '127.0.0.1', () => console.log('listening'));
