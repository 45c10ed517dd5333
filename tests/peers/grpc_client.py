#!/usr/bin/env python3
"""A grpcio client of the lab's gRPC app (protolab.lab.v1.Lab), printing JSON.

Usage: grpc_client.py COMMAND TARGET [--cafile CA] [options]
  echo     unary Echo of --size bytes; prints {"code", "echoed_ok", "details"}
  stream   EchoStream of --count messages; prints {"code", "received", "in_order"}
  push     Push with --interval-ms and --count; prints one {"seq", "unix_ms"} line per
           message with --lines, then {"code", "seqs", "gaps_ms"} (gaps between the
           messages' send times, unix_ms)
  reflect  lists services and Lab's methods through server reflection (v1alpha, which is
           what grpcio-reflection's client speaks)

TARGET is host:port; with --cafile the channel uses TLS and trusts that CA, otherwise it is
cleartext HTTP/2 (h2c). Every outcome, failures included, is one JSON line with the gRPC
status code name, so the test can assert on it; the exit status is 0 unless the script broke.
"""

import argparse
import json
import os
import sys
import time

import grpc

PROTO_ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "server", "proto")
sys.path.insert(0, PROTO_ROOT)
protos, services = grpc.protos_and_services("protolab/lab/v1/lab.proto")

# The client sends whatever it is told to, so that the lab's own limit is what is tested.
UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def channel(args):
    if args.cafile:
        with open(args.cafile, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        return grpc.secure_channel(args.target, creds, options=UNLIMITED)
    return grpc.insecure_channel(args.target, options=UNLIMITED)


def failure(err):
    return {"code": err.code().name, "details": err.details()}


def echo(stub, args):
    payload = os.urandom(args.size)
    try:
        reply = stub.Echo(protos.EchoRequest(payload=payload), timeout=args.timeout)
    except grpc.RpcError as err:
        return failure(err)
    return {"code": "OK", "echoed_ok": reply.payload == payload, "size": len(reply.payload)}


def stream(stub, args):
    sent = [f"message {i}".encode() + os.urandom(args.size) for i in range(args.count)]

    def requests():
        for payload in sent:
            yield protos.EchoRequest(payload=payload)
            if args.pause:
                time.sleep(args.pause)

    received = []
    try:
        for reply in stub.EchoStream(requests(), timeout=args.timeout):
            received.append(reply.payload)
    except grpc.RpcError as err:
        return {**failure(err), "received": len(received)}
    return {"code": "OK", "received": len(received), "in_order": received == sent}


def push(stub, args):
    seqs, stamps = [], []
    request = protos.PushRequest(interval_ms=args.interval_ms, count=args.count)
    result = {"code": "OK"}
    try:
        for message in stub.Push(request, timeout=args.timeout):
            seqs.append(message.seq)
            stamps.append(message.unix_ms)
            if args.lines:
                print(json.dumps({"seq": message.seq, "unix_ms": message.unix_ms}), flush=True)
    except grpc.RpcError as err:
        result = failure(err)
    # Between the lab's send times: the server's pacing, not this process's scheduling.
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return {**result, "seqs": seqs, "gaps_ms": gaps}


def reflect(chan):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    db = ProtoReflectionDescriptorDatabase(chan)
    try:
        names = sorted(db.get_services())
        lab = db.FindFileContainingSymbol("protolab.lab.v1.Lab")
    except grpc.RpcError as err:
        return failure(err)
    methods = [m.name for s in lab.service for m in s.method if s.name == "Lab"]
    return {"code": "OK", "services": names, "methods": methods}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["echo", "stream", "push", "reflect"])
    parser.add_argument("target")
    parser.add_argument("--cafile")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between streamed messages")
    parser.add_argument("--interval-ms", type=int, default=0)
    parser.add_argument("--lines", action="store_true")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    with channel(args) as chan:
        if args.command == "reflect":
            result = reflect(chan)
        else:
            stub = services.LabStub(chan)
            result = {"echo": echo, "stream": stream, "push": push}[args.command](stub, args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
