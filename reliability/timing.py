#!/usr/bin/env python3
"""Are an unknown user and a wrong token told apart by timing?

Starts a release server on a fresh SQLite database with one admin, then sends interleaved
requests with (a) a user id that does not exist and (b) the admin's id with a wrong token, over
one keep-alive connection each, and compares the latency distributions: medians, p90, p99 and
the two-sample Kolmogorov-Smirnov statistic D. Both must be 401 with the same body.

    python3 reliability/timing.py [--requests 5000] [--binary target/release/importops]
"""
import argparse
import http.client
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(binary, url, *args, stdin=None):
    out = subprocess.run([binary, "--database-url", url, *args], input=stdin, capture_output=True, text=True, check=True)
    return out.stdout


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ks_statistic(a, b):
    """Largest distance between the two empirical distribution functions."""
    a, b = sorted(a), sorted(b)
    i = j = 0
    d = 0.0
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            i += 1
        else:
            j += 1
        d = max(d, abs(i / len(a) - j / len(b)))
    return d


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--binary", default="target/release/importops")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp()
    url = f"sqlite://{tmp}/timing.db"
    run(args.binary, url, "user", "add", "admin", "--role", "admin")
    issued = json.loads(run(args.binary, url, "token", "issue", "admin", "--json"))
    port = free_port()
    env = dict(os.environ, IMPORTOPS_RATE_LIMIT_CALLS="0")
    server = subprocess.Popen([args.binary, "--database-url", url, "serve", "--listen", f"127.0.0.1:{port}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.02)

        cases = {
            "unknown user": ("NoSuchUser2345678", issued["authToken"]),
            "wrong token": (issued["userId"], secrets.token_urlsafe(32)),
        }
        conns = {name: http.client.HTTPConnection("127.0.0.1", port) for name in cases}
        times = {name: [] for name in cases}
        bodies = {name: set() for name in cases}
        for i in range(args.requests * 2 + 200):
            name = list(cases)[i % 2]
            user_id, token = cases[name]
            start = time.perf_counter_ns()
            conns[name].request("GET", "/api/v1/getLatestImportOperations",
                                headers={"X-User-Id": user_id, "X-Auth-Token": token})
            response = conns[name].getresponse()
            body = response.read()
            elapsed = (time.perf_counter_ns() - start) / 1000
            if i >= 200:  # warm-up
                times[name].append(elapsed)
                bodies[name].add((response.status, body))
        a, b = times["unknown user"], times["wrong token"]
        print(f"{'case':<14} {'n':>6} {'median µs':>10} {'p90 µs':>8} {'p99 µs':>8}")
        for name, values in times.items():
            print(f"{name:<14} {len(values):>6} {statistics.median(values):>10.1f} "
                  f"{percentile(values, 0.9):>8.1f} {percentile(values, 0.99):>8.1f}")
        d = ks_statistic(a, b)
        # Critical value of the two-sample KS test at alpha = 0.01.
        critical = 1.628 * ((len(a) + len(b)) / (len(a) * len(b))) ** 0.5
        same_answers = bodies["unknown user"] == bodies["wrong token"] and len(bodies["wrong token"]) == 1
        print(f"answers identical: {same_answers} {sorted(bodies['wrong token'])}")
        print(f"Kolmogorov-Smirnov D = {d:.4f} (critical value at 1%: {critical:.4f}): "
              f"{'not distinguishable' if d < critical else 'DISTINGUISHABLE'}")
        return 0 if same_answers else 1
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
