#!/usr/bin/env python3
"""Opens a WebSocket (ws:// or wss://, certificate not verified: the lab's CA is its own), checks the
handshake's Sec-WebSocket-Accept, sends one text message and expects it echoed. Standard library
only, so the guest needs nothing but python3. Exit 0 on success, 1 with a reason otherwise."""

import base64
import hashlib
import os
import socket
import ssl
import struct
import sys
import urllib.parse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TIMEOUT_SECONDS = 10
MAX_HEADER_BYTES = 16384


def read_exact(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-frame")
        data += chunk
    return data


def probe(url):
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    sock = socket.create_connection((parts.hostname, port), timeout=TIMEOUT_SECONDS)
    if secure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname=parts.hostname)
    key = base64.b64encode(os.urandom(16)).decode()
    path = parts.path or "/"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk or len(head) > MAX_HEADER_BYTES:
            raise ConnectionError(f"no complete handshake response: {head[:200]!r}")
        head += chunk
    lines = head.decode("latin-1").split("\r\n")
    if " 101 " not in lines[0] + " ":
        raise ConnectionError(f"handshake refused: {lines[0]}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
    expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    if headers.get("sec-websocket-accept") != expected:
        raise ConnectionError("wrong Sec-WebSocket-Accept")
    message = b"protolab lab probe"
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(message))
    sock.sendall(bytes([0x81, 0x80 | len(message)]) + mask + masked)
    first, second = read_exact(sock, 2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", read_exact(sock, 2))[0]
    elif length == 127:
        raise ConnectionError("echo frame unexpectedly large")
    payload = read_exact(sock, length)
    if first & 0x0F != 0x1 or payload != message:
        raise ConnectionError(f"no echo: opcode {first & 0x0F}, payload {payload[:80]!r}")
    sock.sendall(bytes([0x88, 0x82]) + mask + bytes(b ^ mask[i] for i, b in enumerate(b"\x03\xe8")))
    sock.close()
    return f"{url}: handshake and echo ok"


def main():
    if len(sys.argv) != 2:
        print("usage: ws_probe.py ws://HOST:PORT/PATH", file=sys.stderr)
        return 2
    try:
        print(probe(sys.argv[1]))
    except (OSError, ConnectionError, ValueError) as error:
        print(f"{sys.argv[1]}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
