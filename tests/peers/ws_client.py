#!/usr/bin/env python3
"""A real WebSocket peer for protolab's tests, built on the `websockets` library.

Modes (one JSON line on stdout at the end):
  echo   send a text and a binary message, expect both echoed; optionally wait for a push
  soak   echo a message every --interval for --seconds, count echoes and errors, and list the
         sequence numbers of the pushes that arrived meanwhile
  hold   connect, print {"connected": true}, then wait until the server closes; report the code
  reject try to connect and report the HTTP status the server refused with
  bomb   send --bomb-bytes zero bytes as one message (permessage-deflate, which websockets
         offers by default, shrinks it to a few KiB) and report how the server closed
"""
import argparse
import asyncio
import json
import os
import ssl
import sys
import time

import websockets


def ssl_context(args):
    if not args.url.startswith("wss://"):
        return None
    ctx = ssl.create_default_context(cafile=args.cafile)
    # Pin a version and (TLS 1.2) cipher list so tests can exercise each suite. TLS 1.3
    # suites cannot be chosen through `ssl`; set OPENSSL_CONF's Ciphersuites for that.
    versions = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
    if args.tls_version:
        ctx.minimum_version = ctx.maximum_version = versions[args.tls_version]
    if args.ciphers:
        ctx.set_ciphers(args.ciphers)
    if args.keylog:
        ctx.keylog_filename = args.keylog
    return ctx


async def connect(args):
    kwargs = {"ssl": ssl_context(args), "open_timeout": 10, "max_size": None}
    if args.origin:
        kwargs["origin"] = args.origin
    return await websockets.connect(args.url, **kwargs)


def is_push(msg):
    return isinstance(msg, str) and msg.startswith('{"type":"push"')


async def recv_echo(ws, timeout=5.0, pushes=None):
    """The next message that is not a push; pushes on the way go to `pushes` if given."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        if not is_push(msg):
            return msg
        if pushes is not None:
            pushes.append(json.loads(msg)["seq"])


async def echo(args):
    out = {}
    async with await connect(args) as ws:
        await ws.send("hello from python")
        out["text_echo"] = await recv_echo(ws)
        payload = os.urandom(32)
        await ws.send(payload)
        got = await recv_echo(ws)
        out["binary_echo_ok"] = got == payload
        if args.push_within:
            t0 = time.monotonic()
            deadline = t0 + args.push_within
            while True:
                msg = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
                if is_push(msg):
                    out["push"] = json.loads(msg)
                    out["push_wait_s"] = round(time.monotonic() - t0, 3)
                    break
        await ws.close()
        out["close_code"] = ws.close_code
    return out


async def soak(args):
    sent = echoed = 0
    errors = []
    pushes = []
    async with await connect(args) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        print(json.dumps({"connected": True}), flush=True)
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            msg = f"soak {sent}"
            try:
                await ws.send(msg)
                sent += 1
                got = await recv_echo(ws, timeout=2.0, pushes=pushes)
                if got == msg:
                    echoed += 1
                else:
                    errors.append(f"expected {msg!r}, got {got!r}")
            except Exception as e:  # noqa: BLE001 - report every failure kind to the test
                errors.append(repr(e))
                break
            await asyncio.sleep(args.interval)
        await ws.close()
    return {
        "sent": sent,
        "echoed": echoed,
        "errors": errors,
        "pushes": pushes,
        "deflate": "permessage-deflate" in extensions,
    }


async def hold(args):
    async with await connect(args) as ws:
        print(json.dumps({"connected": True}), flush=True)
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as e:
            rcvd = e.rcvd
            return {
                "close_code": rcvd.code if rcvd else None,
                "close_reason": rcvd.reason if rcvd else None,
            }


async def idle(args):
    """Opens --count connections, echoes one message on each, reports, then leaves them idle
    for --seconds and closes them all."""
    conns = [await connect(args) for _ in range(args.count)]
    for i, ws in enumerate(conns):
        text = f"before idling {i}".ljust(args.message_bytes, ".")
        await ws.send(text)
        if await recv_echo(ws) != text:
            raise SystemExit(f"connection {i} got a wrong echo")
    print(json.dumps({"idle": len(conns)}), flush=True)
    await asyncio.sleep(args.seconds)
    for ws in conns:
        await ws.close()
    return {"closed": len(conns)}


async def bomb(args):
    async with await connect(args) as ws:
        compressed = any(e.name == "permessage-deflate" for e in ws.protocol.extensions)
        try:
            await ws.send(bytes(args.bomb_bytes))
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as e:
            rcvd = e.rcvd
            return {"compressed": compressed, "close_code": rcvd.code if rcvd else None}


async def reject(args):
    try:
        async with await connect(args):
            return {"connected": True}
    except websockets.InvalidStatus as e:
        return {"connected": False, "status": e.response.status_code}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["echo", "soak", "hold", "reject", "bomb", "idle"])
    p.add_argument("url")
    p.add_argument("--cafile")
    p.add_argument("--origin")
    p.add_argument("--tls-version", choices=["1.2", "1.3"], help="only this TLS version")
    p.add_argument("--ciphers", help="OpenSSL cipher list for TLS 1.2, e.g. ECDHE-ECDSA-AES128-GCM-SHA256")
    p.add_argument("--keylog", help="append this client's TLS secrets to FILE (NSS key log)")
    p.add_argument("--push-within", type=float, default=0.0)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--count", type=int, default=1, help="connections of the idle mode")
    p.add_argument("--message-bytes", type=int, default=0, help="idle mode: pad each first message to this size")
    p.add_argument("--bomb-bytes", type=int, default=64 << 20)
    args = p.parse_args()
    result = asyncio.run(globals()[args.mode](args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
