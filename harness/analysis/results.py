"""Run directories: results/<run-id>/ with manifest.json, samples.jsonl,
outcome.json and verdict.json.  JSON is the source of truth."""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import time
from pathlib import Path

from harness.builds import native

ROOT = native.ROOT


class ResultsError(ValueError):
    """--out cannot hold results (one line, names --out)."""


def results_dir(root: str) -> Path:
    """The results folder the user asked for, absolute (child processes never
    depend on the working directory); checked before anything starts."""
    if not str(root).strip():
        raise ResultsError("--out must name a folder (got an empty path)")
    p = Path(root).expanduser().absolute()
    shown = root if len(str(root)) <= 120 else str(root)[:100] + f"... ({len(str(root))} characters)"
    if str(p).startswith(("/proc/", "/sys/")) or str(p) in ("/proc", "/sys"):
        raise ResultsError(f"--out {shown}: results cannot live under /proc or /sys")
    try:
        if p.exists() and not p.is_dir():
            raise ResultsError(f"--out {shown}: exists and is not a folder")
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:                  # ENAMETOOLONG, EACCES, ENOSPC...
        raise ResultsError(f"--out {shown}: cannot create it ({e.strerror})") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise ResultsError(f"--out {root}: not writable")
    return p


def new_run_dir(root: str) -> Path:
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(3).hex()
    d = results_dir(root) / run_id
    d.mkdir(parents=False, exist_ok=False)
    return d


def git_revision() -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                           capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict:
    u = platform.uname()
    return {"kernel": u.release, "machine": u.machine, "cpus": os.cpu_count(),
            "python": platform.python_version()}


def rerun_command(args: list[str], seed: int) -> str:
    """The exact command to re-run: the user's flags with the seed pinned."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--seed":
            skip = True
            continue
        if a.startswith("--seed="):
            continue
        out.append(a)
    return shlex.join(["tlsharness", *out, "--seed", str(seed)])


def write_json(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


class SampleLog:
    """samples.jsonl, flushed as it goes."""

    def __init__(self, path: Path):
        self.f = open(path, "w", buffering=1)

    def write(self, rec: dict) -> None:
        self.f.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.f.close()
