#!/usr/bin/env python3
"""A Slack import end to end, timed (Python 3.11, standard library only).

Generates a Slack export of 200 000 messages in 20 channels (streamed into a zip, one file per
channel and day), starts a release server on a fresh SQLite database with an admin, hands it the
archive (`downloadPublicImportFile` by its path under the import folder, or `uploadImportFile`
in base64 with --upload), checks `getImportFileData` against the counts the generator wrote,
runs `startImport` of everything and polls `getImportProgress` to `importer_done`, while a
second thread reads `getLatestImportOperations` as fast as it is answered. Reports the seconds
from `startImport` to done, the server's peak RSS (VmHWM) and the endpoint's p99 meanwhile.
Exits 1 when a step fails, a count differs, or a target is missed (docs: bench/README.md).

    cargo build --release
    bench/import_slack.py                          # 200 000 messages, 20 channels
    bench/import_slack.py --messages 20000         # the short form
    IMPORTOPS_BIN=target/debug/importops bench/import_slack.py --messages 2000 --no-targets

Targets: done within 60 s, peak RSS <= 256 MB, p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY = Path(os.environ["IMPORTOPS_BIN"]) if os.environ.get("IMPORTOPS_BIN") else ROOT / "target" / "release" / "importops"
HOST = "127.0.0.1"

TARGET_DONE_S = 60.0
TARGET_RSS_MB = 256.0
TARGET_P99_MS = 50.0
PER_FILE = 1000  # messages per channel and day


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# The export


def generate(path: Path, users: int, channels: int, messages: int) -> dict:
    """Writes the export and returns what an import of it must show, counted while writing."""
    user_ids = [f"U{i:08d}" for i in range(users)]
    channel_ids = [f"C{i:08d}" for i in range(channels)]
    names = [f"bench-channel-{i}" for i in range(channels)]
    staged = 0
    written = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr(
            "users.json",
            json.dumps(
                [
                    {
                        "id": uid,
                        "name": f"bench.user{i}",
                        "deleted": False,
                        "is_bot": False,
                        "tz_offset": 3600,
                        "profile": {
                            "real_name": f"Bench User {i}",
                            "email": f"bench.user{i}@example.com",
                            "image_512": f"https://avatars.example.com/{uid}.png",
                            "title": "",
                        },
                    }
                    for i, uid in enumerate(user_ids)
                ]
            ),
        )
        z.writestr(
            "channels.json",
            json.dumps(
                [
                    {
                        "id": cid,
                        "name": names[i],
                        "created": 1_500_000_000,
                        "creator": user_ids[i % users],
                        "is_general": i == 0,
                        "is_archived": False,
                        "members": user_ids[: min(users, 50)],
                        "topic": {"value": f"topic {i}"},
                        "purpose": {"value": ""},
                    }
                    for i, cid in enumerate(channel_ids)
                ]
            ),
        )
        n = 0
        for c in range(channels):
            share = messages // channels + (1 if c < messages % channels else 0)
            day = 0
            while share > 0:
                count = min(share, PER_FILE)
                share -= count
                # One entry streamed in pieces: never the whole export in memory.
                with z.open(f"{names[c]}/2020-{1 + day // 28:02d}-{1 + day % 28:02d}.json", "w") as f:
                    f.write(b"[")
                    for m in range(count):
                        n += 1
                        ts = f"{1_600_000_000 + day * 86_400 + m}.{n % 1_000_000:06d}"
                        user = user_ids[(n * 7) % users]
                        msg = {"type": "message", "ts": ts, "user": user,
                               "text": f"message {n} from <@{user}> in <#{channel_ids[c]}|{names[c]}> &amp; more"}
                        if n % 10 == 0:
                            msg["reactions"] = [{"name": "thumbsup", "users": [user], "count": 1}]
                        if n % 25 == 0:
                            msg["subtype"] = "channel_join"
                        staged += 1
                        f.write((b"," if m else b"") + json.dumps(msg).encode())
                    f.write(b"]")
                written += count
                day += 1
    return {
        "users": users,
        "channels": channels,
        "messages": written,
        "staged_messages": staged,
        "user_ids": user_ids,
        "channel_ids": channel_ids,
    }


# ---------------------------------------------------------------------------------------------
# The server


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def importops(url: str, *args: str) -> str:
    out = subprocess.run([str(BINARY), "--database-url", url, *args], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise BenchError(f"importops {' '.join(args)} failed: {out.stderr.strip()[:500]}")
    return out.stdout


class Client:
    """One keep-alive connection."""

    def __init__(self, port: int, headers: dict[str, str]):
        self.port = port
        self.headers = headers
        self.conn = http.client.HTTPConnection(HOST, port, timeout=120)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
            raw = resp.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=120)
            raise
        try:
            return resp.status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return resp.status, raw[:300]


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def wait_live(proc: subprocess.Popen, port: int, logfile: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the server exited ({proc.returncode}): {logfile.read_text()[-1500:]}")
        try:
            c = http.client.HTTPConnection(HOST, port, timeout=1)
            c.request("GET", "/livez")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchError("the server did not answer /livez within 30 s")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Reader(threading.Thread):
    """Reads getLatestImportOperations back to back and keeps each latency (ms)."""

    def __init__(self, port: int, headers: dict[str, str]):
        super().__init__(daemon=True)
        self.client = Client(port, headers)
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                status, body = self.client.call("GET", "/api/v1/getLatestImportOperations")
            except (http.client.HTTPException, OSError) as e:
                self.errors.append(str(e))
                continue
            self.latencies.append((time.perf_counter() - t) * 1000)
            if status != 200 or not isinstance(body, list):
                self.errors.append(f"{status}: {str(body)[:200]}")


def poll_progress(client: Client, until: set[str], timeout: float) -> tuple[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = client.call("GET", "/api/v1/getImportProgress")
        if status != 200:
            raise BenchError(f"getImportProgress answered {status}: {body}")
        step = body.get("step")
        if step in until:
            return step, body
        if step == "importer_import_failed":
            raise BenchError(f"the import failed: {body}")
        if time.monotonic() > deadline:
            raise BenchError(f"still at {step} after {timeout:.0f} s: {body}")
        time.sleep(0.1)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--channels", type=int, default=20)
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--upload", action="store_true", help="uploadImportFile (base64) instead of downloadPublicImportFile by path")
    ap.add_argument("--no-targets", action="store_true", help="report the figures without failing on the targets")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    opts = ap.parse_args(argv)

    if not BINARY.exists():
        log(f"{BINARY} not found: cargo build --release (or set IMPORTOPS_BIN)")
        return 1

    work = Path(tempfile.mkdtemp(prefix="importops-import-bench-"))
    proc: subprocess.Popen | None = None
    reader: Reader | None = None

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        files = work / "import-files"
        files.mkdir()
        archive = files / "slack-export.zip"
        t = time.perf_counter()
        expected = generate(archive, opts.users, opts.channels, opts.messages)
        log(f"generated {expected['messages']} messages in {opts.channels} channels, "
            f"{archive.stat().st_size / 1e6:.1f} MB, in {time.perf_counter() - t:.1f} s")

        url = f"sqlite://{work / 'importops.db'}"
        importops(url, "user", "add", "admin", "--role", "admin")
        creds = json.loads(importops(url, "token", "issue", "admin", "--json"))
        headers = {"X-User-Id": creds["userId"], "X-Auth-Token": creds["authToken"]}

        port = free_port()
        logfile = work / "server.log"
        env = dict(os.environ)
        env["IMPORTOPS_IMPORT_FILE_DIR"] = str(files)
        env["IMPORTOPS_IMPORT_MAX_BYTES"] = str(1 << 30)
        env.setdefault("RUST_LOG", "warn")
        with open(logfile, "wb") as lf:
            proc = subprocess.Popen(
                [str(BINARY), "--database-url", url, "serve", "--listen", f"{HOST}:{port}"],
                stdout=lf, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        wait_live(proc, port, logfile)
        client = Client(port, headers)

        t = time.perf_counter()
        if opts.upload:
            content = base64.b64encode(archive.read_bytes()).decode()
            status, body = client.call("POST", "/api/v1/uploadImportFile", {
                "binaryContent": content, "contentType": "application/zip",
                "fileName": "slack-export.zip", "importerKey": "slack"})
        else:
            status, body = client.call("POST", "/api/v1/downloadPublicImportFile",
                                       {"fileUrl": str(archive), "importerKey": "slack"})
        if status != 200:
            raise BenchError(f"handing over the archive answered {status}: {body}")
        poll_progress(client, {"importer_file_loaded"}, 120)
        loaded_s = time.perf_counter() - t

        # getImportFileData prepares the archive within the request (or answers waiting).
        reader = Reader(port, headers)
        reader.start()
        t = time.perf_counter()
        while True:
            status, data = client.call("GET", "/api/v1/getImportFileData")
            if status != 200:
                raise BenchError(f"getImportFileData answered {status}: {data}")
            if not data.get("waiting"):
                break
            time.sleep(0.2)
        prepare_s = time.perf_counter() - t
        prepare_lat = list(reader.latencies)
        got = (len(data["users"]), len(data["channels"]), data["message_count"])
        want = (expected["users"], expected["channels"], expected["staged_messages"])
        if got != want:
            raise BenchError(f"getImportFileData: users, channels, messages {got}, expected {want}")
        ids = [u["user_id"] for u in data["users"]]
        if ids != expected["user_ids"]:
            raise BenchError("getImportFileData: the users are not the export's, in its order")
        log(f"file loaded in {loaded_s:.1f} s; getImportFileData (prepare) {prepare_s:.1f} s: "
            f"{got[0]} users, {got[1]} channels, {got[2]} messages, as generated")

        n_before = len(reader.latencies)
        t = time.perf_counter()
        status, body = client.call("POST", "/api/v1/startImport",
                                   {"input": {"users": {"all": True}, "channels": {"all": True}}})
        if status != 200:
            raise BenchError(f"startImport answered {status}: {body}")
        _, progress = poll_progress(client, {"importer_done"}, 600)
        done_s = time.perf_counter() - t
        import_lat = reader.latencies[n_before:]
        reader.stop.set()
        reader.join(5)
        rss = vm_hwm_mb(proc.pid)

        p99 = percentile(import_lat, 99)
        log(f"startImport to importer_done: {done_s:.1f} s; count {progress.get('count')}")
        print(json.dumps({
            "messages": expected["messages"],
            "channels": opts.channels,
            "users": opts.users,
            "prepare_s": round(prepare_s, 2),
            "import_s": round(done_s, 2),
            "peak_rss_mb": round(rss, 1) if rss else None,
            "latest_ops_requests": len(import_lat),
            "latest_ops_p50_ms": round(percentile(import_lat, 50), 2),
            "latest_ops_p99_ms": round(p99, 2),
            "latest_ops_p99_ms_while_preparing": round(percentile(prepare_lat, 99), 2),
            "reader_errors": len(reader.errors),
        }, indent=2))
        failures = []
        if reader.errors:
            failures.append(f"getLatestImportOperations failed {len(reader.errors)} times: {reader.errors[:3]}")
        if not opts.no_targets:
            if done_s > TARGET_DONE_S:
                failures.append(f"import took {done_s:.1f} s > {TARGET_DONE_S} s")
            if rss is None or rss > TARGET_RSS_MB:
                failures.append(f"peak RSS {rss} MB > {TARGET_RSS_MB} MB")
            if not import_lat or p99 > TARGET_P99_MS:
                failures.append(f"p99 {p99:.1f} ms > {TARGET_P99_MS} ms")
        for f in failures:
            log("FAIL: " + f)
        return 1 if failures else 0
    except BenchError as e:
        log(f"FAIL: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if reader is not None:
            reader.stop.set()
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if opts.keep:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
