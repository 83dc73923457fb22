#!/usr/bin/env python3
"""SIGTERM under load for importops (Python 3.11, standard library only).

Each round starts `importops serve` on SQLite with the documented example
(`importops ops load fixtures/documented-operations.json`), runs N concurrent keep-alive
clients (most on GET /api/v1/getLatestImportOperations with an admin token, some on
POST /api/v1/login, which hashes a password with bcrypt and so stays in flight for a while),
sends SIGTERM while requests are in flight, and checks:

  - every request whose bytes were fully sent (http.client's request() returned: the bytes are
    in the kernel, on loopback that is the server's receive queue) before the signal got a
    complete answer (status line and the whole body);
  - new connections are refused (a connect error) shortly after the signal (< 1 s), and stay
    refused;
  - the process exits with status 0 within the drain bound (10 s).

Kinds of round:
  load      N client threads (pauses of 0-10 ms between requests, so some keep-alive
            connections are idle at the signal), SIGTERM after a warm-up;
  stalled   (full run) the same, plus two clients that sent part of a request (part of the
            headers; whole headers and 9 of 100 body bytes) and then stall: the drain must
            still end within the bound;
  frozen    the race of the load rounds made repeatable: N keep-alive connections each get one
            answer, the server is frozen with SIGSTOP, every connection sends its next request
            (all of it in the server's receive queue), then SIGTERM and SIGCONT: every one of
            those requests was sent before the signal and must be answered.

Timestamps are time.monotonic(): the signal's is taken just before os.kill.

Usage:  python3 reliability/shutdown.py [--short] [--binary PATH] [--json FILE]
Exit status: 0 when every expectation held, 1 when one failed, 2 on a set-up error.
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DEFAULT_BINARY, ENDPOINT, HOST, LOGIN, RESOURCES, Credentials, Interrupted, RunAs, Server,
    copy_binary, copy_fixture, free_port, install_cleanup, log, make_workdir, prepare_database,
    table,
)

DRAIN_BOUND = 10.0  # s from SIGTERM to exit
REFUSE_BOUND = 1.0  # s from SIGTERM to the first refused connect
CLIENT_TIMEOUT = 15.0
MAX_REQUESTS_PER_CLIENT = 5_000


@dataclass
class Req:
    client: int
    kind: str
    t_start: float
    t_sent: float | None = None  # request() returned: all bytes handed to the kernel
    t_done: float | None = None
    status: int | None = None
    outcome: str = ""  # complete | closed-unanswered | reset | partial | timeout | send-failed
    detail: str = ""


@dataclass
class Connect:
    t: float
    ok: bool
    detail: str = ""
    answered: str = ""  # for accepted connects after the signal: what a request on it got


@dataclass
class Round:
    n: int
    logins: int
    warmup: float
    reqs: list[Req] = field(default_factory=list)
    connects: list[Connect] = field(default_factory=list)  # by clients, and by the prober
    t_signal: float = 0.0
    t_exit: float | None = None
    exit_code: int | None = None
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    stall: bool = False
    stalls: dict = field(default_factory=dict)
    frozen: bool = False

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


class Client(threading.Thread):
    def __init__(self, idx: int, kind: str, port: int, creds: Credentials, rnd: Round,
                 stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.idx = idx
        self.kind = kind
        self.port = port
        self.creds = creds
        self.rnd = rnd
        self.stop = stop
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> bool:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=CLIENT_TIMEOUT)
        t = time.monotonic()
        try:
            conn.connect()
        except OSError as e:
            self.rnd.connects.append(Connect(t, False, f"{type(e).__name__}"))
            return False
        self.rnd.connects.append(Connect(t, True))
        self.conn = conn
        return True

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self) -> None:
        if self.kind == "read":
            method, path, body = "GET", ENDPOINT, None
            headers = {"X-User-Id": self.creds.user_id, "X-Auth-Token": self.creds.token}
        else:
            method, path = "POST", LOGIN
            body = json.dumps({"user": self.creds.login_user,
                               "password": self.creds.login_password}).encode()
            headers = {"Content-Type": "application/json"}
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if self.stop.is_set():
                break
            if self.conn is None and not self._connect():
                # Refused: the server is going away; this client is done.
                break
            req = Req(self.idx, self.kind, time.monotonic())
            self.rnd.reqs.append(req)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                req.t_sent = time.monotonic()
            except OSError as e:
                req.t_done = time.monotonic()
                req.outcome, req.detail = "send-failed", type(e).__name__
                self._close()
                continue
            try:
                resp = self.conn.getresponse()
                data = resp.read()
                req.t_done = time.monotonic()
                req.status = resp.status
                req.outcome = "complete"
                req.detail = f"{len(data)} bytes"
                if resp.will_close:
                    self._close()
            except http.client.RemoteDisconnected as e:
                req.t_done = time.monotonic()
                req.outcome, req.detail = "closed-unanswered", str(e)
                self._close()
            except http.client.IncompleteRead as e:
                req.t_done = time.monotonic()
                req.outcome, req.detail = "partial", repr(e)[:80]
                self._close()
            except socket.timeout:
                req.t_done = time.monotonic()
                req.outcome, req.detail = "timeout", ""
                self._close()
            except (OSError, http.client.HTTPException) as e:
                req.t_done = time.monotonic()
                if isinstance(e, OSError) and e.errno == errno.ECONNRESET:
                    req.outcome = "reset"
                else:
                    req.outcome = "error"
                req.detail = f"{type(e).__name__}: {e}"[:100]
                self._close()
            # Random short pauses: some connections are idle when the signal comes.
            time.sleep(random.uniform(0, 0.01))
        self._close()


def prober(port: int, rnd: Round, signalled: threading.Event, stop: threading.Event) -> None:
    """After the signal: a new connection every 5 ms until refused 20 times in a row or the
    process has exited; an accepted one gets one request to see what happens to it."""
    signalled.wait()
    refused_in_row = 0
    while not stop.is_set() and refused_in_row < 20:
        t = time.monotonic()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(3.0)
        try:
            s.connect((HOST, port))
        except OSError as e:
            rnd.connects.append(Connect(t, False, f"prober {type(e).__name__}"))
            refused_in_row += 1
            s.close()
            time.sleep(0.005)
            continue
        refused_in_row = 0
        c = Connect(t, True, "prober")
        rnd.connects.append(c)
        try:
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = s.recv(4096)
            c.answered = data.split(b"\r\n", 1)[0].decode(errors="replace") if data else "EOF"
        except OSError as e:
            c.answered = type(e).__name__
        finally:
            s.close()
        time.sleep(0.005)


STALLS = {
    # A request line and part of the headers, then nothing.
    "partial-head": b"GET /api/v1/getLatestImportOperations HTTP/1.1\r\nHost: x\r\nX-User-",
    # Whole headers announcing a 100-byte body, 9 bytes of it, then nothing.
    "partial-body": (b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 100\r\n\r\n{\"user\": "),
}


def stalled_client(port: int, payload: bytes, result: dict, stop: threading.Event) -> None:
    """Sends part of a request and stalls; records what the server does with it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(0.2)
    try:
        s.connect((HOST, port))
        s.sendall(payload)
        result["sent"] = time.monotonic()
        data = b""
        deadline = time.monotonic() + DRAIN_BOUND + 10
        while time.monotonic() < deadline and not stop.is_set():
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                result["closed"] = time.monotonic()
                break
            data += chunk
        result["answer"] = data.split(b"\r\n", 1)[0].decode(errors="replace") or "nothing"
    except OSError as e:
        result["closed"] = time.monotonic()
        result["answer"] = type(e).__name__
    finally:
        s.close()


def run_round(binary: Path, owner: RunAs, n: int, logins: int, warmup: float,
              stall: bool = False) -> Round:
    rnd = Round(n, logins, warmup)
    rnd.stall = stall
    work = make_workdir("importops-shutdown-", owner)
    exe = copy_binary(binary, work, owner)
    fixture = copy_fixture(work, owner)
    url = f"sqlite://{work / 'importops.db'}"
    creds = prepare_database(exe, url, owner, fixture)
    server = Server(exe, url, free_port(), owner, work / "server.log")
    server.wait_ready()
    stop = threading.Event()
    signalled = threading.Event()
    clients = [Client(i, "login" if i < logins else "read", server.port, creds, rnd, stop)
               for i in range(n)]
    probe = threading.Thread(target=prober, args=(server.port, rnd, signalled, stop),
                             daemon=True)
    stalls = {name: {} for name in STALLS} if stall else {}
    stall_threads = [threading.Thread(target=stalled_client,
                                      args=(server.port, STALLS[name], res, stop), daemon=True)
                     for name, res in stalls.items()]
    try:
        for c in clients:
            c.start()
        probe.start()
        for t in stall_threads:
            t.start()
        time.sleep(warmup)
        # SIGTERM while requests are in flight: wait (briefly) until a login is in flight.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            reqs = list(rnd.reqs)
            if any(r.kind == "login" and r.t_sent and r.t_done is None for r in reqs) or not logins:
                break
            time.sleep(0.002)
        rnd.t_signal = time.monotonic()
        os.kill(server.proc.pid, signal.SIGTERM)
        signalled.set()
        try:
            rnd.exit_code = server.proc.wait(timeout=DRAIN_BOUND + 5)
            rnd.t_exit = time.monotonic()
        except Exception:  # noqa: BLE001 - TimeoutExpired: the check below fails
            pass
        stop.set()
        for c in clients:
            c.join(timeout=CLIENT_TIMEOUT + 5)
        probe.join(timeout=10)
        for t in stall_threads:
            t.join(timeout=5)
    finally:
        stop.set()
        signalled.set()
        server.stop()
    rnd.stalls = {name: {"answer": res.get("answer", "?"),
                         "closed_after_signal_s": None if "closed" not in res
                         else round(res["closed"] - rnd.t_signal, 3)}
                  for name, res in stalls.items()}
    analyse(rnd, re.sub(r"\x1b\[[0-9;]*m", "", server.log_text()))
    return rnd


def run_frozen_round(binary: Path, owner: RunAs, n: int) -> Round:
    """The race made repeatable: n keep-alive connections, each answered once; the server is
    frozen (SIGSTOP), each connection sends its next request (all bytes in the server's receive
    queue), then SIGTERM and SIGCONT. Every one of those requests was sent before the signal."""
    rnd = Round(n, 0, 0.0)
    rnd.frozen = True
    work = make_workdir("importops-shutdown-frozen-", owner)
    exe = copy_binary(binary, work, owner)
    fixture = copy_fixture(work, owner)
    url = f"sqlite://{work / 'importops.db'}"
    creds = prepare_database(exe, url, owner, fixture)
    server = Server(exe, url, free_port(), owner, work / "server.log")
    server.wait_ready()
    headers = {"X-User-Id": creds.user_id, "X-Auth-Token": creds.token}
    conns = []
    try:
        for i in range(n):
            c = http.client.HTTPConnection(HOST, server.port, timeout=CLIENT_TIMEOUT)
            req = Req(i, "read", time.monotonic())
            c.request("GET", ENDPOINT, headers=headers)
            req.t_sent = time.monotonic()
            resp = c.getresponse()
            resp.read()
            req.t_done, req.status, req.outcome = time.monotonic(), resp.status, "complete"
            rnd.reqs.append(req)
            conns.append(c)
        os.kill(server.proc.pid, signal.SIGSTOP)
        pending = []
        try:
            for i, c in enumerate(conns):
                req = Req(i, "read", time.monotonic())
                c.request("GET", ENDPOINT, headers=headers)
                req.t_sent = time.monotonic()
                rnd.reqs.append(req)
                pending.append((c, req))
            rnd.t_signal = time.monotonic()
            os.kill(server.proc.pid, signal.SIGTERM)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        for c, req in pending:
            try:
                resp = c.getresponse()
                data = resp.read()
                req.status, req.outcome, req.detail = resp.status, "complete", f"{len(data)} bytes"
            except http.client.RemoteDisconnected as e:
                req.outcome, req.detail = "closed-unanswered", str(e)
            except (OSError, http.client.HTTPException) as e:
                req.outcome, req.detail = "error", f"{type(e).__name__}: {e}"[:100]
            req.t_done = time.monotonic()
        try:
            rnd.exit_code = server.proc.wait(timeout=DRAIN_BOUND + 5)
            rnd.t_exit = time.monotonic()
        except Exception:  # noqa: BLE001
            pass
        # Refusal after exit, for the table.
        try:
            socket.create_connection((HOST, server.port), timeout=1).close()
            rnd.connects.append(Connect(time.monotonic(), True, "after exit"))
        except OSError as e:
            rnd.connects.append(Connect(time.monotonic(), False, type(e).__name__))
    finally:
        for c in conns:
            c.close()
        server.stop()
    analyse(rnd, re.sub(r"\x1b\[[0-9;]*m", "", server.log_text()))
    return rnd


def analyse(rnd: Round, logtext: str) -> None:
    ts = rnd.t_signal
    reqs = list(rnd.reqs)
    before = [r for r in reqs if r.t_sent is not None and r.t_sent < ts]
    in_flight = [r for r in before if r.t_done is None or r.t_done >= ts]
    bad_before = [r for r in before if r.outcome != "complete"]
    non200_before = [r for r in before if r.outcome == "complete" and r.status != 200]
    after = [r for r in reqs if r.t_sent is not None and r.t_sent >= ts]
    send_failed = [r for r in reqs if r.t_sent is None]
    after_outcomes: dict[str, int] = {}
    for r in after:
        k = f"{r.outcome}" + (f" {r.status}" if r.status else "")
        after_outcomes[k] = after_outcomes.get(k, 0) + 1
    conns_after = [c for c in rnd.connects if c.t >= ts]
    refused = sorted(c.t for c in conns_after if not c.ok)
    first_refused = (refused[0] - ts) if refused else None
    accepted_after = [c for c in conns_after if c.ok]
    accepted_after_refusal = [c for c in accepted_after if refused and c.t > refused[0]]
    drain = (rnd.t_exit - ts) if rnd.t_exit is not None else None
    in_flight_logins = sum(1 for r in in_flight if r.kind == "login")
    rnd.stats = {
        "clients": rnd.n,
        "login_clients": rnd.logins,
        "requests": len(reqs),
        "sent_before_signal": len(before),
        "in_flight_at_signal": len(in_flight),
        "in_flight_logins": in_flight_logins,
        "in_flight_complete": sum(1 for r in in_flight if r.outcome == "complete"),
        "sent_before_unanswered": len(bad_before),
        "unanswered_detail": [
            {"kind": r.kind, "outcome": r.outcome, "detail": r.detail,
             "sent_before_signal_ms": round((ts - r.t_sent) * 1000, 3)}
            for r in bad_before[:10]],
        "sent_before_non200": len(non200_before),
        "sent_after_signal": len(after),
        "sent_after_outcomes": after_outcomes,
        "send_failed": len(send_failed),
        "connects_after_signal": len(conns_after),
        "accepted_after_signal": len(accepted_after),
        "accepted_after_signal_answers": sorted({c.answered for c in accepted_after}),
        "first_refused_s": first_refused,
        "accepted_after_first_refusal": len(accepted_after_refusal),
        "drain_s": drain,
        "exit_code": rnd.exit_code,
        "stalled_clients": rnd.stalls,
    }

    def check(name, ok, detail=""):
        rnd.checks.append((name, ok, detail))

    check("requests were in flight at the signal", len(in_flight) > 0,
          f"{len(in_flight)} ({in_flight_logins} logins)")
    check("every request sent before the signal got a complete answer", not bad_before,
          "; ".join(f"{d['kind']} {d['outcome']} ({d['detail']}), sent "
                    f"{d['sent_before_signal_ms']} ms before the signal"
                    for d in rnd.stats["unanswered_detail"][:5]))
    check("every answer to a request sent before the signal is 200", not non200_before,
          ", ".join(sorted({str(r.status) for r in non200_before})))
    if not rnd.frozen:  # the frozen round only probes once, after the exit
        check(f"new connections refused within {REFUSE_BOUND:.0f} s",
              first_refused is not None and first_refused <= REFUSE_BOUND,
              "never refused" if first_refused is None else f"{first_refused * 1000:.1f} ms")
    check("no connection accepted once refusals started", not accepted_after_refusal,
          str(len(accepted_after_refusal)))
    check(f"exit status 0 within {DRAIN_BOUND:.0f} s",
          rnd.exit_code == 0 and drain is not None and drain <= DRAIN_BOUND,
          f"exit {rnd.exit_code} after {drain if drain is None else round(drain, 3)} s")
    panics = [ln for ln in logtext.splitlines() if "panicked" in ln]
    check("no panic in the server log", not panics, panics[0][:200] if panics else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI version (a few seconds)")
    ap.add_argument("--binary", type=Path, default=DEFAULT_BINARY)
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    install_cleanup()
    # The server runs as ourselves here: no file faults, and its exit status is its own.
    owner = RunAs.pick(name=None)
    if args.short:
        plan = [(16, 3, 1.0, False), (16, 3, 0.5, False)] + [(40, 0, 0.0, "frozen")] * 3
    else:
        plan = [(n, logins, warm, False) for n, logins in ((8, 2), (32, 4), (64, 6), (128, 8))
                for warm in (1.0, 2.5)]
        # Clients that sent part of a request and stall: the drain must stay bounded.
        plan += ([(16, 3, 1.0, True)] + [(40, 0, 0.0, "frozen")] * 3
                 + [(100, 0, 0.0, "frozen")] * 3)
    rounds: list[Round] = []
    t0 = time.monotonic()
    try:
        for i, (n, logins, warm, stall) in enumerate(plan, 1):
            if stall == "frozen":
                log(f"round {i}/{len(plan)}: {n} keep-alive requests sent to a frozen server "
                    "(SIGSTOP), then SIGTERM, SIGCONT")
            else:
                log(f"round {i}/{len(plan)}: {n} clients ({logins} logging in)"
                    + (" + 2 stalled partial requests" if stall else "")
                    + f", SIGTERM after {warm} s")
            try:
                if stall == "frozen":
                    rnd = run_frozen_round(args.binary, owner, n)
                else:
                    rnd = run_round(args.binary, owner, n, logins, warm, stall)
            except (Interrupted, KeyboardInterrupt):
                raise
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                rnd = Round(n, logins, warm)
                rnd.checks.append(("round ran", False, f"{type(e).__name__}: {e}"))
            rounds.append(rnd)
            log(f"round {i}: {'PASS' if rnd.ok else 'FAIL'}")
    except (Interrupted, KeyboardInterrupt) as e:
        log(f"interrupted ({e}); cleaning up")
        RESOURCES.cleanup()
        return 130
    finally:
        RESOURCES.cleanup()

    rows = []
    for i, r in enumerate(rounds, 1):
        s = r.stats
        if not s:
            rows.append([i, r.n, "-", "-", "-", "-", "-", "-", "-", "-", "-", "FAIL"])
            continue
        rows.append([
            i, (f"{r.n} keep-alive, frozen" if r.frozen
                else f"{r.n} ({r.logins} login)" + (" +2 stalled" if r.stall else "")),
            s["requests"], s["sent_before_signal"],
            f"{s['in_flight_complete']}/{s['in_flight_at_signal']}",
            s["sent_before_unanswered"],
            " ".join(f"{k}:{v}" for k, v in sorted(s["sent_after_outcomes"].items())) or "-",
            f"{s['accepted_after_signal']}/{s['connects_after_signal']}",
            "-" if s["first_refused_s"] is None else f"{s['first_refused_s'] * 1000:.1f}",
            "-" if s["drain_s"] is None else f"{s['drain_s']:.3f}",
            s["exit_code"], "PASS" if r.ok else "FAIL",
        ])
    print(table(["round", "clients", "requests", "sent<sig", "in-flight done/total",
                 "unanswered<sig", "sent>sig outcomes", "accepted/connects>sig",
                 "1st refused ms", "drain s", "exit", "result"], rows))
    for i, r in enumerate(rounds, 1):
        for name, ok, detail in r.checks:
            if not ok:
                print(f"round {i} FAILED: {name}" + (f": {detail}" if detail else ""))
        if r.stalls:
            print(f"round {i}: stalled partial requests: {r.stalls}")
        if r.stats.get("accepted_after_signal"):
            print(f"round {i}: connections accepted after the signal got: "
                  f"{r.stats['accepted_after_signal_answers']}")
    print(f"\nmode: {'short' if args.short else 'full'}, total {time.monotonic() - t0:.1f} s")
    if args.json:
        args.json.write_text(json.dumps([{"clients": r.n, "logins": r.logins,
                                          "warmup": r.warmup, "stats": r.stats,
                                          "checks": [{"name": n, "ok": ok, "detail": d}
                                                     for n, ok, d in r.checks]}
                                         for r in rounds], indent=2, default=str))
    failed = [i for i, r in enumerate(rounds, 1) if not r.ok]
    print("RESULT: " + ("PASS" if not failed else f"FAIL (rounds {failed})"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
