#!/usr/bin/env python3
"""A login flood from 2 000 client addresses against cached reads: password logins for
unknown users (each one a bcrypt verification, none stored) come through a trusted proxy
(`--trust-proxy`, `X-Forwarded-For` cycling over 2 000 addresses), while readers call
getLatestImportOperations with a valid token (served from the cache). The readers' rate
with the flood must stay at least 0.5x their rate without it: password hashing has a fixed
number of slots (`--password-hashing`), and a login that finds them busy gets 503.

    python3 reliability/login_flood.py [--short] [--binary PATH]

Readers and flooders are processes of their own (no shared interpreter lock). Figures go to
RELIABILITY.md ("login flood").
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
    copy_fixture, free_port, install_cleanup, log, make_workdir, prepare_database, print_checks,
)

ADDRESSES = 2000
RATIO_BOUND = 0.5


def reader(port: int, user_id: str, token: str, seconds: float, out) -> None:
    conn = KeepAlive(port, 10.0)
    headers = {"X-User-Id": user_id, "X-Auth-Token": token}
    n = bad = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r = conn.request("read", "GET", ENDPOINT, headers)
        n += 1
        bad += r.status != 200
    out.put(("read", n, bad, {}))


def flooder(port: int, first: int, seconds: float, out) -> None:
    conn = KeepAlive(port, 10.0)
    statuses: dict[str, int] = {}
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        a = (first + n) % ADDRESSES
        body = json.dumps({"user": f"nobody{first}-{n}", "password": "wrong"}).encode()
        r = conn.request("login", "POST", LOGIN, {
            "Content-Type": "application/json",
            "X-Forwarded-For": f"10.{a // 250}.{a % 250}.1",
        }, body)
        key = str(r.status)
        statuses[key] = statuses.get(key, 0) + 1
        n += 1
    out.put(("login", n, 0, statuses))


def phase(port: int, creds, readers: int, flooders: int, seconds: float) -> dict:
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=reader, args=(port, creds.user_id, creds.token,
                                                          seconds, out)) for _ in range(readers)]
    procs += [multiprocessing.Process(target=flooder, args=(port, i * 97, seconds, out))
              for i in range(flooders)]
    for p in procs:
        p.start()
    got = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    reads = sum(n for kind, n, _, _ in got if kind == "read")
    bad = sum(b for kind, _, b, _ in got if kind == "read")
    logins: dict[str, int] = {}
    for kind, _, _, statuses in got:
        for k, v in statuses.items():
            logins[k] = logins.get(k, 0) + v
    return {"reads_per_s": reads / seconds, "bad_reads": bad, "logins": logins,
            "logins_per_s": sum(logins.values()) / seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI version (about 15 s)")
    ap.add_argument("--binary", type=Path,
                    default=Path(os.environ.get("IMPORTOPS_BIN", DEFAULT_BINARY)))
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--flooders", type=int, default=16)
    args = ap.parse_args()
    install_cleanup()
    seconds = 4.0 if args.short else 10.0
    owner = RunAs.pick(name=None)
    work = make_workdir("importops-flood-", owner)
    binary = copy_binary(args.binary, work, owner)
    url = f"sqlite://{work}/importops.db"
    creds = prepare_database(binary, url, owner, copy_fixture(work, owner))
    server = Server(binary, url, free_port(), owner, work / "server.log", ["--trust-proxy"])
    try:
        server.wait_ready()
        # Warm the cache (and the first connection) before measuring.
        phase(server.port, creds, args.readers, 0, 1.0)
        log(f"{args.readers} readers alone, {seconds:.0f} s")
        quiet = phase(server.port, creds, args.readers, 0, seconds)
        log(f"{args.readers} readers and {args.flooders} flooders from {ADDRESSES} addresses")
        flood = phase(server.port, creds, args.readers, args.flooders, seconds)
    finally:
        RESOURCES.cleanup()
    ratio = flood["reads_per_s"] / quiet["reads_per_s"] if quiet["reads_per_s"] else 0.0
    checks = [
        (f"cached reads with the flood >= {RATIO_BOUND}x without", ratio >= RATIO_BOUND,
         f"{flood['reads_per_s']:.0f}/s vs {quiet['reads_per_s']:.0f}/s = {ratio:.2f}x"),
        ("every read answered 200", quiet["bad_reads"] + flood["bad_reads"] == 0,
         f"{quiet['bad_reads'] + flood['bad_reads']} not 200"),
        ("logins answered 401 (checked) or 503 (slots busy), nothing else",
         set(flood["logins"]) <= {"401", "503"},
         f"{flood['logins']} ({flood['logins_per_s']:.0f}/s)"),
    ]
    ok = print_checks(checks)
    print("login_flood: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
