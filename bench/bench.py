#!/usr/bin/env python3
"""The importops benchmark driver (Python 3.11, standard library only).

Run it through bench/run, which builds the release binary, makes sure wrk is installed and
cleans up after this script if it is killed. See bench/README.md for what it measures.

Every server it starts listens on 127.0.0.1 and every request goes there; every server is
killed, and every Postgres database it made is dropped, on the way out (also on an error,
Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import mixes

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# IMPORTOPS_BIN: another binary (a debug build, to try the script; figures need a release build).
BINARY = Path(os.environ["IMPORTOPS_BIN"]) if os.environ.get("IMPORTOPS_BIN") else ROOT / "target" / "release" / "importops"
PEER_SRC = ROOT.parent / "shared" / "peer-node"

HOST = "127.0.0.1"
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/test"
PG_BASE_URL = "postgres://postgres@127.0.0.1:5432/"
ENDPOINT = "/api/v1/getLatestImportOperations"
LIVEZ = "/livez"
PAGE = 20  # the endpoint's page size

# The Node.js peer's credentials, as its README says.
NODE_USER = "d26x6zSkaPSe5gCyy"
NODE_TOKEN = "admin-token"
NODE_N = 10000

METEOR_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"

# Targets (see README.md).
TARGET_RATIO = {"sqlite": 0.75, "postgres": 0.6}  # endpoint/livez req/s at N=10000
TARGET_NODE = 2.5  # importops/node req/s
TARGET_P99 = 2.0  # endpoint p99 / livez p99
TARGET_FLAT = 1.2  # endpoint p50 at 1M / at 1k
TARGET_RSS_MB = 64.0
TARGET_STARTUP_MS = 150.0  # at N=1M


class BenchError(Exception):
    """A failure that makes the run invalid (exit status 1)."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# What this run started, for cleaning up (also written to $IMPORTOPS_BENCH_STATE/state for
# bench/run's trap, in case this process itself is killed).


class Resources:
    def __init__(self) -> None:
        self.servers: dict[int, subprocess.Popen] = {}  # pgid -> process (own session)
        self.databases: list[str] = []
        self.tempdirs: list[Path] = []
        state_dir = os.environ.get("IMPORTOPS_BENCH_STATE")
        self.state_file = Path(state_dir) / "state" if state_dir else None

    def _write_state(self) -> None:
        if not self.state_file:
            return
        lines = [f"pgid {pgid}" for pgid in self.servers]
        lines += [f"db {name}" for name in self.databases]
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        tmp.replace(self.state_file)

    def add_server(self, proc: subprocess.Popen) -> None:
        self.servers[proc.pid] = proc
        self._write_state()

    def stop_server(self, proc: subprocess.Popen) -> None:
        pgid = proc.pid
        if proc.poll() is None:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # The process group may hold children (Node's cluster workers): make sure all are gone.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.servers.pop(pgid, None)
        self._write_state()

    def add_database(self, name: str) -> None:
        self.databases.append(name)
        self._write_state()

    def drop_database(self, name: str) -> None:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if name in self.databases:
            self.databases.remove(name)
        self._write_state()

    def tempdir(self, prefix: str) -> Path:
        # Inside bench/run's state folder when there is one, so that its trap removes it too.
        parent = self.state_file.parent if self.state_file else None
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self.tempdirs.append(path)
        return path

    def cleanup(self) -> None:
        for proc in list(self.servers.values()):
            try:
                self.stop_server(proc)
            except Exception as e:  # keep cleaning
                log(f"warning: could not stop server {proc.pid}: {e}")
        for name in list(self.databases):
            try:
                self.drop_database(name)
            except Exception as e:
                log(f"warning: could not drop database {name}: {e}")
        for path in self.tempdirs:
            shutil.rmtree(path, ignore_errors=True)
        self.tempdirs.clear()


RES = Resources()


def on_signal(signum, _frame):
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


# --------------------------------------------------------------------------------------------
# Small helpers


def run(cmd: list[str], *, timeout: float, cwd: Path | None = None, env=None, what: str = "") -> str:
    """Run a command, return its stdout; a non-zero exit is a BenchError naming stderr."""
    try:
        cp = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what or cmd[0]}: timed out after {timeout:.0f} s: {shlex.join(cmd)}")
    if cp.returncode != 0:
        tail = "\n".join((cp.stderr or cp.stdout).strip().splitlines()[-15:])
        raise BenchError(f"{what or cmd[0]} failed (exit {cp.returncode}): {shlex.join(cmd)}\n{tail}")
    return cp.stdout


def psql(sql: str, url: str = PG_ADMIN_URL) -> str:
    return run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql], timeout=120, what="psql").strip()


def server_env() -> dict[str, str]:
    """The environment for importops: no DATABASE_URL or IMPORTOPS_* settings from outside."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("IMPORTOPS_")}
    env["NO_COLOR"] = "1"  # plain logs in the server's log file
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def status_once(port: int, path: str, headers: dict[str, str]) -> int | None:
    """One raw HTTP/1.1 request; the status code, or None when nothing answers yet."""
    req = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
    req += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            s.sendall(req.encode())
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(256)
                if not chunk:
                    return None
                buf += chunk
        parts = buf.split(b" ", 2)
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except OSError:
        return None


def http_get(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def group_pids(pid: int) -> list[int]:
    """pid and its descendants (Node's cluster workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                kids = (task / "children").read_text().split()
                todo.extend(int(k) for k in kids)
        except OSError:
            pass
    return out


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def spawn(cmd: list[str], logfile: Path, *, cwd: Path | None = None, env=None) -> subprocess.Popen:
    """Start a server in a session of its own (its own process group), registered for cleanup."""
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    RES.add_server(proc)
    return proc


def wait_for_200(proc: subprocess.Popen, port: int, path: str, headers: dict[str, str],
                 t0: float, logfile: Path, timeout: float = 60.0) -> float:
    """Poll every ~1 ms until `path` answers 200; the ms since t0."""
    deadline = t0 + timeout
    while True:
        if status_once(port, path, headers) == 200:
            return (time.perf_counter() - t0) * 1000.0
        if proc.poll() is not None:
            raise BenchError(f"the server exited with status {proc.returncode} before answering 200; its log ends:\n"
                             f"{log_tail(logfile)}")
        if time.perf_counter() > deadline:
            raise BenchError(f"no 200 from {path} within {timeout:.0f} s; the log ends:\n{log_tail(logfile)}")
        time.sleep(0.001)


# --------------------------------------------------------------------------------------------
# Data


def iso_ms(ms: int) -> str:
    t = dt.datetime.fromtimestamp(ms // 1000, tz=dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


TYPES = [
    ("Pending Avatars", "pending-avatars"), ("Pending Files", "pending-files"), ("CSV", "csv"),
    ("Slack", "slack"), ("Slack Users", "slack-users"), ("HipChat Enterprise", "hipchatenterprise"),
]
STATUSES = ["importer_done"] * 6 + [
    "importer_user_selection", "importer_file_loaded", "importer_import_failed",
    "importer_importing_messages", "importer_new", "importer_import_cancelled",
]
BASE_MS = 1635333984430  # 2021-10-27T11:26:24.430Z


def generate_ops(path: Path, n: int, seed: int = 20211027) -> dict:
    """N operations as JSON lines. Unique Meteor ids; `_updatedAt` spread over ~N minutes,
    every 10th a tie with the one before, and the newest three share one instant."""
    rng = random.Random(seed * 1_000_003 + n)
    users = ["".join(rng.choices(METEOR_ALPHABET, k=17)) for _ in range(5)]
    ids: set[str] = set()
    span = max(n, 1000) * 60_000
    newest = {0, n // 2, n - 1} if n >= 3 else set(range(n))
    top_ms = BASE_MS + 1000
    prev = BASE_MS
    max_iso = iso_ms(top_ms)
    with open(path, "w") as f:
        for i in range(n):
            while True:
                oid = "".join(rng.choices(METEOR_ALPHABET, k=17))
                if oid not in ids:
                    ids.add(oid)
                    break
            if i in newest:
                updated = top_ms
            elif i % 10 == 9:
                updated = prev
            else:
                updated = BASE_MS - rng.randrange(span)
            prev = updated
            typ, key = TYPES[rng.randrange(len(TYPES))]
            doc = {
                "_id": oid, "type": typ, "importerKey": key,
                "ts": updated - rng.randrange(1_000, 3_600_000),
                "status": STATUSES[rng.randrange(len(STATUSES))],
                # As in a Rocket.Chat database: every new operation invalidates the others, and
                # a server's start-up invalidates whatever is left valid (bumping `_updatedAt`),
                # so stored operations are invalid (docs/compatibility.md section 11).
                "valid": False,
                "user": users[rng.randrange(len(users))],
                "_updatedAt": iso_ms(updated),
            }
            if i % 3 == 0:
                total = rng.randrange(0, 50_000)
                doc["count"] = {"total": total, "completed": rng.randrange(0, total + 1), "error": 0,
                                "users": rng.randrange(0, 500), "channels": rng.randrange(0, 100),
                                "messages": total}
            if key == "csv" and i % 2 == 0:
                doc["file"] = f"import-{i}.zip"
                doc["contentType"] = "application/zip"
            f.write(json.dumps(doc, separators=(",", ":")))
            f.write("\n")
    return {"max_updated": max_iso, "path": path}


# --------------------------------------------------------------------------------------------
# wrk


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_latency(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise BenchError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(out: str) -> dict:
    res: dict = {"non2xx": 0, "socket_errors": 0}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if not m:
        raise BenchError(f"no Requests/sec in wrk's output:\n{out}")
    res["rps"] = float(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s*{pct}(?:\.0+)?%\s+(\S+)\s*$", out, re.M)
        if not m:
            raise BenchError(f"no {pct}% latency in wrk's output (is --latency on?):\n{out}")
        res[key] = parse_latency(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ([\d.]+\w+)", out, re.M)
    res["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["socket_errors"] = sum(int(g) for g in m.groups())
        res["socket_detail"] = m.group(0)
    return res


def run_wrk(url: str, headers: dict[str, str], duration: int, connections: int) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(url)
    out = run(cmd, timeout=duration + 60, what="wrk")
    res = parse_wrk(out)
    res["raw"] = out
    return res


# --------------------------------------------------------------------------------------------
# Backends


def ensure_postgres() -> None:
    if shutil.which("psql") is None or shutil.which("pg_isready") is None:
        raise BenchError("the Postgres client tools (psql, pg_isready) are missing")
    ready = lambda: subprocess.run(["pg_isready", "-q", "-h", HOST, "-p", "5432"],
                                   stdin=subprocess.DEVNULL).returncode == 0
    if not ready():
        versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
        if not versions or shutil.which("pg_ctlcluster") is None:
            raise BenchError("Postgres is not running on 127.0.0.1:5432 and no local cluster to start")
        log(f"   starting the local Postgres cluster {versions[0]}/main")
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "start"],
                       stdin=subprocess.DEVNULL)
        for _ in range(60):
            if ready():
                break
            time.sleep(0.5)
        else:
            raise BenchError("Postgres did not become ready on 127.0.0.1:5432")
    psql("SELECT 1")


def importops(url: str, *args: str, timeout: float = 120) -> str:
    return run([str(BINARY), "--database-url", url, *args], timeout=timeout, env=server_env(),
               what=f"importops {' '.join(args[:2])}")


# --------------------------------------------------------------------------------------------
# The Node.js peer


@dataclass
class NodePeer:
    proc: subprocess.Popen
    port: int
    logfile: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{ENDPOINT}"

    headers = {"X-User-Id": NODE_USER, "X-Auth-Token": NODE_TOKEN}


def prepare_node() -> Path:
    """Copy the peer (shared/ is read-only) to a temp dir, install its packages (node_modules is
    cached between runs, keyed by package.json and the Node version), seed peer.db."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise BenchError("--with-node needs node and npm")
    if not (PEER_SRC / "peer.js").is_file():
        raise BenchError(f"the Node.js peer is not at {PEER_SRC}")
    work = RES.tempdir("importops-bench-node.")
    for name in ("peer.js", "package.json"):
        shutil.copy(PEER_SRC / name, work / name)
        os.chmod(work / name, 0o644)
    node_version = run(["node", "--version"], timeout=30).strip()
    key = hashlib.sha256((PEER_SRC / "package.json").read_bytes() + node_version.encode()).hexdigest()[:16]
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "importops-bench"
    cached = cache_root / f"peer-node-{key}" / "node_modules"
    works = lambda: subprocess.run(
        ["node", "-e", "require('better-sqlite3')(':memory:'); require('fastify')"], cwd=work,
        stdin=subprocess.DEVNULL, capture_output=True).returncode == 0
    if cached.is_dir():
        shutil.copytree(cached, work / "node_modules", symlinks=True)
    if not works():
        shutil.rmtree(work / "node_modules", ignore_errors=True)
        log("   npm install in a copy of the Node.js peer (builds better-sqlite3: about a minute)")
        run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=work, timeout=1200,
            what="npm install")
        if not works():
            raise BenchError("the Node.js peer's packages do not load after npm install")
        shutil.rmtree(cached.parent, ignore_errors=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(work / "node_modules", cached, symlinks=True)
    run(["node", "peer.js", "--seed", "peer.db", str(NODE_N)], cwd=work, timeout=300, what="node peer --seed")
    return work


def start_node(work: Path) -> NodePeer:
    port = free_port()
    logfile = work / "peer.log"
    proc = spawn(["node", "peer.js", "peer.db", str(port), "2"], logfile, cwd=work)
    peer = NodePeer(proc, port, logfile)
    wait_for_200(proc, port, ENDPOINT, peer.headers, time.perf_counter(), logfile, timeout=60)
    status, _, body = http_get(port, ENDPOINT, peer.headers)
    items = json.loads(body)
    if status != 200 or not isinstance(items, list) or len(items) != PAGE:
        raise BenchError(f"the Node.js peer answered {status} with {str(body[:200])}")
    return peer


# --------------------------------------------------------------------------------------------
# One case: one backend, one N


@dataclass
class Case:
    backend: str
    n: int
    note: str = ""
    seed_s: float | None = None
    startup_ms: list[float] = field(default_factory=list)
    runs: dict[str, list[dict]] = field(default_factory=dict)  # target -> wrk results
    rss_mb: float | None = None
    node_rss_mb: float | None = None
    flags: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.backend} N={self.n:,}".replace(",", " ")

    def med(self, target: str, key: str) -> float | None:
        vals = [r[key] for r in self.runs.get(target, [])]
        return statistics.median(vals) if vals else None

    def ratio(self, a: tuple[str, str], b: tuple[str, str]) -> float | None:
        x, y = self.med(*a), self.med(*b)
        return x / y if x is not None and y else None


@dataclass
class Running:
    """A case whose server (and peer) is up, seeded and checked, between its rounds."""

    case: Case
    proc: subprocess.Popen
    logfile: Path
    targets: list[tuple[str, str, dict[str, str]]]
    peer: NodePeer | None
    dbname: str | None


def start_case(case: Case, opts, datafiles: dict, node_work: Path | None, tmp: Path) -> Running:
    """Seeds the case's database, times start-up, checks the answers, warms up; leaves the server
    (and, for the Node.js comparison, the peer) running for the rounds."""
    n = case.n
    if n not in datafiles:
        path = tmp / f"ops-{n}.jsonl"
        log(f"   generating {n} operations into {path.name}")
        datafiles[n] = generate_ops(path, n)
    data = datafiles[n]

    if case.backend == "sqlite":
        dbdir = tmp / f"sqlite-{n}"
        dbdir.mkdir(exist_ok=True)
        url = f"sqlite://{dbdir / 'importops.db'}"
        dbname = None
    else:
        dbname = f"importops_bench_{os.getpid()}_{n}"
        psql(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        RES.add_database(dbname)
        psql(f"CREATE DATABASE {dbname}")
        url = PG_BASE_URL + dbname

    log(f"   seeding through the command line: importops ops load ({n} operations)")
    t = time.perf_counter()
    out = importops(url, "ops", "load", str(data["path"]), timeout=3600)
    case.seed_s = time.perf_counter() - t
    log(f"   {out.strip()} in {case.seed_s:.1f} s")
    importops(url, "user", "add", "admin", "--role", "admin")
    creds = json.loads(importops(url, "token", "issue", "admin", "--json"))
    headers = {"X-User-Id": creds["userId"], "X-Auth-Token": creds["authToken"]}

    logfile = tmp / f"server-{case.backend}-{n}.log"
    proc = None
    for trial in range(opts.startup_trials):
        if proc is not None:
            RES.stop_server(proc)
        port = free_port()
        cmd = [str(BINARY), "--database-url", url, "serve", "--listen", f"{HOST}:{port}"]
        t0 = time.perf_counter()
        proc = spawn(cmd, logfile, env=server_env())
        case.startup_ms.append(wait_for_200(proc, port, ENDPOINT, headers, t0, logfile))
    log("   start-up to first 200: " + ", ".join(f"{v:.1f} ms" for v in case.startup_ms))

    # Verify once: livez 200, the endpoint 200 with a JSON array of min(20, N), newest first.
    status, _, body = http_get(port, LIVEZ, {})
    if status != 200:
        raise BenchError(f"{LIVEZ} answered {status}: {body[:200]!r}")
    status, hdrs, body = http_get(port, ENDPOINT, headers)
    if status != 200:
        raise BenchError(f"{ENDPOINT} answered {status}: {body[:300]!r}")
    items = json.loads(body)
    want = min(PAGE, n)
    if not isinstance(items, list) or len(items) != want:
        got = len(items) if isinstance(items, list) else type(items).__name__
        raise BenchError(f"{ENDPOINT} answered 200 with {got} items, not a JSON array of {want}")
    if not hdrs.get("content-type", "").startswith("application/json"):
        raise BenchError(f"{ENDPOINT} answered Content-Type {hdrs.get('content-type')!r}")
    stamps = [it.get("_updatedAt") for it in items]
    if stamps[0] != data["max_updated"] or stamps != sorted(stamps, reverse=True):
        raise BenchError(f"{ENDPOINT}: not the newest operations first: {stamps[:5]}")

    base = f"http://{HOST}:{port}"
    targets = [("livez", base + LIVEZ, {}), ("endpoint", base + ENDPOINT, headers)]
    peer = None
    if node_work is not None and case.backend == "sqlite" and n == NODE_N:
        log("   starting the Node.js peer (2 workers)")
        peer = start_node(node_work)
        targets.append(("node", peer.url, peer.headers))

    if opts.warmup > 0:
        for name, turl, th in targets:
            if name != "livez":
                log(f"   warm-up {opts.warmup} s: {name}")
                run_wrk(turl, th, opts.warmup, opts.connections)

    return Running(case, proc, logfile, targets, peer, dbname)


def run_round(run: Running, r: int, opts) -> None:
    """One round of the case's targets, in order (livez, endpoint, node)."""
    case = run.case
    for name, turl, th in run.targets:
        res = run_wrk(turl, th, opts.duration, opts.connections)
        res["round"] = r + 1
        case.runs.setdefault(name, []).append(res)
        line = (f"   {case.label:22s} round {r + 1}/{opts.rounds} {name:8s} {res['rps']:10.0f} req/s"
                f"  p50 {fmt_ms(res['p50'])} ms  p99 {fmt_ms(res['p99'])} ms")
        if res["non2xx"]:
            line += f"  NON-2xx: {res['non2xx']}"
            case.flags.append(f"{name} round {r + 1}: {res['non2xx']} non-2xx answers")
        if res["socket_errors"]:
            line += f"  ({res['socket_detail']})"
            case.flags.append(f"{name} round {r + 1}: {res['socket_detail']}")
        log(line)
        for p, who in ((run.proc, "importops"), (run.peer.proc if run.peer else None, "the Node.js peer")):
            if p is not None and p.poll() is not None:
                lf = run.logfile if p is run.proc else run.peer.logfile
                raise BenchError(f"{case.label}: {who} died (exit {p.returncode}) during the load; "
                                 f"its log ends:\n{log_tail(lf)}")
    if any("non-2xx" in f for f in case.flags):
        raise BenchError(f"{case.label}: non-2xx answers under load: " + "; ".join(case.flags))


def finish_case(run: Running) -> None:
    """Peak memory after the load; stops the server (and peer) and drops the database."""
    case = run.case
    case.rss_mb = vm_hwm_mb(run.proc.pid)
    if run.peer is not None:
        vals = [vm_hwm_mb(p) for p in group_pids(run.peer.proc.pid)]
        case.node_rss_mb = sum(v for v in vals if v is not None)
        RES.stop_server(run.peer.proc)
    RES.stop_server(run.proc)
    if run.proc.returncode not in (0, -signal.SIGTERM):
        case.flags.append(f"importops exited with status {run.proc.returncode} on SIGTERM")
    if run.dbname:
        RES.drop_database(run.dbname)


# --------------------------------------------------------------------------------------------
# Report


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def machine_info() -> dict:
    info = {}
    info["nproc"] = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cpu"] = cpu
    git = lambda *a: subprocess.run(["git", "--no-optional-locks", *a], cwd=ROOT, capture_output=True,
                                    text=True).stdout.strip()
    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        rev += " (with uncommitted changes)"
    info["rev"] = rev
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    info["loadavg"] = loadavg()
    info["wrk"] = (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "?"
    return info


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def targets(cases: list[Case]) -> list[tuple[str, str, str]]:
    """(target, measured, mark) rows."""
    rows = []
    by = {(c.backend, c.n): c for c in cases}
    mark = lambda ok: "pass" if ok else "FAIL"
    na = "n/a (not run)"
    backends = [b for b in TARGET_RATIO if any(c.backend == b for c in cases)]
    for backend in backends:
        want = TARGET_RATIO[backend]
        c = by.get((backend, 10000))
        r = c.ratio(("endpoint", "rps"), ("livez", "rps")) if c else None
        rows.append((f"{backend}: endpoint/livez req/s >= {want} at N=10 000",
                     fmt(r, ".2f"), na if r is None else mark(r >= want)))
    c = by.get(("sqlite", NODE_N))
    r = c.ratio(("endpoint", "rps"), ("node", "rps")) if c else None
    rows.append((f"importops/Node.js req/s >= {TARGET_NODE} (SQLite, N=10 000)", fmt(r, ".2f"),
                 "n/a (no --with-node)" if r is None else mark(r >= TARGET_NODE)))
    for c in cases:
        r = c.ratio(("endpoint", "p99"), ("livez", "p99"))
        if r is not None:
            rows.append((f"{c.label}: endpoint p99 <= {TARGET_P99}x livez p99", f"{r:.2f}",
                         mark(r <= TARGET_P99)))
    for backend in backends:
        r = flatness(by, backend)
        if (backend, 1000) in by or (backend, 1_000_000) in by:
            rows.append((f"{backend}: endpoint p50 at N=1 000 000 <= {TARGET_FLAT}x at N=1 000",
                         fmt(r, ".2f"), na if r is None else mark(r <= TARGET_FLAT)))
    for backend in backends:
        mine = [c for c in cases if c.backend == backend and c.rss_mb is not None]
        if mine:
            worst = max(mine, key=lambda c: c.rss_mb)
            rows.append((f"{backend}: peak RSS <= {TARGET_RSS_MB:.0f} MB (largest: N={worst.n})",
                         f"{worst.rss_mb:.1f}", mark(worst.rss_mb <= TARGET_RSS_MB)))
    for backend in backends:
        c = by.get((backend, 1_000_000))
        v = statistics.median(c.startup_ms) if c and c.startup_ms else None
        rows.append((f"{backend}: start-up to first 200 <= {TARGET_STARTUP_MS:.0f} ms at N=1 000 000",
                     fmt(v, ".1f"), na if v is None else mark(v <= TARGET_STARTUP_MS)))
    return rows


def flatness(by: dict, backend: str) -> float | None:
    a, b = by.get((backend, 1_000_000)), by.get((backend, 1000))
    if not a or not b:
        return None
    x, y = a.med("endpoint", "p50"), b.med("endpoint", "p50")
    return x / y if x is not None and y else None


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def report(cases: list[Case], opts, info: dict, started: str, cmdline: str, errors: list[str],
           mix_cases: list | None = None) -> str:
    by = {(c.backend, c.n): c for c in cases}
    L = []
    L.append("# importops benchmark results\n")
    L.append(f"- command: `{cmdline}`")
    L.append(f"- date: {started}")
    L.append(f"- machine: nproc {info['nproc']}, {info['cpu']}")
    L.append(f"- git revision: {info['rev']}")
    L.append(f"- load average (1, 5, 15 min) before the run: {info['loadavg']}, after: {loadavg()} "
             "(other work on the machine makes the numbers noisy)")
    L.append(f"- load: {info['wrk']}; `wrk -t1 -c{opts.connections} -d{opts.duration}s --latency`, "
             f"{opts.rounds} round(s); in each, every size of a backend in turn, each with its targets "
             f"in turn (livez, endpoint{', node' if opts.with_node else ''}); warm-up {opts.warmup} s; "
             "medians over the rounds")
    L.append("- endpoint: `GET /api/v1/getLatestImportOperations` with a valid admin token; "
             "livez: `GET /livez`; latencies in ms; start-up: spawn to the first 200 of the endpoint "
             f"(median of {opts.startup_trials}); peak RSS: VmHWM of the server after the load")
    if errors:
        L.append("\n**THE RUN FAILED:**\n")
        L += [f"- {e}" for e in errors]
    L.append("\n## Results\n")
    rows = []
    for c in cases:
        rows.append([
            c.backend, f"{c.n:,}".replace(",", " "),
            fmt(c.med("livez", "rps"), ".0f"), fmt(c.med("endpoint", "rps"), ".0f"),
            fmt(c.ratio(("endpoint", "rps"), ("livez", "rps")), ".2f"),
            fmt_ms(c.med("livez", "p50")), fmt_ms(c.med("livez", "p99")),
            fmt_ms(c.med("endpoint", "p50")), fmt_ms(c.med("endpoint", "p99")),
            fmt(c.ratio(("endpoint", "p99"), ("livez", "p99")), ".2f"),
            fmt(c.rss_mb, ".1f"),
            fmt(statistics.median(c.startup_ms) if c.startup_ms else None, ".1f"),
            fmt(c.seed_s, ".1f"),
            "; ".join(([c.note] if c.note else []) + c.flags + ([f"ERROR: {c.error}"] if c.error else []))
            or "ok",
        ])
    L.append(md_table(["backend", "N", "livez req/s", "endpoint req/s", "endpoint/livez",
                       "livez p50", "livez p99", "endpoint p50", "endpoint p99", "p99 ratio",
                       "peak RSS MB", "start-up ms", "seed s", "flags"], rows))
    L.append("")
    for backend in TARGET_RATIO:
        r = flatness(by, backend)
        if r is not None:
            L.append(f"- {backend} latency flatness (endpoint p50, N=1 000 000 / N=1 000): {r:.2f}")
    c = by.get(("sqlite", NODE_N))
    if c and c.runs.get("node"):
        L.append(f"- Node.js peer (fastify + better-sqlite3, 2 workers, {NODE_N} operations): "
                 f"{c.med('node', 'rps'):.0f} req/s, p50 {fmt_ms(c.med('node', 'p50'))} ms, "
                 f"p99 {fmt_ms(c.med('node', 'p99'))} ms, peak RSS {fmt(c.node_rss_mb, '.1f')} MB (all processes); "
                 f"importops/node req/s: {c.ratio(('endpoint', 'rps'), ('node', 'rps')):.2f}")
    L.append("\n## Targets\n")
    L.append(md_table(["target", "measured", ""], [list(t) for t in targets(cases)]))
    if mix_cases:
        L += mixes.report(mix_cases, opts)
    L.append("\n## Every run\n")
    rows = []
    for c in cases:
        for name, runs in c.runs.items():
            for res in runs:
                rows.append([c.backend, f"{c.n:,}".replace(",", " "), str(res["round"]), name,
                             f"{res['rps']:.0f}", fmt_ms(res["p50"]), fmt_ms(res["p99"]),
                             str(res["requests"]), str(res["non2xx"]), str(res["socket_errors"])])
    rows += mixes.every_run_rows(mix_cases or [])
    L.append(md_table(["backend", "N", "round", "target", "req/s", "p50", "p99", "requests",
                       "non-2xx", "socket errors"], rows))
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str]):
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmark importops' GET /api/v1/getLatestImportOperations against GET /livez "
                    "(and, with --with-node, against the Node.js peer) with wrk, on 127.0.0.1.")
    p.add_argument("--backends", help="comma-separated: sqlite,postgres (default both)")
    p.add_argument("--sizes", help="comma-separated operation counts (default 1000,10000,1000000)")
    p.add_argument("--duration", type=int, help="seconds per wrk run (default 10)")
    p.add_argument("--rounds", type=int, help="rounds of each target (default 3)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--warmup", type=int, help="seconds of warm-up load before the rounds (default 2)")
    p.add_argument("--startup-trials", type=int, help="server spawns timed to the first 200 (default 3)")
    p.add_argument("--with-node", action="store_true", help="also benchmark the Node.js peer (SQLite, N=10000)")
    p.add_argument("--mixes", action="store_true",
                   help="also the realistic mixes (wrong tokens, reads with writes, many rate-limited "
                        "clients, a login flood, many sessions) on one more server per backend")
    p.add_argument("--mixes-only", action="store_true", help="the mixes without the happy-path cases")
    p.add_argument("--mix-size", type=int, default=10000, help="operations in the mixes' database (default 10000)")
    p.add_argument("--sessions", type=int, help="sessions of the many-sessions mix (default 100000; --smoke: 2000)")
    p.add_argument("--flood-connections", type=int, default=64,
                   help="wrk connections of the login flood (default 64)")
    p.add_argument("--out", help="results file (default bench/RESULTS.md; --smoke: a temp file)")
    p.add_argument("--smoke", action="store_true",
                   help="a few seconds: N=1000, both backends, 1 s, 1 round, no warm-up, no Node; "
                        "exits non-zero on any failure")
    o = p.parse_args(argv)
    if o.smoke and o.with_node:
        p.error("--smoke runs without the Node.js peer")
    smoke = o.smoke
    o.backends = [b.strip() for b in (o.backends or "sqlite,postgres").split(",") if b.strip()]
    for b in o.backends:
        if b not in ("sqlite", "postgres"):
            p.error(f"unknown backend {b!r} (sqlite, postgres)")
    try:
        sizes = o.sizes or ("1000" if smoke else "1000,10000,1000000")
        o.sizes = [int(s.replace("_", "")) for s in sizes.split(",") if s.strip()]
    except ValueError:
        p.error("--sizes takes comma-separated integers")
    if not o.sizes or any(n < 1 for n in o.sizes):
        p.error("--sizes must be positive")
    o.duration = o.duration if o.duration is not None else (1 if smoke else 10)
    o.rounds = o.rounds if o.rounds is not None else (1 if smoke else 3)
    o.warmup = o.warmup if o.warmup is not None else (0 if smoke else 2)
    o.startup_trials = o.startup_trials if o.startup_trials is not None else (1 if smoke else 3)
    o.mixes = o.mixes or o.mixes_only
    o.sessions = o.sessions if o.sessions is not None else (2000 if smoke else 100_000)
    if o.sessions < 1 or o.mix_size < 1 or o.flood_connections < 1:
        p.error("--sessions, --mix-size and --flood-connections must be >= 1")
    if o.duration < 1 or o.rounds < 1 or o.connections < 1 or o.warmup < 0 or o.startup_trials < 1:
        p.error("--duration, --rounds, --connections and --startup-trials must be >= 1, --warmup >= 0")
    if o.out is None:
        if smoke:
            fd, name = tempfile.mkstemp(prefix="importops-bench-smoke.", suffix=".md")
            os.close(fd)
            o.out = name
        else:
            o.out = str(BENCH_DIR / "RESULTS.md")
    return o


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    cmdline = shlex.join(["bench/run", *argv])
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if not BINARY.is_file():
        log(f"error: {BINARY} is missing (bench/run builds it)")
        return 1
    if shutil.which("wrk") is None:
        log("error: wrk is missing")
        return 1

    plan = [] if opts.mixes_only else [Case(b, n) for b in opts.backends for n in opts.sizes]
    mixes.init(sys.modules[__name__])
    mix_cases: list[mixes.Mix] = []
    if opts.with_node and not any(c.backend == "sqlite" and c.n == NODE_N for c in plan):
        plan.append(Case("sqlite", NODE_N, note="added for the Node.js comparison"))

    cases: list[Case] = []
    errors: list[str] = []
    info = machine_info()
    status = 0
    t_all = time.perf_counter()
    try:
        tmp = RES.tempdir("importops-bench.")
        if "postgres" in opts.backends:
            ensure_postgres()
        node_work = None
        if opts.with_node:
            log("== Node.js peer")
            node_work = prepare_node()
        datafiles: dict = {}
        # A backend's sizes are all started first, then loaded in the same rounds (A B C A B C),
        # so that the ratios between sizes, like those between targets, compare the same minutes.
        for backend in dict.fromkeys([*(c.backend for c in plan), *(opts.backends if opts.mixes else [])]):
            running: list[Running] = []
            current = None
            mix_run = None
            try:
                for case in (c for c in plan if c.backend == backend):
                    log(f"== {case.label}")
                    cases.append(case)
                    current = case
                    running.append(start_case(case, opts, datafiles, node_work, tmp))
                if opts.mixes:
                    mix = mixes.Mix(backend, opts.mix_size, opts.sessions)
                    log(f"== {mix.label}")
                    mix_cases.append(mix)
                    current = mix
                    mix_run = mixes.start(mix, opts, datafiles, tmp)
                for r in range(opts.rounds):
                    log(f"== {backend}: round {r + 1}/{opts.rounds}")
                    for run in running:
                        current = run.case
                        run_round(run, r, opts)
                    if mix_run is not None:
                        current = mix_run.mix
                        mixes.run_round(mix_run, r, opts)
                for run in running:
                    current = run.case
                    finish_case(run)
                if mix_run is not None:
                    current = mix_run.mix
                    log(f"== {mix_run.mix.label}: {opts.sessions} sessions")
                    mixes.run_sessions(mix_run, opts)
                    mixes.finish(mix_run)
            except BenchError as e:
                if current is not None:
                    current.error = str(e).splitlines()[0]
                raise
    except BenchError as e:
        errors.append(str(e).splitlines()[0])
        log(f"error: {e}")
        status = 1
    except Interrupted as e:
        errors.append(f"interrupted ({e})")
        log(f"interrupted ({e}): cleaning up")
        status = 130
    finally:
        RES.cleanup()

    if not cases and not mix_cases:
        return status
    text = report(cases, opts, info, started, cmdline, errors, mix_cases)
    out = Path(opts.out)
    if status and not opts.smoke:
        # A failed or interrupted run does not overwrite the results file.
        fd, name = tempfile.mkstemp(prefix="importops-bench-failed.", suffix=".md")
        os.close(fd)
        out = Path(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print()
    print(text.split("\n## Every run")[0].rstrip())
    print()
    print(f"written to {out} ({time.perf_counter() - t_all:.0f} s)")
    flagged = [f"{c.label}: {f}" for c in [*cases, *mix_cases] for f in c.flags]
    if flagged:
        print("FLAGGED: " + "; ".join(flagged))
    if status == 0 and opts.smoke:
        print("smoke: OK")
    elif status:
        print("FAILED" if status == 1 else "INTERRUPTED")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
