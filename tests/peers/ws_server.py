#!/usr/bin/env python3
"""A real WebSocket server for protolab's client tests, built on the `websockets` library,
which negotiates permessage-deflate by default.

Prints {"port": N} once listening on 127.0.0.1 (port 0 = any free port), then one JSON line
per closed connection: {"extensions": "...", "close_code": N, "messages": N}.

Modes:
  echo  echo every message back unchanged
  bomb  send one message of --bomb-bytes zero bytes (compressed, it is tiny), then wait for
        the client to close
"""
import argparse
import asyncio
import json
import sys

from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", choices=["echo", "bomb"], default="echo")
    p.add_argument("--no-compression", action="store_true")
    p.add_argument("--server-no-context-takeover", action="store_true")
    p.add_argument("--client-no-context-takeover", action="store_true")
    p.add_argument("--server-max-window-bits", type=int)
    p.add_argument("--client-max-window-bits", type=int)
    p.add_argument("--bomb-bytes", type=int, default=32 << 20)
    args = p.parse_args()

    async def handler(ws):
        messages = 0
        try:
            if args.mode == "bomb":
                await ws.send(b"\0" * args.bomb_bytes)
                await ws.wait_closed()
            else:
                async for msg in ws:
                    messages += 1
                    await ws.send(msg)
        finally:
            rcvd = ws.protocol.close_rcvd
            print(json.dumps({
                "extensions": ws.response.headers.get("Sec-WebSocket-Extensions"),
                "close_code": rcvd.code if rcvd else None,
                "messages": messages,
            }), flush=True)

    if args.no_compression:
        compression = None
        extensions = None
    else:
        compression = None
        extensions = [ServerPerMessageDeflateFactory(
            server_no_context_takeover=args.server_no_context_takeover,
            client_no_context_takeover=args.client_no_context_takeover,
            server_max_window_bits=args.server_max_window_bits,
            client_max_window_bits=args.client_max_window_bits,
        )]
    async with serve(handler, "127.0.0.1", args.port, compression=compression,
                     extensions=extensions, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
