"""The stand under load, end to end through the CLI (seconds each)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import ROOT, kill_pids, procs_of, run, wait_gone

pytestmark = pytest.mark.stress


def test_private_pinned_is_clean(tmp_path):
    out = run(tmp_path, "--memory", "private", "--handoff", "pinned", "--duration", "3")
    assert out["verdict"] == "pass" and out["exit_code"] == 0
    assert out["replies"] > 1000 and out["bad"] == 0 and out["timed_out"] == 0
    assert all(w["requests"] > 0 for w in out["workers"] if w["role"] == "worker")
    run_dir = Path(out["run_dir"])
    for f in ("manifest.json", "samples.jsonl", "outcome.json", "verdict.json"):
        assert (run_dir / f).exists()
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["lib_version"].startswith("OpenSSL 3.") and "--seed" in m["command"]
    samples = (run_dir / "samples.jsonl").read_text().splitlines()
    assert len(samples) >= 20             # every 100 ms


def test_private_per_message_is_clean(tmp_path):
    """Same handoff machinery, objects private: the failure is the library's."""
    out = run(tmp_path, "--memory", "private", "--handoff", "per-message", "--duration", "3")
    assert out["verdict"] == "pass", out["reason"]
    assert out["bad"] == 0


def test_shared_per_message_fails(tmp_path):
    out = run(tmp_path, "--memory", "shared", "--handoff", "per-message", "--lock", "spin",
              "--load", "churn", "--duration", "8")     # churn: 10 of 10 runs fail here
    assert out["exit_code"] == 1, out
    assert out["verdict"] in {"deadlock", "livelock", "mixed", "degraded", "crash", "corruption"}
    # a failure at the very first concurrent handshakes comes before any handoff
    assert out["cross_handoffs"] > 0 or out["verdict"] in {"deadlock", "crash", "corruption", "mixed"}
    assert out["time_to_failure_ms"] is not None and out["time_to_failure_ms"] < 5000


def _start(tmp_path, *args):
    return subprocess.Popen([sys.executable, "-m", "harness", "run", "--out", str(tmp_path), "-q",
                             *args], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_load(tmp_path, timeout=20):
    """Until the run has sampled for half a second under load (a hung stand
    may never answer, so sent requests are what count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for s in tmp_path.glob("*/samples.jsonl"):
            lines = s.read_text().splitlines()
            if len(lines) >= 5 and json.loads(lines[-1])["lg"]["sent"] > 0:
                return
        time.sleep(0.1)
    raise AssertionError("load never started")


def test_sigint_cleans_up(tmp_path):
    shm_before = set(os.listdir("/dev/shm"))
    p = _start(tmp_path, "--duration", "60", "--memory", "private")
    try:
        _wait_for_load(tmp_path)
        pids = procs_of(tmp_path)
        assert len(pids) >= 6               # stand, listener, 4 workers, load generators
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
        assert p.returncode == 130 and "Traceback" not in err, (p.returncode, out[-800:], err[-800:])
        assert not wait_gone(pids, 5)
        assert set(os.listdir("/dev/shm")) == shm_before
    finally:
        p.kill()
        kill_pids(procs_of(tmp_path))


def test_sigkill_of_controller_leaves_nothing(tmp_path):
    shm_before = set(os.listdir("/dev/shm"))
    # a healthy configuration: a failing one can stick every worker in its first
    # handshake before any request is sent, and this test waits for requests
    p = _start(tmp_path, "--duration", "60", "--memory", "private", "--handoff", "per-message",
               "--keep-going")
    try:
        _wait_for_load(tmp_path)
        pids = procs_of(tmp_path)
        assert len(pids) >= 6
        p.kill()                            # SIGKILL: no chance to clean up
        p.wait(10)
        left = wait_gone(pids, 10)
        assert not left, f"left after SIGKILL of the controller: {left}"
        assert set(os.listdir("/dev/shm")) == shm_before
    finally:
        p.kill()
        kill_pids(procs_of(tmp_path))


def test_controller_never_loads_a_tls_library(tmp_path):
    code = ("import sys; from harness.cli import main; rc = main(sys.argv[1:]); "
            "maps = open('/proc/self/maps').read(); "
            "print('LIBCRYPTO' if 'libcrypto' in maps or 'libssl' in maps else 'CLEAN'); "
            "sys.exit(0)")
    r = subprocess.run([sys.executable, "-c", code, "run", "--duration", "1", "-q",
                        "--memory", "private", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert r.stdout.strip().splitlines()[-1] == "CLEAN", r.stdout + r.stderr


def test_many_connections_are_admitted_without_a_storm(tmp_path):
    """1,200 connections from one client process: opened as the server takes
    them (admission), none refused or timed out, and the outcome says when
    every one had been opened."""
    out = run(tmp_path, "--memory", "private", "--conns", "1200", "--workers", "8",
              "--duration", "5")
    assert out["verdict"] == "pass", out["reason"]
    assert out["conn_errors"] == 0 and out["all_conns_open_s"] is not None
    assert out["all_conns_open_s"] < 5
