#!/usr/bin/env python3
"""A subscriber of protolab's hub over /connection/ws, built on the `websockets` library.

Connects, sends each --send command (JSON text), then prints every message the hub sends as
one JSON line on stdout, until it has seen --notifications notifications (then it closes
normally), the hub closes ({"type":"closed","code":N,"reason":...}), or --timeout passes
({"type":"timeout"}). A refused handshake prints {"type":"refused","status":N}.
--stall S stops reading for S seconds once every subscribe is answered: a slow subscriber.
"""
import argparse
import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def emit(obj):
    print(json.dumps(obj), flush=True)


async def main(args):
    headers = {}
    if args.bearer:
        headers["Authorization"] = f"Bearer {args.bearer}"
    try:
        ws = await connect(args.url, origin=args.origin, additional_headers=headers,
                           open_timeout=10, max_queue=4)
    except InvalidStatus as err:
        emit({"type": "refused", "status": err.response.status_code,
              "body": err.response.body.decode("utf-8", "replace")})
        return
    notifications = 0
    pending_subscribes = sum(len(json.loads(c).get("channels", [])) for c in args.send
                             if json.loads(c).get("type") == "subscribe")
    try:
        for command in args.send:
            await ws.send(command)
        while args.notifications is None or notifications < args.notifications:
            message = json.loads(await ws.recv())
            if args.quiet and message.get("type") == "notification":
                emit({k: message[k] for k in ("type", "channel", "epoch", "offset")})
            else:
                emit(message)
            if message.get("type") == "notification":
                notifications += 1
            elif message.get("type") in ("subscribed", "error") and pending_subscribes:
                pending_subscribes -= 1
                if pending_subscribes == 0 and args.stall:
                    emit({"type": "stalling"})
                    await asyncio.sleep(args.stall)
        await ws.close()
        emit({"type": "done", "notifications": notifications})
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
        reason = closed.rcvd.reason if closed.rcvd else None
        emit({"type": "closed", "code": code, "reason": reason, "notifications": notifications})


def run():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--origin")
    parser.add_argument("--bearer")
    parser.add_argument("--send", action="append", default=[])
    parser.add_argument("--notifications", type=int)
    parser.add_argument("--timeout", type=float, default=20)
    parser.add_argument("--stall", type=float, default=0)
    parser.add_argument("--quiet", action="store_true", help="notifications without their fields")
    args = parser.parse_args()
    try:
        asyncio.run(asyncio.wait_for(main(args), args.timeout))
    except (asyncio.TimeoutError, TimeoutError):
        emit({"type": "timeout"})
        sys.exit(0)


if __name__ == "__main__":
    run()
