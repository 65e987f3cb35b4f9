"""Process lifetimes and false passes around servers tlsharness did not
build (`target`, `watch`): nothing is left running after SIGKILL or SIGTERM
of the controller, a daemonizing server is judged by its daemon, a port
served by another process is never a pass, a flooding server's log stays
capped, and a server that never becomes ready leaves a closed folder.

TLSH_LIFETIME_REPEAT=N repeats each kill case N times (default 1)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from support import ROOT, tlsharness

LIFESERVER = ROOT / "tests" / "helpers" / "lifeserver.py"
REPEAT = int(os.environ.get("TLSH_LIFETIME_REPEAT", "1"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cert(tmp_path):
    from harness.spec.certs import make_cert
    return make_cert(tmp_path, "ec")


def server(mode, port, cert, n=2):
    return [sys.executable, str(LIFESERVER), mode, str(port), cert[0], cert[1], str(n)]


def listeners(port) -> list[int]:
    return [c.pid for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port]


def alive(procs) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def wait_gone(procs, timeout=15.0):
    deadline = time.monotonic() + timeout
    while alive(procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(procs)


def kill_all(procs):
    for p in alive(procs):
        try:
            p.kill()                    # psutil checks create_time: never a reused pid
        except psutil.Error:
            pass


def start_controller(out, args, tail):
    return subprocess.Popen([sys.executable, "-m", "harness", *args, "--json", "-q", "--out",
                             str(out), *tail], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_loaded(ctl, out: Path, timeout=40.0) -> list[psutil.Process]:
    """Until the load runs (samples written); every process under the controller then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert ctl.poll() is None, ctl.communicate()
        if any(p.stat().st_size for p in out.glob("*/samples.jsonl")):
            time.sleep(0.5)             # a few samples in: the server's tree is complete
            procs = psutil.Process(ctl.pid).children(recursive=True)
            if len(procs) >= 4:         # keeper, server processes, load generator
                return procs
        time.sleep(0.1)
    raise AssertionError("the load never started")


def kill_during_target(tmp_path, args, tail, sig, port):
    ctl = start_controller(tmp_path, args, tail)
    seen = []
    try:
        seen = wait_loaded(ctl, tmp_path)
        server_pids = {p.pid for p in seen}
        assert len(seen) >= 4, seen                  # keeper, server processes, load generator
        assert set(listeners(port)) & server_pids
        ctl.send_signal(sig)
        stdout, stderr = ctl.communicate(timeout=40)
        assert "Traceback" not in stderr, stderr
        if sig == signal.SIGTERM:
            assert ctl.returncode == 143, (ctl.returncode, stderr)
            out = json.loads(stdout)
            assert out["verdict"] == "interrupted" and "SIGTERM" in out["reason"]
            assert json.loads(Path(out["run_dir"], "outcome.json").read_text())["exit_code"] == 143
        else:
            assert ctl.returncode == -signal.SIGKILL
        left = wait_gone(seen)
        assert not left, f"left running: {[(p.pid, p.name()) for p in left]}"
        assert not listeners(port), f"port {port} still served"
        return len(seen)
    finally:
        if ctl.poll() is None:
            ctl.kill()
            ctl.wait(10)
        kill_all(seen)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("mode", ["fork", "daemon", "setsid"])
def test_nothing_left_after_the_controller_is_killed(tmp_path, cert, mode, sig):
    for i in range(REPEAT):
        port = free_port()
        out = tmp_path / f"r{i}"
        kill_during_target(out, ["target", "cmd", "--port", str(port), "--duration", "60",
                                 "--conns", "4"], ["--", *server(mode, port, cert)], sig, port)


@pytest.mark.stress
@pytest.mark.skipif(not shutil.which("kamailio"), reason="kamailio not installed")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_nothing_left_after_the_controller_of_kamailio_is_killed(tmp_path, sig):
    """One TLS worker: with more, Kamailio 5.6 may crash by itself (#3791) before the kill."""
    for i in range(REPEAT):
        port = free_port()
        kill_during_target(tmp_path / f"r{i}", ["target", "kamailio", "--port", str(port),
                                                "--workers", "1", "--duration", "60",
                                                "--conns", "4"], [], sig, port)


def test_a_daemonizing_server_is_judged_by_its_daemon(tmp_path, cert):
    port = free_port()
    r = tlsharness("target", "cmd", "--port", str(port), "--duration", "3", "--conns", "4",
                   "--json", "-q", "--out", str(tmp_path), "--", *server("daemon", port, cert),
                   timeout=90)
    out = json.loads(r.stdout)
    assert out["verdict"] == "pass" and out["replies"] > 0, out
    assert out["server_exit"] == 0                  # the started process left at once, on purpose
    assert not listeners(port)


def test_another_server_on_the_port_is_never_a_pass(tmp_path, cert):
    port = free_port()
    other = subprocess.Popen(server("fork", port, cert, 1), stdout=subprocess.PIPE, text=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    procs = [psutil.Process(other.pid), psutil.Process(sleeper.pid)]
    try:
        other.stdout.readline()                       # it listens
        procs += psutil.Process(other.pid).children()
        before = set(tmp_path.iterdir())
        r = tlsharness("target", "cmd", "--port", str(port), "--duration", "3", "--out",
                       str(tmp_path), "--", "sleep", "30", timeout=90)
        assert r.returncode == 4 and "PASS" not in r.stdout, (r.stdout, r.stderr)
        assert "already taken by pid" in r.stderr and "(python" in r.stderr, r.stderr
        assert "tlsharness: error:" in r.stderr and "not by the started server" in r.stderr
        (run,) = set(tmp_path.iterdir()) - before
        assert json.loads((run / "outcome.json").read_text())["verdict"] == "error"
        w = tlsharness("watch", "--pid", str(sleeper.pid), "--port", str(port), "--duration",
                       "2", "--json", "-q", "--out", str(tmp_path), timeout=60)
        out = json.loads(w.stdout)
        assert w.returncode == 3 and out["verdict"] == "inconclusive", out
        assert "pid" in out["reason"] and "(python" in out["reason"], out["reason"]
        w = tlsharness("watch", "--pid", str(other.pid), "--port", str(port), "--duration",
                       "2", "--json", "-q", "--out", str(tmp_path), timeout=60)
        assert json.loads(w.stdout)["verdict"] == "pass"     # its own tree: judged as usual
    finally:
        kill_all(procs)


def test_a_flooding_server_ends_on_time_with_its_log_capped(tmp_path, cert):
    from harness.control.kept import LOG_CAP
    port = free_port()
    ctl = start_controller(tmp_path, ["target", "cmd", "--port", str(port), "--duration", "5",
                                      "--conns", "4"],
                           ["--", *server("flood", port, cert, 100000)])    # unthrottled
    t0, rss = time.monotonic(), []
    try:
        me = psutil.Process(ctl.pid)
        while ctl.poll() is None and time.monotonic() - t0 < 60:
            try:
                rss.append(me.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.25)
        stdout, stderr = ctl.communicate(timeout=10)
    finally:
        if ctl.poll() is None:
            ctl.kill()
            ctl.wait(10)
    assert time.monotonic() - t0 < 40, "the run did not end on time"
    out = json.loads(stdout)
    log = Path(out["run_dir"], "server.log")
    assert out["server_log"]["dropped"] > 0, out["server_log"]     # it did flood
    assert log.stat().st_size <= LOG_CAP + 4096
    assert b"bytes of output dropped here" in log.read_bytes()
    assert max(rss) < 160 << 20, f"controller RSS up to {max(rss) >> 20} MiB"
    assert not listeners(port)


def test_a_server_never_ready_leaves_a_closed_folder(tmp_path):
    port = free_port()
    t = time.monotonic()
    r = tlsharness("target", "cmd", "--port", str(port), "--ready-timeout", "2", "--out",
                   str(tmp_path), "--", "sleep", "37.5", timeout=60)
    assert r.returncode == 4 and "not ready" in r.stderr and "Traceback" not in r.stderr
    assert time.monotonic() - t < 30
    (run,) = tmp_path.iterdir()
    out = json.loads((run / "outcome.json").read_text())
    assert out["verdict"] == "error" and "nothing listens" in out["reason"]
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "37.5"]]


def test_a_directory_as_the_command_is_refused_before_anything_is_made(tmp_path):
    r = tlsharness("target", "cmd", "--port", str(free_port()), "--out", str(tmp_path / "o"),
                   "--", str(tmp_path), timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is a directory" in r.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_a_hanging_counter_command_has_its_whole_tree_killed(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    marks = (["sleep", "97.25"], ["sleep", "97.5"])

    def strays():
        return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] in marks]
    try:
        r = tlsharness("watch", "--pid", str(sleeper.pid), "--duration", "3", "--json", "-q",
                       "--out", str(tmp_path), "--counter-cmd",
                       "sleep 97.25 & setsid sleep 97.5 & sleep 50; echo 1", timeout=60)
        out = json.loads(r.stdout)
        assert out["verdict"] == "inconclusive" and "timed out" in out["reason"], out
        time.sleep(0.3)
        assert not strays(), strays()
    finally:
        sleeper.kill()
        sleeper.wait()
        kill_all(strays())


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_watch_interrupted_closes_its_folder(tmp_path, sig, code):
    sleeper = subprocess.Popen(["sleep", "60"])
    ctl = start_controller(tmp_path, ["watch", "--pid", str(sleeper.pid), "--duration", "30"], [])
    try:
        deadline = time.monotonic() + 20
        while not any(tmp_path.glob("*/samples.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        ctl.send_signal(sig)
        stdout, stderr = ctl.communicate(timeout=20)
        assert ctl.returncode == code and "Traceback" not in stderr, (ctl.returncode, stderr)
        out = json.loads(stdout)
        assert out["verdict"] == "interrupted"
        assert json.loads(Path(out["run_dir"], "outcome.json").read_text())["exit_code"] == code
    finally:
        if ctl.poll() is None:
            ctl.kill()
            ctl.wait(10)
        sleeper.kill()
        sleeper.wait()
