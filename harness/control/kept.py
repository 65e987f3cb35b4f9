"""A server run under the keeper (harness.control.keeper), seen from the
controller: start it, find its process tree (the keeper's descendants, the
keeper itself excluded), read what the keeper knows, stop it.

The guard pipe's write end stays in the controller only (non-inheritable):
when the controller dies by any signal the keeper reads EOF and kills the
server's whole tree, daemons and setsid() children included."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from harness.analysis import results
from harness.control import reaper
from harness.control.keeper import STOP_MARKER

LOG_CAP = 16 << 20


class Kept:
    def __init__(self, run_dir: Path, argv: list[str], log: str = "server.log",
                 cap: int = LOG_CAP, grace: float = 5.0, cwd: str | None = None,
                 env: dict | None = None):
        self.dir, self.log, self.grace = run_dir, run_dir / log, grace
        self.status_path = run_dir / "keeper.json"
        r, self.guard = os.pipe()                 # both ends non-inheritable
        keeper_log = open(run_dir / "keeper.log", "wb")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "harness.control.keeper", "--guard", str(r),
                 "--parent", str(os.getpid()), "--status", str(self.status_path),
                 "--log", str(self.log), "--cap", str(cap), "--grace", str(grace),
                 "--cwd", cwd or os.getcwd(), "--", *argv],
                pass_fds=[r], stdin=subprocess.DEVNULL, stdout=keeper_log,
                stderr=subprocess.STDOUT, start_new_session=True, cwd=str(results.ROOT),
                env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **(env or {})))
        finally:
            os.close(r)
            keeper_log.close()
        self.pid = self.proc.pid
        self.seen: dict[int, psutil.Process] = {}   # every server process met, for stop()
        self.stopped = False

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def wait_started(self, timeout: float = 15.0) -> str | None:
        """None once the server runs; else why it could not start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            if st.get("error"):
                return st["error"]
            if st.get("server_pid"):
                return None
            if self.proc.poll() is not None:
                return f"the keeper exited with {self.proc.returncode} (see keeper.log)"
            time.sleep(0.02)
        return f"the server did not start within {timeout:g} s"

    def tree(self) -> list[psutil.Process]:
        procs = reaper.descendants(self.pid)
        for p in procs:
            self.seen.setdefault(p.pid, p)
        return procs

    def tree_pids(self) -> list[int]:
        return sorted(p.pid for p in self.tree())

    def alive(self) -> bool:
        return bool(self.tree())

    def server_exit(self) -> int | None:
        return self.status().get("server_exit")

    def stop(self) -> None:
        """The keeper's polite stop (SIGTERM to the server, its grace, then
        SIGKILL to every descendant); if the keeper itself does not end in
        time, every server process ever seen is killed from here."""
        if self.stopped:
            return
        self.stopped = True
        self.tree()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(self.grace + 8)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.guard)
        left = [p for p in self.seen.values() if reaper.alive(p)]
        if left:
            reaper.kill_tree(left, 0.5)

    def log_text(self, limit: int = LOG_CAP + 4096, shutdown: bool = False) -> str:
        """The server's output up to the keeper's stop marker (the capped file,
        read once, after stop()); with shutdown, what it wrote after the marker
        (its own shutdown)."""
        try:
            with open(self.log, "rb") as f:
                data = f.read(limit)
        except OSError:
            return ""
        parts = data.split(STOP_MARKER, 1)
        part = (parts[1] if len(parts) > 1 else b"") if shutdown else parts[0]
        return part.decode("utf-8", "replace")


def log_tail(path: Path, size: int = 65536) -> str:
    """The last non-empty line of a log, reading only its end."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - size))
            lines = [l for l in f.read().decode("utf-8", "replace").splitlines() if l.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:200] if lines else "(no output)"
