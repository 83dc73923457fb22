#!/usr/bin/env python3
"""Stalled bodies against a server at 1 024 descriptors: `--clients` connections send a
login's headers (Content-Length 100) and part of its body, then nothing. Meanwhile a new
client's /livez must be answered within 2 s, and every stalled connection must be answered
408 (`{"success":false,"error":"Request Timeout"}`) or closed within 15 s of its headers.

The server runs under `ulimit -n 1024` (a wrapper script), ourselves with the hard limit.
Without the bounds (no body read timeout, no connection limit) the server stops accepting
once its descriptors are spent, and /livez is never answered.

    python3 reliability/stalled.py [--short] [--binary PATH] [--clients N]

Figures go to RELIABILITY.md ("stalled bodies").
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DEFAULT_BINARY, HOST, RESOURCES, RunAs, Server, copy_binary, free_port,
    install_cleanup, log, make_workdir, run_cli, print_checks,
)

DESCRIPTORS = 1024
LIVEZ_BOUND = 2.0
STALL_BOUND = 15.0
TIMEOUT_BODY = b'{"success":false,"error":"Request Timeout"}'
STALLED = (b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: 100\r\n\r\n{\"user\"")


def livez(port: int, timeout: float) -> float | None:
    """Seconds until /livez answered 200 on a new connection; None if not within timeout."""
    t0 = time.monotonic()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(max(0.01, timeout - (time.monotonic() - t0)))
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        return time.monotonic() - t0 if data.startswith(b"HTTP/1.1 200") else None
    except OSError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI version (about 20 s)")
    ap.add_argument("--binary", type=Path,
                    default=Path(os.environ.get("IMPORTOPS_BIN", DEFAULT_BINARY)))
    ap.add_argument("--clients", type=int, default=1100)
    args = ap.parse_args()
    install_cleanup()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.clients + 200:
        raise SystemExit(f"error: the hard descriptor limit ({hard}) is too low for "
                         f"{args.clients} clients")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    owner = RunAs.pick(name=None)
    work = make_workdir("importops-stalled-", owner)
    binary = copy_binary(args.binary, work, owner)
    wrapper = work / "limited"
    wrapper.write_text(f"#!/bin/sh\nulimit -n {DESCRIPTORS}\nexec {binary} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    url = f"sqlite://{work}/importops.db"
    run_cli(binary, url, ["migrate"], owner)
    port = free_port()
    server = Server(wrapper, url, port, owner, work / "server.log")
    ok = True
    try:
        server.wait_ready()
        log(f"opening {args.clients} connections that stall their body "
            f"(server at {DESCRIPTORS} descriptors)")
        sel = selectors.DefaultSelector()
        sent: dict[socket.socket, float] = {}
        refused = 0
        for _ in range(args.clients):
            try:
                s = socket.create_connection((HOST, port), timeout=5)
                s.sendall(STALLED)
                s.setblocking(False)
            except OSError:
                refused += 1
                continue
            sent[s] = time.monotonic()
            sel.register(s, selectors.EVENT_READ)
        log(f"{len(sent)} stalled, {refused} could not connect; probing /livez")
        probes = [livez(port, 5.0) for _ in range(3 if args.short else 10)]
        # Each stalled connection: its answer or its close, and when.
        outcome: dict[socket.socket, tuple[str, float]] = {}
        data: dict[socket.socket, bytes] = {s: b"" for s in sent}
        deadline = time.monotonic() + STALL_BOUND + 10
        while len(outcome) < len(sent) and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    chunk = s.recv(65536)
                except OSError:
                    chunk = b""
                if chunk:
                    data[s] += chunk
                    continue
                kind = ("408" if data[s].startswith(b"HTTP/1.1 408")
                        and data[s].endswith(TIMEOUT_BODY)
                        else "closed" if not data[s] else "other " + data[s][:12].decode())
                outcome[s] = (kind, time.monotonic() - sent[s])
                sel.unregister(s)
                s.close()
        open_left = len(sent) - len(outcome)
        kinds: dict[str, int] = {}
        for kind, _ in outcome.values():
            kinds[kind] = kinds.get(kind, 0) + 1
        slowest = max((t for _, t in outcome.values()), default=0.0)
        answered = [p for p in probes if p is not None]
        livez_max = max(answered) if len(answered) == len(probes) else None
        after = livez(port, 5.0)
        checks = [
            (f"every /livez answered within {LIVEZ_BOUND:.0f} s while they stall",
             livez_max is not None and livez_max <= LIVEZ_BOUND,
             f"{len(answered)}/{len(probes)} answered, slowest "
             f"{'-' if not answered else f'{max(answered) * 1000:.0f} ms'}"),
            (f"every stalled body answered 408 or closed within {STALL_BOUND:.0f} s",
             open_left == 0 and slowest <= STALL_BOUND
             and all(k in ("408", "closed") for k in kinds),
             f"{kinds}, {open_left} still open, slowest {slowest:.1f} s"),
            ("the server still answers afterwards", after is not None and server.alive(),
             "-" if after is None else f"{after * 1000:.0f} ms"),
        ]
        ok = print_checks(checks)
        for s in list(sent):
            s.close()
    finally:
        RESOURCES.cleanup()
    print("stalled: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
