"""What the tests share: running the CLI as a user would, and finding or
waiting for the processes a run started.  (Fixtures live in conftest.py.)"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tlsharness(*args, timeout=120, env=None, **kw):
    """Run the CLI as a user would; returns CompletedProcess (text)."""
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=str(ROOT), env=e, **kw)


def descendants_alive(pid_list):
    return [p for p in pid_list if Path(f"/proc/{p}").exists()
            and not Path(f"/proc/{p}/stat").read_text().split(") ")[1].startswith("Z")]


def wait_gone(pids, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = descendants_alive(pids)
        if not left:
            return []
        time.sleep(0.05)
    return descendants_alive(pids)


def kill_pids(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def procs_of(tmp_path) -> list[int]:
    """Every live process whose command line names this test's results dir
    (the stand, its forked listener and workers, the load generators)."""
    me, out = str(tmp_path), []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if me.encode() in (d / "cmdline").read_bytes() and int(d.name) != os.getpid():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def run(tmp_path, *args, timeout=90):
    r = tlsharness("run", "--out", str(tmp_path), "--json", "-q", *args, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    out = json.loads(r.stdout)
    assert r.returncode == out["exit_code"]
    left = wait_gone(procs_of(tmp_path), 5)
    assert not left, f"processes left behind: {left}"
    return out
