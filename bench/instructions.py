#!/usr/bin/env python3
"""CPU instructions per request, counted by valgrind's callgrind (Python 3.11, standard library).

Wall-clock throughput on a shared 2-core machine swings by 2x between minutes; an instruction
count does not depend on what else the machine does. For each binary and path this starts
`importops serve --demo` on a fresh SQLite database under callgrind, sends LOW and then, in a
second server, HIGH requests on one keep-alive connection (each must answer 200), and reports
(Ir(HIGH) - Ir(LOW)) / (HIGH - LOW): the instructions one more request costs, start-up and
shutdown cancelled out. Repeats are alternated between the binaries.

    cargo build --release
    bench/instructions.py                                   # this build
    bench/instructions.py --binary OLD/importops --binary target/release/importops
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATHS = ["/livez", "/api/v1/getLatestImportOperations"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def instructions(binary: str, path: str, requests: int) -> int:
    """Total instructions of one server that answers `requests` requests to `path`."""
    folder = tempfile.mkdtemp(prefix="importops-ir-")
    port = free_port()
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/out", binary,
         "--database-url", f"sqlite://{folder}/db", "serve", "--demo",
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "curl" not in line:
            line = server.stdout.readline()
            if not line and server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"error: {binary} did not start under valgrind")
        user = re.search(r"X-User-Id: (\w+)", line).group(1)
        token = re.search(r"X-Auth-Token: ([^']+)", line).group(1)
        request = (f"GET {path} HTTP/1.1\r\nHost: bench\r\nX-User-Id: {user}\r\n"
                   f"X-Auth-Token: {token}\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
            pending = b""
            for _ in range(requests):
                conn.sendall(request)
                while True:
                    head = pending.find(b"\r\n\r\n")
                    if head >= 0:
                        length = re.search(rb"content-length: (\d+)", pending[:head], re.I)
                        end = head + 4 + int(length.group(1))
                        if len(pending) >= end:
                            if not pending.startswith(b"HTTP/1.1 200"):
                                raise SystemExit(f"error: {path} answered {pending[:40]!r}")
                            pending = pending[end:]
                            break
                    chunk = conn.recv(65536)
                    if not chunk:
                        raise SystemExit("error: the server closed the connection")
                    pending += chunk
        server.send_signal(2)
        server.wait(timeout=60)
        text = open(glob.glob(f"{folder}/out*")[0]).read()
        return int(re.search(r"^summary: (\d+)", text, re.M).group(1))
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", action="append",
                   help="an importops binary (repeatable; default target/release/importops)")
    p.add_argument("--low", type=int, default=500, help="requests of the first server")
    p.add_argument("--high", type=int, default=5500, help="requests of the second server")
    p.add_argument("--repeats", type=int, default=2, help="measurements of each case (median)")
    args = p.parse_args()
    if not shutil.which("valgrind"):
        print("error: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    binaries = args.binary or [os.path.join(ROOT, "target/release/importops")]
    found: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for path in PATHS:
            for binary in binaries:
                low = instructions(binary, path, args.low)
                high = instructions(binary, path, args.high)
                found.setdefault((binary, path), []).append((high - low) / (args.high - args.low))
    print("| binary | path | instructions per request (median) | runs |")
    print("|---|---|---|---|")
    for (binary, path), values in found.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {binary} | {path} | {statistics.median(values):.0f} | {runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
