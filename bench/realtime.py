#!/usr/bin/env python3
"""The realtime benchmark: many event-stream and DDP subscribers on one server.

One release server on a fresh SQLite database (an admin with a token, the documented example),
then:

1. the endpoint's throughput (`GET /api/v1/getLatestImportOperations`, wrk) with no subscriber;
2. SSE subscribers (`GET /api/v1/import.operations.events`, default 5 000) and DDP connections
   (`/websocket`, logged-in-free `stream-importers` subscriptions, default 1 000), opened by
   worker processes (raw sockets, a minimal WebSocket client);
3. upserts (`POST /api/v1/import.operations.upsert`), one at a time: for each, the time from
   just before the request to each subscriber's receipt of its event (SSE `data:` naming the
   operation, DDP `changed` with its progress), taken when the client's event loop reads the
   bytes (the clients parse nothing until the end, so that their own work weighs as little as
   possible on the two cores they share with the server); the 99th percentile of every
   upsert must be within 250 ms; and the server's CPU time per upsert and fan-out;
4. the server's resident memory with them all connected (at most 256 MB);
5. the endpoint's throughput again, with them connected, and once more after they are gone:
   the run with them at least 0.8 of the mean of the two without (which cancels the drift of
   a noisy machine over the run).

Usage: python3 bench/realtime.py [--sse 5000] [--ddp 1000] [--upserts 10] [--smoke]
The binary is target/release/importops (or IMPORTOPS_BIN); wrk must be installed.
Prints each figure and `realtime: PASS` or `realtime: FAIL (...)`; exits non-zero on a miss.
"""

import argparse
import base64
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY = Path(os.environ.get("IMPORTOPS_BIN", ROOT / "target" / "release" / "importops"))
HOST = "127.0.0.1"
DELIVERY_MS = 250.0
RSS_MB = 256.0
THROUGHPUT_RATIO = 0.8


def log(msg: str) -> None:
    print(f"== {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def raise_descriptor_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def importops(url: str, *args: str) -> str:
    out = subprocess.run([str(BINARY), "--database-url", url, *args], capture_output=True,
                         text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"importops {' '.join(args)}: {out.stderr}")
    return out.stdout


def http(port: int, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection((HOST, port), timeout=10) as s:
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
        for k, v in headers.items():
            head += f"{k}: {v}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def cpu_seconds(pid: int) -> float:
    """The process's user and system CPU time so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, float]:
    text = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024
    hwm = int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024
    return rss, hwm


def wrk(port: int, headers: dict, seconds: int, connections: int) -> float:
    cmd = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(f"http://{HOST}:{port}/api/v1/getLatestImportOperations")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise SystemExit(f"no Requests/sec in wrk's output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise SystemExit(f"wrk saw {non2xx.group(1)} answers that were not 200:\n{out}")
    return float(match.group(1))


# --- The subscribers (worker processes) ----------------------------------------------------

def ws_frame(text: str) -> bytes:
    """A masked client text frame."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 65536:
        head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Subscriber:
    """One subscriber's connection (an asyncio protocol, so that bytes are timestamped the
    moment the event loop reads them and nothing is parsed until the run is over): the HTTP
    request, the answer's head, then each read kept as (time, bytes). A DDP connection also
    splits frames as they come, to answer the server's pings and to see `ready`."""

    def __init__(self, request: bytes, kind: str, opened):
        self.request, self.kind, self.opened = request, kind, opened
        self.head = b""
        self.body = False
        self.reads: list[tuple[float, bytes]] = []
        self.frames = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes):
        at = time.time()
        if not self.body:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, data = self.head.split(b"\r\n\r\n", 1)
            self.body = True
            want = b" 200 " if self.kind == "sse" else b" 101 "
            status = head.split(b"\r\n", 1)[0]
            if want not in status:
                self.fail(f"{self.kind} answered {status!r}")
                return
            if self.kind == "sse":
                self.done()
            else:
                self.transport.write(ws_frame(json.dumps({"msg": "connect", "version": "1", "support": ["1"]})))
                self.transport.write(ws_frame(json.dumps({
                    "msg": "sub", "id": "s", "name": "stream-importers",
                    "params": ["progress", {"useCollection": False, "args": []}]})))
            if not data:
                return
        if self.kind == "sse":
            self.reads.append((at, data))
            return
        self.frames += data
        while len(self.frames) >= 2:
            n, start = self.frames[1] & 0x7F, 2
            if n == 126:
                n, start = int.from_bytes(self.frames[2:4], "big"), 4
            elif n == 127:
                n, start = int.from_bytes(self.frames[2:10], "big"), 10
            if len(self.frames) < start + n:
                return
            payload = self.frames[start:start + n]
            self.frames = self.frames[start + n:]
            if payload.startswith(b'{"msg":"changed"'):
                self.reads.append((at, payload))
            elif payload == b'{"msg":"ping"}':
                self.transport.write(ws_frame('{"msg":"pong"}'))
            elif b'"msg":"ready"' in payload:
                self.done()

    def done(self):
        if not self.opened.done():
            self.opened.set_result(None)

    def fail(self, why: str):
        if not self.opened.done():
            self.opened.set_exception(RuntimeError(why))

    def connection_lost(self, exc):
        self.fail("closed before it was ready")

    def received(self) -> list[tuple[str, float]]:
        """(key, time) of each event read: SSE by operation id, DDP by its progress payload."""
        out = []
        if self.kind == "sse":
            pending = b""
            for at, data in self.reads:
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.startswith(b"data: "):
                        try:
                            out.append((json.loads(line[6:])["_id"], at))
                        except (ValueError, KeyError):
                            pass
        else:
            for at, payload in self.reads:
                message = json.loads(payload)
                out.append(("ddp:" + json.dumps(message["fields"]["args"][0], sort_keys=True), at))
        return out


def worker(index: int, port: int, headers: dict, sse: int, ddp: int, ready, results) -> None:
    """Opens `sse` event streams and `ddp` DDP subscriptions, then, when told to stop
    (SIGTERM), reports the receipt time of each event (by operation id)."""
    import asyncio

    raise_descriptor_limit()
    sse_request = "GET /api/v1/import.operations.events HTTP/1.1\r\nHost: x\r\n"
    for k, v in headers.items():
        sse_request += f"{k}: {v}\r\n"
    sse_request = (sse_request + "\r\n").encode()

    def ddp_request() -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (f"GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n\r\n").encode()

    async def main():
        loop = asyncio.get_running_loop()
        subscribers: list[Subscriber] = []
        errors = []
        gate = asyncio.Semaphore(64)

        async def open_one(kind: str):
            async with gate:
                opened = loop.create_future()
                request = sse_request if kind == "sse" else ddp_request()
                try:
                    _, sub = await loop.create_connection(
                        lambda: Subscriber(request, kind, opened), HOST, port)
                    await asyncio.wait_for(opened, 60)
                    subscribers.append(sub)
                except Exception as e:  # noqa: BLE001 - reported as a count
                    errors.append(str(e))

        await asyncio.gather(*(open_one("sse") for _ in range(sse)),
                             *(open_one("ddp") for _ in range(ddp)))
        ready.put((index, len(subscribers), errors[:3]))
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        received: dict[str, list[float]] = {}
        for sub in subscribers:
            for key, at in sub.received():
                received.setdefault(key, []).append(at)
        results.put((index, received))

    asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sse", type=int, default=5000, help="event-stream subscribers (5000)")
    parser.add_argument("--ddp", type=int, default=1000, help="DDP subscriptions (1000)")
    parser.add_argument("--upserts", type=int, default=10, help="upserts measured (10)")
    parser.add_argument("--workers", type=int, default=4, help="client processes (4)")
    parser.add_argument("--wrk-seconds", type=int, default=10, help="each throughput run (10 s)")
    parser.add_argument("--smoke", action="store_true",
                        help="a short run: 500 SSE, 100 DDP, 3 upserts, 3 s throughput runs")
    opts = parser.parse_args()
    if opts.smoke:
        opts.sse, opts.ddp, opts.upserts, opts.wrk_seconds = 500, 100, 3, 3
    if not BINARY.exists():
        raise SystemExit(f"no binary at {BINARY}: cargo build --release")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    limit = raise_descriptor_limit()
    per_worker = (opts.sse + opts.ddp) // opts.workers + 64
    if limit < per_worker or limit < opts.sse + opts.ddp + 512:
        raise SystemExit(f"the descriptor limit ({limit}) is too low for {opts.sse + opts.ddp} connections")

    tmp = Path(tempfile.mkdtemp(prefix="importops-realtime."))
    url = f"sqlite://{tmp}/importops.db"
    importops(url, "ops", "load", str(ROOT / "fixtures" / "documented-operations.json"))
    importops(url, "user", "add", "admin", "--role", "admin")
    creds = json.loads(importops(url, "token", "issue", "admin", "--json"))
    headers = {"X-User-Id": creds["userId"], "X-Auth-Token": creds["authToken"]}
    port = free_port()
    env = dict(os.environ, RUST_LOG="warn", IMPORTOPS_ACCESS_LOG="false",
               IMPORTOPS_MAX_CONNECTIONS=str(opts.sse + opts.ddp + 1024))
    server = subprocess.Popen([str(BINARY), "--database-url", url, "serve", "--listen", f"{HOST}:{port}"],
                              stdout=open(tmp / "server.log", "w"), stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)
    workers = []
    failures = []
    try:
        for _ in range(100):
            try:
                if http(port, "GET", "/livez", {})[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        log(f"server pid {server.pid} on port {port}; descriptor limit {limit}")
        log(f"throughput without subscribers ({opts.wrk_seconds} s, wrk 2 threads, 32 connections)")
        before = wrk(port, headers, opts.wrk_seconds, 32)
        log(f"   {before:.0f} requests/s")
        rss_idle, _ = rss_mb(server.pid)

        log(f"opening {opts.sse} event streams and {opts.ddp} DDP subscriptions in {opts.workers} processes")
        ready, results = mp.Queue(), mp.Queue()
        t0 = time.time()
        for i in range(opts.workers):
            share_sse = opts.sse // opts.workers + (1 if i < opts.sse % opts.workers else 0)
            share_ddp = opts.ddp // opts.workers + (1 if i < opts.ddp % opts.workers else 0)
            p = mp.Process(target=worker, args=(i, port, headers, share_sse, share_ddp, ready, results))
            p.start()
            workers.append(p)
        opened = 0
        for _ in workers:
            _i, n, errors = ready.get(timeout=600)
            opened += n
            if errors:
                log(f"   errors: {errors}")
        log(f"   {opened} open in {time.time() - t0:.1f} s")
        if opened != opts.sse + opts.ddp:
            failures.append(f"only {opened} of {opts.sse + opts.ddp} subscribers connected")
        idle_from = (time.time(), cpu_seconds(server.pid))
        time.sleep(2)
        upserts_from = (time.time(), cpu_seconds(server.pid))
        # What the server spends with the subscribers connected and nothing to send (each
        # stream's and session's periodic checks), per second.
        idle_cpu = (upserts_from[1] - idle_from[1]) / (upserts_from[0] - idle_from[0])

        sent: dict[str, float] = {}
        progress_keys: dict[str, str] = {}
        for n in range(opts.upserts):
            body = {"type": "Bench", "importerKey": "csv", "status": "importer_importing_messages",
                    "count": {"total": 1000, "completed": n}}
            at = time.time()
            status, answer = http(port, "POST", "/api/v1/import.operations.upsert", headers,
                                  json.dumps(body).encode())
            if status != 200:
                failures.append(f"upsert answered {status}")
                continue
            op_id = json.loads(answer)["operation"]["_id"]
            sent[op_id] = at
            progress = {"key": "csv", "name": "CSV", "step": "importer_importing_messages",
                        "count": {"completed": n, "total": 1000, "error": 0}}
            progress_keys[op_id] = "ddp:" + json.dumps(progress, sort_keys=True)
            time.sleep(0.5)
        time.sleep(1.0)
        upserts_to = (time.time(), cpu_seconds(server.pid))
        # The server's own cost of one upsert and its fan-out, the idle cost taken away: with
        # the delivery times, this tells the server's share from the clients'.
        fan_out_ms = ((upserts_to[1] - upserts_from[1]) - idle_cpu * (upserts_to[0] - upserts_from[0])) \
            * 1000 / max(1, len(sent))
        rss, hwm = rss_mb(server.pid)

        log(f"throughput with them connected ({opts.wrk_seconds} s)")
        during = wrk(port, headers, opts.wrk_seconds, 32)
        log(f"   {during:.0f} requests/s")

        for p in workers:
            os.kill(p.pid, signal.SIGTERM)
        merged: dict[str, list[float]] = {}
        for _ in workers:
            _i, received = results.get(timeout=120)
            for k, v in received.items():
                merged.setdefault(k, []).extend(v)
        for p in workers:
            p.join(timeout=30)
        time.sleep(2)
        log(f"throughput again once they are gone ({opts.wrk_seconds} s)")
        after = wrk(port, headers, opts.wrk_seconds, 32)
        log(f"   {after:.0f} requests/s")
        worst_p99 = 0.0
        for op_id, at in sent.items():
            for kind, key, expected in (("sse", op_id, opts.sse), ("ddp", progress_keys[op_id], opts.ddp)):
                if expected == 0:
                    continue
                delays = sorted((t - at) * 1000 for t in merged.get(key, []))
                got = len(delays)
                if got < expected:
                    # The missing ones count as never delivered.
                    delays += [float("inf")] * (expected - got)
                p99 = delays[max(0, int(len(delays) * 0.99) - 1)]
                p50 = statistics.median(delays)
                worst_p99 = max(worst_p99, p99)
                log(f"   {kind} upsert {op_id}: {got}/{expected} delivered, p50 {p50:.0f} ms, p99 {p99:.0f} ms")
        # Without subscribers both before and after: the machine's drift over the run cancels.
        without = (before + after) / 2
        ratio = during / without if without else 0.0
        print()
        print(f"subscribers: {opts.sse} SSE + {opts.ddp} DDP; upserts: {len(sent)}")
        print(f"delivery p99 (worst upsert): {worst_p99:.0f} ms (target <= {DELIVERY_MS:.0f} ms)")
        print(f"server CPU: {fan_out_ms:.1f} ms per upsert and its fan-out; {idle_cpu * 100:.1f}% of a core when idle")
        print(f"server RSS: {rss:.1f} MB with them connected (peak {hwm:.1f} MB, idle {rss_idle:.1f} MB; target <= {RSS_MB:.0f} MB)")
        print(f"throughput: {during:.0f} requests/s with them, {before:.0f} before and {after:.0f} after "
              f"without; ratio {ratio:.2f} (target >= {THROUGHPUT_RATIO})")
        if worst_p99 > DELIVERY_MS:
            failures.append(f"delivery p99 {worst_p99:.0f} ms")
        if hwm > RSS_MB:
            failures.append(f"peak RSS {hwm:.1f} MB")
        if ratio < THROUGHPUT_RATIO:
            failures.append(f"throughput ratio {ratio:.2f}")
    finally:
        for p in workers:
            if p.is_alive():
                p.kill()
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"realtime: FAIL ({'; '.join(failures)})")
        return 1
    print("realtime: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
