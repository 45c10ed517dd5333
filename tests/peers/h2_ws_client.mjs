// A WebSocket over HTTP/2 client (RFC 8441) on Node's own http2 module (nghttp2):
//   node h2_ws_client.mjs URL [--ca FILE] [--origin ORIGIN] [--text MESSAGE]...
// Opens an extended CONNECT (:protocol websocket) to URL once the server's SETTINGS allow it,
// sends each --text as one masked text frame, and prints a JSON line per event:
//   {"event":"open","status":200} {"event":"text","data":"..."} {"event":"close","code":1000}
// or {"event":"refused","status":403}. Exits after the echoes of every --text arrived (and the
// close handshake), when the server closes, or with status 1 on an error. With no --text it
// waits (up to 10 s) for the server to close, answering its close frame.
import http2 from "node:http2";
import fs from "node:fs";
import crypto from "node:crypto";

const args = process.argv.slice(2);
const url = new URL(args.shift());
let ca;
let origin;
const texts = [];
while (args.length) {
  const flag = args.shift();
  if (flag === "--ca") ca = fs.readFileSync(args.shift());
  else if (flag === "--origin") origin = args.shift();
  else if (flag === "--text") texts.push(args.shift());
  else {
    console.error(`unknown argument ${flag}`);
    process.exit(2);
  }
}
const print = (o) => console.log(JSON.stringify(o));
const fail = (msg) => {
  console.error(msg);
  process.exit(1);
};
setTimeout(() => fail("timed out"), 10000).unref();

function frame(opcode, payload) {
  const mask = crypto.randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len])
    : Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 0xff]);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
  return Buffer.concat([head, mask, body]);
}

const conn = http2.connect(url.origin.replace(/^http:/, "http:"), ca ? { ca } : {});
conn.on("error", (e) => fail(`conn error: ${e.message}`));
conn.on("remoteSettings", (settings) => {
  if (!settings.enableConnectProtocol) fail("server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL");
  const headers = {
    ":method": "CONNECT",
    ":protocol": "websocket",
    ":scheme": url.protocol.replace(":", ""),
    ":path": url.pathname + url.search,
    ":authority": url.host,
    "sec-websocket-version": "13",
  };
  if (origin) headers.origin = origin;
  const stream = conn.request(headers, { endStream: false });
  stream.on("response", (h) => {
    const status = h[":status"];
    if (status !== 200) {
      print({ event: "refused", status });
      conn.close();
      return;
    }
    print({ event: "open", status });
    for (const t of texts) stream.write(frame(0x1, Buffer.from(t)));
  });
  let buf = Buffer.alloc(0);
  let echoed = 0;
  stream.on("data", (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 2) {
      const opcode = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) fail("frame too large for this client");
      if (buf.length < off + len) return;
      const payload = buf.subarray(off, off + len);
      buf = buf.subarray(off + len);
      if (opcode === 0x1) {
        const data = payload.toString("utf8");
        print({ event: "text", data });
        if (texts.includes(data) && ++echoed === texts.length) {
          stream.write(frame(0x8, Buffer.from([0x03, 0xe8])));
        }
      } else if (opcode === 0x8) {
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        print({ event: "close", code });
        // Answer a close the server began (RFC 6455 §5.5.1); ours it has answered already.
        if (echoed < texts.length || texts.length === 0) {
          stream.write(frame(0x8, Buffer.from([code >> 8, code & 0xff])));
        }
        stream.end();
        conn.close();
      }
    }
  });
  stream.on("error", (e) => fail(`stream error: ${e.message}`));
});
