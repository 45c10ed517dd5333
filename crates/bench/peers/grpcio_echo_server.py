"""Bench peer of `protolab-bench grpc`: the gRPC app's Echo and EchoStream (lab.proto, read at
run time by grpcio-tools, as tests/peers/grpc_client.py does) on Python grpcio's asyncio
server, the fastest server grpcio documents for one process. Binds 127.0.0.1:PORT, prints
`listening` once bound, and serves until killed. Push answers UNIMPLEMENTED (not benched).

    python3 crates/bench/peers/grpcio_echo_server.py --port 9007 --proto-root crates/server/proto
"""

import argparse
import asyncio
import os
import sys

import grpc


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--proto-root", required=True, help="directory holding protolab/lab/v1/lab.proto")
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.proto_root))
    protos, services = grpc.protos_and_services("protolab/lab/v1/lab.proto")

    class Lab(services.LabServicer):
        async def Echo(self, request, context):
            return protos.EchoReply(payload=request.payload)

        async def EchoStream(self, request_iterator, context):
            async for request in request_iterator:
                yield protos.EchoReply(payload=request.payload)

    async def serve():
        server = grpc.aio.server()
        services.add_LabServicer_to_server(Lab(), server)
        if server.add_insecure_port(f"127.0.0.1:{args.port}") == 0:
            sys.exit(f"cannot bind 127.0.0.1:{args.port}")
        await server.start()
        print("listening", flush=True)
        await server.wait_for_termination()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
