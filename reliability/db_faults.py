#!/usr/bin/env python3
"""Database-edge faults for importops (Python 3.11, standard library only).

  sqlite-full-disk  the SQLite database on a 2 MB tmpfs, which a filler file then fills: while
                    it is full, writes (import.operations.upsert, password logins) must answer
                    503 in Rocket.Chat's shape or 200 (SQLite may reuse free pages), never
                    anything else, and reads must answer 200; once the filler is removed a
                    write must succeed within 3 s, and every later write too (no pooled
                    connection left broken), without a restart.

Needs root (mount -t tmpfs). The server runs as root here: file permissions are not the
fault. The binary lives outside the tmpfs. Everything mounted, started or written is undone on
the way out, also on an error or Ctrl-C.

Usage:  python3 reliability/db_faults.py [--short] [--binary PATH] [--json FILE]
        (--binary defaults to $IMPORTOPS_BIN, else target/release/importops)
Exit status: 0 when every expectation held, 1 when one failed, 2 on a set-up error.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DEFAULT_BINARY, ENDPOINT, LOGIN, RESOURCES, UNAVAILABLE_BODY, KeepAlive, RunAs, Server,
    copy_binary, copy_fixture, fmt_counts, free_port, install_cleanup, log, make_workdir,
    prepare_database, table,
)

UPSERT = "/api/v1/import.operations.upsert"
TMPFS_SIZE = "2m"
RECOVERY_BOUND = 3.0  # s: from the filler's removal to a write answered 200
CLIENT_TIMEOUT = 15.0


def fill(folder: Path) -> tuple[Path, int]:
    """Writes a file in `folder` until the file system is full; returns it and its size."""
    filler = folder / "filler"
    written = 0
    chunk = b"\0" * 4096
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
                written += len(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    return filler, written


def exp_sqlite_full_disk(binary: Path, full_seconds: float) -> dict:
    owner = RunAs.pick(None)
    work = make_workdir("importops-dbfaults-", owner)
    exe = copy_binary(binary, work, owner)
    fixture = copy_fixture(work, owner)
    mnt = work / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mnt)],
                   check=True)
    RESOURCES.on_cleanup(f"umount {mnt}",
                         lambda: subprocess.run(["umount", "-l", str(mnt)], check=False))
    url = f"sqlite://{mnt}/importops.db"
    creds = prepare_database(exe, url, owner, fixture)
    server = Server(exe, url, free_port(), owner, work / "server.log")
    server.wait_ready()
    auth = {"X-User-Id": creds.user_id, "X-Auth-Token": creds.token,
            "Content-Type": "application/json"}
    login_body = json.dumps({"user": creds.login_user,
                             "password": creds.login_password}).encode()
    c = KeepAlive(server.port, CLIENT_TIMEOUT)
    n = [0]

    def write(size: int):
        n[0] += 1
        body = json.dumps({"type": "api", "importerKey": "api", "status": "importer_new",
                           "note": "x" * size, "n": n[0]}).encode()
        return c.request("write", "POST", UPSERT, auth, body)

    def read():
        return c.request("read", "GET", ENDPOINT, auth)

    def login():
        return c.request("login", "POST", LOGIN, {"Content-Type": "application/json"},
                         login_body)

    result: dict = {"name": "sqlite-full-disk", "checks": [], "notes": []}
    phases: dict[str, Counter] = {}

    def count(phase: str, r) -> None:
        label = str(r.status) if r.status is not None else "ERR"
        if r.status == 503 and r.body != UNAVAILABLE_BODY:
            label = "503-other-body"
        phases.setdefault(f"{phase} {r.kind}", Counter())[label] += 1

    def check(name: str, ok: bool, detail: str) -> None:
        result["checks"].append({"name": name, "ok": ok, "detail": detail})

    try:
        for _ in range(5):
            for r in (write(1000), read(), login()):
                count("before", r)
        filler, size = fill(mnt)
        result["notes"].append(f"filler file: {size // 1024} KiB until ENOSPC")
        t_end = time.monotonic() + full_seconds
        worst = 0.0
        while time.monotonic() < t_end:
            for r in (write(20_000), read(), login()):
                count("full", r)
                worst = max(worst, r.latency)
            time.sleep(0.02)
        filler.unlink()
        t_free = time.monotonic()
        recovered = None
        while time.monotonic() - t_free < 15:
            r = write(1000)
            count("freed", r)
            if r.status == 200:
                recovered = r.t1 - t_free
                break
            time.sleep(0.05)
        for _ in range(20):
            for r in (write(1000), read(), login()):
                count("after", r)
        alive = server.alive()
    finally:
        c.close()
        server.stop()

    full_write = phases.get("full write", Counter())
    full_other = {k: v for k, v in full_write.items() if k not in ("200", "503")}
    check("writes while full: some 503 (the fault is real)", full_write["503"] > 0,
          fmt_counts(dict(full_write)))
    check("writes while full: only 503 or 200 (never 500)", not full_other,
          fmt_counts(dict(full_write)))
    login_full = phases.get("full login", Counter())
    check("logins while full: only 503 or 200",
          not {k for k in login_full if k not in ("200", "503")}, fmt_counts(dict(login_full)))
    read_full = phases.get("full read", Counter())
    check("reads while full: all 200", set(read_full) == {"200"}, fmt_counts(dict(read_full)))
    check(f"a write answers 200 within {RECOVERY_BOUND:.0f} s of space freed",
          recovered is not None and recovered <= RECOVERY_BOUND,
          "never" if recovered is None else f"{recovered:.3f} s")
    after = Counter()
    for kind in ("write", "read", "login"):
        after.update(phases.get(f"after {kind}", Counter()))
    check("every request after recovery: 200 (no broken pooled connection)",
          set(after) == {"200"}, fmt_counts(dict(after)))
    check("server still running, never restarted", alive, "")
    result["notes"].append(f"slowest request while full: {worst:.3f} s")
    result["phases"] = {k: dict(v) for k, v in phases.items()}
    result["recovery_seconds"] = recovered
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI version (about 10 s)")
    ap.add_argument("--binary", type=Path,
                    default=Path(os.environ.get("IMPORTOPS_BIN", DEFAULT_BINARY)))
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("error: needs root (mount -t tmpfs)", file=sys.stderr)
        return 2
    install_cleanup()
    t0 = time.monotonic()
    try:
        log("experiment sqlite-full-disk")
        results = [exp_sqlite_full_disk(args.binary, 3.0 if args.short else 15.0)]
    finally:
        RESOURCES.cleanup()
    for res in results:
        print(f"\n{res['name']}")
        print(table(["phase", "answers"],
                    [[k, fmt_counts(v)] for k, v in res["phases"].items()]))
        for note in res["notes"]:
            print(f"  note: {note}")
        for ch in res["checks"]:
            print(f"  [{'ok' if ch['ok'] else 'FAIL'}] {ch['name']}: {ch['detail']}")
    print(f"\nmode: {'short' if args.short else 'full'}, total {time.monotonic() - t0:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    failed = [r["name"] for r in results if not all(c["ok"] for c in r["checks"])]
    print("RESULT: " + ("PASS" if not failed else f"FAIL ({', '.join(failed)})"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
