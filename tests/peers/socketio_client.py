#!/usr/bin/env python3
"""A socket.io client (PyPI python-socketio) for protolab's hub tests: connects to URL, sends
`subscribe` with the channels given as JSON (if any), and prints one JSON line per event:
{"event": "connect"}, {"event": "ack", "data": ...}, {"event": "<name>", "data": ...}.

    socketio_client.py URL [--transports polling,websocket] [--subscribe JSON] [--token JWT]
"""
import argparse
import json
import sys
import threading

import socketio


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("url")
    p.add_argument("--transports", default="polling,websocket")
    p.add_argument("--subscribe")
    p.add_argument("--token", help="a subscriber JWT, sent in the connect auth payload")
    args = p.parse_args()

    # python-socketio runs handlers on threads of their own: one line at a time
    lock = threading.Lock()

    def emit(line):
        with lock:
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()

    # python-socketio's threaded client may print events out of arrival order: tests check
    # order with the Node client
    client = socketio.Client(reconnection=False)

    @client.event
    def connect():
        emit({"event": "connect", "transport": client.transport()})
        if args.subscribe:
            client.emit("subscribe", {"channels": json.loads(args.subscribe)},
                        callback=lambda ack: emit({"event": "ack", "data": ack}))

    @client.event
    def connect_error(data):
        emit({"event": "connect_error", "message": str(data)})

    @client.event
    def disconnect(reason=None):
        emit({"event": "disconnect", "reason": str(reason)})

    @client.on("*")
    def any_event(event, data):
        emit({"event": event, "data": data})

    auth = {"token": args.token} if args.token else None
    client.connect(args.url, transports=args.transports.split(","), auth=auth)
    client.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
