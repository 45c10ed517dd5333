#!/usr/bin/env python3
"""Signs a subscriber JWT for protolab's hub tests and prints it.

RS256 and ES256 are signed by PyJWT (with `cryptography`) from a PEM private key. The
attacker's tokens are built by hand, as no careful library makes them: HS256 keyed with the
bytes of a file (an RSA public key: the algorithm-confusion attack) and `alg: none`.

    jwt_sign.py --alg RS256|ES256|HS256|none [--key FILE] --channels ops,x --expires-in SECONDS
"""
import argparse
import base64
import hashlib
import hmac
import json
import time

import jwt


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def by_hand(header, claims, key):
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    if header["alg"] == "none":
        return signing_input + "."
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--alg", required=True, choices=["RS256", "ES256", "HS256", "none"])
    p.add_argument("--key")
    p.add_argument("--channels", default="")
    p.add_argument("--expires-in", type=int, default=60)
    args = p.parse_args()
    claims = {
        "sub": "jwt_sign.py",
        "channels": [c for c in args.channels.split(",") if c],
        "exp": int(time.time()) + args.expires_in,
    }
    key = open(args.key, "rb").read() if args.key else b""
    if args.alg in ("RS256", "ES256"):
        token = jwt.encode(claims, key, algorithm=args.alg)
    else:
        token = by_hand({"alg": args.alg, "typ": "JWT"}, claims, key)
    print(token)


if __name__ == "__main__":
    main()
