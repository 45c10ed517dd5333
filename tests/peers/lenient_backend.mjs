// A deliberately lenient HTTP/1.1 backend: Node's own `http` server with
// `insecureHTTPParser: true` (llhttp accepting bare LF, obs-fold, CL with TE, ... where Node's
// default refuses them), the kind of server a request smuggled past a proxy reaches.
//
//   node lenient_backend.mjs
//
// Prints one JSON line per event on stdout:
//   {"event":"ready","port":N}
//   {"event":"request","seq":K,"method":"GET","url":"/x","version":"1.1","headers":[[name,value],...]}
//   {"event":"body","seq":K,"length":N,"body_b64":"..."}      once the request's body has ended
//   {"event":"client_error","code":"HPE_..."}                 a request even this parser refused
// and answers every request `200 ok` (keep-alive). A request to a path starting with
// /respond-nominated is answered with `Connection: content-length`, a response a proxy must
// not let drop its own framing.
import http from 'node:http';

let seq = 0;
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const pairs = (raw) => {
  const out = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i], raw[i + 1]]);
  return out;
};

// Every request the parser accepted, as one line; returns its sequence number.
const record = (req) => {
  const id = ++seq;
  emit({
    event: 'request',
    seq: id,
    method: req.method,
    url: req.url,
    version: req.httpVersion,
    headers: pairs(req.rawHeaders),
  });
  return id;
};

const server = http.createServer(
  { insecureHTTPParser: true, keepAliveTimeout: 60_000, requestTimeout: 0 },
  (req, res) => {
    const id = record(req);
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      emit({ event: 'body', seq: id, length: body.length, body_b64: body.toString('base64') });
      const answer = Buffer.from(`ok ${id}\n`);
      if (req.url.startsWith('/respond-nominated')) {
        // Node sends a Connection value set by hand as it is.
        res.writeHead(200, { connection: 'content-length', 'content-length': answer.length });
        res.end(answer);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': answer.length });
      res.end(answer);
    });
  },
);

server.on('clientError', (err, socket) => {
  emit({ event: 'client_error', code: err.code || String(err) });
  socket.destroy();
});

// Upgrades and CONNECT are recorded like requests, then refused, so a tunnel never opens.
const refuseSpecial = (req, socket) => {
  record(req);
  socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
};
server.on('upgrade', refuseSpecial);
server.on('connect', refuseSpecial);

server.listen(0, '127.0.0.1', () => emit({ event: 'ready', port: server.address().port }));
