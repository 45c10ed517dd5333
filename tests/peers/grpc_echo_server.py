#!/usr/bin/env python3
"""A grpcio server of protolab.lab.v1.Lab's unary Echo, independent of the lab's own.

Usage: grpc_echo_server.py [--fail CODE]
Binds 127.0.0.1 on a port the system picks and prints {"port": N} once it serves. Echo returns
the request's payload; with --fail every call ends with that gRPC status code instead (e.g.
UNAVAILABLE), so a client's error accounting can be tested against a real server.
"""

import argparse
import json
import os
import sys
from concurrent import futures

import grpc

PROTO_ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "server", "proto")
sys.path.insert(0, PROTO_ROOT)
protos, services = grpc.protos_and_services("protolab/lab/v1/lab.proto")


class Lab(services.LabServicer):
    def __init__(self, fail):
        self.fail = fail

    def Echo(self, request, context):
        if self.fail is not None:
            context.abort(self.fail, "told to fail by --fail")
        return protos.EchoReply(payload=request.payload)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail", choices=[c.name for c in grpc.StatusCode if c.name != "OK"])
    args = parser.parse_args()
    fail = grpc.StatusCode[args.fail] if args.fail else None
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    services.add_LabServicer_to_server(Lab(fail), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"port": port}), flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
