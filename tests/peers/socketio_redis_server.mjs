// A socket.io 4 server on npm @socket.io/redis-adapter, for protolab's hub tests: the hubs on
// the same redis-server share its rooms.
//   node socketio_redis_server.mjs REDIS_URL
// Prints {"event": "listening", "port": N} once it listens on a loopback port of its own.
// A client joins the rooms of its `rooms` query parameter (comma-separated).
// `GET /emit?room=ROOM&event=EVENT&message=TEXT` emits EVENT {message: TEXT} to ROOM, as the
// story's server would, and answers 200.
import { createServer } from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

const redisUrl = process.argv[2];
if (!redisUrl) {
  process.stderr.write("usage: node socketio_redis_server.mjs REDIS_URL\n");
  process.exit(2);
}
const pubClient = createClient({ url: redisUrl });
const subClient = pubClient.duplicate();
for (const client of [pubClient, subClient]) {
  client.on("error", (err) => process.stderr.write(`redis: ${err.message}\n`));
}
await Promise.all([pubClient.connect(), subClient.connect()]);

const http = createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (url.pathname !== "/emit") return; // socket.io answers its own path
  const room = url.searchParams.get("room");
  const event = url.searchParams.get("event") || "newmessage";
  const message = url.searchParams.get("message") || "";
  (room ? io.to(room) : io).emit(event, { message });
  res.writeHead(200, { "content-type": "text/plain" });
  res.end("sent\n");
});
const io = new Server(http, { adapter: createAdapter(pubClient, subClient) });
io.on("connection", (socket) => {
  const rooms = String(socket.handshake.query.rooms || "").split(",").filter(Boolean);
  socket.join(rooms);
  socket.emit("joined", { rooms });
});
http.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ event: "listening", port: http.address().port }) + "\n");
});
