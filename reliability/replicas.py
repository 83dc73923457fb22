#!/usr/bin/env python3
"""Freshness across replicas: three importops servers on one Postgres database (Python 3.11,
standard library only).

A fresh database `importops_replicas_<pid>` is created on the shared Postgres at
127.0.0.1:5432 (`psql -h 127.0.0.1 -U postgres -d test -c 'CREATE DATABASE ...'`) and dropped
at the end; nothing on that server is stopped or broken. Three release servers A, B and C run
on it, each on its own port in 45000-45999, with nothing in front of them. Each repeat
measures, by polling every replica every few milliseconds over a keep-alive connection:

  login-token       a token from POST /api/v1/login on A works on A, B and C at once (the
                    first GET /api/v1/me on each is 200)
  logout            POST /api/v1/logout on A: time until A, B and C answer 401 with it
  perm-update       POST /api/v1/permissions.update on B (view-import-operations without, then
                    with the role `auditor` that user alice holds): time until A, B and C
                    answer alice 403, then 200, on GET /api/v1/getLatestImportOperations
  role-cli          `importops role revoke alice auditor` (then `role grant`): time until A,
                    B and C answer 403 (then 200)
  op-write          POST /api/v1/import.operations.upsert on C (a new operation, then a status
                    change of it): time until A, B and C serve it in getLatestImportOperations

Times run from the moment the change was acknowledged (the HTTP answer arrived, or the command
exited) to the arrival of the first answer that shows it; the caches of the replicas that must
notice the change are warmed with the old state just before it. The bound is 1 s (README "What
is cached"); the replica that made an HTTP change must show it in its very next answer.
`--short` does 3 repeats, the full run 20.

Usage:  python3 reliability/replicas.py [--short] [--repeats N] [--binary PATH] [--json FILE]
Exit status: 0 when every expectation held, 1 when one failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402
from common import (  # noqa: E402
    DEFAULT_BINARY, ENDPOINT, HOST, RESOURCES, Interrupted, RunAs, copy_binary, fmt_counts,
    install_cleanup, log, make_workdir, table,
)
from load import AConn, LoadServer, Outcome, classify, cli, cli_ok, free_port, ms, pct  # noqa: E402

PG_HOST, PG_PORT, PG_USER, PG_ADMIN_DB = HOST, 5432, "postgres", "test"
BOUND = 1.0  # s: README's bound for a change made by another replica or process
POLL_EVERY = 0.005  # s between one replica's polls
POLL_LIMIT = 3.0  # s: a poll gives up after this long
CONFIRM = 3  # further answers that must agree once the change was seen
LOGIN_PASSWORD = "pw"
ME = "/api/v1/me"
LOGIN = "/api/v1/login"
LOGOUT = "/api/v1/logout"
PERMS_UPDATE = "/api/v1/permissions.update"
UPSERT = "/api/v1/import.operations.upsert"
PERM = "view-import-operations"


def psql(sql: str, db: str = PG_ADMIN_DB) -> subprocess.CompletedProcess:
    env = dict(os.environ, PGCONNECT_TIMEOUT="5")
    return subprocess.run(["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", db,
                           "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                          capture_output=True, text=True, timeout=60, env=env)


@dataclass
class Replica:
    name: str
    server: LoadServer
    conn: AConn

    @property
    def port(self) -> int:
        return self.server.port


@dataclass
class Seen:
    """What one replica answered after a change."""

    replica: str
    elapsed: float | None  # s from the change's acknowledgement to the first answer showing it
    first_ok: bool  # the very first answer after the acknowledgement showed it
    polls: int
    flapped: bool  # an answer after the first one that showed it did not
    others: dict[str, int] = field(default_factory=dict)


@dataclass
class Measure:
    name: str
    what: str
    must_be_immediate: set[str]  # replicas whose first answer must show the change
    seen: list[Seen] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def poll(rep: Replica, method: str, path: str, headers: dict[str, str],
               body: bytes | None, shows, t_ref: float) -> Seen:
    """Asks `rep` until `shows(status, body)`, then CONFIRM more times."""
    first_ok = False
    polls = 0
    others: dict[str, int] = {}
    elapsed = None
    deadline = time.monotonic() + POLL_LIMIT
    for _ in range(int(POLL_LIMIT / POLL_EVERY) + 10):
        if time.monotonic() > deadline:
            break
        try:
            status, _, data = await rep.conn.request(method, path, headers, body, timeout=5.0)
            key = str(status)
        except Exception as e:  # noqa: BLE001 - counted
            status, data, key = None, b"", classify(e)
        t = time.monotonic()
        polls += 1
        if status is not None and shows(status, data):
            elapsed = t - t_ref
            first_ok = polls == 1
            break
        others[key] = others.get(key, 0) + 1
        await asyncio.sleep(POLL_EVERY)
    flapped = False
    if elapsed is not None:
        for _ in range(CONFIRM):
            try:
                status, _, data = await rep.conn.request(method, path, headers, body,
                                                         timeout=5.0)
                if not shows(status, data):
                    flapped = True
            except Exception:  # noqa: BLE001
                flapped = True
    return Seen(rep.name, elapsed, first_ok, polls, flapped, others)


async def poll_all(reps: list[Replica], method: str, path: str, headers: dict[str, str],
                   body: bytes | None, shows, t_ref: float) -> list[Seen]:
    return list(await asyncio.gather(*(poll(r, method, path, headers, body, shows, t_ref)
                                       for r in reps)))


async def expect(reps: list[Replica], path: str, headers: dict[str, str], status: int,
                 what: str) -> None:
    """Warms each replica's cache with the current state, and checks it is `status`."""
    for r in reps:
        for _ in range(2):
            got, _, body = await r.conn.request("GET", path, headers)
            if got != status:
                raise RuntimeError(f"before {what}: replica {r.name} answered {got} "
                                   f"{body[:120]!r}, expected {status}")


def status_is(code: int):
    return lambda status, _body: status == code


async def post_json(rep: Replica, path: str, headers: dict[str, str], doc) -> tuple[int, dict,
                                                                                    float]:
    if doc is None:  # no body at all (logout)
        status, _, body = await rep.conn.request("POST", path, headers)
    else:
        hdrs = dict(headers, **{"Content-Type": "application/json"})
        status, _, body = await rep.conn.request("POST", path, hdrs, json.dumps(doc).encode())
    t = time.monotonic()
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = {"raw": body[:200].decode(errors="replace")}
    return status, parsed, t


async def run_cli_timed(exe: Path, url: str, args: list[str]) -> tuple[float, float]:
    """Runs a command; returns (monotonic time it exited, its duration)."""
    t0 = time.monotonic()
    res = await asyncio.to_thread(cli, exe, url, args)
    t1 = time.monotonic()
    if res.returncode != 0:
        raise RuntimeError(f"importops {' '.join(args)} failed: {res.stderr.strip()}")
    return t1, t1 - t0


async def one_repeat(r: int, reps: dict[str, Replica], exe: Path, url: str, admin: dict,
                     alice_pat: dict, m: dict[str, Measure]) -> None:
    A, B, C = reps["A"], reps["B"], reps["C"]
    every = [A, B, C]

    # login-token: a session made on A works everywhere at once.
    st, doc, t_login = await post_json(A, LOGIN, {}, {"user": "alice",
                                                      "password": LOGIN_PASSWORD})
    if st != 200:
        raise RuntimeError(f"login on A answered {st} {doc}")
    sess = {"X-User-Id": doc["data"]["userId"], "X-Auth-Token": doc["data"]["authToken"]}
    m["login-token"].seen += await poll_all(every, "GET", ME, sess, None, status_is(200),
                                            t_login)

    # logout on A: B and C drop the cached session.
    await expect(every, ME, sess, 200, "logout")
    st, doc, t_out = await post_json(A, LOGOUT, sess, None)
    if st != 200:
        raise RuntimeError(f"logout on A answered {st} {doc}")
    m["logout"].seen += await poll_all(every, "GET", ME, sess, None, status_is(401), t_out)

    # permissions.update on B: without auditor (403 for alice), then with it (200).
    for roles, code, label in ((["admin"], 403, "perm-update (revoke)"),
                               (["admin", "auditor"], 200, "perm-update (grant)")):
        await expect(every, ENDPOINT, alice_pat, 403 if code == 200 else 200, label)
        st, doc, t_upd = await post_json(B, PERMS_UPDATE, admin,
                                         {"permissions": [{"_id": PERM, "roles": roles}]})
        if st != 200:
            raise RuntimeError(f"permissions.update on B answered {st} {doc}")
        m[label].seen += await poll_all(every, "GET", ENDPOINT, alice_pat, None,
                                        status_is(code), t_upd)

    # The command line takes the role away, then gives it back.
    for verb, code, label in (("revoke", 403, "role-cli (revoke)"),
                              ("grant", 200, "role-cli (grant)")):
        await expect(every, ENDPOINT, alice_pat, 403 if code == 200 else 200, label)
        t_exit, dur = await run_cli_timed(exe, url, ["role", verb, "alice", "auditor"])
        m[label].seen += await poll_all(every, "GET", ENDPOINT, alice_pat, None,
                                        status_is(code), t_exit)
        m[label].notes.append(f"{dur * 1000:.0f}")

    # An operation written through C, read through A and B.
    await expect(every, ENDPOINT, admin, 200, "op-write")
    st, doc, t_new = await post_json(C, UPSERT, admin, {
        "type": f"Replica test {r}", "importerKey": "replicas",
        "status": "importer_importing_messages", "count": {"total": 10, "completed": 1}})
    if st != 200:
        raise RuntimeError(f"upsert on C answered {st} {doc}")
    oid = doc["operation"]["_id"]

    def has_op(status_value: str):
        def shows(status: int, body: bytes) -> bool:
            if status != 200:
                return False
            try:
                return any(o.get("_id") == oid and o.get("status") == status_value
                           for o in json.loads(body))
            except ValueError:
                return False
        return shows

    m["op-write (create)"].seen += await poll_all(every, "GET", ENDPOINT, admin, None,
                                                  has_op("importer_importing_messages"), t_new)
    await expect(every, ENDPOINT, admin, 200, "op-write (update)")
    st, doc, t_upd = await post_json(C, UPSERT, admin, {"_id": oid, "status": "importer_done",
                                                        "count": {"total": 10,
                                                                  "completed": 10}})
    if st != 200:
        raise RuntimeError(f"upsert (update) on C answered {st} {doc}")
    m["op-write (update)"].seen += await poll_all(every, "GET", ENDPOINT, admin, None,
                                                  has_op("importer_done"), t_upd)


async def run_all(out: Outcome, reps: dict[str, Replica], exe: Path, url: str, admin: dict,
                  alice_pat: dict, repeats: int) -> dict[str, Measure]:
    m = {
        "login-token": Measure("login-token", "POST /login on A; GET /me with the new token",
                               {"A", "B", "C"}),
        "logout": Measure("logout", "POST /logout on A; GET /me until 401", {"A"}),
        "perm-update (revoke)": Measure(
            "perm-update (revoke)", f"POST permissions.update on B: {PERM} -> [admin]; alice's "
            "GET getLatestImportOperations until 403", {"B"}),
        "perm-update (grant)": Measure(
            "perm-update (grant)", f"POST permissions.update on B: {PERM} -> [admin, auditor];"
            " alice until 200", {"B"}),
        "role-cli (revoke)": Measure("role-cli (revoke)", "importops role revoke alice "
                                     "auditor; alice until 403", set()),
        "role-cli (grant)": Measure("role-cli (grant)", "importops role grant alice auditor; "
                                    "alice until 200", set()),
        "op-write (create)": Measure("op-write (create)", "POST import.operations.upsert on "
                                     "C (new op); getLatestImportOperations until it is listed",
                                     {"C"}),
        "op-write (update)": Measure("op-write (update)", "POST import.operations.upsert on "
                                     "C (status of that op -> importer_done); until listed so",
                                     {"C"}),
    }
    for r in range(repeats):
        await one_repeat(r, reps, exe, url, admin, alice_pat, m)
        worst = max((s.elapsed or POLL_LIMIT for mm in m.values() for s in mm.seen
                     if s.replica not in mm.must_be_immediate), default=0.0)
        log(f"repeat {r + 1}/{repeats}: worst so far {worst * 1000:.0f} ms")
    for c in (rep.conn for rep in reps.values()):
        c.close()
    return m


def summarize(out: Outcome, m: dict[str, Measure], repeats: int) -> None:
    for name, mm in m.items():
        cells = []
        for rep_name in ("A", "B", "C"):
            ss = [s for s in mm.seen if s.replica == rep_name]
            times = [s.elapsed for s in ss if s.elapsed is not None]
            missed = sum(1 for s in ss if s.elapsed is None)
            firsts = sum(1 for s in ss if s.first_ok)
            cell = (f"max {ms(max(times, default=float('nan')))} p50 "
                    f"{ms(pct(times, 0.5))} first {firsts}/{len(ss)}")
            if missed:
                cell += f" NEVER {missed}"
            cells.append(cell)
        remote = [s for s in mm.seen if s.replica not in mm.must_be_immediate]
        local = [s for s in mm.seen if s.replica in mm.must_be_immediate]
        remote_max = max((s.elapsed if s.elapsed is not None else float("inf")
                          for s in remote), default=float("nan"))
        flaps = sum(1 for s in mm.seen if s.flapped)
        ok_remote = all(s.elapsed is not None and s.elapsed <= BOUND for s in remote)
        ok_local = all(s.first_ok for s in local)
        ok = ok_remote and ok_local and flaps == 0
        extra = ""
        if mm.notes:
            extra = f" (command ran {min(map(int, mm.notes))}-{max(map(int, mm.notes))} ms)"
        out.rows.append([name, len(mm.seen) // 3, *cells,
                         "-" if not remote else ms(remote_max),
                         ", ".join(sorted(mm.must_be_immediate)) or "-", flaps,
                         "PASS" if ok else "FAIL"])
        out.data[name] = {
            "what": mm.what + extra, "repeats": len(mm.seen) // 3,
            "per_replica_ms": {rn: [None if s.elapsed is None else round(s.elapsed * 1000, 2)
                                    for s in mm.seen if s.replica == rn] for rn in "ABC"},
            "remote_max_ms": None if not remote else remote_max * 1000,
            "flaps": flaps,
        }
        if remote:
            out.check(f"{name}: every other replica within {BOUND:.0f} s", ok_remote,
                      f"max {ms(remote_max)} ms; never: "
                      f"{sum(1 for s in remote if s.elapsed is None)}")
        if local:
            out.check(f"{name}: {', '.join(sorted(mm.must_be_immediate))} show it in the very "
                      "next answer", ok_local,
                      f"{sum(1 for s in local if not s.first_ok)} of {len(local)} did not")
        out.check(f"{name}: no replica went back to the old answer", flaps == 0, f"{flaps}")
        stray = {}
        for s in mm.seen:
            for k, v in s.others.items():
                stray[k] = stray.get(k, 0) + v
        if stray:
            out.notes.append(f"{name}: answers before the change showed: {fmt_counts(stray)}"
                             + extra)
        elif extra:
            out.notes.append(f"{name}:{extra}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI version: 3 repeats")
    ap.add_argument("--repeats", type=int, default=0)
    ap.add_argument("--binary", type=Path, default=DEFAULT_BINARY)
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--keep-logs", type=Path, help="copy the servers' logs into this folder")
    args = ap.parse_args()
    install_cleanup()
    load.KEEP_LOGS = args.keep_logs
    repeats = args.repeats or (3 if args.short else 20)
    out = Outcome("replicas", f"3 servers on one Postgres database, {repeats} repeats")
    t0 = time.monotonic()
    servers: list[LoadServer] = []
    try:
        if shutil.which("psql") is None:
            raise RuntimeError("psql not found")
        db = f"importops_replicas_{os.getpid()}"
        res = psql(f"CREATE DATABASE {db}")
        if res.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE {db}: {res.stderr.strip()}")

        def drop() -> None:
            r = psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            if r.returncode != 0:
                log(f"cleanup: DROP DATABASE {db}: {r.stderr.strip()}")
        RESOURCES.on_cleanup(f"drop database {db}", drop)
        url = f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"
        owner = RunAs.pick(None)
        work = make_workdir("importops-replicas-", owner)
        exe = copy_binary(args.binary, work, owner)
        log(f"database {db}; binary copied to {exe}")

        cli_ok(exe, url, ["migrate"])
        cli_ok(exe, url, ["user", "add", "admin", "--role", "admin"])
        tok = json.loads(cli_ok(exe, url, ["token", "issue", "admin", "--json"]))
        admin = {"X-User-Id": tok["userId"], "X-Auth-Token": tok["authToken"]}
        cli_ok(exe, url, ["user", "add", "alice", "--role", "user", "--role", "auditor",
                          "--password-stdin"], stdin=f"{LOGIN_PASSWORD}\n")
        pat = json.loads(cli_ok(exe, url, ["token", "issue", "alice", "--personal",
                                           "replicas", "--json"]))
        alice_pat = {"X-User-Id": pat["userId"], "X-Auth-Token": pat["authToken"]}
        cli_ok(exe, url, ["permission", "set", PERM, "admin", "auditor"])

        ports: set[int] = set()
        reps: dict[str, Replica] = {}
        for name in "ABC":
            port = free_port(ports)
            ports.add(port)
            # Logins count against the per-address rate limiter (10 a minute): turned off.
            srv = LoadServer(exe, url, port, work / f"server-{name}.log", 4096,
                             ["--rate-limit-calls", "0"])
            servers.append(srv)
            reps[name] = Replica(name, srv, AConn(port))
        for srv in servers:
            srv.wait_ready()
        log("replicas " + ", ".join(f"{n} on {HOST}:{r.port}" for n, r in reps.items()))

        m = load.run_async(run_all(out, reps, exe, url, admin, alice_pat, repeats))
        summarize(out, m, repeats)
        for name, srv in zip("ABC", servers):
            alive = srv.alive()
            found = srv.log_findings()
            out.check(f"replica {name} stayed up, no panic or ERROR in its log",
                      alive and found["panic"] == 0 and found["ERROR"] == 0,
                      f"alive={alive} {fmt_counts(found)}")
            sub = Outcome(f"replicas-{name}", "")
            load.log_examples(sub, srv)
            out.notes += [f"replica {name}: {n}" for n in sub.notes]
    except (Interrupted, KeyboardInterrupt) as e:
        log(f"interrupted ({e}); cleaning up")
        RESOURCES.cleanup()
        return 130
    except Exception as e:  # noqa: BLE001 - a failed run
        traceback.print_exc()
        out.check("experiment ran", False, f"{type(e).__name__}: {e}")
    finally:
        for srv in servers:
            srv.stop()
        RESOURCES.cleanup()
    out.seconds = time.monotonic() - t0
    if out.rows:
        print(table(["measure", "repeats", "replica A", "replica B", "replica C",
                     "max ms (replicas that must catch up)", "must be immediate", "flaps",
                     "result"], out.rows))
    print(f"times in ms from the change's acknowledgement to the first answer showing it; "
          f"'first k/n': the very first answer already showed it; polling every "
          f"{POLL_EVERY * 1000:.0f} ms; bound {BOUND:.0f} s")
    for n in out.notes:
        print(f"  note: {n}")
    for name, ok, detail in out.checks:
        print(f"  {'ok    ' if ok else 'FAILED'} {name}" + (f": {detail}" if detail and not ok
                                                             else ""))
    print(f"\nmode: {'short' if args.short else 'full'}, {repeats} repeats, total "
          f"{out.seconds:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"rows": out.rows, "data": out.data,
                                         "notes": out.notes,
                                         "checks": [{"name": n, "ok": ok, "detail": d}
                                                    for n, ok, d in out.checks]},
                                        indent=2, default=str))
    print("RESULT: " + ("PASS" if out.ok else "FAIL"))
    return 0 if out.ok else 1


if __name__ == "__main__":
    sys.exit(main())
