#!/usr/bin/env python3
"""Peak memory of `importops ops load` on a large batch (Python 3.11, standard library only).

Generates N operations shaped like fixtures/documented-operations.json (JSON lines or one
JSON array), loads them with the release binary into a fresh database, and reports the
binary's peak resident set size (the kernel's ru_maxrss of the child) and the wall time.
Exits 1 when the load fails, loads another count, or peaks above --limit-mb.

    cargo build --release
    bench/ops_load_memory.py                         # 1 000 000 operations, JSON lines, SQLite
    bench/ops_load_memory.py --count 20000           # the short form, for CI
    bench/ops_load_memory.py --form array --backend postgres
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METEOR = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"
STATUSES = [
    "importer_new",
    "importer_user_selection",
    "importer_file_loaded",
    "importer_importing_messages",
    "importer_done",
    "importer_import_failed",
]
KINDS = [
    ("Pending Avatars", "pending-avatars"),
    ("Pending Files", "pending-files"),
    ("CSV", "csv"),
    ("Slack", "slack"),
]


def meteor_id(n: int) -> str:
    chars = []
    for _ in range(17):
        chars.append(METEOR[n % len(METEOR)])
        n //= len(METEOR)
    return "".join(reversed(chars))


def iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def operation(i: int) -> dict:
    kind, key = KINDS[i % len(KINDS)]
    ts = 1_635_247_067_385 + i * 1_000
    doc = {
        "_id": meteor_id(i) if i % 3 else f"{0x64D69545 + i:024x}",
        "type": kind,
        "importerKey": key,
        "ts": ts if i % 2 else iso(ts),
        "status": STATUSES[i % len(STATUSES)],
        "valid": i % 5 != 0,
        "user": "d26x6zSkaPSe5gCyy",
        "_updatedAt": iso(ts + 25_000),
    }
    if key in ("csv", "slack"):
        doc["contentType"] = "application/zip"
        doc["file"] = f"{ts}_d26x6zSkaPSe5gCyy_export-{i}.zip"
        doc["count"] = {"total": 1520, "completed": 1520, "error": 0, "users": 20,
                        "channels": 12, "messages": 1488}
    return doc


def generate(path: str, count: int, form: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        if form == "array":
            out.write("[\n")
        for i in range(count):
            text = json.dumps(operation(i), separators=(",", ":"))
            if form == "array":
                out.write(text + (",\n" if i + 1 < count else "\n"))
            else:
                out.write(text + "\n")
        if form == "array":
            out.write("]\n")


def psql(base_url: str, sql: str) -> None:
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", base_url + "postgres", "-c", sql],
                   check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="operations to load")
    parser.add_argument("--form", choices=["lines", "array"], default="lines")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/importops"))
    parser.add_argument("--limit-mb", type=float, default=200.0, help="the peak RSS allowed")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/",
                        help="a Postgres server (URL up to the database name)")
    parser.add_argument("--file", help="load this file instead of generating one")
    args = parser.parse_args()

    if not os.access(args.binary, os.X_OK):
        print(f"no binary at {args.binary}: run `cargo build --release` first", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="importops-ops-load-")
    database = None
    try:
        path = args.file
        if path is None:
            path = os.path.join(work, f"operations.{'json' if args.form == 'array' else 'jsonl'}")
            started = time.monotonic()
            generate(path, args.count, args.form)
            print(f"generated {args.count} operations ({args.form}) in "
                  f"{time.monotonic() - started:.1f} s: {os.path.getsize(path) / 1e6:.0f} MB")
        if args.backend == "sqlite":
            url = f"sqlite://{work}/importops.db"
        else:
            database = f"importops_ops_load_{os.getpid()}"
            psql(args.postgres, f"CREATE DATABASE {database}")
            url = args.postgres + database

        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RUST_LOG")}
        out_path, err_path = os.path.join(work, "stdout"), os.path.join(work, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            started = time.monotonic()
            child = subprocess.Popen(
                [args.binary, "--database-url", url, "ops", "load", "--json", path],
                stdout=out, stderr=err, env=env)
            # wait4 gives this child's own peak RSS (ru_maxrss, in KiB on Linux).
            _, status, usage = os.wait4(child.pid, 0)
            elapsed = time.monotonic() - started
        returncode = os.waitstatus_to_exitcode(status)
        peak_mb = usage.ru_maxrss / 1024
        with open(out_path, "rb") as f:
            stdout = f.read()
        with open(err_path, "rb") as f:
            stderr = f.read()
        if returncode != 0:
            print(f"ops load failed ({returncode}): {stderr.decode(errors='replace')}",
                  file=sys.stderr)
            return 1
        counts = json.loads(stdout)
        if args.file is None and counts.get("loaded") != args.count:
            print(f"loaded {counts} instead of {args.count}", file=sys.stderr)
            return 1
        loaded = counts["loaded"]
        print(f"ops load ({args.backend}): {loaded} operations in {elapsed:.1f} s "
              f"({loaded / elapsed:,.0f}/s), peak RSS {peak_mb:.0f} MB "
              f"(limit {args.limit_mb:.0f} MB)")
        if peak_mb > args.limit_mb:
            print(f"FAIL: peak RSS {peak_mb:.0f} MB is above {args.limit_mb:.0f} MB",
                  file=sys.stderr)
            return 1
        return 0
    finally:
        if database is not None:
            psql(args.postgres, f"DROP DATABASE IF EXISTS {database}")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
