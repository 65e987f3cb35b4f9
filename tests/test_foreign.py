"""The watchdog on processes it did not start: conditions and verdicts read
from /proc alone (tests/helpers/proctree.py builds processes in known states)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.watchdog.foreign import ForeignSampler, ForeignWatchdog
from harness.watchdog import Thresholds

ROOT = Path(__file__).resolve().parent.parent
TREE = Path(__file__).resolve().parent / "helpers" / "proctree.py"


class Tree:
    def __init__(self, *roles):
        self.p = subprocess.Popen([sys.executable, str(TREE), *roles], stdout=subprocess.PIPE,
                                  text=True, start_new_session=True)
        self.pids = [int(x) for x in self.p.stdout.readline().split()]
        self.role = dict(zip(self.pids, roles))
        time.sleep(0.3)                       # every child in its state

    def of(self, role):
        return [p for p, r in self.role.items() if r == role]

    def close(self):
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait(5)


@pytest.fixture
def tree():
    made = []

    def make(*roles):
        made.append(Tree(*roles))
        return made[-1]
    yield make
    for t in made:
        t.close()


def watch(t: Tree, tmp_path, *extra, duration=2.5):
    r = subprocess.run([sys.executable, "-m", "harness", "watch", "--pid", str(t.p.pid),
                        "--duration", str(duration), "--json", "-q", "--out", str(tmp_path), *extra],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert "Traceback" not in r.stderr, r.stderr
    return r, json.loads(r.stdout)


def conditions(t: Tree, n=8):
    s = ForeignSampler([t.p.pid])
    for _ in range(n):
        s.sample()
        time.sleep(0.05)
    return {w["pid"]: w for w in s.slots()}


def test_conditions_from_proc(tree):
    t = tree("lost", "shared", "heap", "spin", "idle", "io")
    c = conditions(t)
    assert c[t.p.pid]["activity"] == "idle"                    # the main process in wait4
    got = {t.role[p]: c[p]["activity"] for p in t.pids}
    assert got == {"lost": "lock_wait", "shared": "lock_wait", "heap": "lock_wait",
                   "spin": "spin", "idle": "idle", "io": "idle"}       # io: asleep between writes
    assert c[t.of("io")[0]]["requests"] >= 3 and c[t.of("idle")[0]]["requests"] == 0
    assert "rw-s" in c[t.of("lost")[0]]["mapping"]             # found in the shared mapping
    assert c[t.of("heap")[0]]["mapping"] is None


def test_lost_wakeup_is_named_within_a_few_samples(tree):
    t = tree("lost", "idle", "idle")
    th = Thresholds()
    s, wd = ForeignSampler([t.p.pid]), ForeignWatchdog(th, progress_source=False)
    v, start = None, time.monotonic()
    while v is None and time.monotonic() - start < 3:
        v = wd.observe(s.sample())
        time.sleep(0.05)
    assert v is not None and v.verdict == "deadlock", v
    assert time.monotonic() - start < 0.6
    assert [d["pid"] for d in v.blocked] == t.of("lost")      # idle processes are not blocked
    assert v.blocked[0]["futex"]["private"] and v.blocked[0]["futex"]["in_shared_mapping"]


def test_watch_lost_wakeup_next_to_spinner_is_mixed_with_stacks_of_the_stuck_only(tree, tmp_path):
    t = tree("lost", "spin", "idle")
    r, out = watch(t, tmp_path)
    assert r.returncode == 1 and out["verdict"] == "mixed", out
    assert "lost wake-up" in out["families"]
    assert {p["pid"] for p in out["stuck"]} == set(t.of("lost") + t.of("spin"))
    stacks = list(Path(out["run_dir"], "stacks").glob("*.txt"))
    assert {int(f.stem.rsplit("-", 1)[1]) for f in stacks} <= set(t.of("lost") + t.of("spin"))


def test_watch_without_progress_source_and_nothing_stuck_is_inconclusive(tree, tmp_path):
    t = tree("shared", "idle", "spin", "io")
    r, out = watch(t, tmp_path, duration=2.0)
    assert r.returncode == 3 and out["verdict"] == "inconclusive", out
    assert "no progress source" in out["reason"]
    assert not Path(out["run_dir"], "stacks").exists()


def test_private_wait_in_single_threaded_process_on_its_own_heap(tree, tmp_path):
    t = tree("heap", "idle")
    r, out = watch(t, tmp_path, duration=2.0)
    assert out["verdict"] == "deadlock", out
    assert "single-threaded" in out["stuck"][0]["why"]
    assert "lost wake-up" not in out["families"]              # not on shared memory


def test_stopped_and_vanished(tree, tmp_path):
    t = tree("idle", "idle")
    os.kill(t.pids[0], signal.SIGSTOP)
    r, out = watch(t, tmp_path, duration=2.0)
    assert out["verdict"] == "stopped" and r.returncode == 3, out
    t2 = tree("idle", "idle")
    killer = subprocess.Popen(["sh", "-c", f"sleep 1; kill -9 {t2.pids[1]}"])
    r, out = watch(t2, tmp_path, duration=3.0)
    killer.wait()
    assert out["verdict"] == "crash" and t2.pids[1] in out["vanished"], out


def test_counter_cmd_that_prints_no_number_is_inconclusive(tree, tmp_path):
    t = tree("idle", "io")
    r, out = watch(t, tmp_path, "--counter-cmd", "echo none; exit 3", duration=1.5)
    assert out["verdict"] == "inconclusive" and "--counter-cmd" in out["reason"], out


def test_probe_on_a_port_that_speaks_no_tls_is_inconclusive(tree, tmp_path):
    # the plain listener is watched too: a port held outside the watched tree is
    # inconclusive for that reason alone (tests/test_lifetime.py)
    srv = subprocess.Popen([sys.executable, "-c", "import socket, sys, time\n"
                            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
                            "print(s.getsockname()[1], flush=True); time.sleep(60)"],
                           stdout=subprocess.PIPE, text=True)
    t = tree("idle")
    try:
        port = srv.stdout.readline().strip()
        r, out = watch(t, tmp_path, "--pid", str(srv.pid), "--port", port, duration=2.0)
    finally:
        srv.kill()
        srv.wait()
    assert out["verdict"] == "inconclusive" and r.returncode == 3, out
    assert "no TLS handshake answer" in out["reason"]             # why, in the reason
    assert not Path(out["run_dir"], "stacks").exists()


def test_probe_on_a_closed_port_says_nothing_listens(tree, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    t = tree("idle")
    r, out = watch(t, tmp_path, "--port", str(port), duration=1.5)
    assert out["verdict"] == "inconclusive" and f"nothing listens on 127.0.0.1:{port}" in out["reason"]
