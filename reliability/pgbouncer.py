#!/usr/bin/env python3
"""importops through PgBouncer in transaction pooling mode (Python 3.11, standard library only).

A fresh database `importops_pgbouncer_<pid>` is made on the shared Postgres at 127.0.0.1:5432
(dropped at the end; nothing there is stopped or broken), and a private PgBouncer (the `pgbouncer`
program, 1.18 or later; run as `nobody` when we are root) listens on a free port in
43000-43999 in front of it with `pool_mode = transaction`, `auth_type = trust` and
`default_pool_size = 2`, so that the replicas' connections really share two server
connections. PgBouncer 1.18 has no support for prepared statements at the protocol level,
and refuses start-up parameters it does not know (such as `extra_float_digits`) unless told to
ignore them. Everything importops does below goes through PgBouncer, with
`--postgres-pooler transaction`:

  migrate         two `importops migrate` at once on the empty database, then a third: all exit 0
  serve           replicas A and B (`importops serve`) start and answer 200 to
                  GET /api/v1/getLatestImportOperations
  write A -> B    POST /api/v1/import.operations.upsert on A (a new operation): time until B
                  shows it, 5 times; each within 1 s
  revoke (CLI)    a token issued by `importops token issue`, used on A and B, revoked by
                  `importops token revoke --token`: time from the command's exit until neither
                  answers 200 with it, 3 times; each within 1 s
  logout A -> B   POST /api/v1/logout on A: time until B answers 401 with that token, 3 times
  load            8 threads for 5 s against A and B, half reading the latest operations, half
                  upserting (which empties the cache, so reads reach the database): no answer
                  but 200, no transport error
  shared          PgBouncer's SHOW SERVERS / SHOW CLIENTS: at most 2 server connections for
                  the database while more clients than that were connected

`--lenient-startup` adds `ignore_startup_parameters = extra_float_digits` to PgBouncer's
settings (a common production setting), which lets a build that sends it get as far as its
first statements. `--short`: 3 s of load.

Usage:  python3 reliability/pgbouncer.py [--short] [--binary PATH] [--seconds S] [--threads N]
                                        [--lenient-startup]
Exit status: 0 when every expectation held, 1 when one failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DEFAULT_BINARY, ENDPOINT, HOST, RESOURCES, Interrupted, KeepAlive, RunAs, Server,
    copy_binary, fmt_counts, free_port, install_cleanup, log, make_workdir, print_checks,
    run_cli,
)

PG_PORT, PG_USER, PG_ADMIN_DB = 5432, "postgres", "test"
POOL_SIZE = 2
BOUND = 1.0  # s: README's bound for a change made by another replica or process
POLL_EVERY = 0.005
POLL_LIMIT = 3.0
UPSERT = "/api/v1/import.operations.upsert"
LOGOUT = "/api/v1/logout"
ME = "/api/v1/me"
# Through the environment rather than the flag, so that a build without the setting runs and
# shows what fails.
POOLER_ENV = {"IMPORTOPS_POSTGRES_POOLER": "transaction"}


def psql(sql: str, port: int = PG_PORT, db: str = PG_ADMIN_DB) -> str:
    res = subprocess.run(["psql", "-h", HOST, "-p", str(port), "-U", PG_USER, "-d", db,
                          "-X", "-A", "-t", "-F", "\t", "-c", sql],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"psql {sql!r}: {res.stderr.strip()}")
    return res.stdout


def start_pgbouncer(workdir: Path, owner: RunAs, lenient: bool) -> int:
    program = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(program).exists():
        raise SystemExit("error: pgbouncer not found (apt-get install pgbouncer)")
    port = free_port()
    users = workdir / "users.txt"
    users.write_text(f'"{PG_USER}" ""\n')
    ini = workdir / "pgbouncer.ini"
    ini.write_text("\n".join([
        "[databases]",
        f"* = host={HOST} port={PG_PORT}",
        "[pgbouncer]",
        f"listen_addr = {HOST}",
        f"listen_port = {port}",
        f"unix_socket_dir = {workdir}",
        "auth_type = trust",
        f"auth_file = {users}",
        f"admin_users = {PG_USER}",
        "pool_mode = transaction",
        f"default_pool_size = {POOL_SIZE}",
        "max_client_conn = 500",
        f"logfile = {workdir / 'pgbouncer.log'}",
        *(["ignore_startup_parameters = extra_float_digits"] if lenient else []),
        "",
    ]))
    for path in (users, ini):
        os.chmod(path, 0o644)
        owner.chown(path)
    out = open(workdir / "pgbouncer.out", "wb")
    proc = RESOURCES.popen(owner.prefix() + [program, str(ini)], stdout=out,
                           stderr=subprocess.STDOUT, cwd="/tmp")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {proc.returncode}: "
                               f"{(workdir / 'pgbouncer.out').read_text(errors='replace')}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("pgbouncer did not listen within 10 s")


def headers(user_id: str, token: str) -> dict:
    return {"X-User-Id": user_id, "X-Auth-Token": token, "Content-Type": "application/json"}


def poll(conn: KeepAlive, path: str, hdrs: dict, shows, since: float) -> float | None:
    """Seconds from `since` until an answer to GET `path` on `conn` `shows` the change."""
    while time.monotonic() - since < POLL_LIMIT:
        r = conn.request("poll", "GET", path, headers=hdrs)
        if r.status is not None and shows(r.status, r.body):
            return r.t1 - since
        time.sleep(POLL_EVERY)
    return None


def fmt_times(times: list[float | None]) -> str:
    return " ".join("never" if t is None else f"{t * 1000:.0f}" for t in times) + " ms"


def within(times: list[float | None]) -> bool:
    return bool(times) and all(t is not None and t <= BOUND for t in times)


def main() -> int:
    install_cleanup()
    checks: list[tuple[str, bool, str]] = []
    try:
        try:
            run(checks)
        except RuntimeError as e:  # a command or a request that the checks needed failed
            checks.append(("completed", False, str(e).replace("\n", " ")[:300]))
        ok = print_checks(checks)
    except Interrupted:
        return 130
    finally:
        RESOURCES.cleanup()
    print("pgbouncer: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


def run(checks: list[tuple[str, bool, str]]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", type=Path,
                    default=Path(os.environ.get("IMPORTOPS_BIN", DEFAULT_BINARY)))
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--lenient-startup", action="store_true")
    args = ap.parse_args()
    seconds = args.seconds or (3.0 if args.short else 5.0)
    os.environ.update(POOLER_ENV)  # for every command and server started below

    owner = RunAs.pick("nobody")
    workdir = make_workdir("importops-pgbouncer-", owner)
    binary = copy_binary(args.binary, workdir, owner)
    db = f"importops_pgbouncer_{os.getpid()}"
    psql(f"CREATE DATABASE {db}")
    RESOURCES.on_cleanup(f"drop {db}", lambda: psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
    port = start_pgbouncer(workdir, owner, args.lenient_startup)
    url = f"postgres://{PG_USER}@{HOST}:{port}/{db}"
    log(f"pgbouncer 127.0.0.1:{port} (transaction pooling, {POOL_SIZE} server connections) "
        f"in front of {db}")

    def cli(cli_args: list[str], stdin: str | None = None) -> str:
        return run_cli(binary, url, cli_args, owner, stdin=stdin)

    # Two replicas migrating an empty database at once, then a third run.
    argv = owner.prefix() + [str(binary), "--database-url", url, "migrate"]
    env = dict(os.environ, HOME=str(workdir))
    both = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd="/tmp", env=env) for _ in range(2)]
    outcomes = []
    for proc in both:
        _, err = proc.communicate(timeout=60)
        outcomes.append((proc.returncode, err.strip()))
    again = subprocess.run(argv, capture_output=True, text=True, cwd="/tmp", env=env, timeout=60)
    outcomes.append((again.returncode, again.stderr.strip()))
    migrated = all(rc == 0 for rc, _ in outcomes)
    checks.append(("migrate", migrated, "exit " + " ".join(str(rc) for rc, _ in outcomes)
                   + "".join(f"; {err.splitlines()[-1] if err else ''}"
                             for rc, err in outcomes if rc != 0)[:300]))
    if not migrated:
        return

    cli(["user", "add", "admin", "--role", "admin"])
    admin = json.loads(cli(["token", "issue", "admin", "--json"]))
    admin_h = headers(admin["userId"], admin["authToken"])

    servers = {}
    for name in ("A", "B"):
        servers[name] = Server(binary, url, free_port(), owner, workdir / f"{name}.log")
    try:
        for s in servers.values():
            s.wait_ready()
    except RuntimeError as e:
        checks.append(("serve", False, str(e)[:300]))
        return
    a, b = KeepAlive(servers["A"].port, 5.0), KeepAlive(servers["B"].port, 5.0)
    first = [c.request("serve", "GET", ENDPOINT, headers=admin_h) for c in (a, b)]
    checks.append(("serve", all(r.status == 200 for r in first),
                   "A " + str(first[0].status) + ", B " + str(first[1].status)
                   + "".join(f"; {r.body[:120]!r}" for r in first if r.status != 200)))

    # Writes on A, seen on B.
    times: list[float | None] = []
    for i in range(5):
        b.request("warm", "GET", ENDPOINT, headers=admin_h)
        body = json.dumps({"type": f"PgBouncer test {i}", "importerKey": "pgbouncer",
                           "status": "importer_importing_messages",
                           "count": {"total": 10, "completed": i}}).encode()
        r = a.request("write", "POST", UPSERT, headers=admin_h, body=body)
        if r.status != 200:
            times.append(None)
            continue
        oid = json.loads(r.body)["operation"]["_id"]

        def shows(status: int, data: bytes, oid=oid) -> bool:
            return status == 200 and any(o.get("_id") == oid for o in json.loads(data))
        times.append(poll(b, ENDPOINT, admin_h, shows, r.t1))
    checks.append(("write A -> B", within(times), fmt_times(times)))

    # A token revoked by the command line stops working on both replicas.
    times = []
    for _ in range(3):
        tok = json.loads(cli(["token", "issue", "admin", "--json"]))
        h = headers(tok["userId"], tok["authToken"])
        warm = [c.request("warm", "GET", ME, headers=h).status for c in (a, b)]
        if warm != [200, 200]:
            times.append(None)
            continue
        cli(["token", "revoke", "--token", tok["authToken"], "admin"])
        exited = time.monotonic()
        worst: float | None = 0.0
        for c in (a, b):
            t = poll(c, ME, h, lambda status, _: status != 200, exited)
            worst = None if t is None or worst is None else max(worst, t)
        times.append(worst)
    checks.append(("revoke (CLI)", within(times), fmt_times(times)))

    # A logout on A stops the token on B.
    times = []
    for _ in range(3):
        tok = json.loads(cli(["token", "issue", "admin", "--json"]))
        h = headers(tok["userId"], tok["authToken"])
        if b.request("warm", "GET", ME, headers=h).status != 200:
            times.append(None)
            continue
        r = a.request("logout", "POST", LOGOUT, headers=h, body=b"")
        times.append(poll(b, ME, h, lambda status, _: status == 401, r.t1)
                     if r.status == 200 else None)
    checks.append(("logout A -> B", within(times), fmt_times(times)))

    # Concurrent reads and writes on both replicas.
    counts: dict = {}
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    peak = {"clients": 0, "servers": 0}

    def worker(n: int) -> None:
        conn = KeepAlive((servers["A"] if n % 2 else servers["B"]).port, 10.0)
        writer = n % 4 < 2
        i = 0
        while time.monotonic() < stop_at:
            i += 1
            if writer:
                body = json.dumps({"type": f"load {n}.{i}", "importerKey": "pgbouncer",
                                   "status": "importer_done",
                                   "count": {"total": 1, "completed": 1}}).encode()
                r = conn.request("upsert", "POST", UPSERT, headers=admin_h, body=body)
            else:
                r = conn.request("read", "GET", ENDPOINT, headers=admin_h)
            key = f"{r.kind} {r.status if r.status is not None else 'error'}"
            with lock:
                counts[key] = counts.get(key, 0) + 1
                if r.status != 200 and len(errors) < 3:
                    errors.append(f"{r.kind}: {r.status} {r.error or r.body[:160]!r}")
        conn.close()

    def watch_pgbouncer() -> None:
        while time.monotonic() < stop_at:
            try:
                clients = sum(1 for line in psql("SHOW CLIENTS", port, "pgbouncer").splitlines()
                              if f"\t{db}\t" in line)
                srv = sum(1 for line in psql("SHOW SERVERS", port, "pgbouncer").splitlines()
                          if f"\t{db}\t" in line)
            except RuntimeError:
                clients, srv = 0, 0
            peak["clients"] = max(peak["clients"], clients)
            peak["servers"] = max(peak["servers"], srv)
            time.sleep(0.25)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.threads)]
    threads.append(threading.Thread(target=watch_pgbouncer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(counts.values())
    bad = sum(v for k, v in counts.items() if not k.endswith(" 200"))
    checks.append(("load", total > 0 and bad == 0,
                   f"{args.threads} threads {seconds:.0f} s: {fmt_counts(counts)} "
                   f"({total / seconds:.0f}/s)" + "".join(f"; {e}" for e in errors)))
    checks.append(("shared", 0 < peak["servers"] <= POOL_SIZE < peak["clients"],
                   f"peak {peak['clients']} clients on {peak['servers']} server connections"))

    for name, s in servers.items():
        if not s.alive():
            checks.append((f"replica {name} alive", False, s.log_tail(5)))


if __name__ == "__main__":
    sys.exit(main())
