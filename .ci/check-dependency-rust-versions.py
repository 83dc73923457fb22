#!/usr/bin/env python3
"""Reads `cargo metadata --format-version 1 --locked` on stdin; exits 1 if a dependency in
Cargo.lock (a package with a source, not this crate) declares a rust-version newer than the
one given (Cargo.toml's)."""

import json
import sys


def key(version: str) -> tuple:
    """1.88 and 1.88.0 are the same version: missing parts count as 0."""
    parts = [int(x) for x in version.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main() -> int:
    msrv = sys.argv[1]
    newer = [
        f"{p['name']} {p['version']} needs Rust {p['rust_version']}"
        for p in json.load(sys.stdin)["packages"]
        if p.get("source") and p.get("rust_version") and key(p["rust_version"]) > key(msrv)
    ]
    if newer:
        print(f"error: rust-version is {msrv} but " + "; ".join(newer), file=sys.stderr)
        return 1
    print(f"no dependency declares a Rust newer than {msrv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
