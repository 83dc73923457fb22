#!/usr/bin/env python3
"""The rate limiter's cost against the number of clients: rate-limited calls of
getLatestImportOperations (a user without `api-bypass-rate-limit`) through a trusted proxy,
`X-Forwarded-For` cycling over 1 000 and then 100 000 client addresses. The limit is set high
(`--rate-limit-calls 1000000000`) so that every call is counted and answered 200: the rates
compare the limiter's work, not 429s against 200s. Targets: the rate from 100 000 addresses
>= 0.8x the rate from 1 000; the server's peak RSS <= 64 MB.

    python3 reliability/rate_limit_clients.py [--short] [--binary PATH]

The clients are processes of their own. Figures go to RELIABILITY.md ("rate limiter").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DEFAULT_BINARY, ENDPOINT, LOGIN, RESOURCES, KeepAlive, RunAs, Server, copy_binary,
    copy_fixture, free_port, install_cleanup, log, make_workdir, prepare_database, run_cli, print_checks,
)

RATIO_BOUND = 0.8
RSS_BOUND_MB = 64


def client(port: int, user_id: str, token: str, addresses: int, first: int, seconds: float,
           out) -> None:
    conn = KeepAlive(port, 10.0)
    n = bad = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        a = (first + n * 7919) % addresses
        r = conn.request("read", "GET", ENDPOINT, {
            "X-User-Id": user_id, "X-Auth-Token": token,
            "X-Forwarded-For": f"10.{a >> 16}.{(a >> 8) & 255}.{a & 255}",
        })
        n += 1
        bad += r.status != 200
    out.put((n, bad))


def phase(port, user_id, token, addresses, procs, seconds):
    out = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=client, args=(port, user_id, token, addresses,
                                                       i * 104729, seconds, out))
          for i in range(procs)]
    for p in ps:
        p.start()
    got = [out.get(timeout=seconds + 60) for _ in ps]
    for p in ps:
        p.join()
    return sum(n for n, _ in got) / seconds, sum(b for _, b in got)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI version (about 15 s)")
    ap.add_argument("--binary", type=Path,
                    default=Path(os.environ.get("IMPORTOPS_BIN", DEFAULT_BINARY)))
    ap.add_argument("--clients", type=int, default=4, help="client processes")
    args = ap.parse_args()
    install_cleanup()
    seconds = 4.0 if args.short else 10.0
    owner = RunAs.pick(name=None)
    work = make_workdir("importops-ratelimit-", owner)
    binary = copy_binary(args.binary, work, owner)
    url = f"sqlite://{work}/importops.db"
    creds = prepare_database(binary, url, owner, copy_fixture(work, owner))
    # The password user may read, and is not spared by the limiter as the admin is.
    run_cli(binary, url, ["permission", "set", "view-import-operations", "admin", "user"], owner)
    server = Server(binary, url, free_port(), owner, work / "server.log",
                    ["--trust-proxy"], rate_limit_calls=1_000_000_000)
    rows = []
    try:
        server.wait_ready()
        login = KeepAlive(server.port, 10.0).request("login", "POST", LOGIN, {
            "Content-Type": "application/json"}, json.dumps(
                {"user": creds.login_user, "password": creds.login_password}).encode())
        data = json.loads(login.body)["data"]
        uid, token = data["userId"], data["authToken"]
        phase(server.port, uid, token, 1000, args.clients, 1.0)  # warm the cache
        rates = {}
        for addresses in (1000, 100_000):
            log(f"{args.clients} clients cycling over {addresses} addresses, {seconds:.0f} s")
            rates[addresses], bad = phase(server.port, uid, token, addresses, args.clients,
                                          seconds)
            rows.append((addresses, rates[addresses], bad))
        rss = peak_rss_mb(server.proc.pid)
    finally:
        RESOURCES.cleanup()
    ratio = rates[100_000] / rates[1000] if rates[1000] else 0.0
    checks = [
        (f"100 000 addresses >= {RATIO_BOUND}x the rate of 1 000", ratio >= RATIO_BOUND,
         f"{rates[100_000]:.0f}/s vs {rates[1000]:.0f}/s = {ratio:.2f}x"),
        ("every call answered 200", all(b == 0 for _, _, b in rows),
         f"{sum(b for _, _, b in rows)} not 200"),
        (f"peak RSS <= {RSS_BOUND_MB} MB", rss <= RSS_BOUND_MB, f"{rss:.1f} MB"),
    ]
    ok = print_checks(checks)
    print("rate_limit_clients: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
