"""Shared helpers for the reliability scripts (Python 3.11, standard library only).

What lives here: the processes a script started and how to end them (also on an error,
Ctrl-C or SIGTERM), free ports in 43000-43999, running the importops command line (optionally
as an unprivileged user), one HTTP request over a keep-alive connection with its timings, and
a plain-text table.

Every server listens on 127.0.0.1 and every request goes there.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

RELIABILITY_DIR = Path(__file__).resolve().parent
ROOT = RELIABILITY_DIR.parent
DEFAULT_BINARY = ROOT / "target" / "release" / "importops"
FIXTURE = ROOT / "fixtures" / "documented-operations.json"

HOST = "127.0.0.1"
PORT_RANGE = (43000, 43999)
ENDPOINT = "/api/v1/getLatestImportOperations"
LOGIN = "/api/v1/login"
READYZ = "/readyz"
LIVEZ = "/livez"

UNAVAILABLE_BODY = b'{"success":false,"error":"Service Unavailable"}'


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP reached the script."""


# ------------------------------------------------------------------------------------------
# What this script started, and ending it.


class Resources:
    """Processes started (each in a session of its own, so its process group id is its pid)
    and clean-up steps, undone in reverse order."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []
        self._steps: list[tuple[str, object]] = []
        self._lock = threading.Lock()
        self._done = False

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("start_new_session", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, **kw)
        with self._lock:
            self._procs.append(proc)
        return proc

    def on_cleanup(self, name: str, fn) -> None:
        with self._lock:
            self._steps.append((name, fn))

    @staticmethod
    def end(proc: subprocess.Popen, grace: float = 3.0) -> None:
        """Ends one process we started (and its group, which it leads), by its id."""
        if proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            except PermissionError:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def cleanup(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            procs = list(self._procs)
            steps = list(self._steps)
        for proc in reversed(procs):
            try:
                self.end(proc)
            except Exception as e:  # noqa: BLE001 - clean-up goes on
                log(f"cleanup: could not end pid {proc.pid}: {e}")
        for name, fn in reversed(steps):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                log(f"cleanup: {name}: {e}")


RESOURCES = Resources()


def install_cleanup() -> None:
    """Cleans up at exit and turns SIGINT/SIGTERM/SIGHUP into an exception."""
    atexit.register(RESOURCES.cleanup)

    def handler(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


# ------------------------------------------------------------------------------------------
# Ports, users, files.


def free_port(exclude: set[int] | None = None, port_range: tuple[int, int] = PORT_RANGE) -> int:
    """A free port in `port_range` (each script has its own, so that they can run side by side)."""
    ports = list(range(port_range[0], port_range[1] + 1))
    random.shuffle(ports)
    for port in ports:
        if exclude and port in exclude:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port in {port_range[0]}-{port_range[1]}")


@dataclass
class RunAs:
    """The user that servers and clusters run as: an unprivileged one when we are root (root
    ignores file permissions), else ourselves."""

    name: str
    uid: int
    gid: int

    @classmethod
    def pick(cls, name: str | None = "nobody") -> "RunAs":
        """`name` when we are root, else ourselves; `None`: always ourselves."""
        if os.geteuid() != 0 or name is None:
            pw = pwd.getpwuid(os.geteuid())
            return cls(pw.pw_name, pw.pw_uid, pw.pw_gid)
        pw = pwd.getpwnam(name)
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid)

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()

    def prefix(self) -> list[str]:
        """argv prefix that runs a command as this user (exec, no extra process)."""
        if self.is_self:
            return []
        setpriv = shutil.which("setpriv")
        if setpriv:
            return [setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--"]
        return [shutil.which("runuser") or "runuser", "-u", self.name, "--"]

    def chown(self, path: Path) -> None:
        if not self.is_self:
            os.chown(path, self.uid, self.gid)


def make_workdir(prefix: str, owner: RunAs) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    owner.chown(d)
    RESOURCES.on_cleanup(f"remove {d}", lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def copy_binary(src: Path, workdir: Path, owner: RunAs) -> Path:
    """A private copy of the binary: others may rebuild target/ while we run, and an
    unprivileged user must be able to run it."""
    if not src.is_file():
        raise SystemExit(f"error: {src} not found: run `cargo build --release` first")
    dst = workdir / "importops"
    shutil.copy2(src, dst)
    os.chmod(dst, 0o755)
    owner.chown(dst)
    return dst


def run_cli(binary: Path, url: str, args: list[str], owner: RunAs, stdin: str | None = None,
            timeout: float = 60) -> str:
    argv = owner.prefix() + [str(binary), "--database-url", url] + args
    env = dict(os.environ)
    if not owner.is_self:
        env["HOME"] = str(binary.parent)
    res = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                         cwd="/tmp", env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


@dataclass
class Credentials:
    user_id: str
    token: str
    login_user: str
    login_password: str


def prepare_database(binary: Path, url: str, owner: RunAs, fixture_copy: Path) -> Credentials:
    """migrate, the documented example, an admin with a token, a password user for logins."""
    run_cli(binary, url, ["migrate"], owner)
    run_cli(binary, url, ["ops", "load", str(fixture_copy)], owner)
    run_cli(binary, url, ["user", "add", "admin", "--role", "admin"], owner)
    password = "reliability-" + "".join(random.choice("abcdefghjkmnpqrstuvwxyz23456789")
                                        for _ in range(12))
    run_cli(binary, url, ["user", "add", "loader", "--role", "user", "--password-stdin"], owner,
            stdin=password + "\n")
    tok = json.loads(run_cli(binary, url, ["token", "issue", "admin", "--json"], owner))
    return Credentials(tok["userId"], tok["authToken"], "loader", password)


def copy_fixture(workdir: Path, owner: RunAs) -> Path:
    dst = workdir / "documented-operations.json"
    shutil.copy2(FIXTURE, dst)
    os.chmod(dst, 0o644)
    owner.chown(dst)
    return dst


class Server:
    """`importops serve` on 127.0.0.1:port, stderr to a log file."""

    def __init__(self, binary: Path, url: str, port: int, owner: RunAs, logfile: Path,
                 extra: list[str] | None = None, rate_limit_calls: int = 0) -> None:
        self.port = port
        self.logfile = logfile
        argv = owner.prefix() + [str(binary), "--database-url", url, "serve",
                                 "--listen", f"{HOST}:{port}",
                                 # Logins are rate limited per client address by default
                                 # (10 a minute): the load would measure the limiter.
                                 "--rate-limit-calls", str(rate_limit_calls)] + (extra or [])
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        if not owner.is_self:
            env["HOME"] = str(logfile.parent)  # not ours: e.g. no /root/.pgpass look-up
        self._log = open(logfile, "wb")
        self.proc = RESOURCES.popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                    cwd="/tmp")
        self.started = time.monotonic()

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            try:
                status, _ = simple_get(self.port, LIVEZ, timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the server did not answer /livez within {timeout}s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        try:
            if not self._log.closed:
                self._log.flush()
            return self.logfile.read_text(errors="replace")
        except (OSError, ValueError):
            return ""

    def log_tail(self, n: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def stop(self) -> int | None:
        RESOURCES.end(self.proc)
        self._log.close()
        return self.proc.returncode


def simple_get(port: int, path: str, timeout: float = 5.0, headers: dict | None = None):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------
# Requests with timings.


@dataclass
class Result:
    kind: str
    t0: float  # monotonic, request started
    t1: float  # monotonic, answer read or error
    status: int | None  # None: transport error
    body: bytes
    error: str = ""

    @property
    def latency(self) -> float:
        return self.t1 - self.t0


class KeepAlive:
    """One keep-alive connection; reconnects after a transport error."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, kind: str, method: str, path: str, headers: dict | None = None,
                body: bytes | None = None) -> Result:
        t0 = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
            if resp.will_close:
                self.close()
            return Result(kind, t0, time.monotonic(), resp.status, data)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return Result(kind, t0, time.monotonic(), None, b"", f"{type(e).__name__}: {e}")

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None


# ------------------------------------------------------------------------------------------
# Output.


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    out = [line, "| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |", line]
    for r in cells[1:]:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    out.append(line)
    return "\n".join(out)


def print_checks(checks: list[tuple[str, bool, str]]) -> bool:
    """Prints (name, held, figures) checks as a table; whether every one held."""
    print()
    print(table(["check", "result", "figures"],
                [[name, "PASS" if good else "FAIL", detail] for name, good, detail in checks]))
    return all(good for _, good, _ in checks)


def fmt_counts(counts: dict) -> str:
    if not counts:
        return "-"
    return " ".join(f"{k}:{v}" for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])))
