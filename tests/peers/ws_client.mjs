// A real WebSocket peer for protolab's tests, built on Node's `ws` package.
// Usage: node ws_client.mjs URL [--cafile F] [--push-within SECONDS]
// Sends a text and a binary message, expects both echoed, optionally waits for a push,
// closes normally, and prints one JSON line.
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import WebSocket from "ws";

const args = process.argv.slice(2);
const url = args[0];
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const cafile = opt("--cafile");
const pushWithin = Number(opt("--push-within") ?? 0);
const fail = (msg) => {
  console.log(JSON.stringify({ error: msg }));
  process.exit(1);
};
setTimeout(() => fail("timed out"), 15000).unref();

const ws = new WebSocket(url, cafile ? { ca: readFileSync(cafile) } : {});
const out = {};
const binary = randomBytes(32);
let stage = "text";
let pushStart = 0;
ws.on("error", (e) => fail(String(e)));
ws.on("open", () => ws.send("hello from node"));
ws.on("message", (data, isBinary) => {
  const text = isBinary ? null : data.toString();
  if (text && text.startsWith('{"type":"push"')) {
    if (stage === "push") {
      out.push = JSON.parse(text);
      out.push_wait_s = (Date.now() - pushStart) / 1000;
      ws.close(1000, "done");
    }
    return;
  }
  if (stage === "text") {
    out.text_echo = text;
    stage = "binary";
    ws.send(binary);
  } else if (stage === "binary") {
    out.binary_echo_ok = isBinary && Buffer.compare(data, binary) === 0;
    if (pushWithin > 0) {
      stage = "push";
      pushStart = Date.now();
      setTimeout(() => fail("no push within " + pushWithin + " s"), pushWithin * 1000).unref();
    } else {
      ws.close(1000, "done");
    }
  }
});
ws.on("close", (code) => {
  out.close_code = code;
  console.log(JSON.stringify(out));
  process.exit(0);
});
