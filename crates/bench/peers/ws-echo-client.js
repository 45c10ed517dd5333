// A closed-loop WebSocket echo client on Node's `ws` package, the Node counterpart of
// `protolab bench ws://…`: N connections, each keeping one binary message of SIZE bytes in
// flight and sending the next as soon as the echo arrives, for SECONDS. Server pushes (text)
// are skipped. Prints one JSON line: {"messages": M, "seconds": S}.
// Usage: node ws-echo-client.js URL CONNECTIONS SIZE SECONDS
"use strict";
const WebSocket = require("ws");

const [url, connArg, sizeArg, secsArg] = process.argv.slice(2);
const connections = Number(connArg);
const size = Number(sizeArg);
const seconds = Number(secsArg);
if (!url || !(connections > 0) || !(size >= 0) || !(seconds > 0)) {
  console.error("usage: node ws-echo-client.js URL CONNECTIONS SIZE SECONDS");
  process.exit(2);
}
const payload = Buffer.alloc(size, 97);
let messages = 0;
let open = 0;
let start = 0;
let running = true;
const sockets = [];

function finish() {
  running = false;
  const elapsed = (Date.now() - start) / 1000;
  console.log(JSON.stringify({ messages, seconds: elapsed }));
  for (const ws of sockets) ws.terminate();
  process.exit(0);
}

for (let i = 0; i < connections; i++) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  sockets.push(ws);
  ws.on("error", (e) => {
    console.error(String(e));
    process.exit(1);
  });
  ws.on("open", () => {
    open += 1;
    if (open === connections) {
      start = Date.now();
      setTimeout(finish, seconds * 1000);
      for (const s of sockets) s.send(payload);
    }
  });
  ws.on("message", (data, isBinary) => {
    if (!isBinary || !running) return;
    messages += 1;
    ws.send(payload);
  });
}
