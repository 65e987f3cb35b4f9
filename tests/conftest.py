import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def core():
    from harness import native
    return native.core()


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
