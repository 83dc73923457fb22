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
   operation, DDP `changed` with its progress); the 99th percentile of every upsert must be
   within 250 ms;
4. the server's resident memory with them all connected (at most 256 MB);
5. the endpoint's throughput again, with them connected: at least 0.8 of the first.

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


def worker(index: int, port: int, headers: dict, sse: int, ddp: int, ready, results) -> None:
    """Opens `sse` event streams and `ddp` DDP subscriptions, then reports the receipt time of
    each event (by operation id) until told to stop (SIGTERM)."""
    import asyncio

    raise_descriptor_limit()
    received: dict[str, list[float]] = {}
    errors = []

    async def open_sse():
        reader, writer = await asyncio.open_connection(HOST, port)
        head = "GET /api/v1/import.operations.events HTTP/1.1\r\nHost: x\r\n"
        for k, v in headers.items():
            head += f"{k}: {v}\r\n"
        writer.write(head.encode() + b"\r\n")
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"SSE answered {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        return reader, writer

    async def read_sse(reader):
        # Chunked transfer: chunk sizes are lines that do not start with a field name.
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"data: "):
                at = time.time()
                try:
                    op_id = json.loads(line[6:])["_id"]
                except (ValueError, KeyError):
                    continue
                received.setdefault(op_id, []).append(at)

    async def open_ddp():
        reader, writer = await asyncio.open_connection(HOST, port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        await writer.drain()
        status = await reader.readline()
        if b" 101 " not in status:
            raise RuntimeError(f"/websocket answered {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(ws_frame(json.dumps({"msg": "connect", "version": "1", "support": ["1"]})))
        writer.write(ws_frame(json.dumps({"msg": "sub", "id": "s", "name": "stream-importers",
                                          "params": ["progress", {"useCollection": False, "args": []}]})))
        await writer.drain()
        while True:
            message = await read_frame(reader)
            if message is None:
                raise RuntimeError("DDP connection closed before ready")
            if message.get("msg") == "ready":
                return reader, writer

    async def read_frame(reader):
        while True:
            head = await reader.readexactly(2)
            opcode, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = int.from_bytes(await reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(n)
            if opcode == 8:
                return None
            if opcode == 1:
                return json.loads(payload)

    async def read_ddp(reader, writer):
        while True:
            try:
                message = await read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if message is None:
                return
            if message.get("msg") == "ping":
                writer.write(ws_frame('{"msg":"pong"}'))
            elif message.get("msg") == "changed":
                at = time.time()
                key = "ddp:" + json.dumps(message["fields"]["args"][0], sort_keys=True)
                received.setdefault(key, []).append(at)

    async def main():
        tasks = []
        # A dropped writer closes its connection: they are kept.
        writers = []
        opened = 0
        for i in range(sse):
            try:
                reader, writer = await open_sse()
                writers.append(writer)
                tasks.append(asyncio.create_task(read_sse(reader)))
                opened += 1
            except Exception as e:  # noqa: BLE001 - reported as a count
                errors.append(str(e))
        for i in range(ddp):
            try:
                reader, writer = await open_ddp()
                tasks.append(asyncio.create_task(read_ddp(reader, writer)))
                opened += 1
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))
        ready.put((index, opened, errors[:3]))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
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
        time.sleep(1)

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
        ratio = during / before if before else 0.0
        print()
        print(f"subscribers: {opts.sse} SSE + {opts.ddp} DDP; upserts: {len(sent)}")
        print(f"delivery p99 (worst upsert): {worst_p99:.0f} ms (target <= {DELIVERY_MS:.0f} ms)")
        print(f"server RSS: {rss:.1f} MB with them connected (peak {hwm:.1f} MB, idle {rss_idle:.1f} MB; target <= {RSS_MB:.0f} MB)")
        print(f"throughput: {before:.0f} -> {during:.0f} requests/s, ratio {ratio:.2f} (target >= {THROUGHPUT_RATIO})")
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
