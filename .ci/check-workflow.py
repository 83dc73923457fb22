#!/usr/bin/env python3
"""Checks .github/workflows/ci.yml beyond its schema: read-only permissions, a concurrency
group, a job that runs `bash .ci/run` itself (so the workflow has every check of CI), and a job
that builds with the Rust version Cargo.toml declares, read from Cargo.toml by the workflow's
own command (run here). Exits 1 with one line per problem."""

import os
import re
import subprocess
import sys
import tempfile

from ruamel.yaml import YAML

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOW = os.path.join(ROOT, ".github", "workflows", "ci.yml")


def main() -> int:
    with open(WORKFLOW, encoding="utf-8") as f:
        doc = YAML(typ="safe").load(f)
    with open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8") as f:
        declared = re.search(r'^rust-version = "([^"]+)"$', f.read(), re.M).group(1)
    problems = []
    if doc.get("permissions") != {"contents": "read"}:
        problems.append(f"permissions must be exactly contents: read (got {doc.get('permissions')!r})")
    if not (doc.get("concurrency") or {}).get("group"):
        problems.append("no concurrency group")
    jobs = doc.get("jobs") or {}
    steps = {name: job.get("steps") or [] for name, job in jobs.items()}
    if not any(s.get("run", "").strip() == "bash .ci/run" for ss in steps.values() for s in ss):
        problems.append("no job runs `bash .ci/run`")

    msrv_jobs = []
    for name, ss in steps.items():
        toolchains = [s for s in ss if str(s.get("uses", "")).startswith("dtolnay/rust-toolchain")]
        for t in toolchains:
            m = re.fullmatch(r"\$\{\{\s*steps\.(\w+)\.outputs\.(\w+)\s*\}\}", str((t.get("with") or {}).get("toolchain", "")))
            if m:
                msrv_jobs.append((name, ss, m.group(1), m.group(2)))
    if not msrv_jobs:
        problems.append("no job installs the toolchain a step read from Cargo.toml")
    for name, ss, step_id, output in msrv_jobs:
        reader = next((s for s in ss if s.get("id") == step_id), None)
        if reader is None or "run" not in reader:
            problems.append(f"job {name}: no step with id {step_id} that runs a command")
            continue
        with tempfile.NamedTemporaryFile("r", suffix=".out") as out:
            subprocess.run(["bash", "-euo", "pipefail", "-c", reader["run"]], cwd=ROOT, check=True,
                           env={**os.environ, "GITHUB_OUTPUT": out.name})
            outputs = dict(line.split("=", 1) for line in out.read().splitlines() if "=" in line)
        if outputs.get(output) != declared:
            problems.append(f"job {name}: step {step_id} reads {outputs.get(output)!r}, Cargo.toml declares {declared!r}")
        if not any(re.search(r"\bcargo build\b.*--all-targets.*--locked", s.get("run", "")) for s in ss):
            problems.append(f"job {name}: no `cargo build --all-targets --locked` step")
    for p in problems:
        print(f"error: .github/workflows/ci.yml: {p}", file=sys.stderr)
    if not problems:
        print(f"workflow: read-only, one concurrency group, runs .ci/run, builds with Rust {declared}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
