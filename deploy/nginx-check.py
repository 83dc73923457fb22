#!/usr/bin/env python3
"""deploy/nginx.conf in a real nginx in front of two importops servers (Python 3.11, standard
library only; run by deploy/check).

Two `importops serve` processes, each on its own temporary SQLite database and port on
127.0.0.1, and an nginx (the machine's `nginx`) whose server block is deploy/nginx.conf with
only the addresses changed: the replicas' names become 127.0.0.1 and their ports, `listen 80`
a free port on 127.0.0.1, and the resolver 127.0.0.1. On an nginx older than 1.27.3, which has
no `resolve` in upstream blocks, that word is dropped (the upstreams are addresses here, so it
changes nothing this test looks at). Checks, through nginx:

  - GET /livez is 200;
  - a 2 MiB JSON body to POST /api/v1/login gets importops' JSON 413, not nginx's HTML page;
  - 40 KiB of headers to GET /api/v1/me get importops' JSON 431, not nginx's HTML 400.

Usage: python3 deploy/nginx-check.py [--binary PATH]   (default: $IMPORTOPS_BIN, else
target/release/importops, else target/debug/importops). Exit status 0 when every check held.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def wait_for(port: int, path: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if request(port, "GET", path)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answered 200 on {HOST}:{port}{path}")
        time.sleep(0.1)


def nginx_version() -> tuple[int, ...]:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    return tuple(int(x) for x in re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out).groups())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", type=Path)
    args = ap.parse_args()
    exe = args.binary or next(
        (p for p in (os.environ.get("IMPORTOPS_BIN"), ROOT / "target/release/importops",
                     ROOT / "target/debug/importops") if p and Path(p).exists()), None)
    if exe is None:
        print("error: no importops binary (cargo build first, or --binary)", file=sys.stderr)
        return 1
    if shutil.which("nginx") is None:
        print("error: nginx not found (apt-get install nginx-light)", file=sys.stderr)
        return 1

    work = Path(tempfile.mkdtemp(prefix="importops-nginx-check-"))
    # nginx's workers run as an unprivileged user when it starts as root: let them write here.
    os.chmod(work, 0o777)
    procs: list[subprocess.Popen] = []
    results: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        results.append((name, ok, detail))
        print(f"  {'ok    ' if ok else 'FAILED'} {name}" + (f": {detail}" if not ok else ""))

    try:
        ports = []
        for i in (1, 2):
            port = free_port()
            ports.append(port)
            log = open(work / f"importops-{i}.log", "wb")
            procs.append(subprocess.Popen(
                [str(exe), "--database-url", f"sqlite://{work}/replica-{i}.db", "serve",
                 "--listen", f"{HOST}:{port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True))
        for port in ports:
            wait_for(port, "/readyz")

        conf = (ROOT / "deploy/nginx.conf").read_text()
        nginx_port = free_port()
        conf = conf.replace("importops-1:3000", f"{HOST}:{ports[0]}")
        conf = conf.replace("importops-2:3000", f"{HOST}:{ports[1]}")
        conf = conf.replace("${NGINX_LOCAL_RESOLVERS}", HOST)
        conf = re.sub(r"listen\s+80;", f"listen {HOST}:{nginx_port};", conf)
        version = nginx_version()
        if version < (1, 27, 3):
            conf = re.sub(r"(server\s+\S+)\s+resolve\b", r"\1", conf)
            print(f"  note: nginx {'.'.join(map(str, version))} has no upstream `resolve`; "
                  "dropped for this run")
        if "importops-" in conf or "${" in conf:
            raise RuntimeError("deploy/nginx.conf names something this test does not replace")
        (work / "site.conf").write_text(conf)
        temp = {d: work / d for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
        (work / "nginx.conf").write_text(
            f"daemon off;\nworker_processes 1;\npid {work}/nginx.pid;\n"
            f"error_log {work}/nginx-error.log warn;\nevents {{ worker_connections 64; }}\n"
            "http {\n  access_log off;\n"
            + "".join(f"  {d}_temp_path {p};\n" for d, p in temp.items())
            + f"  include {work}/site.conf;\n}}\n")
        test = subprocess.run(["nginx", "-t", "-p", str(work), "-c", str(work / "nginx.conf")],
                              capture_output=True, text=True)
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t: {test.stderr.strip()}")
        procs.append(subprocess.Popen(
            ["nginx", "-p", str(work), "-c", str(work / "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=open(work / "nginx-stderr.log", "wb"),
            stdin=subprocess.DEVNULL, start_new_session=True))
        wait_for(nginx_port, "/livez")

        statuses = [request(nginx_port, "GET", "/livez")[0] for _ in range(4)]
        check("GET /livez through nginx is 200", statuses == [200] * 4, f"{statuses}")

        big = json.dumps({"user": "admin", "password": "x" * (2 << 20)}).encode()
        status, ctype, body = request(nginx_port, "POST", "/api/v1/login",
                                      {"Content-Type": "application/json"}, big)
        check("a 2 MiB body: importops' JSON 413",
              status == 413 and ctype.startswith("application/json")
              and json.loads(body).get("success") is False,
              f"{status} {ctype} {body[:160]!r}")

        status, ctype, body = request(nginx_port, "GET", "/api/v1/me",
                                      {"X-Padding": "a" * (40 * 1024)})
        check("40 KiB of headers: importops' JSON 431",
              status == 431 and ctype.startswith("application/json")
              and json.loads(body).get("success") is False,
              f"{status} {ctype} {body[:160]!r}")
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        check("the experiment ran", False, f"{type(e).__name__}: {e}")
        for f in sorted(work.glob("*.log")):
            print(f"--- {f.name}\n{f.read_text(errors='replace')[-2000:]}")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        shutil.rmtree(work, ignore_errors=True)
    failed = sum(1 for _, ok, _ in results if not ok)
    print(f"nginx-check: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
