#!/usr/bin/env python3
"""A client of the lab's SSE app and its polling paths, on `requests` (the stream, echo) and
its `urllib3` (polling and flooding, on kept-alive connections). Prints one JSON line.

  echo BASE [--cafile CA]      GET BASE/events, take the stream id from the hello event,
                               POST BASE/echo?stream=ID and read the echo event back:
                               {"stream", "post_status", "echo", "pushes": [ids], "retry"}
  poll BASE --count N [--long] [--timeout-ms T] [--every-ms E] [--cafile CA]
                               polls BASE/poll (or /poll/long) with after= the last id until N
                               events came: {"ids", "requests", "empty", "timeouts", "gaps",
                               "resets", "max_batch", "delays_ms"}
  flood BASE --stream ID --size BYTES --max-posts M [--cafile CA]
                               POSTs BYTES-long bodies to /echo?stream=ID until one is not
                               accepted: {"posts", "statuses": {status: count}, "last_status"}
"""
import argparse
import json
import sys
import time

import requests
import urllib3


def lines(response):
    """Yields the body's lines as they arrive (read1: what is there, without waiting for more)."""
    pending = b""
    while True:
        chunk = response.raw.read1(65536)
        if not chunk:
            return
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete


def events(response):
    """Yields (event, id, data) as the event-stream format defines them; comments and retry
    lines as ("comment", None, text) and ("retry", None, value)."""
    kind, last_id, data = "message", None, []
    for raw in lines(response):
        line = raw.decode("utf-8").rstrip("\r")
        if line == "":
            if data:
                yield kind, last_id, "\n".join(data)
            kind, data = "message", []
            continue
        if line.startswith(":"):
            yield "comment", None, line[1:].strip()
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            kind = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            last_id = value
        elif field == "retry":
            yield "retry", None, value


def echo(args, verify):
    out = {"pushes": []}
    with requests.get(args.base + "/events", stream=True, verify=verify, timeout=10) as r:
        r.raise_for_status()
        out["content_type"] = r.headers.get("content-type")
        text = "hello\nfrom python"
        for kind, last_id, data in events(r):
            if kind == "retry":
                out["retry"] = int(data)
            elif kind == "hello":
                out["stream"] = json.loads(data)["stream"]
                post = requests.post(f"{args.base}/echo", params={"stream": out["stream"]},
                                     data=text.encode(), verify=verify, timeout=10)
                out["post_status"] = post.status_code
            elif kind == "message":
                out["pushes"].append(last_id)
            elif kind == "echo":
                out["echo"] = data
                break
    # Once the server has seen the stream close (at once, but on another connection than the
    # POST's), its id no longer takes echoes.
    for _ in range(20):
        late = requests.post(f"{args.base}/echo", params={"stream": out["stream"]}, data=b"late",
                             verify=verify, timeout=10)
        out["late_post_status"] = late.status_code
        if late.status_code != 202:
            break
        time.sleep(0.1)
    return out


def pool(args):
    """Connections kept alive across requests, as a polling client keeps them."""
    return urllib3.PoolManager(ca_certs=args.cafile) if args.cafile else urllib3.PoolManager()


def poll(args, verify):
    path = "/poll/long" if args.long else "/poll"
    http = pool(args)
    start = json.loads(http.request("GET", args.base + "/poll", timeout=10).data)
    after = start["last"]
    out = {"ids": [], "requests": 0, "empty": 0, "timeouts": 0, "gaps": 0, "resets": 0, "max_batch": 0,
           "delays_ms": []}
    deadline = time.monotonic() + args.limit
    while len(out["ids"]) < args.count and time.monotonic() < deadline:
        params = {"after": after}
        if args.long and args.timeout_ms:
            params["timeout_ms"] = args.timeout_ms
        r = http.request("GET", args.base + path, fields=params, timeout=120)
        out["requests"] += 1
        if r.status == 204:
            out["timeouts"] += 1
            continue
        if r.status != 200:
            sys.exit(f"{path}: {r.status} {r.data!r}")
        body = json.loads(r.data)
        now_ms = time.time() * 1000
        out["gaps"] += body["gap"] is not None
        out["resets"] += body["reset"]
        if not body["events"]:
            out["empty"] += 1
        out["max_batch"] = max(out["max_batch"], len(body["events"]))
        for e in body["events"]:
            out["ids"].append(e["id"])
            out["delays_ms"].append(round(now_ms - e["data"]["sent_at_ms"], 1))
        after = body["last"]
        if not args.long:
            time.sleep(args.every_ms / 1000)
    return out


def flood(args, verify):
    http = pool(args)
    body = b"x" * args.size
    url = f"{args.base}/echo?stream={args.stream}"
    out = {"posts": 0, "statuses": {}, "last_status": None}
    for _ in range(args.max_posts):
        r = http.request("POST", url, body=body, timeout=30)
        out["posts"] += 1
        out["statuses"][str(r.status)] = out["statuses"].get(str(r.status), 0) + 1
        out["last_status"] = r.status
        if r.status != 202:
            break
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["echo", "poll", "flood"])
    p.add_argument("base")
    p.add_argument("--cafile")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--long", action="store_true")
    p.add_argument("--timeout-ms", type=int)
    p.add_argument("--every-ms", type=int, default=100)
    p.add_argument("--limit", type=float, default=30)
    p.add_argument("--stream")
    p.add_argument("--size", type=int, default=1 << 20)
    p.add_argument("--max-posts", type=int, default=100)
    args = p.parse_args()
    verify = args.cafile or True
    out = {"echo": echo, "poll": poll, "flood": flood}[args.mode](args, verify)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
