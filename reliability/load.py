#!/usr/bin/env python3
"""Load experiments for importops (Python 3.11, standard library only).

  keepalive      N concurrent keep-alive connections opened to a release server on SQLite and
                 held for S seconds, each sending GET /api/v1/getLatestImportOperations with a
                 valid admin token every I seconds (full: 10 000 for 30 s, --short: 1 000 for
                 5 s). The client and the server both run with a raised RLIMIT_NOFILE.
                 Reported: connections opened and held, requests, answers by status, transport
                 errors, latency percentiles, the client's event-loop lag, the server's RSS
                 before and at its peak (VmHWM), its open files, and that it stayed up.
  sqlite-writes  the same kind of read load on a smaller scale while the command line writes to
                 the same SQLite file over and over (`ops load` of small files, `token issue`,
                 `user add`, `permission set view-import-operations` back and forth, always
                 keeping `admin`) and HTTP clients write through
                 POST /api/v1/import.operations.upsert (creates and updates). Afterwards every
                 write is looked for (operations via `ops list --json`, users via
                 `user list --json`, each issued token by using it); no command's output and no
                 answer may mention "database is locked" (or SQLITE_BUSY); every command must
                 succeed, every answer be 200, and the endpoint must agree with the store once
                 the writes stop.
  low-nofile     (full run only, informational) 2 000 connections, one request each, to a
                 server left at RLIMIT_NOFILE 1024: what the clients get, and whether the
                 server stays up and answers again once they close.
The keepalive experiment also keeps 20 connections idle through the hold and asks on them
again at the end, to see whether the server keeps idle keep-alive connections (informational).

Every process listens on and every request goes to 127.0.0.1, on ports 45000-45999. Every loop
is bounded in count and time; every process started here is ended on the way out (also on an
error or Ctrl-C) and the temporary directories are removed.

Usage:  python3 reliability/load.py [--short] [--only keepalive,sqlite-writes,low-nofile]
                                    [--connections N] [--seconds S] [--interval I]
                                    [--cli-writers N] [--http-writers N]
                                    [--binary PATH] [--json FILE] [--keep-logs DIR]
Exit status: 0 when every expectation held, 1 when one failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DEFAULT_BINARY, ENDPOINT, HOST, LIVEZ, RESOURCES, Interrupted, RunAs, copy_binary,
    copy_fixture, fmt_counts, free_port, install_cleanup, log, make_workdir, prepare_database,
    table,
)

PORT_RANGE = (45000, 45999)
UPSERT = "/api/v1/import.operations.upsert"
REQUEST_TIMEOUT = 10.0  # s: a request with no full answer by then counts as a timeout
CONNECT_TIMEOUT = 10.0
CLI_TIMEOUT = 30.0
LOCKED_WORDS = (b"database is locked", b"database table is locked", b"sqlite_busy",
                b"(code: 5)", b"(code: 6)", b"(code: 517)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
METEOR_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"


# ------------------------------------------------------------------------------------------
# Ports, limits, the server process.


def raise_nofile(wanted: int) -> int:
    """Raises this process's RLIMIT_NOFILE to at least `wanted` if it can (the hard limit too
    when privileged); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    for new in ((wanted, max(hard, wanted)), (min(wanted, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, new)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def meteor_id() -> str:
    return "".join(random.choice(METEOR_ALPHABET) for _ in range(17))


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (kB), Threads and open files of a process; {} when it is gone."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return {}
    return out


def proc_nofile(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                parts = line.split()
                return f"{parts[3]}/{parts[4]}"
    except OSError:
        pass
    return "?"


class LoadServer:
    """`importops serve` on 127.0.0.1:port with RLIMIT_NOFILE raised to `nofile`, output to a
    log file; started in a session of its own and ended by common.RESOURCES."""

    def __init__(self, exe: Path, url: str, port: int, logfile: Path, nofile: int,
                 extra: list[str] | None = None) -> None:
        self.port = port
        self.logfile = logfile
        argv = [str(exe), "--database-url", url, "serve", "--listen", f"{HOST}:{port}"]
        argv += extra or []
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))

        def limits() -> None:  # runs in the child between fork and exec
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self._log = open(logfile, "wb")
        self.proc = RESOURCES.popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                    cwd=str(logfile.parent), preexec_fn=limits)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}: "
                                   f"{self.log_text()[-800:]}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0) as s:
                    s.sendall(f"GET {LIVEZ} HTTP/1.1\r\nHost: {HOST}\r\n"
                              "Connection: close\r\n\r\n".encode())
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the server did not answer {LIVEZ} within {timeout} s")

    def log_text(self) -> str:
        try:
            if not self._log.closed:
                self._log.flush()
            return self.logfile.read_text(errors="replace")
        except (OSError, ValueError):
            return ""

    def log_lines(self) -> list[str]:
        return ANSI.sub("", self.log_text()).splitlines()

    def log_findings(self) -> dict[str, int]:
        lines = self.log_lines()
        return {
            "ERROR": sum(" ERROR " in ln or '"level":"ERROR"' in ln for ln in lines),
            "WARN": sum(" WARN " in ln or '"level":"WARN"' in ln for ln in lines),
            "panic": sum("panicked" in ln for ln in lines),
            "locked": sum(any(w.decode() in ln.lower() for w in LOCKED_WORDS) for ln in lines),
        }

    def stop(self) -> int | None:
        RESOURCES.end(self.proc)
        self._log.close()
        return self.proc.returncode


def cli(exe: Path, url: str, args: list[str], stdin: str | None = None,
        timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), "--database-url", url] + args, input=stdin,
                          capture_output=True, text=True, timeout=timeout, cwd="/tmp")


def cli_ok(exe: Path, url: str, args: list[str], stdin: str | None = None) -> str:
    res = cli(exe, url, args, stdin)
    if res.returncode != 0:
        raise RuntimeError(f"importops {' '.join(args)} failed ({res.returncode}): "
                           f"{res.stderr.strip()}")
    return res.stdout


# ------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 client on asyncio streams (keep-alive, Content-Length or chunked).


class HttpFailure(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def classify(e: BaseException) -> str:
    if isinstance(e, HttpFailure):
        return e.kind
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(e, asyncio.IncompleteReadError):
        return "eof"
    if isinstance(e, ConnectionResetError):
        return "reset"
    if isinstance(e, BrokenPipeError):
        return "broken-pipe"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, OSError):
        return f"oserror-{errno.errorcode.get(e.errno or 0, e.errno)}"
    return type(e).__name__


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise HttpFailure("bad-response", lines[0][:80])
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        for _ in range(100_000):
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    else:
        body = b""
    return status, headers, body


class AConn:
    """One keep-alive connection; `request` connects first when it is not connected."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connects = 0

    @property
    def open(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    async def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        self.close()
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(HOST, self.port, limit=1 << 20), timeout)
        self.connects += 1

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes | None = None, timeout: float = REQUEST_TIMEOUT
                      ) -> tuple[int, dict[str, str], bytes]:
        if not self.open:
            await self.connect(min(timeout, CONNECT_TIMEOUT))
        assert self.reader is not None and self.writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), timeout)
            status, hdrs, payload = await asyncio.wait_for(read_response(self.reader), timeout)
        except BaseException:
            self.close()
            raise
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, payload

    def server_closed(self) -> bool:
        """Whether the server has closed its end (EOF seen or pending)."""
        if self.reader is None:
            return True
        return self.reader.at_eof() or self.reader.exception() is not None

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except (OSError, RuntimeError):
                pass
        self.reader = self.writer = None


HARD_EXIT_AFTER = 15.0  # s from a signal to the forced clean-up and exit


def hard_exit(sig: int) -> None:
    log(f"{signal.Signals(sig).name}: the run did not stop within {HARD_EXIT_AFTER:.0f} s; "
        "ending its processes and exiting")
    RESOURCES.cleanup()
    os._exit(130)


def run_async(coro):
    """asyncio.run, with SIGINT/SIGTERM/SIGHUP turned into Interrupted: the signal cancels the
    main task (a handler raising inside the loop could be swallowed by a callback or by a
    client's `except Exception`), then the previous handlers are put back."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    async def main():
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        got: list[int] = []
        before = {sig: signal.getsignal(sig) for sig in sigs}

        def on_signal(sig: int) -> None:
            if not got:
                # Should the cancelled tasks not unwind in time, end what we started anyway.
                timer = threading.Timer(HARD_EXIT_AFTER, hard_exit, (sig,))
                timer.daemon = True
                timer.start()
            got.append(sig)
            if task is not None:
                task.cancel()

        for sig in sigs:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await coro
        except asyncio.CancelledError:
            if got:
                raise Interrupted(signal.Signals(got[0]).name) from None
            raise
        finally:
            for sig in sigs:
                loop.remove_signal_handler(sig)
                signal.signal(sig, before[sig])

    return asyncio.run(main())


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def ms(v: float) -> str:
    return "-" if v != v else f"{v * 1000:.1f}"


@dataclass
class Tally:
    """Answers and failures of one kind of request."""

    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    wrong_body: int = 0
    locked: int = 0
    examples: list[str] = field(default_factory=list)

    def answer(self, status: int, latency: float, body: bytes, body_ok: bool) -> None:
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        self.latencies.append(latency)
        low = body.lower()
        if any(w in low for w in LOCKED_WORDS):
            self.locked += 1
            self.note(f"{status} {body[:200]!r}")
        if not body_ok:
            self.wrong_body += 1
            self.note(f"{status} {body[:200]!r}")

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.note(f"{kind} {detail}"[:200])

    def note(self, text: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(text)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def non_200(self) -> int:
        return sum(v for k, v in self.statuses.items() if k != "200")


class LagMonitor:
    """How late the client's event loop wakes up: the client's own share of measured latency."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (when, lag)
        self._stop = asyncio.Event()

    @property
    def lags(self) -> list[float]:
        return [lag for _, lag in self.samples]

    def between(self, t0: float, t1: float) -> list[float]:
        return [lag for t, lag in self.samples if t0 <= t <= t1]

    async def run(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            t = time.monotonic()
            await asyncio.sleep(0.05)
            now = time.monotonic()
            self.samples.append((now, max(0.0, now - t - 0.05)))

    def stop(self) -> None:
        self._stop.set()


class Sampler:
    """The server's RSS, threads and open files, every `every` seconds."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[dict[str, int]] = []
        self._stop = asyncio.Event()

    async def run(self, limit_s: float, every: float = 1.0) -> None:
        deadline = time.monotonic() + limit_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            s = await asyncio.to_thread(proc_status, self.pid)
            if s:
                self.samples.append(s)
            try:
                await asyncio.wait_for(self._stop.wait(), every)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        self._stop.set()

    def peak(self, key: str) -> int:
        return max((s.get(key, 0) for s in self.samples), default=0)


# ------------------------------------------------------------------------------------------
# Results.


@dataclass
class Outcome:
    name: str
    what: str
    rows: list[list[object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    seconds: float = 0.0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((name, bool(ok), detail))
        return bool(ok)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)


@dataclass
class Profile:
    connections: int
    hold: float
    interval: float
    # sqlite-writes
    w_readers: int
    w_reader_interval: float
    w_seconds: float
    w_cli_workers: int
    w_http_writers: int
    w_http_pause: float


SHORT = Profile(connections=1000, hold=5.0, interval=1.0, w_readers=100, w_reader_interval=0.2,
                w_seconds=8.0, w_cli_workers=2, w_http_writers=2, w_http_pause=0.02)
FULL = Profile(connections=10_000, hold=30.0, interval=5.0, w_readers=1000,
               w_reader_interval=1.0, w_seconds=30.0, w_cli_workers=3, w_http_writers=4,
               w_http_pause=0.01)

KEEP_LOGS: Path | None = None  # --keep-logs
IDLE_PROBES = 20
P99_BOUND = 2.0  # s: p99 latency of the endpoint under load
MAX_REQUESTS_PER_CONN = 10_000
MAX_COMMANDS_PER_WORKER = 5_000


def setup_sqlite(exe_src: Path, tag: str):
    owner = RunAs.pick(None)  # ourselves: nothing here needs an unprivileged user
    work = make_workdir(f"importops-load-{tag}-", owner)
    exe = copy_binary(exe_src, work, owner)
    fixture = copy_fixture(work, owner)
    db = work / "importops.db"
    url = f"sqlite://{db}"
    creds = prepare_database(exe, url, owner, fixture)
    return work, exe, url, creds, fixture


async def fetch(port: int, path: str, headers: dict[str, str] | None = None,
                method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    c = AConn(port)
    try:
        status, _, data = await c.request(method, path, headers, body)
        return status, data
    finally:
        c.close()


# ------------------------------------------------------------------------------------------
# Experiment 1a: many keep-alive connections.


async def keepalive_run(out: Outcome, server: LoadServer, headers: dict[str, str],
                        reference: bytes, n: int, hold: float, interval: float) -> None:
    tally = Tally()
    open_errors: dict[str, int] = {}
    conns = [AConn(server.port) for _ in range(n)]
    lag = LagMonitor()
    sampler = Sampler(server.pid)
    budget = hold + 120.0
    lag_task = asyncio.create_task(lag.run(budget))
    sampler_task = asyncio.create_task(sampler.run(budget))
    before = proc_status(server.pid)

    sem = asyncio.Semaphore(256)

    async def open_one(c: AConn) -> bool:
        async with sem:
            for _ in range(3):
                try:
                    await c.connect()
                    return True
                except Exception as e:  # noqa: BLE001 - counted
                    k = classify(e)
                    open_errors[k] = open_errors.get(k, 0) + 1
                    await asyncio.sleep(0.2)
            return False

    t_open = time.monotonic()
    opened_flags = await asyncio.wait_for(asyncio.gather(*(open_one(c) for c in conns)),
                                          timeout=120.0)
    ramp = time.monotonic() - t_open
    opened = [c for c, ok in zip(conns, opened_flags) if ok]
    log(f"keepalive: {len(opened)}/{n} connections open after {ramp:.2f} s; "
        f"holding {hold:.0f} s")
    after_open = proc_status(server.pid)

    # A few more connections that ask once, stay idle through the hold, then ask again: does
    # the server keep idle keep-alive connections? (Informational.)
    idle = [AConn(server.port) for _ in range(IDLE_PROBES)]
    idle_first: list[int | str] = []
    for c in idle:
        try:
            idle_first.append((await c.request("GET", LIVEZ))[0])
        except Exception as e:  # noqa: BLE001
            idle_first.append(classify(e))

    hold_start = time.monotonic()
    hold_end = hold_start + hold

    async def run_conn(c: AConn) -> bool:
        """True when the connection lived through the hold without being lost."""
        lost = False
        next_at = hold_start + random.uniform(0, interval)
        for _ in range(MAX_REQUESTS_PER_CONN):
            if next_at >= hold_end:
                break
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            t0 = time.monotonic()
            try:
                status, _, body = await c.request("GET", ENDPOINT, headers)
                tally.answer(status, time.monotonic() - t0, body,
                             status == 200 and body == reference)
            except Exception as e:  # noqa: BLE001 - counted
                tally.error(classify(e), str(e))
                lost = True
            next_at += interval
        if c.server_closed():
            lost = True
        return not lost

    held_flags = await asyncio.wait_for(asyncio.gather(*(run_conn(c) for c in opened)),
                                        timeout=hold + REQUEST_TIMEOUT + 60.0)
    hold_real = time.monotonic() - hold_start
    hold_lags = lag.between(hold_start, hold_start + hold_real)
    idle_after: dict[str, int] = {}
    idle_closed = sum(1 for c in idle if c.server_closed())
    for c in idle:
        try:
            k = str((await c.request("GET", LIVEZ))[0]) if not c.server_closed() else "closed"
        except Exception as e:  # noqa: BLE001
            k = classify(e)
        idle_after[k] = idle_after.get(k, 0) + 1
        c.close()
    out.notes.append(f"idle probe: {IDLE_PROBES} more connections asked once, stayed idle "
                     f"{hold_real:.0f} s, then asked again: closed by the server meanwhile "
                     f"{idle_closed}; second ask {fmt_counts(idle_after)} (informational)")
    out.data["idle_probe"] = {"n": IDLE_PROBES, "idle_s": hold_real, "closed": idle_closed,
                              "second": idle_after}
    # Let a server-side close that raced the last request show before counting.
    await asyncio.sleep(0.2)
    held = sum(1 for c, ok in zip(opened, held_flags) if ok and not c.server_closed())
    at_peak = proc_status(server.pid)
    sampler.stop()
    lag.stop()
    await asyncio.gather(sampler_task, lag_task)
    for c in conns:
        c.close()
    await asyncio.sleep(0.5)

    alive = server.alive()
    livez = endpoint = None
    if alive:
        try:
            livez, _ = await fetch(server.port, LIVEZ)
            endpoint, body = await fetch(server.port, ENDPOINT, headers)
        except Exception as e:  # noqa: BLE001
            out.notes.append(f"after the load: {classify(e)} {e}")
    after = proc_status(server.pid)
    expected = int(len(opened) * (hold / interval))

    lat = tally.latencies
    out.data.update({
        "target": n, "opened": len(opened), "held": held, "ramp_s": ramp, "hold_s": hold_real,
        "open_errors": open_errors, "requests": tally.requests, "statuses": tally.statuses,
        "errors": tally.errors, "wrong_body": tally.wrong_body,
        "p50_ms": pct(lat, 0.5) * 1000, "p99_ms": pct(lat, 0.99) * 1000,
        "max_ms": max(lat, default=float("nan")) * 1000,
        "lag_p99_ms": pct(hold_lags, 0.99) * 1000,
        "lag_max_ms": max(hold_lags, default=float("nan")) * 1000,
        "lag_ramp_max_ms": max(lag.between(t_open, hold_start), default=float("nan")) * 1000,
        "rss_before_kb": before.get("VmRSS"), "rss_open_kb": after_open.get("VmRSS"),
        "hwm_kb": at_peak.get("VmHWM") or sampler.peak("VmHWM"),
        "fds_peak": max(sampler.peak("fds"), at_peak.get("fds", 0)),
        "threads_peak": sampler.peak("Threads"), "alive": alive, "livez_after": livez,
        "endpoint_after": endpoint, "rss_after_close_kb": after.get("VmRSS"),
        "server_nofile": proc_nofile(server.pid),
        "client_nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    })
    d = out.data
    per_conn = ((d["hwm_kb"] or 0) - (d["rss_before_kb"] or 0)) / max(1, len(opened))
    out.rows.append([
        "keepalive", f"{n}/{len(opened)}/{held}", f"{ramp:.1f}", f"{hold_real:.1f}",
        tally.requests, fmt_counts(tally.statuses), fmt_counts({**tally.errors,
                                                                 **{f"open-{k}": v for k, v in
                                                                    open_errors.items()}}),
        f"{ms(pct(lat, 0.5))}/{ms(pct(lat, 0.99))}/{ms(max(lat, default=float('nan')))}",
        f"{ms(pct(hold_lags, 0.99))}/{ms(max(hold_lags, default=float('nan')))}",
        f"{(d['rss_before_kb'] or 0) / 1024:.0f}/{(d['hwm_kb'] or 0) / 1024:.0f}",
        f"{per_conn:.1f}", d["fds_peak"], "yes" if alive and livez == 200 else "NO",
    ])
    out.notes.append(f"RLIMIT_NOFILE soft/hard: server {d['server_nofile']}, client "
                     f"{d['client_nofile']}; client loop lag while opening at most "
                     f"{d['lag_ramp_max_ms']:.0f} ms (the table's lag is the hold's); "
                     f"server threads at most {d['threads_peak']}; "
                     f"RSS after the connections closed {(d['rss_after_close_kb'] or 0) / 1024:.0f}"
                     f" MiB; requests expected ~{expected}")
    for ex in tally.examples:
        out.notes.append(f"example: {ex}")

    out.check(f"all {n} connections opened", len(opened) == n,
              f"{len(opened)} opened; open errors {fmt_counts(open_errors)}")
    out.check("every connection held to the end (no reset, EOF or timeout)", held == n,
              f"{held} held")
    out.check("no transport errors", not tally.errors, fmt_counts(tally.errors))
    out.check("every answer 200 with the reference body",
              tally.non_200 == 0 and tally.wrong_body == 0,
              f"{fmt_counts(tally.statuses)}, wrong bodies {tally.wrong_body}")
    out.check("the planned request rate was reached (>= 90 %)",
              tally.requests >= 0.9 * expected, f"{tally.requests} of ~{expected}")
    out.check(f"p99 latency <= {P99_BOUND:.1f} s", pct(lat, 0.99) <= P99_BOUND,
              f"p99 {ms(pct(lat, 0.99))} ms")
    out.check("the server stayed up and answers afterwards",
              alive and livez == 200 and endpoint == 200,
              f"alive={alive} livez={livez} endpoint={endpoint}")
    out.check("the server's fd count reached the number of connections",
              d["fds_peak"] >= len(opened), f"peak {d['fds_peak']} open files")


def log_examples(out: Outcome, server: LoadServer) -> None:
    """One example of each distinct kind of ERROR/WARN line in the server log."""
    seen: dict[str, int] = {}
    first: dict[str, str] = {}
    for ln in server.log_lines():
        m = re.search(r" (ERROR|WARN) (.*?\}:)? ?([\w:]+): ([^=]*)", ln)
        if not m:
            continue
        key = f"{m.group(1)} {m.group(3)}: {m.group(4).strip()}"
        seen[key] = seen.get(key, 0) + 1
        first.setdefault(key, ln)
    for key, n in seen.items():
        out.notes.append(f"server log, {n} x: {first[key][:400]}")
    if KEEP_LOGS is not None:
        KEEP_LOGS.mkdir(parents=True, exist_ok=True)
        dst = KEEP_LOGS / f"{out.name}-server.log"
        dst.write_text("\n".join(server.log_lines()) + "\n")
        out.notes.append(f"server log kept in {dst}")


def exp_keepalive(binary: Path, profile: Profile, args: argparse.Namespace) -> Outcome:
    n = args.connections or profile.connections
    hold = args.seconds or profile.hold
    interval = args.interval or profile.interval
    out = Outcome("keepalive", f"{n} keep-alive connections held {hold:.0f} s, one "
                  f"GET {ENDPOINT} each every {interval:g} s (admin token), SQLite")
    nofile = n + 4096
    client_limit = raise_nofile(nofile)
    if not out.check("client RLIMIT_NOFILE raised", client_limit >= n + 256,
                     f"soft limit {client_limit}, need {n + 256}"):
        return out
    work, exe, url, creds, _ = setup_sqlite(binary, "keepalive")
    server = LoadServer(exe, url, free_port(port_range=PORT_RANGE), work / "server.log", nofile)
    try:
        server.wait_ready()
        headers = {"X-User-Id": creds.user_id, "X-Auth-Token": creds.token}
        status, reference = run_async(fetch(server.port, ENDPOINT, headers))
        if not out.check("reference answer is 200", status == 200, f"{status}"):
            return out
        run_async(keepalive_run(out, server, headers, reference, n, hold, interval))
        found = server.log_findings()
        out.notes.append(f"server log: {fmt_counts(found)}")
        log_examples(out, server)
        out.check("no panic and no ERROR in the server log",
                  found["panic"] == 0 and found["ERROR"] == 0, fmt_counts(found))
    finally:
        server.stop()
    return out


# ------------------------------------------------------------------------------------------
# Experiment (full run only): more connections than the server's file limit.


async def low_nofile_run(out: Outcome, server: LoadServer, headers: dict[str, str], n: int,
                         limit: int) -> None:
    conns = [AConn(server.port) for _ in range(n)]
    sem = asyncio.Semaphore(256)

    async def one(c: AConn) -> str:
        async with sem:
            try:
                await c.connect(timeout=5.0)
            except Exception as e:  # noqa: BLE001 - counted
                return "open-" + classify(e)
        try:
            return str((await c.request("GET", ENDPOINT, headers, timeout=5.0))[0])
        except Exception as e:  # noqa: BLE001 - counted
            return classify(e)

    t0 = time.monotonic()
    sampler = Sampler(server.pid)
    sampler_task = asyncio.create_task(sampler.run(120.0, every=0.5))
    results = await asyncio.wait_for(asyncio.gather(*(one(c) for c in conns)), 90.0)
    sampler.stop()
    await sampler_task
    counts: dict[str, int] = {}
    for r in results:
        counts[r] = counts.get(r, 0) + 1
    peak = {"fds": sampler.peak("fds")}
    try:
        during = str((await fetch(server.port, LIVEZ))[0])
    except Exception as e:  # noqa: BLE001
        during = classify(e)
    for c in conns:
        c.close()
    t_close = time.monotonic()
    recovered = None
    for _ in range(100):
        try:
            if (await fetch(server.port, ENDPOINT, headers))[0] == 200:
                recovered = time.monotonic() - t_close
                break
        except Exception:  # noqa: BLE001
            pass
        await asyncio.sleep(0.1)
    warns = sum("accepting a connection failed" in ln for ln in server.log_lines())
    out.rows.append(["low-nofile", f"{n} (server limit {limit})", f"{t_close - t0:.1f}",
                     fmt_counts(counts), during, peak.get("fds", "?"),
                     "-" if recovered is None else f"{recovered:.2f}", warns,
                     "yes" if server.alive() else "NO"])
    out.data.update({"connections": n, "server_nofile": proc_nofile(server.pid),
                     "answers": counts, "livez_while_full": during,
                     "server_fds_peak": peak.get("fds"), "recovered_s": recovered,
                     "accept_warnings": warns})
    out.check("the server stayed up", server.alive())
    out.check("after the clients closed, the endpoint answered 200 within 5 s",
              recovered is not None and recovered <= 5.0,
              "never" if recovered is None else f"{recovered:.2f} s")


def exp_low_nofile(binary: Path, profile: Profile, args: argparse.Namespace) -> Outcome:
    limit, n = 1024, 2000
    out = Outcome("low-nofile", f"{n} connections, one GET each, to a server whose "
                  f"RLIMIT_NOFILE is {limit} (not raised)")
    raise_nofile(n + 1024)
    work, exe, url, creds, _ = setup_sqlite(binary, "nofile")
    server = LoadServer(exe, url, free_port(port_range=PORT_RANGE), work / "server.log", limit)
    try:
        server.wait_ready()
        headers = {"X-User-Id": creds.user_id, "X-Auth-Token": creds.token}
        run_async(low_nofile_run(out, server, headers, n, limit))
        found = server.log_findings()
        out.notes.append(f"server log: {fmt_counts(found)}")
        log_examples(out, server)
        out.check("no panic in the server log", found["panic"] == 0, fmt_counts(found))
    finally:
        server.stop()
    return out


# ------------------------------------------------------------------------------------------
# Experiment 1b: writes from the command line and HTTP while reads load the server.


@dataclass
class CmdStats:
    runs: int = 0
    failed: int = 0
    locked: int = 0
    durations: list[float] = field(default_factory=list)
    fail_durations: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)  # SQLite result codes in messages


class Writes:
    def __init__(self) -> None:
        self.cmd: dict[str, CmdStats] = {}
        self.cli_ops: list[str] = []  # _ids loaded by `ops load`
        self.cli_failed_ops: list[str] = []  # _ids of `ops load` runs that failed
        self.http_failed: set[tuple[int, int]] = set()  # (writer, iteration) of failed creates
        self.http_ops: list[str] = []  # _ids created through the upsert route
        self.http_final: dict[str, str] = {}  # _id -> the status last written by HTTP
        self.users: list[str] = []
        self.tokens: list[tuple[str, str]] = []
        self.perm_values: list[list[str]] = []

    def stats(self, kind: str) -> CmdStats:
        return self.cmd.setdefault(kind, CmdStats())


PERM_CHOICES = (["admin"], ["admin", "auditor"])
HTTP_STATUSES = ("importer_importing_started", "importer_importing_users",
                 "importer_importing_messages", "importer_importing_files", "importer_finishing")


async def run_cli_async(exe: Path, url: str, args: list[str]) -> tuple[int, str, str, float]:
    """One command in a worker thread (subprocess.run kills it after CLI_TIMEOUT). Not asyncio's
    subprocesses: cancelling one mid-communicate() could leave wait() hanging on Ctrl-C."""
    t0 = time.monotonic()
    try:
        res = await asyncio.to_thread(cli, exe, url, args)
    except subprocess.TimeoutExpired as e:
        raise asyncio.TimeoutError() from e
    return res.returncode, res.stdout, res.stderr, time.monotonic() - t0


async def cli_worker(w: int, exe: Path, url: str, work: Path, admin_id: str, writes: Writes,
                     deadline: float) -> None:
    kinds = ("ops load", "token issue", "user add", "permission set")
    for i in range(MAX_COMMANDS_PER_WORKER):
        if time.monotonic() >= deadline:
            return
        kind = kinds[(i + w) % len(kinds)]
        new_ids: list[str] = []
        if kind == "ops load":
            now = int(time.time() * 1000)
            new_ids = [meteor_id() for _ in range(2)]
            docs = [{"_id": oid, "type": "Load test CLI", "importerKey": f"cli-w{w}",
                     "ts": now, "status": "importer_done", "valid": False, "user": admin_id,
                     "worker": w, "iteration": i} for oid in new_ids]
            path = work / f"ops-w{w}-{i}.json"
            path.write_text(json.dumps(docs))
            args = ["ops", "load", str(path)]
        elif kind == "token issue":
            args = ["token", "issue", "admin", "--json"]
        elif kind == "user add":
            username = f"load-w{w}-{i}"
            args = ["user", "add", username, "--role", "user"]
        else:
            roles = PERM_CHOICES[(i // len(kinds)) % 2]
            args = ["permission", "set", "view-import-operations", *roles]
        st = writes.stats(kind)
        st.runs += 1
        try:
            rc, so, se, dur = await run_cli_async(exe, url, args)
        except asyncio.TimeoutError:
            st.failed += 1
            st.examples.append(f"{kind}: timed out after {CLI_TIMEOUT} s")
            continue
        st.durations.append(dur)
        text = (so + se).lower().encode()
        if any(wd in text for wd in LOCKED_WORDS):
            st.locked += 1
        if rc != 0:
            st.failed += 1
            st.fail_durations.append(dur)
            for code in re.findall(r"\(code: (\d+)\)", se):
                st.codes[code] = st.codes.get(code, 0) + 1
            if kind == "ops load":
                writes.cli_failed_ops.extend(new_ids)
            if len(st.examples) < 5:
                st.examples.append(f"{kind}: exit {rc}: {se.strip()[:240]}")
            continue
        if kind == "ops load":
            writes.cli_ops.extend(new_ids)
            path.unlink(missing_ok=True)
        elif kind == "token issue":
            try:
                tok = json.loads(so)
                writes.tokens.append((tok["userId"], tok["authToken"]))
            except (ValueError, KeyError):
                st.failed += 1
                st.examples.append(f"token issue: unreadable output {so[:120]!r}")
        elif kind == "user add":
            writes.users.append(username)
        else:
            writes.perm_values.append(roles)


async def http_writer(w: int, port: int, headers: dict[str, str], writes: Writes,
                      deadline: float, pause: float) -> None:
    c = AConn(port)
    st_new = writes.stats("HTTP upsert (create)")
    st_upd = writes.stats("HTTP upsert (update)")
    mine: list[str] = []
    hdrs = dict(headers, **{"Content-Type": "application/json"})
    try:
        for i in range(MAX_REQUESTS_PER_CONN):
            if time.monotonic() >= deadline:
                return
            if mine and i % 3 == 2:
                oid = random.choice(mine)
                status_value = HTTP_STATUSES[i % len(HTTP_STATUSES)]
                doc = {"_id": oid, "status": status_value,
                       "count": {"total": 1000, "completed": i}}
                st = st_upd
            else:
                oid = None
                status_value = "importer_importing_messages"
                doc = {"type": "Load test HTTP", "importerKey": f"http-w{w}",
                       "status": status_value, "count": {"total": 1000, "completed": 0},
                       "writer": w, "iteration": i}
                st = st_new
            st.runs += 1
            t0 = time.monotonic()
            try:
                status, _, body = await c.request("POST", UPSERT, hdrs,
                                                  json.dumps(doc).encode())
            except Exception as e:  # noqa: BLE001 - counted
                st.failed += 1
                if oid is None:
                    writes.http_failed.add((w, i))
                if len(st.examples) < 5:
                    st.examples.append(f"{classify(e)} {e}"[:240])
                continue
            st.durations.append(time.monotonic() - t0)
            if any(wd in body.lower() for wd in LOCKED_WORDS):
                st.locked += 1
            if status != 200:
                st.failed += 1
                st.fail_durations.append(time.monotonic() - t0)
                if oid is None:
                    writes.http_failed.add((w, i))
                if len(st.examples) < 5:
                    st.examples.append(f"{status} {body[:200]!r}")
                continue
            try:
                got = json.loads(body)["operation"]
                got_id = got["_id"]
            except (ValueError, KeyError, TypeError):
                st.failed += 1
                st.examples.append(f"unreadable answer {body[:120]!r}")
                continue
            if oid is None:
                mine.append(got_id)
                writes.http_ops.append(got_id)
            elif got_id != oid or got.get("status") != status_value:
                st.failed += 1
                st.examples.append(f"update answered {got_id} {got.get('status')}")
                continue
            writes.http_final[got_id] = status_value
            if pause:
                await asyncio.sleep(pause)
    finally:
        c.close()


async def reader_load(port: int, headers: dict[str, str], n: int, interval: float,
                      deadline: float, tally: Tally) -> None:
    async def one(c: AConn) -> None:
        next_at = time.monotonic() + random.uniform(0, interval)
        for _ in range(MAX_REQUESTS_PER_CONN):
            if next_at >= deadline:
                break
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            t0 = time.monotonic()
            try:
                status, _, body = await c.request("GET", ENDPOINT, headers)
                ok = status == 200 and body.startswith(b"[") and body.endswith(b"]")
                tally.answer(status, time.monotonic() - t0, body, ok)
            except Exception as e:  # noqa: BLE001 - counted
                tally.error(classify(e), str(e))
            next_at += interval
        c.close()

    await asyncio.gather(*(one(AConn(port)) for _ in range(n)))


async def writes_run(out: Outcome, server: LoadServer, exe: Path, url: str, work: Path,
                     creds, profile: Profile) -> Writes:
    headers = {"X-User-Id": creds.user_id, "X-Auth-Token": creds.token}
    writes = Writes()
    tally = Tally()
    t0 = time.monotonic()
    writes_end = t0 + 1.0 + profile.w_seconds
    reads_end = writes_end + 1.0
    lag = LagMonitor()
    lag_task = asyncio.create_task(lag.run(profile.w_seconds + 60))
    readers = asyncio.create_task(reader_load(server.port, headers, profile.w_readers,
                                              profile.w_reader_interval, reads_end, tally))
    await asyncio.sleep(1.0)  # the read load first
    writers = [cli_worker(w, exe, url, work, creds.user_id, writes, writes_end)
               for w in range(profile.w_cli_workers)]
    writers += [http_writer(w, server.port, headers, writes, writes_end, profile.w_http_pause)
                for w in range(profile.w_http_writers)]
    await asyncio.wait_for(asyncio.gather(*writers), profile.w_seconds + CLI_TIMEOUT + 30)
    await asyncio.wait_for(readers, REQUEST_TIMEOUT + 30)
    lag.stop()
    await lag_task
    out.data["reads"] = {"requests": tally.requests, "statuses": tally.statuses,
                         "errors": tally.errors, "wrong_body": tally.wrong_body,
                         "locked": tally.locked}
    lat = tally.latencies
    out.rows.append(["GET endpoint (readers)", tally.requests,
                     tally.requests - tally.non_200 - sum(tally.errors.values())
                     - tally.wrong_body,
                     tally.non_200 + sum(tally.errors.values()) + tally.wrong_body,
                     tally.locked, f"{ms(pct(lat, 0.5))}/{ms(pct(lat, 0.99))}/"
                     f"{ms(max(lat, default=float('nan')))}", "-", fmt_counts(tally.statuses)
                     + (f" {fmt_counts(tally.errors)}" if tally.errors else "")])
    for ex in tally.examples:
        out.notes.append(f"reader example: {ex}")
    out.check("readers: every answer 200 with a JSON array, no transport error",
              tally.non_200 == 0 and not tally.errors and tally.wrong_body == 0,
              f"{fmt_counts(tally.statuses)} {fmt_counts(tally.errors)} "
              f"wrong bodies {tally.wrong_body}")
    out.check("readers: no answer mentions a locked database", tally.locked == 0,
              f"{tally.locked}")
    out.notes.append(f"client event-loop lag p99/max {ms(pct(lag.lags, 0.99))}/"
                     f"{ms(max(lag.lags, default=float('nan')))} ms")
    return writes


async def verify_tokens(port: int, tokens: list[tuple[str, str]]) -> dict[str, int]:
    c = AConn(port)
    counts: dict[str, int] = {}
    try:
        for uid, tok in tokens:
            try:
                status, _, _ = await c.request("GET", ENDPOINT,
                                               {"X-User-Id": uid, "X-Auth-Token": tok})
                k = str(status)
            except Exception as e:  # noqa: BLE001
                k = classify(e)
            counts[k] = counts.get(k, 0) + 1
    finally:
        c.close()
    return counts


def exp_sqlite_writes(binary: Path, profile: Profile, args: argparse.Namespace) -> Outcome:
    out = Outcome("sqlite-writes",
                  f"{profile.w_readers} reader connections (one GET each every "
                  f"{profile.w_reader_interval:g} s) for {profile.w_seconds:.0f} s of writes: "
                  f"{profile.w_cli_workers} command-line loops (ops load, token issue, user "
                  f"add, permission set) + {profile.w_http_writers} HTTP upsert loops")
    raise_nofile(profile.w_readers + 1024)
    work, exe, url, creds, fixture = setup_sqlite(binary, "writes")
    fixture_ids = [d["_id"] for d in json.loads(fixture.read_text())]
    server = LoadServer(exe, url, free_port(port_range=PORT_RANGE), work / "server.log",
                        profile.w_readers + 1024)
    try:
        server.wait_ready()
        writes = run_async(writes_run(out, server, exe, url, work, creds, profile))

        for kind, st in writes.cmd.items():
            d = st.durations
            fd = st.fail_durations
            out.rows.append([kind, st.runs, st.runs - st.failed, st.failed, st.locked,
                             f"{ms(pct(d, 0.5))}/{ms(pct(d, 0.99))}/"
                             f"{ms(max(d, default=float('nan')))}",
                             f"{ms(pct(fd, 0.5))}/{ms(max(fd, default=float('nan')))}",
                             st.examples[0] if st.examples else ""])
            for ex in st.examples:
                out.notes.append(f"{kind} example: {ex}")
        total_runs = sum(st.runs for st in writes.cmd.values())
        failed = sum(st.failed for st in writes.cmd.values())
        locked = sum(st.locked for st in writes.cmd.values())
        out.data["writes"] = {k: {"runs": s.runs, "failed": s.failed, "locked": s.locked,
                                  "p50_ms": pct(s.durations, 0.5) * 1000,
                                  "p99_ms": pct(s.durations, 0.99) * 1000,
                                  "examples": s.examples} for k, s in writes.cmd.items()}
        out.check("every write command and request succeeded", failed == 0,
                  f"{failed} of {total_runs} failed")
        out.check("no command output and no answer mentions a locked database", locked == 0,
                  f"{locked}")
        out.check("every kind of write ran at least 3 times",
                  all(st.runs >= 3 for st in writes.cmd.values())
                  and len(writes.cmd) == 4 * min(1, profile.w_cli_workers)
                  + 2 * min(1, profile.w_http_writers),
                  fmt_counts({k: s.runs for k, s in writes.cmd.items()}))

        # Did every write land?
        time.sleep(1.2)  # more than the watcher's 200 ms and the cache's 1 s bound
        expect_ops = len(fixture_ids) + len(writes.cli_ops) + len(writes.http_ops)
        listed = json.loads(cli_ok(exe, url, ["ops", "list", "--limit",
                                              str(expect_ops + 1000), "--json"]))
        by_id = {d["_id"]: d for d in listed}
        missing_cli = [i for i in writes.cli_ops if i not in by_id]
        missing_http = [i for i in writes.http_ops if i not in by_id]
        wrong_status = [i for i, s in writes.http_final.items()
                        if i in by_id and by_id[i].get("status") != s]
        ghost_cli = [i for i in writes.cli_failed_ops if i in by_id]
        ghost_http = [d["_id"] for d in listed
                      if (d.get("writer"), d.get("iteration")) in writes.http_failed
                      and d.get("importerKey", "").startswith("http-")]
        out.check(f"all {len(writes.cli_ops)} operations loaded by `ops load` are stored",
                  not missing_cli, f"missing {missing_cli[:5]}")
        out.check(f"all {len(writes.http_ops)} operations created over HTTP are stored, with "
                  "the status last written", not missing_http and not wrong_status,
                  f"missing {missing_http[:5]}, wrong status {wrong_status[:5]}")
        out.check(f"failed writes left nothing behind ({len(writes.cli_failed_ops)} ops of "
                  f"failed `ops load` runs, {len(writes.http_failed)} failed HTTP creates)",
                  not ghost_cli and not ghost_http,
                  f"stored anyway: {ghost_cli[:3]} {ghost_http[:3]}")
        out.check("operation count = fixture + written", len(listed) == expect_ops,
                  f"{len(listed)} stored, {expect_ops} expected")
        users = {u["username"] for u in json.loads(cli_ok(exe, url, ["user", "list",
                                                                     "--json"]))}
        missing_users = [u for u in writes.users if u not in users]
        out.check(f"all {len(writes.users)} users added are stored", not missing_users,
                  f"missing {missing_users[:5]}")
        token_counts = run_async(verify_tokens(server.port, writes.tokens))
        out.check(f"all {len(writes.tokens)} issued tokens authenticate (200)",
                  token_counts.get("200", 0) == len(writes.tokens), fmt_counts(token_counts))
        perms = {p["_id"]: p["roles"] for p in json.loads(cli_ok(exe, url, ["permission",
                                                                            "list", "--json"]))}
        out.check("view-import-operations ended as one of the values set",
                  perms.get("view-import-operations") in [list(c) for c in PERM_CHOICES],
                  f"{perms.get('view-import-operations')}")
        status, body = run_async(fetch(server.port, ENDPOINT,
                                         {"X-User-Id": creds.user_id,
                                          "X-Auth-Token": creds.token}))
        store_top = [d["_id"] for d in listed[:20]]
        served = [d["_id"] for d in json.loads(body)] if status == 200 else []
        out.check("after the writes the endpoint serves what the store holds (no stale cache)",
                  served == store_top, f"endpoint {status}, first ids {served[:3]} vs "
                  f"{store_top[:3]}")
        out.notes.append(f"landed: {len(writes.cli_ops)} CLI ops, {len(writes.http_ops)} HTTP "
                         f"ops ({len(writes.http_final)} with a checked final status), "
                         f"{len(writes.users)} users, {len(writes.tokens)} tokens "
                         f"({fmt_counts(token_counts)}), {len(writes.perm_values)} permission "
                         f"changes; {len(listed)} operations stored")
        out.data["landed"] = {"cli_ops": len(writes.cli_ops), "http_ops": len(writes.http_ops),
                              "users": len(writes.users), "tokens": len(writes.tokens),
                              "permission_sets": len(writes.perm_values),
                              "stored_ops": len(listed)}
        alive = server.alive()
        found = server.log_findings()
        out.notes.append(f"server log: {fmt_counts(found)}")
        out.check("the server stayed up", alive)
        out.check("the server log never mentions a locked database", found["locked"] == 0,
                  f"{found['locked']} lines")
        out.check("no panic and no ERROR in the server log",
                  found["panic"] == 0 and found["ERROR"] == 0, fmt_counts(found))
        log_examples(out, server)
        codes: dict[str, int] = {}
        for ln in server.log_lines():
            for code in re.findall(r"\(code: (\d+)\)", ln):
                codes[code] = codes.get(code, 0) + 1
        cli_codes: dict[str, int] = {}
        for st in writes.cmd.values():
            for k, v in st.codes.items():
                cli_codes[k] = cli_codes.get(k, 0) + v
        out.notes.append(f"SQLite result codes in failures: command-line stderr "
                         f"{fmt_counts(cli_codes)}; server log {fmt_counts(codes)} "
                         "(5 SQLITE_BUSY, 517 SQLITE_BUSY_SNAPSHOT)")
        out.data["sqlite_codes"] = {"cli": cli_codes, "server_log": codes}
    finally:
        server.stop()
    return out


# ------------------------------------------------------------------------------------------


def report(outcomes: list[Outcome]) -> str:
    lines = []
    ka = [o for o in outcomes if o.name == "keepalive" and o.rows]
    if ka:
        lines.append(table(["experiment", "conns target/opened/held", "ramp s", "hold s",
                            "requests", "answers", "errors", "latency p50/p99/max ms",
                            "client lag p99/max ms", "server RSS before/peak(HWM) MiB",
                            "KiB/conn", "server fds peak", "server up after"],
                           [r for o in ka for r in o.rows]))
        lines.append("")
    lo = [o for o in outcomes if o.name == "low-nofile" and o.rows]
    if lo:
        lines.append(table(["experiment", "connections", "s", "answers (or errors)",
                            "/livez while full", "server fds", "200 again after close s",
                            "accept WARN lines", "server up"], [r for o in lo for r in o.rows]))
        lines.append("")
    wr = [o for o in outcomes if o.name == "sqlite-writes" and o.rows]
    if wr:
        lines.append(table(["sqlite-writes: writer", "runs", "ok", "failed", "'locked' seen",
                            "duration p50/p99/max ms", "failed after p50/max ms",
                            "answers / first failure"],
                           [r for o in wr for r in o.rows]))
        lines.append("")
    lines.append(table(["experiment", "what", "seconds", "checks passed", "result"],
                       [[o.name, o.what, f"{o.seconds:.1f}",
                         f"{sum(ok for _, ok, _ in o.checks)}/{len(o.checks)}",
                         "PASS" if o.ok else "FAIL"] for o in outcomes]))
    for o in outcomes:
        lines.append(f"{o.name}:")
        for n in o.notes:
            lines.append(f"  note: {n}")
        for name, ok, detail in o.checks:
            lines.append(f"  {'ok    ' if ok else 'FAILED'} {name}"
                         + (f": {detail}" if detail and not ok else ""))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI version (about 30 s)")
    ap.add_argument("--binary", type=Path, default=DEFAULT_BINARY)
    ap.add_argument("--only", default="",
                    help="comma-separated: keepalive, sqlite-writes, low-nofile (full only)")
    ap.add_argument("--connections", type=int, default=0, help="keepalive: connections")
    ap.add_argument("--seconds", type=float, default=0, help="keepalive: hold time")
    ap.add_argument("--interval", type=float, default=0,
                    help="keepalive: seconds between one connection's requests")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--cli-writers", type=int, help="sqlite-writes: command-line loops")
    ap.add_argument("--http-writers", type=int, help="sqlite-writes: HTTP upsert loops")
    ap.add_argument("--keep-logs", type=Path, help="copy the servers' logs into this folder")
    args = ap.parse_args()
    global KEEP_LOGS
    KEEP_LOGS = args.keep_logs
    install_cleanup()
    profile = SHORT if args.short else FULL
    if args.cli_writers is not None:
        profile.w_cli_workers = args.cli_writers
    if args.http_writers is not None:
        profile.w_http_writers = args.http_writers
    experiments = [
        ("keepalive", lambda: exp_keepalive(args.binary, profile, args)),
        ("sqlite-writes", lambda: exp_sqlite_writes(args.binary, profile, args)),
    ]
    if not args.short:
        experiments.append(("low-nofile", lambda: exp_low_nofile(args.binary, profile, args)))
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    outcomes: list[Outcome] = []
    t_all = time.monotonic()
    try:
        for name, fn in experiments:
            if only and name not in only:
                continue
            log(f"experiment {name}")
            t0 = time.monotonic()
            try:
                o = fn()
            except (Interrupted, KeyboardInterrupt):
                raise
            except Exception as e:  # noqa: BLE001 - a failed experiment
                traceback.print_exc()
                o = Outcome(name, "(did not complete)")
                o.check("experiment ran", False, f"{type(e).__name__}: {e}")
            o.seconds = time.monotonic() - t0
            outcomes.append(o)
            log(f"experiment {name}: {'PASS' if o.ok else 'FAIL'} ({o.seconds:.1f} s)")
    except (Interrupted, KeyboardInterrupt) as e:
        log(f"interrupted ({e}); cleaning up")
        RESOURCES.cleanup()
        return 130
    finally:
        RESOURCES.cleanup()
    print(report(outcomes))
    print(f"\nmode: {'short' if args.short else 'full'}, total "
          f"{time.monotonic() - t_all:.1f} s")
    if args.json:
        args.json.write_text(json.dumps([{
            "name": o.name, "what": o.what, "seconds": o.seconds, "notes": o.notes,
            "data": o.data, "rows": o.rows,
            "checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in o.checks],
        } for o in outcomes], indent=2, default=str))
    failed = [o.name for o in outcomes if not o.ok]
    print("RESULT: " + ("PASS" if not failed else f"FAIL ({', '.join(failed)})"))
    return 1 if failed or not outcomes else 0


if __name__ == "__main__":
    sys.exit(main())
