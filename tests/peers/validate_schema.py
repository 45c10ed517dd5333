#!/usr/bin/env python3
"""Validates a JSON file against a JSON Schema (draft 2020-12) with the `jsonschema` package.

Usage: validate_schema.py SCHEMA FILE. Prints `valid` and exits 0, or prints every error
(path: message) and exits 1.
"""
import json
import sys

import jsonschema


def main():
    schema_path, file_path = sys.argv[1], sys.argv[2]
    with open(schema_path) as f:
        schema = json.load(f)
    with open(file_path) as f:
        document = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    for e in errors:
        print("/".join(str(p) for p in e.path) or "(root)", ":", e.message)
    if errors:
        return 1
    print("valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
