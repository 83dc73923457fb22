#!/usr/bin/env python3
"""Distinct sessions read twice: how much of the second pass the session cache serves, and the
server's resident memory (README, "What is cached"; RELIABILITY.md).

N login sessions of one admin are written straight into a fresh SQLite file, then
`importops serve` (rate limiter off) answers getLatestImportOperations once per token, twice
over, from a few keep-alive clients. The cache's hits and misses come from /metrics
(importops_cache_lookups_total{kind="session"}), the memory from /proc.

    python3 reliability/session_cache.py --binary target/debug/importops --sessions 120000

Passes when the second pass is at least 95% from the cache, which holds up to the cache's
capacity (src/cache.rs, MAX_SESSIONS); past it, a scan in the same order evicts ahead of it.
"""

import argparse
import base64
import hashlib
import http.client
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/importops")
    parser.add_argument("--sessions", type=int, default=120_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--short", action="store_true", help="20 000 sessions (CI)")
    args = parser.parse_args()
    if args.short:
        args.sessions = 20_000
    binary = str(Path(args.binary).resolve())

    with tempfile.TemporaryDirectory(prefix="session-cache-") as work:
        db = Path(work) / "s.db"
        url = f"sqlite://{db}"
        subprocess.run([binary, "--database-url", url, "user", "add", "admin",
                        "--role", "admin", "--role", "user"], check=True, capture_output=True)
        conn = sqlite3.connect(db)
        uid = conn.execute("SELECT id FROM users WHERE username = 'admin'").fetchone()[0]
        tokens = [f"session-cache-{i:08d}" for i in range(args.sessions)]
        now = int(time.time() * 1000)
        conn.executemany(
            "INSERT INTO sessions (user_id, hashed_token, kind, issued_at) VALUES (?, ?, 'login', ?)",
            [(uid, base64.b64encode(hashlib.sha256(t.encode()).digest()).decode(), now)
             for t in tokens])
        conn.commit()
        conn.close()

        port = free_port()
        server = subprocess.Popen(
            [binary, "--database-url", url, "serve", "--listen", f"127.0.0.1:{port}",
             "--rate-limit-calls", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.1)
            time.sleep(0.5)  # the watcher's first look makes the cache live

            def rss_mb() -> int:
                status = Path(f"/proc/{server.pid}/status").read_text()
                return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) // 1024

            def lookups() -> dict:
                h = http.client.HTTPConnection("127.0.0.1", port)
                h.request("GET", "/metrics")
                body = h.getresponse().read().decode()
                found = re.findall(
                    r'importops_cache_lookups_total\{kind="session",result="(\w+)"\} (\S+)', body)
                return {k: float(v) for k, v in found}

            failures = []

            def client(part):
                h = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                for token in part:
                    h.request("GET", "/api/v1/getLatestImportOperations",
                              headers={"X-User-Id": uid, "X-Auth-Token": token})
                    answer = h.getresponse()
                    answer.read()
                    if answer.status != 200:
                        failures.append(answer.status)

            second_pass = 0.0
            for n in (1, 2):
                before, start = lookups(), time.time()
                threads = [threading.Thread(target=client, args=(tokens[i::args.clients],))
                           for i in range(args.clients)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                after = lookups()
                hits = after.get("hit", 0) - before.get("hit", 0)
                misses = after.get("miss", 0) - before.get("miss", 0)
                share = 100 * hits / max(hits + misses, 1)
                print(f"pass {n}: {args.sessions} sessions in {time.time() - start:.1f} s, "
                      f"{hits:.0f} from the cache ({share:.1f}%), {misses:.0f} from the database, "
                      f"RSS {rss_mb()} MB", flush=True)
                second_pass = share
        finally:
            server.terminate()
            server.wait()
    if failures:
        print(f"FAIL: {len(failures)} answers other than 200: {sorted(set(failures))}")
        return 1
    print("PASS" if second_pass >= 95 else "FAIL: second pass under 95% from the cache")
    return 0 if second_pass >= 95 else 1


if __name__ == "__main__":
    sys.exit(main())
