"""Real servers as targets (Kamailio from Debian; any command line)."""
import json
import os
import signal
import sys
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support import tlsharness

pytestmark = [pytest.mark.stress,
              pytest.mark.skipif(not shutil.which("kamailio"), reason="kamailio not installed")]


def kamailio_procs() -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:                       # a zombie waiting for init to reap it has gone
                if ((d / "comm").read_text().strip() == "kamailio"
                        and (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def run(tmp_path, *args, timeout=120):
    args = list(args)
    tail = args[args.index("--"):] if "--" in args else []
    head = args[:len(args) - len(tail)]
    r = tlsharness("target", *head, "--json", "-q", "--out", str(tmp_path), *tail, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_one_tls_worker_is_clean(tmp_path):
    r = run(tmp_path, "kamailio", "--workers", "1", "--duration", "4")
    out = json.loads(r.stdout)
    assert out["verdict"] == "pass" and out["replies"] > 100 and out["bad"] == 0
    assert out["rcv_requests"] and out["rcv_requests"] >= out["replies"]     # the server's own count
    assert not kamailio_procs()


def test_four_tls_workers_crash_with_double_free_evidence(tmp_path):
    """Kamailio #3791: concurrent handshakes in several TLS workers."""
    crashes = 0
    for _ in range(2):
        r = run(tmp_path, "kamailio", "--workers", "4", "--duration", "20")
        out = json.loads(r.stdout)
        assert not kamailio_procs(), "kamailio left running after a crash"
        if out["verdict"] == "crash":
            crashes += 1
            assert out["deaths"] or out["vanished"]
            if any("freeing already freed" in l for l in out["log_evidence"]):
                assert "double free in shared memory" in out["families"]
    assert crashes >= 1


def test_cmd_target_sip_deaf_server_is_a_clear_error(tmp_path):
    """Processes alive, port open, no SIP: openssl s_server answers TLS only."""
    from harness.spec.certs import make_cert
    cert, key = make_cert(tmp_path, "ec")
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.monotonic()
    r = tlsharness("target", "cmd", "--port", str(port), "--out", str(tmp_path), "--",
                   "openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}", "-cert", cert,
                   "-key", key, timeout=120)
    assert r.returncode == 4 and "SIP answer" in r.stderr and "TLS (TLSv1.3) works" in r.stderr
    assert time.monotonic() - t < 60
    left = subprocess.run(["pgrep", "-f", f"s_server -quiet -accept 127.0.0.1:{port}"],
                          capture_output=True, text=True).stdout.split()
    assert not left


def test_cmd_target_runs_any_server_command(tmp_path):
    from harness.control.target import kamailio_config
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = kamailio_config(tmp_path, port, 1, False)
    r = run(tmp_path, "cmd", "--port", str(port), "--duration", "3", "--", *cmd)
    out = json.loads(r.stdout)
    assert out["verdict"] == "pass" and out["target"] == "cmd" and out["replies"] > 50
    assert not kamailio_procs()


def _tcp_receivers(run_dir: Path) -> list[int]:
    out = subprocess.run(["kamcmd", "-s", f"unix:{run_dir / 'kamailio_ctl'}", "core.psx"],
                         capture_output=True, text=True, timeout=5).stdout
    pids, pid = [], None
    for line in out.splitlines():
        if "PID:" in line:
            pid = int(line.split("PID:")[1].split()[0])
        if "DSC:" in line and "tcp receiver" in line and pid:
            pids.append(pid)
    return pids


@pytest.mark.parametrize("sig,verdict", [(signal.SIGSTOP, "stopped"), (signal.SIGKILL, "crash")])
def test_kamailio_worker_stopped_or_killed(tmp_path, sig, verdict):
    """Judged from /proc alone: a TCP worker in state T is `stopped` (not a
    hang), one killed is a crash."""
    p = subprocess.Popen([sys.executable, "-m", "harness", "target", "kamailio", "--workers", "1",
                          "--load", "persistent", "--duration", "10", "--json", "-q",
                          "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd="/")
    try:
        victims, deadline = [], time.monotonic() + 30
        while not victims and time.monotonic() < deadline:
            time.sleep(0.5)
            dirs = [d for d in tmp_path.iterdir() if d.is_dir()]
            if dirs and (dirs[0] / "kamailio_ctl").exists():
                victims = _tcp_receivers(dirs[0])
        assert victims, "no tcp receiver found"
        time.sleep(1.0)
        os.kill(victims[0], sig)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert "Traceback" not in stderr, stderr
    out = json.loads(stdout)
    assert out["verdict"] == verdict, out
    if verdict == "stopped":
        assert [s["pid"] for s in out["stuck"]] == [victims[0]]
    assert not kamailio_procs()
