"""Scenario files are code: they run in a child process, never in the tool.

load_files() starts `python -m harness.spec.scenario_child FD PATH...`,
which executes each file and writes one JSON line per file to the pipe FD
(its stdout goes to our stderr, so a scenario's print() never mixes with
`--json` output).  Each file has LIMIT_S seconds: a file that loops at
import is killed (with its whole process group) and named; a file that ends
the process (os._exit, a signal) is named with the exit status.  Either way
the rest of the files are loaded by a fresh child.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

LIMIT_S = 10.0
ROOT = Path(__file__).resolve().parents[2]


def load_files(paths: list[str], limit: float = LIMIT_S) -> dict[str, dict]:
    """path -> {"scenario": data} or {"error": one line}, for every path."""
    out: dict[str, dict] = {}
    todo = list(paths)
    while todo:
        out.update(_one_child(todo, limit))
        todo = [p for p in todo if p not in out]
    return out


def _spawn(paths: list[str], w: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x]))
    return subprocess.Popen([sys.executable, "-m", "harness.spec.scenario_child", str(w), *paths],
                            pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=2, env=env,
                            start_new_session=True)


def _one_child(paths: list[str], limit: float) -> dict[str, dict]:
    """Load PATHS in one child until they are done or it stops: the
    records it wrote, plus the error of the file it stopped on."""
    r, w = os.pipe()
    try:
        proc = _spawn(paths, w)
    finally:
        os.close(w)
    got: dict[str, dict] = {}
    buf = b""
    try:
        with os.fdopen(r, "rb", buffering=0) as f:
            deadline = time.monotonic() + limit
            while len(got) < len(paths):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([f], [], [], left)[0]:
                    _kill(proc)
                    p = paths[len(got)]
                    got[p] = {"error": f"{p}: did not finish loading within {limit:g} s "
                                       "(an endless loop at import?): stopped"}
                    return got
                chunk = f.read(65536)
                if not chunk:                   # the child ended before every file was done
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    rec = json.loads(line)
                    got[rec.pop("path")] = rec
                    deadline = time.monotonic() + limit
        rc = proc.wait(timeout=limit)
        if len(got) < len(paths):
            p = paths[len(got)]
            how = f"signal {-rc}" if rc < 0 else f"exit {rc}"
            got[p] = {"error": f"{p}: the scenario file ended the process that loads it ({how}) "
                               "instead of defining SCENARIO"}
        return got
    finally:
        _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    """The child and anything it started (its own process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:                                  # a grandchild left in the group
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
