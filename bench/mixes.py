"""The benchmark's realistic mixes (`bench/run --mixes`): the endpoint under the traffic a bad day
brings, each measured as a ratio against a plain run on the same server in the same round.

Used by bench.py, which hands over its helpers with `init(module)`. One server per backend,
started with `--trust-proxy` (each request's client address is the last `X-Forwarded-For`
entry) and a rate limit of RATE_LIMIT_CALLS per minute, so that every call is counted by the
limiter but none is refused: the answers stay comparable (all 200) whatever the number of
clients. See bench/README.md for what each mix sends and the targets.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import os
import queue
import random
import re
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

B = None  # the bench module (bench.py), set by init()

LUA = Path(__file__).resolve().parent / "rotate.lua"
RATE_LIMIT_CALLS = 1_000_000_000
WRONG_TOKENS = 1000  # distinct wrong tokens, cycled: clients retrying with stale tokens
FEW_CLIENTS, MANY_CLIENTS = 1000, 100_000
FLOOD_CLIENTS = 2000
WRITE_PERIOD_S = 0.010
WRITER_THREADS = 4  # upserts in flight at most
FLOOD_PASSWORD = "bench-flood-password"
UPSERT = "/api/v1/import.operations.upsert"
LOGIN = "/api/v1/login"



def num(n: int) -> str:
    """1 000 000, as the report writes numbers."""
    return f"{n:,}".replace(",", " ")


# ratio name -> (numerator target, denominator target, threshold, description)
RATIOS = {
    "wrong_tokens": ("wrong", "valid", 0.6, "wrong tokens (401) / valid token req/s"),
    "reads_with_writes": ("writes", "valid", 0.85, "reads with an upsert every 10 ms / reads alone"),
    "many_clients": ("clients_many", "clients_few", 0.8,
                     f"rate-limited reads from {num(MANY_CLIENTS)} / from {num(FEW_CLIENTS)} addresses"),
    "login_flood": ("flood", "valid", 0.5,
                    f"cached reads during a login flood from {num(FLOOD_CLIENTS)} addresses / cached reads alone"),
}
TARGET_LIMITER_RSS_MB = 64.0
TARGET_SESSIONS_RSS_MB = 128.0
TARGET_SESSIONS_HIT = 0.95
ROUND_ORDER = ["valid", "wrong", "writes", "clients_few", "clients_many", "flood"]
EXPECTED = {"wrong": "401"}  # a target's expected status on the endpoint; others 200


def init(bench_module) -> None:
    global B
    B = bench_module


# --------------------------------------------------------------------------------------------
# Data


def raw_token() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def hashed(raw: str) -> str:
    return base64.b64encode(hashlib.sha256(raw.encode()).digest()).decode()


def seed_sessions(url: str, user_id: str, count: int) -> list[str]:
    """`count` login tokens of `user_id` written straight into the sessions table (the CLI issues
    one per process); the raw tokens."""
    tokens = [raw_token() for _ in range(count)]
    now = int(time.time() * 1000)
    rows = [(user_id, hashed(t), "login", now) for t in tokens]
    if url.startswith("sqlite://"):
        db = sqlite3.connect(url[len("sqlite://"):], timeout=30)
        with db:
            db.executemany("INSERT INTO sessions (user_id, hashed_token, kind, issued_at) VALUES (?,?,?,?)",
                           rows)
        db.close()
    else:
        data = "".join(f"{u}\t{h}\t{k}\t{t}\n" for u, h, k, t in rows)
        cp = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c",
                             "COPY sessions (user_id, hashed_token, kind, issued_at) FROM STDIN"],
                            input=data, text=True, capture_output=True, timeout=600)
        if cp.returncode != 0:
            raise B.BenchError(f"seeding {count} sessions failed: {cp.stderr.strip()[:300]}")
    return tokens


def write_requests(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def get_line(user: str, token: str, xff: str | None = None) -> str:
    parts = ["GET", B.ENDPOINT, "", f"X-User-Id: {user}", f"X-Auth-Token: {token}"]
    if xff:
        parts.append(f"X-Forwarded-For: {xff}")
    return "\t".join(parts)


def address(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


# --------------------------------------------------------------------------------------------
# /metrics


METRIC = re.compile(r'^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$')


def metrics(port: int) -> dict[tuple, float]:
    status, _, body = B.http_get(port, "/metrics", {})
    if status != 200:
        raise B.BenchError(f"/metrics answered {status}")
    out = {}
    for line in body.decode().splitlines():
        m = METRIC.match(line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2))))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def diff(after: dict, before: dict, name: str, **match: str) -> dict[tuple, float]:
    """The growth of `name`'s series whose labels include `match`, by their other labels."""
    out = {}
    for (n, labels), v in after.items():
        d = dict(labels)
        if n != name or any(d.get(k) != want for k, want in match.items()):
            continue
        rest = tuple((k, x) for k, x in labels if k not in match)
        grown = v - before.get((n, labels), 0.0)
        if grown:
            out[rest] = grown
    return out


def statuses(after: dict, before: dict, route: str) -> dict[str, int]:
    grown = diff(after, before, "importops_http_requests_total", route=route)
    out: dict[str, int] = {}
    for labels, v in grown.items():
        s = dict(labels).get("status", "?")
        out[s] = out.get(s, 0) + int(v)
    return out


def drain(port: int, limit_s: float = 60.0) -> float:
    """Waits until the server has no request in flight but the /metrics one (at most limit_s);
    the seconds waited."""
    t = time.perf_counter()
    while time.perf_counter() - t < limit_s:
        _, _, body = B.http_get(port, "/metrics", {})
        m = re.search(rb"^importops_http_requests_in_flight\s+([0-9.eE+-]+)", body, re.M)
        if m is None or float(m.group(1)) <= 1:
            break
        time.sleep(0.25)
    return time.perf_counter() - t


def vm_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------------------------
# Background load: the writer thread and the login flood


class Writer(threading.Thread):
    """One `import.operations.upsert` of the same operation every WRITE_PERIOD_S, whatever the time
    an upsert takes: a tick hands the upsert to one of WRITER_THREADS senders, each with its own
    keep-alive connection; a tick that finds them all busy is skipped (counted), never sent late
    in a burst."""

    def __init__(self, port: int, headers: dict[str, str], op_id: str):
        super().__init__(daemon=True)
        self.port, self.headers, self.op_id = port, headers, op_id
        self.stop = threading.Event()
        self.done = 0
        self.skipped = 0
        self.failed: list[str] = []
        self.lock = threading.Lock()

    def upsert(self, conn: http.client.HTTPConnection) -> bool:
        body = json.dumps({"_id": self.op_id, "type": "CSV", "importerKey": "csv",
                           "status": "importer_importing_messages",
                           "count": {"total": 1_000_000, "completed": self.done % 1_000_000}})
        try:
            conn.request("POST", UPSERT, body=body, headers={**self.headers, "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as e:
            if len(self.failed) < 5:
                self.failed.append(type(e).__name__)
            conn.close()  # reconnects at the next request
            return False
        with self.lock:
            if resp.status == 200:
                self.done += 1
                return True
            if len(self.failed) < 5:
                self.failed.append(str(resp.status))
        return False

    def send(self, ticks: queue.Queue) -> None:
        conn = http.client.HTTPConnection(B.HOST, self.port, timeout=10)
        try:
            while ticks.get() is not None:
                self.upsert(conn)
        finally:
            conn.close()

    def run(self) -> None:
        ticks: queue.Queue = queue.Queue(maxsize=WRITER_THREADS)
        senders = [threading.Thread(target=self.send, args=(ticks,), daemon=True) for _ in range(WRITER_THREADS)]
        for t in senders:
            t.start()
        next_t = time.monotonic()
        while not self.stop.is_set():
            try:
                ticks.put_nowait(1)
            except queue.Full:
                self.skipped += 1
            next_t += WRITE_PERIOD_S
            self.stop.wait(max(0.0, next_t - time.monotonic()))
        for t in senders:
            ticks.put(None)
        for t in senders:
            t.join(timeout=15)


# --------------------------------------------------------------------------------------------
# Many sessions: a Python client (wrk cannot send each request of a list exactly once)


async def _pass(port: int, requests: list[bytes], connections: int) -> tuple[float, dict[int, int]]:
    it = iter(requests)
    counts: dict[int, int] = {}

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(B.HOST, port)
        try:
            for req in it:
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if m:
                    await reader.readexactly(int(m.group(1)))
                counts[status] = counts.get(status, 0) + 1
        finally:
            writer.close()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - t, counts


def one_pass(port: int, user: str, tokens: list[str], connections: int) -> dict:
    reqs = [(f"GET {B.ENDPOINT} HTTP/1.1\r\nHost: {B.HOST}:{port}\r\nX-User-Id: {user}\r\n"
             f"X-Auth-Token: {t}\r\n\r\n").encode() for t in tokens]
    before = metrics(port)
    seconds, counts = asyncio.run(_pass(port, reqs, connections))
    after = metrics(port)
    looked = diff(after, before, "importops_cache_lookups_total", kind="session")
    hits = sum(v for k, v in looked.items() if dict(k).get("result") == "hit")
    misses = sum(v for k, v in looked.items() if dict(k).get("result") == "miss")
    return {"requests": len(reqs), "seconds": seconds, "rps": len(reqs) / seconds, "counts": counts,
            "hits": hits, "misses": misses,
            "hit_ratio": hits / (hits + misses) if hits + misses else None}


# --------------------------------------------------------------------------------------------
# The mix case


@dataclass
class Mix:
    backend: str
    n: int
    sessions: int
    runs: dict[str, list[dict]] = field(default_factory=dict)
    flood_runs: list[dict] = field(default_factory=list)
    writes: list[dict] = field(default_factory=list)
    passes: dict[str, dict] = field(default_factory=dict)
    limiter_rss_mb: float | None = None
    sessions_rss_mb: float | None = None
    flags: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.backend} mixes"

    def med(self, target: str) -> float | None:
        vals = [r["rps"] for r in self.runs.get(target, [])]
        vals.sort()
        if not vals:
            return None
        mid = len(vals) // 2
        return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2

    def ratio(self, name: str) -> float | None:
        a, b, _, _ = RATIOS[name]
        x, y = self.med(a), self.med(b)
        return x / y if x is not None and y else None


@dataclass
class MixRun:
    mix: Mix
    proc: object
    port: int
    logfile: Path
    files: dict[str, Path]
    admin: dict[str, str]
    flood_file: Path
    session_user: str
    session_tokens: list[str]
    one_token: str
    dbname: str | None
    op_id: str


def start(mix: Mix, opts, datafiles: dict, tmp: Path) -> MixRun:
    """Seeds a database (N operations, an admin, a reader without `api-bypass-rate-limit`, a user
    for the login flood, `sessions` tokens), starts the server, checks each request kind."""
    n = mix.n
    if n not in datafiles:
        path = tmp / f"ops-{n}.jsonl"
        B.log(f"   generating {n} operations into {path.name}")
        datafiles[n] = B.generate_ops(path, n)
    if mix.backend == "sqlite":
        dbdir = tmp / "sqlite-mixes"
        dbdir.mkdir(exist_ok=True)
        url = f"sqlite://{dbdir / 'importops.db'}"
        dbname = None
    else:
        dbname = f"importops_bench_{os.getpid()}_mixes"
        B.psql(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        B.RES.add_database(dbname)
        B.psql(f"CREATE DATABASE {dbname}")
        url = B.PG_BASE_URL + dbname
    B.importops(url, "ops", "load", str(datafiles[n]["path"]), timeout=3600)
    B.importops(url, "user", "add", "admin", "--role", "admin")
    B.importops(url, "user", "add", "reader", "--role", "reader")
    B.importops(url, "permission", "set", "view-import-operations", "admin", "reader")
    cp = subprocess.run([str(B.BINARY), "--database-url", url, "user", "add", "flooder", "--password-stdin"],
                        input=FLOOD_PASSWORD + "\n", text=True, capture_output=True, timeout=120,
                        env=B.server_env())
    if cp.returncode != 0:
        raise B.BenchError(f"importops user add flooder failed: {cp.stderr.strip()[:300]}")
    admin = json.loads(B.importops(url, "token", "issue", "admin", "--json"))
    reader = json.loads(B.importops(url, "token", "issue", "reader", "--json"))
    B.log(f"   seeding {mix.sessions} sessions of the admin straight into the database")
    t = time.perf_counter()
    session_tokens = seed_sessions(url, admin["userId"], mix.sessions)
    B.log(f"   seeded in {time.perf_counter() - t:.1f} s")

    files = {}
    files["valid"] = write_requests(tmp / "mix-valid.tsv", [get_line(admin["userId"], admin["authToken"])])
    ids = [admin["userId"], reader["userId"]]
    files["wrong"] = write_requests(tmp / "mix-wrong.tsv",
                                    [get_line(ids[i % 2], raw_token()) for i in range(WRONG_TOKENS)])
    files["writes"] = files["valid"]
    files["flood"] = files["valid"]
    for name, count in (("clients_few", FEW_CLIENTS), ("clients_many", MANY_CLIENTS)):
        files[name] = write_requests(tmp / f"mix-{name}.tsv",
                                     [get_line(reader["userId"], reader["authToken"], address(i))
                                      for i in range(count)])
    login_body = json.dumps({"user": "flooder", "password": FLOOD_PASSWORD})
    flood_file = write_requests(tmp / "mix-login.tsv", [
        "\t".join(["POST", LOGIN, login_body, "Content-Type: application/json",
                   f"X-Forwarded-For: {address(1_000_000 + i)}"]) for i in range(FLOOD_CLIENTS)])

    port = B.free_port()
    logfile = tmp / f"server-{mix.backend}-mixes.log"
    cmd = [str(B.BINARY), "--database-url", url, "serve", "--listen", f"{B.HOST}:{port}",
           "--trust-proxy", "--rate-limit-calls", str(RATE_LIMIT_CALLS), "--rate-limit-window-ms", "60000"]
    proc = B.spawn(cmd, logfile, env=B.server_env())
    hdrs = {"X-User-Id": admin["userId"], "X-Auth-Token": admin["authToken"]}
    B.wait_for_200(proc, port, B.ENDPOINT, hdrs, time.perf_counter(), logfile)

    # Each kind of request answers what it should, once, before any load.
    checks = [
        ("the reader", {"X-User-Id": reader["userId"], "X-Auth-Token": reader["authToken"],
                        "X-Forwarded-For": address(7)}, 200),
        ("a wrong token", {"X-User-Id": admin["userId"], "X-Auth-Token": raw_token()}, 401),
        ("a seeded session", {"X-User-Id": admin["userId"], "X-Auth-Token": session_tokens[0]}, 200),
    ]
    for what, h, want in checks:
        status, resp_headers, body = B.http_get(port, B.ENDPOINT, h)
        if status != want:
            raise B.BenchError(f"{mix.label}: {what} answered {status}, not {want}: {body[:200]!r}")
        if what == "the reader" and "x-ratelimit-limit" not in resp_headers:
            raise B.BenchError(f"{mix.label}: the reader's answer has no X-RateLimit-Limit: it is not "
                               "rate limited")
    conn = http.client.HTTPConnection(B.HOST, port, timeout=30)
    conn.request("POST", LOGIN, body=login_body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    if resp.status != 200:
        raise B.BenchError(f"{mix.label}: the flood's login answered {resp.status}: {body[:200]!r}")
    op_id = "".join(random.Random(mix.n).choices(B.METEOR_ALPHABET, k=17))
    w = Writer(port, hdrs, op_id)
    if not w.upsert(http.client.HTTPConnection(B.HOST, port, timeout=10)):  # creates the operation
        raise B.BenchError(f"{mix.label}: the first upsert failed: {w.failed}")
    if opts.warmup > 0:
        B.log(f"   warm-up {opts.warmup} s: endpoint")
        B.run_wrk(f"http://{B.HOST}:{port}{B.ENDPOINT}", hdrs, opts.warmup, opts.connections)
    return MixRun(mix, proc, port, logfile, files, hdrs, flood_file, admin["userId"], session_tokens,
                  admin["authToken"], dbname, op_id)


def wrk_args(url: str, file: Path, duration: int, connections: int, timeout_s: int = 2) -> list[str]:
    return ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", f"--timeout={timeout_s}s", "--latency",
            "-s", str(LUA), url, "--", str(file)]


def run_wrk_file(url: str, file: Path, duration: int, connections: int) -> dict:
    out = B.run(wrk_args(url, file, duration, connections), timeout=duration + 120, what="wrk")
    res = B.parse_wrk(out)
    res["raw"] = out
    return res


def parse_flood(out: str) -> dict:
    """The flood's wrk figures; leniently, as none of its logins may finish in time."""
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    t = re.search(r"Socket errors: connect \d+, read \d+, write \d+, timeout (\d+)", out)
    return {"rps": float(m.group(1)) if m else None, "timeouts": int(t.group(1)) if t else 0}


def run_round(run: MixRun, r: int, opts) -> None:
    mix = run.mix
    url = f"http://{B.HOST}:{run.port}{B.ENDPOINT}"
    for name in ROUND_ORDER:
        writer = flood = None
        if name == "writes":
            writer = Writer(run.port, run.admin, run.op_id)
            writer.start()
        if name == "flood":
            # The flood starts a second before the reads and ends a second after them.
            flood_before = metrics(run.port)
            flood = subprocess.Popen(
                wrk_args(f"http://{B.HOST}:{run.port}{LOGIN}", run.flood_file, opts.duration + 2,
                         opts.flood_connections, timeout_s=10),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
            time.sleep(1)
        before = metrics(run.port)
        t = time.perf_counter()
        try:
            res = run_wrk_file(url, run.files[name], opts.duration, opts.connections)
        finally:
            seconds = time.perf_counter() - t
            if writer is not None:
                writer.stop.set()
                writer.join(timeout=15)
        after = metrics(run.port)
        got = statuses(after, before, B.ENDPOINT)
        res["round"] = r + 1
        res["statuses"] = got
        mix.runs.setdefault(name, []).append(res)
        line = (f"   {mix.label:22s} round {r + 1}/{opts.rounds} {name:13s} {res['rps']:10.0f} req/s"
                f"  p50 {B.fmt_ms(res['p50'])} ms  p99 {B.fmt_ms(res['p99'])} ms  statuses {got}")
        if writer is not None:
            mix.writes.append({"round": r + 1, "done": writer.done, "rate": writer.done / seconds,
                               "skipped": writer.skipped, "failed": writer.failed})
            line += f"  upserts {writer.done} ({writer.done / seconds:.0f}/s, {writer.skipped} ticks skipped)"
            if writer.failed:
                mix.flags.append(f"round {r + 1}: upserts failed: {writer.failed}")
        if flood is not None:
            try:
                out, _ = flood.communicate(timeout=opts.duration + 120)
            except subprocess.TimeoutExpired:
                flood.kill()
                out, _ = flood.communicate()
            fres = parse_flood(out)
            if fres["rps"] is None:
                mix.flags.append(f"round {r + 1}: the flood's wrk printed no rate: {out.strip()[-300:]!r}")
            # Let queued password checks drain before the next target (and count them).
            drained_s = drain(run.port)
            time.sleep(3)  # and the password checks of logins whose clients hung up
            fres["statuses"] = statuses(metrics(run.port), flood_before, LOGIN)
            fres["round"] = r + 1
            mix.flood_runs.append(fres)
            fres["drained_s"] = drained_s
            line += (f"  logins {B.fmt(fres['rps'], '.0f')}/s, {fres['timeouts']} timed out, {fres['statuses']}, "
                     f"drained {drained_s:.1f} s after")
        B.log(line)
        if run.proc.poll() is not None:
            raise B.BenchError(f"{mix.label}: importops died (exit {run.proc.returncode}); its log ends:\n"
                               f"{B.log_tail(run.logfile)}")
        want = EXPECTED.get(name, "200")
        unexpected = {s: c for s, c in got.items() if s != want}
        if unexpected or not got:
            mix.flags.append(f"{name} round {r + 1}: statuses {got} (expected only {want})")
            raise B.BenchError(f"{mix.label}: {name}: unexpected statuses {got} (expected only {want})")
    rss = vm_rss_mb(run.proc.pid)
    if rss is not None:
        mix.limiter_rss_mb = max(mix.limiter_rss_mb or 0.0, rss)


def run_sessions(run: MixRun, opts) -> None:
    """Two passes over the seeded sessions, one request each, then a pass of as many requests
    with one token; the second pass's session-cache hits come from /metrics."""
    mix = run.mix
    mix.limiter_rss_mb = max(mix.limiter_rss_mb or 0.0, B.vm_hwm_mb(run.proc.pid) or 0.0)
    for name, tokens in (("first", run.session_tokens), ("second", run.session_tokens),
                         ("one_session", [run.one_token] * len(run.session_tokens))):
        p = one_pass(run.port, run.session_user, tokens, opts.connections)
        mix.passes[name] = p
        hit = "-" if p["hit_ratio"] is None else f"{p['hit_ratio'] * 100:.1f}%"
        B.log(f"   {mix.label:22s} sessions pass {name:11s} {p['rps']:8.0f} req/s  statuses {p['counts']}"
              f"  session cache hits {hit}")
        bad = {s: c for s, c in p["counts"].items() if s != 200}
        if bad:
            mix.flags.append(f"sessions pass {name}: statuses {p['counts']}")
            raise B.BenchError(f"{mix.label}: sessions pass {name}: non-200 answers {bad}")
    mix.sessions_rss_mb = B.vm_hwm_mb(run.proc.pid)


def finish(run: MixRun) -> None:
    B.RES.stop_server(run.proc)
    if run.dbname:
        B.RES.drop_database(run.dbname)


# --------------------------------------------------------------------------------------------
# Report


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def target_rows(mixes: list[Mix]) -> list[list[str]]:
    rows = []
    for m in mixes:
        for name, (a, b, want, what) in RATIOS.items():
            r = m.ratio(name)
            rows.append([f"{m.backend}: {what} >= {want}", B.fmt(m.med(a), ".0f"), B.fmt(m.med(b), ".0f"),
                         B.fmt(r, ".2f"), "n/a (not run)" if r is None else mark(r >= want)])
        v = m.limiter_rss_mb
        rows.append([f"{m.backend}: peak RSS after the rounds (limiter from {num(MANY_CLIENTS)} addresses) "
                     f"<= {TARGET_LIMITER_RSS_MB:.0f} MB", B.fmt(v, ".1f"), "", "",
                     "n/a" if v is None else mark(v <= TARGET_LIMITER_RSS_MB)])
        second = m.passes.get("second")
        h = second["hit_ratio"] if second else None
        rows.append([f"{m.backend}: {num(m.sessions)} sessions, second pass served from the session cache "
                     f">= {TARGET_SESSIONS_HIT:.0%} (/metrics)", "-" if h is None else f"{h * 100:.1f}%",
                     "", "", "n/a" if h is None else mark(h >= TARGET_SESSIONS_HIT)])
        one = m.passes.get("one_session")
        if second and one:
            rows.append([f"{m.backend}: second pass req/s / one-session pass req/s (for information)",
                         f"{second['rps']:.0f}", f"{one['rps']:.0f}", f"{second['rps'] / one['rps']:.2f}", ""])
        v = m.sessions_rss_mb
        rows.append([f"{m.backend}: peak RSS after the {num(m.sessions)} sessions <= {TARGET_SESSIONS_RSS_MB:.0f} MB",
                     B.fmt(v, ".1f"), "", "", "n/a" if v is None else mark(v <= TARGET_SESSIONS_RSS_MB)])
    return rows


def report(mixes: list[Mix], opts) -> list[str]:
    L = ["\n## Mixes\n"]
    L.append(f"One server per backend, N={num(mixes[0].n)} operations, `--trust-proxy --rate-limit-calls "
             f"{RATE_LIMIT_CALLS}`; in each round, in turn: {', '.join(ROUND_ORDER)} (wrk with "
             f"`bench/rotate.lua`, {opts.connections} connections, {opts.duration} s; the login flood "
             f"with {opts.flood_connections} more); statuses counted by the server's /metrics; "
             "medians over the rounds. `valid` is the denominator of the wrong-token, write and flood "
             "ratios.\n")
    L.append(B.md_table(["target", "measured", "against", "ratio", ""], target_rows(mixes)))
    L.append("")
    for m in mixes:
        for w in m.writes:
            L.append(f"- {m.backend} round {w['round']}: {w['done']} upserts during the reads "
                     f"({w['rate']:.0f}/s, {w['skipped']} ticks skipped as {WRITER_THREADS} were in flight){'; failed: ' + ', '.join(w['failed']) if w['failed'] else ''}")
        for f in m.flood_runs:
            L.append(f"- {m.backend} round {f['round']}: login flood {B.fmt(f['rps'], '.0f')} answers/s "
                     f"(wrk), {f['timeouts']} timed out after 10 s, statuses (/metrics, once the server "
                     f"drained, {f['drained_s']:.1f} s after) {f['statuses']}")
        for name, p in m.passes.items():
            hit = "-" if p["hit_ratio"] is None else f"{p['hit_ratio'] * 100:.1f}%"
            L.append(f"- {m.backend} sessions pass `{name}`: {p['requests']} requests in {p['seconds']:.1f} s "
                     f"({p['rps']:.0f} req/s, Python client, {opts.connections} connections), "
                     f"session cache hits {int(p['hits'])}, misses {int(p['misses'])} ({hit})")
        for f in m.flags:
            L.append(f"- {m.backend} FLAG: {f}")
        if m.error:
            L.append(f"- {m.backend} ERROR: {m.error}")
    return L


def every_run_rows(mixes: list[Mix]) -> list[list[str]]:
    rows = []
    for m in mixes:
        for name, runs in m.runs.items():
            for res in runs:
                rows.append([m.backend, "mixes", str(res["round"]), name, f"{res['rps']:.0f}",
                             B.fmt_ms(res["p50"]), B.fmt_ms(res["p99"]), str(res["requests"]),
                             str(res["non2xx"]), str(res["socket_errors"])])
    return rows
