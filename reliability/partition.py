#!/usr/bin/env python3
"""A silent network partition between importops and Postgres (Python 3.11, standard library).

A private Postgres cluster (initdb, as in faults.py), a TCP proxy in front of it, and
`importops serve` connected through the proxy. Under a steady load of cached reads with two
tokens, the proxy blackholes: it stops forwarding in both directions without closing anything
(bytes wait in the kernel's buffers, as packets dropped and later retransmitted would; new
connections are accepted and hang). During the partition one token is revoked and one
operation is loaded with the command line on the cluster's real port, bypassing the proxy.
Then the proxy forwards again.

Checked (issue 11's targets): no 200 for the revoked token later than 2 s after its revoke;
every request started during the partition answered within 6 s; 200s for the other token
back within 3 s after the heal; the operation loaded meanwhile served afterwards. Run once per
change-detection mode (`notify`, `poll`).

    python3 reliability/partition.py [--short] [--binary target/debug/importops]

`--short` (CI) partitions for 8 s instead of 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DEFAULT_BINARY, ENDPOINT, HOST, RESOURCES, KeepAlive, Result, RunAs, Server, free_port,
    install_cleanup, log, prepare_database, run_cli,
    table,
)
from faults import pg_bindir, private_cluster  # noqa: E402

NEW_OPERATION = "PartitionWrite234"


class Proxy:
    """Forwards 127.0.0.1:port to the target; `blackhole()` stops forwarding, `heal()` resumes."""

    def __init__(self, target_port: int) -> None:
        self.target = (HOST, target_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, free_port({target_port})))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()
        RESOURCES.on_cleanup("stop the proxy", self.stop)

    def blackhole(self) -> None:
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    def stop(self) -> None:
        self.stopped = True
        self.flowing.set()
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        # A connection made during the partition hangs until it heals, as a SYN would.
        self.flowing.wait()
        try:
            server = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        for a, b in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self.stopped:
                self.flowing.wait()
                ready, _, _ = select.select([src], [], [], 0.05)
                if not ready or not self.flowing.is_set():
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def reader(port: int, who: str, headers: dict, stop: threading.Event, out: list) -> None:
    conn = KeepAlive(port, timeout=60)
    while not stop.is_set():
        r = conn.request(who, "GET", ENDPOINT, headers=headers)
        out.append(r)
        time.sleep(0.02)
    conn.close()


def experiment(binary: Path, owner: RunAs, mode: str, partition: float) -> tuple[bool, list, dict]:
    bindir = pg_bindir()
    if bindir is None:
        raise SystemExit("error: no Postgres binaries (initdb, pg_ctl); set PG_BINDIR")
    work, exe, fixture, cluster = private_cluster(binary, owner, bindir, f"partition-{mode}")
    direct = cluster.url()
    creds = prepare_database(exe, direct, owner, fixture)
    other = json.loads(run_cli(exe, direct, ["token", "issue", "admin", "--json"], owner))
    proxy = Proxy(cluster.port)
    proxied = f"postgres://importops@{HOST}:{proxy.port}/importops"
    server = Server(exe, proxied, free_port({cluster.port, proxy.port}), owner,
                    work / "server.log", ["--change-detection", mode])
    server.wait_ready()
    op_file = work / "new-operation.json"
    op_file.write_text(json.dumps([{
        "_id": NEW_OPERATION, "type": "csv", "importerKey": "csv", "ts": 1893456000000,
        "status": "importer_done", "valid": False, "user": "partition",
        "_updatedAt": "2030-01-01T00:00:00.000Z",
    }]))
    os.chmod(op_file, 0o644)
    owner.chown(op_file)

    victim = {"X-User-Id": creds.user_id, "X-Auth-Token": creds.token}
    witness = {"X-User-Id": other["userId"], "X-Auth-Token": other["authToken"]}
    results: list[Result] = []
    stop = threading.Event()
    threads = [threading.Thread(target=reader, args=(server.port, who, h, stop, results),
                                daemon=True)
               for who, h in (("victim", victim), ("victim", victim), ("witness", witness),
                              ("witness", witness))]
    for t in threads:
        t.start()
    time.sleep(3)
    t_cut = time.monotonic()
    proxy.blackhole()
    log(f"{mode}: blackholed for {partition:.0f} s")
    time.sleep(min(3.0, partition / 3))
    run_cli(exe, direct, ["token", "revoke", "admin", "--token", creds.token], owner)
    t_revoke = time.monotonic()
    run_cli(exe, direct, ["ops", "load", str(op_file)], owner)
    time.sleep(max(0.0, t_cut + partition - time.monotonic()))
    t_heal = time.monotonic()
    proxy.heal()
    log(f"{mode}: healed")
    time.sleep(8)
    stop.set()
    for t in threads:
        t.join(timeout=70)
    server.stop()

    victim_200_late = [r.t0 - t_revoke for r in results
                       if r.kind == "victim" and r.status == 200 and r.t0 > t_revoke]
    during = [r for r in results if t_cut <= r.t0 < t_heal]
    slowest = max((r.latency for r in during), default=0.0)
    # Requests that started before the cut and were still waiting when it came.
    caught = [r for r in results if r.t0 < t_cut < r.t1]
    back = [r.t1 - t_heal for r in results
            if r.kind == "witness" and r.status == 200 and r.t0 >= t_heal]
    seen = [r.t1 - t_heal for r in results
            if r.kind == "witness" and r.status == 200 and r.t0 >= t_heal
            and NEW_OPERATION.encode() in r.body]
    # How long the cache went on answering after the cut, before the heartbeat failed.
    cached = [r.t1 - t_cut for r in during if r.status == 200 and r.t1 < t_heal]
    statuses: dict = {}
    for r in during:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    figures = {
        "mode": mode,
        "partition_s": partition,
        "requests": len(results),
        "during": len(during),
        "during_statuses": statuses,
        "slowest_during_s": round(slowest, 2),
        "last_200_after_cut_s": round(max(cached), 2) if cached else None,
        "caught_at_cut": len(caught),
        "slowest_caught_s": round(max((r.latency for r in caught), default=0.0), 2),
        "revoked_200_latest_after_revoke_s": round(max(victim_200_late), 2)
        if victim_200_late else None,
        "witness_200_back_after_heal_s": round(min(back), 2) if back else None,
        "new_operation_seen_after_heal_s": round(min(seen), 2) if seen else None,
    }
    checks = [
        ("no 200 for the revoked token later than 2 s after the revoke",
         not victim_200_late or max(victim_200_late) <= 2.0),
        ("every request started during the partition answered within 6 s", slowest <= 6.0),
        ("200s back within 3 s after the heal", bool(back) and min(back) <= 3.0),
        ("the operation loaded during the partition served after it",
         bool(seen) and min(seen) <= 3.0),
    ]
    return all(ok for _, ok in checks), checks, figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="an 8 s partition (CI)")
    ap.add_argument("--binary", type=Path,
                    default=Path(os.environ.get("IMPORTOPS_BIN", DEFAULT_BINARY)))
    ap.add_argument("--modes", default="notify,poll")
    args = ap.parse_args()
    install_cleanup()
    owner = RunAs.pick()
    partition = 8.0 if args.short else 30.0
    ok_all = True
    rows = []
    try:
        for mode in [m for m in args.modes.split(",") if m]:
            ok, checks, figures = experiment(args.binary, owner, mode, partition)
            ok_all &= ok
            print(json.dumps(figures))
            for name, passed in checks:
                rows.append([mode, name, "ok" if passed else "FAIL"])
    finally:
        RESOURCES.cleanup()
    print(table(["mode", "check", "result"], rows))
    print("RESULT: " + ("PASS" if ok_all else "FAIL"))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
