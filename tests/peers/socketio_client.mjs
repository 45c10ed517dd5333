// A socket.io client (npm socket.io-client) for protolab's hub tests: connects to URL, sends
// `subscribe` with the channels given as JSON (if any), and prints one JSON line per event it
// gets: {"event": "connect"}, {"event": "ack", "data": ...}, {"event": "<name>", "data": ...}.
//   node socketio_client.mjs URL [--transports polling,websocket] [--subscribe JSON] [--query K=V&…]
import { io } from "socket.io-client";

const args = process.argv.slice(2);
const url = args[0];
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const transports = (option("--transports") || "polling,websocket").split(",");
const subscribe = option("--subscribe");
const query = Object.fromEntries(new URLSearchParams(option("--query") || ""));
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const socket = io(url, { transports, query, reconnection: false });
socket.on("connect", () => {
  print({ event: "connect", transport: socket.io.engine.transport.name });
  if (subscribe) {
    socket.emit("subscribe", { channels: JSON.parse(subscribe) }, (ack) => print({ event: "ack", data: ack }));
  }
});
socket.on("connect_error", (err) => print({ event: "connect_error", message: err.message }));
socket.on("disconnect", (reason) => print({ event: "disconnect", reason }));
socket.onAny((event, data) => print({ event, data }));
