#!/usr/bin/env python3
"""An SSE server independent of the lab, on Python's http.server, for the load generator's
tests. Prints {"port": N} once listening on 127.0.0.1 (port 0: the kernel picks), then serves
GET /events until killed (or --lifetime-s passes, 60 by default):

  --mode close     HTTP/1.0-style body until close: `id: NNNNNN` and
                   `data: {"seq":NNNNNN,"sent_at_us":U}` per event (U: 16 digits, the Unix
                   time in microseconds), --count events --interval-ms apart, then it closes
  --mode chunked   the same events, one HTTP/1.1 chunk each (Transfer-Encoding: chunked)
  --mode oversize  one `data:` line of --line-bytes bytes that never ends, then it waits
  --mode garbage   --line-bytes random bytes without CR or LF, then it waits
"""
import argparse
import http.server
import json
import os
import sys
import threading
import time


def event(seq):
    data = '{"seq":%06d,"sent_at_us":%016d}' % (seq, time.time_ns() // 1000)
    return ("id: %06d\ndata: %s\n\n" % (seq, data)).encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["close", "chunked", "oversize", "garbage"], required=True)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--interval-ms", type=int, default=5)
    parser.add_argument("--line-bytes", type=int, default=1 << 20)
    parser.add_argument("--lifetime-s", type=float, default=60.0)
    args = parser.parse_args()
    # A backstop: a test that dies without killing its peer leaves no server behind for long.
    threading.Timer(args.lifetime_s, lambda: os._exit(0)).start()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if args.mode == "chunked" else "HTTP/1.0"

        def log_message(self, *_):
            pass

        def do_GET(self):
            if self.path.split("?")[0] != "/events":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            if args.mode == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            try:
                if args.mode in ("close", "chunked"):
                    for seq in range(1, args.count + 1):
                        body = event(seq)
                        if args.mode == "chunked":
                            body = b"%x\r\n%s\r\n" % (len(body), body)
                        self.wfile.write(body)
                        self.wfile.flush()
                        time.sleep(args.interval_ms / 1000)
                    if args.mode == "chunked":
                        self.wfile.write(b"0\r\n\r\n")
                        self.close_connection = True
                elif args.mode == "oversize":
                    self.wfile.write(b"data: " + b"x" * args.line_bytes)
                    self.wfile.flush()
                    time.sleep(30)
                else:
                    junk = bytes(b for b in os.urandom(args.line_bytes * 2) if b not in (10, 13))
                    self.wfile.write(junk[: args.line_bytes])
                    self.wfile.flush()
                    time.sleep(30)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
