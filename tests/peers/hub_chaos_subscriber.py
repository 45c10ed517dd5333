#!/usr/bin/env python3
"""A subscriber of several protolab hubs that keeps getting cut off.

Subscribes to every --channel over WebSocket (`websockets`) or SSE (plain asyncio HTTP/1.1,
one stream per channel), on a hub picked at random from --hub; after a random number of
notifications it drops the connection without a goodbye and reconnects, to a random hub, from
the positions it last saw. A hub that refuses or is down is skipped. Ends when every channel
reached --expect offsets, and prints one JSON line: per channel the offsets received, in order
({"channels": {...}, "reconnects": N}), or {"error": ...} after --timeout.
"""
import argparse
import asyncio
import json
import random

from websockets.asyncio.client import connect


class Progress:
    def __init__(self, channels, expect):
        self.offsets = {c: [] for c in channels}
        self.positions = {c: None for c in channels}
        self.expect = expect
        self.reconnects = 0

    def take(self, message):
        channel = message["channel"]
        self.offsets[channel].append(message["offset"])
        self.positions[channel] = f'{message["epoch"]}:{message["offset"]}'

    def done(self, channel=None):
        channels = [channel] if channel else self.offsets
        return all(self.offsets[c] and self.offsets[c][-1] >= self.expect for c in channels)


async def ws_round(url, progress, budget):
    channels = [{"channel": c, "since": progress.positions[c] or "start"}
                for c in progress.offsets]
    async with connect(url, open_timeout=5, max_queue=64) as ws:
        await ws.send(json.dumps({"type": "subscribe", "id": 1, "channels": channels}))
        while not progress.done():
            message = json.loads(await ws.recv())
            if message["type"] == "notification":
                progress.take(message)
                budget -= 1
                if budget <= 0:
                    ws.transport.abort()  # a cut, not a close
                    return
            elif message["type"] == "error":
                raise RuntimeError(message)


async def sse_channel(host, port, channel, progress, budget):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    since = progress.positions[channel] or "start"
    writer.write((f"GET /connection/sse?channel={channel} HTTP/1.0\r\nHost: {host}\r\n"
                  f"Last-Event-ID: {since}\r\nAccept: text/event-stream\r\n\r\n").encode())
    try:
        status = await asyncio.wait_for(reader.readline(), 5)
        if b" 200 " not in status:
            raise RuntimeError(status)
        event, data = None, None
        while not progress.done(channel):
            line = (await reader.readline()).decode()
            if not line:
                return
            line = line.rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif line == "" and event:
                if event == "notification":
                    progress.take(json.loads(data))
                    budget -= 1
                    if budget <= 0:
                        return
                elif event == "error":
                    return
                event, data = None, None
    finally:
        writer.transport.abort()


async def main(args):
    progress = Progress(args.channel, args.expect)
    while not progress.done():
        hub = random.choice(args.hub)
        budget = random.randint(1, args.cut_after)
        try:
            if args.transport == "ws":
                await ws_round(hub.replace("http", "ws", 1) + "/connection/ws", progress, budget)
            else:
                host, port = hub.split("//", 1)[1].rsplit(":", 1)
                await asyncio.gather(*(sse_channel(host, int(port), c, progress, budget)
                                       for c in progress.offsets if not progress.done(c)))
        except (OSError, asyncio.TimeoutError, RuntimeError, Exception):
            await asyncio.sleep(0.05)
        progress.reconnects += 1
    print(json.dumps({"channels": progress.offsets, "reconnects": progress.reconnects}), flush=True)


def run():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hub", action="append", required=True)
    parser.add_argument("--channel", action="append", required=True)
    parser.add_argument("--expect", type=int, required=True, help="last offset of every channel")
    parser.add_argument("--transport", choices=["ws", "sse"], required=True)
    parser.add_argument("--cut-after", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    try:
        asyncio.run(asyncio.wait_for(main(args), args.timeout))
    except (asyncio.TimeoutError, TimeoutError):
        print(json.dumps({"error": "timeout"}), flush=True)


if __name__ == "__main__":
    run()
