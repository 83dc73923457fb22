#!/usr/bin/env python3
"""Fault injection under load for importops (Python 3.11, standard library only).

With load running (client loops on GET /api/v1/getLatestImportOperations with an admin token,
a loop of password logins, POST /api/v1/login, which write a session and so need SQLite's write
lock, and /readyz polled every 100 ms) each experiment injects one fault into the database and
records what the clients saw during and after it:

  sqlite-lock-3s   another writer holds the SQLite file with BEGIN EXCLUSIVE for 3 s
  sqlite-chmod     the SQLite file and its -wal/-shm made unreadable (chmod 000), then restored
  postgres-stop    a private Postgres cluster stopped (pg_ctl stop -m fast) for 5 s, then started
  postgres-lock    another session holds ACCESS EXCLUSIVE locks on users, sessions and
                   import_operations (6 s; 20 s in the full run): every request answered within
                   6 s (the server's lock and acquire timeouts), logins 503 meanwhile
and, in the full run only:
  sqlite-lock-7s   the same lock held longer than the server's 5 s busy timeout
  sqlite-rename    the SQLite file and its -wal/-shm renamed away, then back
  postgres-kill    the cluster stopped with -m immediate (no clean shutdown) for 5 s
  postgres-stop-12s  the cluster stopped (-m fast) for 12 s: longer than the pool's 5 s timeout

The SQLite servers run as an unprivileged user (root ignores file permissions) on a database in
a temporary directory that user owns. The Postgres cluster is private (initdb into a temporary
directory, run by the same unprivileged user, on a free port in 43000-43999); the machine's
shared server on 5432 is never touched. Every process started here is ended on the way out,
also on an error or Ctrl-C, and every temporary directory is removed.

Usage:  python3 reliability/faults.py [--short] [--only NAME,...] [--binary PATH] [--json FILE]
Exit status: 0 when every expectation held, 1 when one failed, 2 on a set-up error.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DEFAULT_BINARY, ENDPOINT, HOST, LIVEZ, LOGIN, READYZ, RESOURCES, UNAVAILABLE_BODY,
    Credentials, Interrupted, KeepAlive, Result, RunAs, Server, copy_binary, copy_fixture,
    fmt_counts, free_port, install_cleanup, log, make_workdir, prepare_database, simple_get,
    table,
)

LATENCY_BOUND = 10.0  # s: no request may take longer (no hang)
RECOVERY_TARGET = 5.0  # s: from the end of the fault to 200 again
CLIENT_TIMEOUT = 15.0  # s: socket timeout of every client request
MAX_REQUESTS_PER_LOOP = 20_000


@dataclass
class Profile:
    readers: int
    logins: int
    reader_pause: float
    baseline: float
    stable_after: float  # s of only-200 answers after the fault before stopping the load
    post_max: float  # s after the fault at most
    chmod_seconds: float


SHORT = Profile(readers=3, logins=1, reader_pause=0.005, baseline=1.5, stable_after=1.5,
                post_max=10.0, chmod_seconds=3.0)
FULL = Profile(readers=6, logins=2, reader_pause=0.002, baseline=3.0, stable_after=3.0,
               post_max=20.0, chmod_seconds=5.0)


# ------------------------------------------------------------------------------------------
# Load.


class Load:
    """Reader loops, login loops, a /readyz poller and a watchdog on the server process."""

    def __init__(self, server: Server, creds: Credentials, profile: Profile) -> None:
        self.server = server
        self.creds = creds
        self.profile = profile
        self.results: list[Result] = []
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.exited_at: float | None = None
        self.exit_code: int | None = None

    def _record(self, r: Result) -> None:
        self.results.append(r)  # list.append is atomic under the GIL

    def _reader(self) -> None:
        c = KeepAlive(self.server.port, CLIENT_TIMEOUT)
        headers = {"X-User-Id": self.creds.user_id, "X-Auth-Token": self.creds.token}
        for _ in range(MAX_REQUESTS_PER_LOOP):
            if self.stop_event.is_set():
                break
            self._record(c.request("read", "GET", ENDPOINT, headers))
            time.sleep(self.profile.reader_pause)
        c.close()

    def _login(self) -> None:
        c = KeepAlive(self.server.port, CLIENT_TIMEOUT)
        body = json.dumps({"user": self.creds.login_user,
                           "password": self.creds.login_password}).encode()
        headers = {"Content-Type": "application/json"}
        for _ in range(MAX_REQUESTS_PER_LOOP):
            if self.stop_event.is_set():
                break
            self._record(c.request("login", "POST", LOGIN, headers, body))
            time.sleep(0.02)
        c.close()

    def _readyz(self) -> None:
        c = KeepAlive(self.server.port, CLIENT_TIMEOUT)
        next_at = time.monotonic()
        for _ in range(MAX_REQUESTS_PER_LOOP):
            if self.stop_event.is_set():
                break
            self._record(c.request("readyz", "GET", READYZ))
            next_at += 0.1
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop_event.wait(delay)
            else:
                next_at = time.monotonic()
        c.close()

    def _watchdog(self) -> None:
        while not self.stop_event.is_set():
            code = self.server.proc.poll()
            if code is not None:
                self.exited_at = time.monotonic()
                self.exit_code = code
                return
            self.stop_event.wait(0.05)

    def start(self) -> None:
        targets = ([self._reader] * self.profile.readers + [self._login] * self.profile.logins
                   + [self._readyz, self._watchdog])
        for t in targets:
            th = threading.Thread(target=t, daemon=True)
            th.start()
            self.threads.append(th)

    def stop(self) -> None:
        self.stop_event.set()
        for th in self.threads:
            th.join(timeout=CLIENT_TIMEOUT + 5)

    def last_bad_since(self, kind: str, since: float) -> float | None:
        bad = [r.t1 for r in list(self.results) if r.kind == kind and r.t1 >= since
               and r.status != 200]
        return max(bad) if bad else None

    def good_after(self, kind: str, since: float) -> bool:
        return any(r.kind == kind and r.status == 200 and r.t0 > since
                   for r in list(self.results))


# ------------------------------------------------------------------------------------------
# Analysis.


KINDS = ("read", "login", "readyz")


def label(r: Result) -> str:
    return str(r.status) if r.status is not None else "ERR"


def is_unavailable(r: Result) -> bool:
    if r.status != 503:
        return False
    if r.kind == "readyz":
        try:
            doc = json.loads(r.body)
        except ValueError:
            return False
        return (doc.get("status") == "unavailable"
                and doc.get("checks", {}).get("database") == "unavailable")
    return r.body == UNAVAILABLE_BODY


@dataclass
class Outcome:
    name: str
    fault: str
    method: str
    notes: list[str] = field(default_factory=list)
    rows: dict = field(default_factory=dict)  # per kind
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    fault_seconds: float = 0.0
    total_requests: int = 0
    crashed: bool = False
    log_errors: int = 0
    log_warns: int = 0

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, ok, detail))


def analyse(out: Outcome, load: Load, t_start: float, t_end: float,
            expect_readyz_503: bool) -> None:
    results = sorted(load.results, key=lambda r: r.t0)
    out.total_requests = len(results)
    out.fault_seconds = t_end - t_start
    for kind in KINDS:
        rs = [r for r in results if r.kind == kind]
        # "during": in flight at some moment of the fault (started before its end, finished
        # after its start); "after": started once the fault was over.
        before = [r for r in rs if r.t1 < t_start]
        during = [r for r in rs if r.t0 < t_end and r.t1 >= t_start]
        after = [r for r in rs if r.t0 >= t_end]

        def counts(xs):
            c: dict[str, int] = {}
            for r in xs:
                c[label(r)] = c.get(label(r), 0) + 1
            return c

        non200 = [r for r in rs if r.status != 200]
        wrong = [r for r in non200 if not is_unavailable(r)]
        max_lat = max((r.latency for r in rs), default=0.0)
        max_lat_during = max((r.latency for r in during), default=0.0)
        # Recovery: the first 200 that started after the last failed request.
        bad_after_start = [r for r in rs if r.status != 200 and r.t1 >= t_start]
        if not bad_after_start:
            recovery = 0.0
            recovery_txt = "0 (never failed)"
        else:
            last_bad = max(bad_after_start, key=lambda r: r.t0)
            good = [r for r in rs if r.status == 200 and r.t0 > last_bad.t0]
            if good:
                recovery = max(0.0, min(r.t1 for r in good) - t_end)
                recovery_txt = f"{recovery:.2f}"
            else:
                recovery = float("inf")
                recovery_txt = "NOT RECOVERED"
        first_bad = min((r.t1 for r in rs if r.status != 200 and r.t1 >= t_start), default=None)
        out.rows[kind] = {
            "sent": len(rs),
            "first_failure_after_start": None if first_bad is None else first_bad - t_start,
            "ok_while_faulty": sum(1 for r in during if r.status == 200),
            "before": counts(before),
            "during": counts(during),
            "after": counts(after),
            "max_latency": max_lat,
            "max_latency_during": max_lat_during,
            "recovery": recovery,
            "recovery_txt": recovery_txt,
            "wrong": len(wrong),
            "wrong_examples": sorted({f"{label(r)} {r.body[:120]!r} {r.error}" for r in wrong})[:3],
            "readyz_503_during": any(r.status == 503 for r in during) if kind == "readyz" else None,
        }
        row = out.rows[kind]
        out.check(f"{kind}: baseline all 200", set(row["before"]) <= {"200"},
                  fmt_counts(row["before"]))
        out.check(f"{kind}: every non-200 is the documented 503", not wrong,
                  "; ".join(row["wrong_examples"]))
        out.check(f"{kind}: longest request < {LATENCY_BOUND:.0f} s", max_lat < LATENCY_BOUND,
                  f"{max_lat:.2f} s")
        out.check(f"{kind}: 200 again within {RECOVERY_TARGET:.0f} s of the fault's end",
                  recovery <= RECOVERY_TARGET, recovery_txt)
    if expect_readyz_503:
        out.check("readyz: 503 unavailable during the fault",
                  bool(out.rows["readyz"]["readyz_503_during"]))
    out.crashed = load.exit_code is not None
    out.check("server never exited", not out.crashed,
              "" if not out.crashed else f"exit code {load.exit_code}")
    text = re.sub(r"\x1b\[[0-9;]*m", "", load.server.log_text())
    out.log_errors = sum(1 for ln in text.splitlines() if " ERROR " in ln)
    out.log_warns = sum(1 for ln in text.splitlines() if " WARN " in ln)
    seen: dict[str, int] = {}
    for ln in text.splitlines():
        m = re.search(r" (ERROR|WARN) (.*)$", ln)
        if m:
            msg = re.sub(r"request\{[^}]*\}: ", "", m.group(2))
            msg = re.sub(r"request_id=\S+ ?|latency=\d+ ms|elapsed=\S+", "", msg)[:160]
            key = f"{m.group(1)} {msg}"
            seen[key] = seen.get(key, 0) + 1
    for key, n in list(seen.items())[:6]:
        out.notes.append(f"server log x{n}: {key}")
    panics = [ln for ln in text.splitlines() if "panicked" in ln]
    out.check("no panic in the server log", not panics, panics[0][:200] if panics else "")


# ------------------------------------------------------------------------------------------
# Running one experiment.


def run_with_load(out: Outcome, server: Server, creds: Credentials, profile: Profile,
                  inject, expect_readyz_503: bool = False) -> Load:
    """Baseline, fault (inject returns its start and end, monotonic), then load until every
    kind has answered only 200 for profile.stable_after seconds (or post_max)."""
    load = Load(server, creds, profile)
    load.start()
    try:
        time.sleep(profile.baseline)
        t_start, t_end = inject(load)
        deadline = t_end + profile.post_max
        while time.monotonic() < deadline:
            now = time.monotonic()
            settled = True
            for kind in KINDS:
                last_bad = load.last_bad_since(kind, t_start)
                since = max(t_end, last_bad or t_end)
                if now - since < profile.stable_after or not load.good_after(kind, since):
                    settled = False
            if settled or load.exit_code is not None:
                break
            time.sleep(0.1)
    finally:
        load.stop()
    if load.exit_code is None:
        try:
            status, _ = simple_get(server.port, LIVEZ, timeout=5)
            out.notes.append(f"/livez after the run: {status}")
        except OSError as e:
            out.notes.append(f"/livez after the run: {e}")
    analyse(out, load, t_start, t_end, expect_readyz_503)
    return load


def sqlite_server(binary: Path, owner: RunAs, tag: str):
    work = make_workdir(f"importops-faults-{tag}-", owner)
    exe = copy_binary(binary, work, owner)
    fixture = copy_fixture(work, owner)
    db = work / "importops.db"
    url = f"sqlite://{db}"
    creds = prepare_database(exe, url, owner, fixture)
    server = Server(exe, url, free_port(), owner, work / "server.log")
    server.wait_ready()
    return work, db, server, creds


def exp_sqlite_lock(binary: Path, owner: RunAs, profile: Profile, hold: float) -> Outcome:
    name = f"sqlite-lock-{hold:.0f}s"
    out = Outcome(name, f"another connection holds BEGIN EXCLUSIVE on the file for {hold:.0f} s",
                  "Python sqlite3 (isolation_level=None), BEGIN EXCLUSIVE, sleep, ROLLBACK; "
                  f"server runs as user {owner.name}")
    work, db, server, creds = sqlite_server(binary, owner, name)
    try:
        def inject(load: Load):
            conn = sqlite3.connect(str(db), timeout=10, isolation_level=None)
            try:
                t_ask = time.monotonic()
                conn.execute("BEGIN EXCLUSIVE")
                t_start = time.monotonic()
                out.notes.append(f"lock acquired after {t_start - t_ask:.3f} s; journal_mode="
                                 f"{conn.execute('PRAGMA journal_mode').fetchone()[0]}")
                time.sleep(hold)
                conn.execute("ROLLBACK")
                t_end = time.monotonic()
            finally:
                conn.close()
            return t_start, t_end

        run_with_load(out, server, creds, profile, inject)
        out.notes.append("server busy timeout is 5 s (src/store/sqlite.rs BUSY_TIMEOUT)")
    finally:
        server.stop()
    return out


def sqlite_files(db: Path) -> list[Path]:
    return [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]


def exp_sqlite_chmod(binary: Path, owner: RunAs, profile: Profile) -> Outcome:
    secs = profile.chmod_seconds
    out = Outcome("sqlite-chmod", f"db, -wal, -shm chmod 000 for {secs:.0f} s, then restored",
                  f"chmod 000 (server runs as user {owner.name}, which owns the files)")
    if owner.is_self and os.geteuid() == 0:
        out.check("an unprivileged user to run the server", False, "running as root")
        return out
    work, db, server, creds = sqlite_server(binary, owner, "chmod")
    server_exe = work / "importops"
    try:
        def inject(load: Load):
            files = sqlite_files(db)
            modes = {p: p.stat().st_mode & 0o7777 for p in files}
            out.notes.append("files: " + ", ".join(f"{p.name} {m:o}" for p, m in modes.items()))
            try:
                for p in files:
                    os.chmod(p, 0)
                t_start = time.monotonic()
                # Proof that the fault is real for a fresh opener of the server's user.
                probe = subprocess.run(
                    owner.prefix() + [str(server_exe), "--database-url", f"sqlite://{db}",
                                      "ops", "list", "--limit", "1", "--json"],
                    capture_output=True, text=True, timeout=20)
                out.notes.append("`importops ops list` as that user during the fault: "
                                 + (f"exit {probe.returncode}: "
                                    + (probe.stderr.strip() or "ok")[-200:]))
                time.sleep(max(0.0, secs - (time.monotonic() - t_start)))
            finally:
                for p, m in modes.items():
                    os.chmod(p, m)
            return t_start, time.monotonic()

        run_with_load(out, server, creds, profile, inject)
    finally:
        server.stop()
    return out


def exp_sqlite_rename(binary: Path, owner: RunAs, profile: Profile) -> Outcome:
    secs = profile.chmod_seconds
    out = Outcome("sqlite-rename", f"db, -wal, -shm renamed away for {secs:.0f} s, then back",
                  "os.rename to NAME.away and back")
    work, db, server, creds = sqlite_server(binary, owner, "rename")
    try:
        def inject(load: Load):
            files = sqlite_files(db)
            moved = []
            try:
                for p in files:
                    os.rename(p, Path(f"{p}.away"))
                    moved.append(p)
                t_start = time.monotonic()
                time.sleep(secs)
                strays = [p.name for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"))
                          if p.exists()]
                out.notes.append("files the server created at the path during the fault: "
                                 + (", ".join(strays) or "none"))
            finally:
                for p in moved:
                    os.rename(Path(f"{p}.away"), p)
            return t_start, time.monotonic()

        run_with_load(out, server, creds, profile, inject)
    finally:
        server.stop()
    return out


# ------------------------------------------------------------------------------------------
# Postgres: a private cluster.


def pg_bindir() -> Path | None:
    env = os.environ.get("PG_BINDIR")
    if env:
        return Path(env)
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


class Cluster:
    def __init__(self, bindir: Path, owner: RunAs, work: Path) -> None:
        self.bindir = bindir
        self.owner = owner
        self.data = work / "pgdata"
        self.sock = work
        self.logfile = work / "postgres.log"
        self.port = free_port()
        self.env = dict(os.environ, LC_ALL="C", LANG="C", PGTZ="UTC")
        self.started = False

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        res = subprocess.run(self.owner.prefix() + list(argv), capture_output=True, text=True,
                             timeout=timeout, env=self.env, cwd=str(self.sock),
                             start_new_session=True)
        if res.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed: {res.stderr.strip()[-400:]}")
        return res

    def init(self) -> None:
        self.run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "importops",
                 "--auth=trust", "-E", "UTF8", "--no-sync")
        RESOURCES.on_cleanup("stop the private Postgres cluster", self.destroy)

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.sock} -c listen_addresses={HOST} -c fsync=off "
                f"-c max_connections=60")
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                 str(self.logfile), "-w", "-t", "30", "start")
        self.started = True

    def stop(self, mode: str = "fast") -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30",
                 "stop")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def destroy(self) -> None:
        if not self.data.exists():
            return
        pid = self.postmaster_pid()
        if pid is not None:
            try:
                self.stop("immediate")
            except Exception:  # noqa: BLE001
                pass
            try:
                os.kill(pid, 0)
                os.kill(pid, 9)  # the postmaster we started, still there
            except ProcessLookupError:
                pass

    def url(self, db: str = "importops") -> str:
        return f"postgres://importops@{HOST}:{self.port}/{db}"


def private_cluster(binary: Path, owner: RunAs, bindir: Path, tag: str):
    """A work folder owned by `owner` with a copy of the binary and the fixture, and a started
    private cluster holding an empty database `importops`."""
    work = make_workdir(f"importops-{tag}-", owner)
    exe = copy_binary(binary, work, owner)
    fixture = copy_fixture(work, owner)
    cluster = Cluster(bindir, owner, work)
    cluster.init()
    cluster.start()
    cluster.run(str(bindir / "createdb"), "-h", HOST, "-p", str(cluster.port), "-U", "importops",
                "importops")
    return work, exe, fixture, cluster


def down_note(out: Outcome, load: Load, t_down: float, t_up: float) -> None:
    """What the requests started while Postgres was certainly down (stop returned, start not
    yet run) got."""
    for kind in KINDS:
        rs = [r for r in load.results if r.kind == kind and t_down <= r.t0 < t_up]
        c: dict[str, int] = {}
        for r in rs:
            c[label(r)] = c.get(label(r), 0) + 1
        ok = [r for r in rs if r.status == 200]
        bad = [r for r in rs if r.status != 200]
        txt = (f"{kind} requests started while Postgres was down ({t_up - t_down:.1f} s): "
               f"{fmt_counts(c)}")
        if ok:
            txt += f"; last 200 started {max(r.t0 for r in ok) - t_down:.2f} s after the stop"
        if bad:
            txt += (f"; first non-200 answered {min(r.t1 for r in bad) - t_down:.2f} s after "
                    f"the stop; non-200 latency {min(r.latency for r in bad):.2f}-"
                    f"{max(r.latency for r in bad):.2f} s")
        out.notes.append(txt)


LOCK_ANSWER_BOUND = 6.0  # s: every request answered while a table lock is held


def exp_postgres_lock(binary: Path, owner: RunAs, profile: Profile, hold: float) -> Outcome:
    """Another session holds ACCESS EXCLUSIVE locks on the tables logins and uncached reads
    need, for `hold` seconds: the server's lock and acquire timeouts must answer every request
    (503 or 200) within LOCK_ANSWER_BOUND, and the pool must not stay exhausted."""
    name = f"postgres-lock-{hold:.0f}s"
    out = Outcome(name, f"private cluster: LOCK TABLE users, sessions, import_operations IN "
                  f"ACCESS EXCLUSIVE MODE held {hold:.0f} s by psql",
                  f"initdb + pg_ctl as user {owner.name}, port in 43000-43999")
    bindir = pg_bindir()
    if bindir is None:
        out.check("Postgres binaries (initdb, pg_ctl) found", False,
                  "none under /usr/lib/postgresql/*/bin; set PG_BINDIR")
        return out
    work, exe, fixture, cluster = private_cluster(binary, owner, bindir, f"faults-{name}")
    creds = prepare_database(exe, cluster.url(), owner, fixture)
    server = Server(exe, cluster.url(), free_port({cluster.port}), owner, work / "server.log")
    server.wait_ready()
    psql = str(bindir / "psql")
    sql = ("BEGIN; LOCK TABLE users, sessions, import_operations IN ACCESS EXCLUSIVE MODE; "
           f"SELECT pg_sleep({hold}); COMMIT;")
    try:
        def inject(load: Load):
            t_start = time.monotonic()
            cluster.run(psql, "-h", HOST, "-p", str(cluster.port), "-U", "importops", "-d",
                        "importops", "-v", "ON_ERROR_STOP=1", "-qc", sql, timeout=hold + 30)
            t_end = time.monotonic()
            out.notes.append(f"the lock was held {t_end - t_start:.2f} s")
            return t_start, t_end

        run_with_load(out, server, creds, profile, inject)
        for kind in KINDS:
            worst = out.rows[kind]["max_latency_during"]
            out.check(f"{kind}: every request answered within {LOCK_ANSWER_BOUND:.0f} s "
                      "while the lock is held", worst < LOCK_ANSWER_BOUND, f"{worst:.2f} s")
        logins = out.rows["login"]["during"]
        out.check("login: 503 while its tables are locked (the fault is real)",
                  logins.get("503", 0) > 0, fmt_counts(logins))
    finally:
        server.stop()
        cluster.destroy()
    return out


def exp_postgres(binary: Path, owner: RunAs, profile: Profile, mode: str,
                 down: float = 5.0) -> Outcome:
    name = "postgres-stop" if mode == "fast" else "postgres-kill"
    if down != 5.0:
        name += f"-{down:.0f}s"
    out = Outcome(name, f"private cluster: pg_ctl stop -m {mode}, {down:.0f} s down, "
                  "pg_ctl start",
                  f"initdb + pg_ctl as user {owner.name}, port in 43000-43999")
    bindir = pg_bindir()
    if bindir is None:
        out.check("Postgres binaries (initdb, pg_ctl) found", False,
                  "none under /usr/lib/postgresql/*/bin; set PG_BINDIR")
        return out
    work, exe, fixture, cluster = private_cluster(binary, owner, bindir, f"faults-{name}")
    out.notes.append(f"cluster {bindir.parent.name} on {HOST}:{cluster.port}")
    url = cluster.url()
    creds = prepare_database(exe, url, owner, fixture)
    server = Server(exe, url, free_port({cluster.port}), owner, work / "server.log")
    server.wait_ready()
    marks: dict[str, float] = {}
    try:
        def inject(load: Load):
            t_start = time.monotonic()
            cluster.stop(mode)
            t_stopped = marks["stopped"] = time.monotonic()
            time.sleep(down)
            t_restart = marks["restart"] = time.monotonic()
            cluster.start()
            t_end = time.monotonic()
            out.notes.append(f"pg_ctl stop took {t_stopped - t_start:.2f} s, down "
                             f"{t_restart - t_stopped:.2f} s, pg_ctl start -w took "
                             f"{t_end - t_restart:.2f} s; the fault's end is when start returned")
            return t_start, t_end

        load = run_with_load(out, server, creds, profile, inject, expect_readyz_503=True)
        if "restart" in marks:
            down_note(out, load, marks["stopped"], marks["restart"])
    finally:
        server.stop()
        cluster.destroy()
    return out


# ------------------------------------------------------------------------------------------


def report(outcomes: list[Outcome]) -> str:
    rows = []
    for o in outcomes:
        for kind in KINDS:
            r = o.rows.get(kind)
            if r is None:
                continue
            rows.append([
                o.name if kind == "read" else "", kind, r["sent"], fmt_counts(r["during"]),
                fmt_counts(r["after"]), "yes" if r["wrong"] == 0 else f"NO ({r['wrong']})",
                f"{r['max_latency']:.2f}",
                "-" if r["first_failure_after_start"] is None
                else f"{r['first_failure_after_start']:.2f}",
                r["recovery_txt"],
                ("yes" if r["readyz_503_during"] else "no") if kind == "readyz" else "",
                ("yes" if o.crashed else "no") if kind == "read" else "",
            ])
    t1 = table(["experiment", "kind", "sent", "during fault", "after fault", "non-200 all 503",
                "max lat s", "1st non-200 s", "recovery s", "readyz 503", "crashed"], rows)
    summary = [[o.name, o.fault, f"{o.fault_seconds:.2f}", o.total_requests,
                f"{o.log_errors}/{o.log_warns}", "PASS" if o.ok else "FAIL"] for o in outcomes]
    t2 = table(["experiment", "fault", "fault s", "requests", "log ERROR/WARN", "result"],
               summary)
    lines = [t1, "", t2, ""]
    for o in outcomes:
        lines.append(f"{o.name}: {o.method}")
        for n in o.notes:
            lines.append(f"  note: {n}")
        for name, ok, detail in o.checks:
            if not ok:
                lines.append(f"  FAILED: {name}" + (f": {detail}" if detail else ""))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI version (about 30 s)")
    ap.add_argument("--binary", type=Path, default=DEFAULT_BINARY)
    ap.add_argument("--only", default="", help="comma-separated experiment names")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    install_cleanup()
    profile = SHORT if args.short else FULL
    owner = RunAs.pick()
    experiments = [
        ("sqlite-lock-3s", lambda: exp_sqlite_lock(args.binary, owner, profile, 3.0)),
        ("sqlite-chmod", lambda: exp_sqlite_chmod(args.binary, owner, profile)),
        ("postgres-stop", lambda: exp_postgres(args.binary, owner, profile, "fast")),
        ("postgres-lock", lambda: exp_postgres_lock(args.binary, owner, profile,
                                                    6.0 if args.short else 20.0)),
    ]
    if not args.short:
        experiments += [
            ("sqlite-lock-7s", lambda: exp_sqlite_lock(args.binary, owner, profile, 7.0)),
            ("sqlite-rename", lambda: exp_sqlite_rename(args.binary, owner, profile)),
            ("postgres-kill", lambda: exp_postgres(args.binary, owner, profile, "immediate")),
            ("postgres-stop-12s",
             lambda: exp_postgres(args.binary, owner, profile, "fast", down=12.0)),
        ]
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    outcomes: list[Outcome] = []
    t0 = time.monotonic()
    try:
        for name, fn in experiments:
            if only and name not in only:
                continue
            log(f"experiment {name}")
            try:
                o = fn()
            except (Interrupted, KeyboardInterrupt):
                raise
            except Exception as e:  # noqa: BLE001 - report it as a failed experiment
                traceback.print_exc()
                o = Outcome(name, "(set-up failed)", "")
                o.check("experiment ran", False, f"{type(e).__name__}: {e}")
            outcomes.append(o)
            log(f"experiment {name}: {'PASS' if o.ok else 'FAIL'}")
    except (Interrupted, KeyboardInterrupt) as e:
        log(f"interrupted ({e}); cleaning up")
        RESOURCES.cleanup()
        return 130
    finally:
        RESOURCES.cleanup()
    print(report(outcomes))
    print(f"\nmode: {'short' if args.short else 'full'}, user for servers: {owner.name}, "
          f"total {time.monotonic() - t0:.1f} s")
    if args.json:
        args.json.write_text(json.dumps([{
            "name": o.name, "fault": o.fault, "method": o.method, "notes": o.notes,
            "fault_seconds": o.fault_seconds, "requests": o.total_requests,
            "crashed": o.crashed, "rows": o.rows,
            "checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in o.checks],
        } for o in outcomes], indent=2, default=str))
    failed = [o for o in outcomes if not o.ok]
    print("RESULT: " + ("PASS" if not failed else "FAIL (" + ", ".join(o.name for o in failed)
                                                      + ")"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
