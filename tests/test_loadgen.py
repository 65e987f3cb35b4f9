"""Native load generator (harness._native._tlsh_loadgen) against a small
Python TLS SIP server started per test in a subprocess."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

lg = pytest.importorskip("harness._native._tlsh_loadgen")
ffi, lib = lg.ffi, lg.lib

# Modes: ok (200 for each request), badcseq (CSeq changed), s500 (500 status),
# silent (reads, never answers), close (closes after the first reply),
# garbage (answers with unframeable bytes).
SERVER = textwrap.dedent(r'''
    import os, re, socket, ssl, sys, threading
    sys.path.insert(0, sys.argv[1])
    from harness._native._tlsh_core import ffi, lib
    cert, key, mode = sys.argv[2], sys.argv[3], sys.argv[4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(512)
    print(ls.getsockname()[1], flush=True)

    def orphan_watch():            # exit when the test process goes away
        sys.stdin.read()
        os._exit(0)
    threading.Thread(target=orphan_watch, daemon=True).start()
    out = ffi.new("char[]", 4096)
    ml = ffi.new("size_t *")

    def serve(s):
        out = ffi.new("char[]", 4096)
        ml = ffi.new("size_t *")
        buf = b""
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s = ctx.wrap_socket(s, server_side=True)
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
                replies = []
                while buf:
                    r = lib.tlsh_sip_frame(buf, len(buf), ml)
                    if r == 0:
                        break
                    if r < 0:
                        return
                    msg, buf = buf[:ml[0]], buf[ml[0]:]
                    n = lib.tlsh_sip_reply(msg, len(msg), out, 4096)
                    if n < 0:
                        return
                    rep = ffi.buffer(out, n)[:]
                    if mode == "badcseq":
                        rep = re.sub(rb"CSeq: (\d+)", lambda m: b"CSeq: %d" % (int(m.group(1)) + 100000), rep)
                    elif mode == "s500":
                        rep = rep.replace(b"SIP/2.0 200 OK", b"SIP/2.0 500 Server Error", 1)
                    elif mode == "garbage":
                        rep = b"\x00\x01garbage\r\n\r\n"
                    replies.append(rep)
                if mode == "silent":
                    continue
                if replies:
                    s.sendall(b"".join(replies))
                if mode == "close":
                    break
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
''')


@pytest.fixture(scope="session")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-days", "1", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True, timeout=30)
    return crt, key


@pytest.fixture
def server(cert, tmp_path):
    procs = []

    def start(mode="ok"):
        script = tmp_path / "server.py"
        script.write_text(SERVER)
        p = subprocess.Popen([sys.executable, str(script), str(ROOT), str(cert[0]),
                              str(cert[1]), mode], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        line = p.stdout.readline()
        assert line.strip().isdigit(), "server did not start"
        return int(line)

    yield start
    for p in procs:
        p.kill()
        p.wait(timeout=5)


def make_cfg(port, host="127.0.0.1", nconns=2, conn_base=0, window=4, churn=0, resume=0,
             tls=13, rate=0.0, duration=1.0, timeout=2.0, ciphers=""):
    cfg = ffi.new("struct tlsh_lg_config *")
    cfg.host = host.encode()
    cfg.port = port
    cfg.nconns = nconns
    cfg.conn_base = conn_base
    cfg.window = window
    cfg.churn = churn
    cfg.resume = resume
    cfg.tls_version = tls
    cfg.rate = rate
    cfg.duration_s = duration
    cfg.timeout_s = timeout
    cfg.ciphers = ciphers.encode()
    return cfg


FIELDS = ["magic", "magic2", "pid", "done", "ready", "nconns", "sent", "answered", "bad",
          "timed_out", "connects", "handshakes", "resumed", "conn_errors", "last_answer_ns",
          "updated_ns"]


def snapshot(c):
    d = {f: getattr(c, f) for f in FIELDS}
    d["lat"] = sum(c.lat_hist[i] for i in range(lib.TLSH_LAT_BUCKETS))
    d["error"] = ffi.string(c.error).decode(errors="replace")
    return d


def run_forked(cfg, limit=8.0, stop_after=None):
    """Run tlsh_loadgen_run in a forked child; counters in shared memory."""
    size = ffi.sizeof("struct tlsh_lg_counters") + 64
    mem = lib.tlsh_shared_map(size)
    assert mem != ffi.NULL
    c = ffi.cast("struct tlsh_lg_counters *", mem)
    stop = ffi.cast("int *", ffi.cast("char *", mem) + ffi.sizeof("struct tlsh_lg_counters"))
    stop[0] = 0
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if lib.tlsh_loadgen_run(cfg, c, stop) == 0 else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + limit
    status = None
    try:
        while time.monotonic() < deadline:
            if stop_after is not None and time.monotonic() > deadline - limit + stop_after:
                stop[0] = 1
            r, st = os.waitpid(pid, os.WNOHANG)
            if r == pid:
                status = st
                break
            time.sleep(0.02)
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    snap = snapshot(c)
    snap["child_pid"] = pid
    lib.tlsh_shared_unmap(mem, size)
    assert status is not None, f"loadgen child did not finish in {limit}s: {snap}"
    snap["exit"] = os.waitstatus_to_exitcode(status)
    return snap


def check_clean(s):
    assert s["exit"] == 0, s
    assert s["magic"] == lib.TLSH_LG_MAGIC and s["magic2"] == lib.TLSH_LG_MAGIC
    assert s["pid"] == s["child_pid"]
    assert s["done"] == 1 and s["ready"] == 1
    assert s["error"] == ""


@pytest.mark.parametrize("tls", [12, 13])
def test_closed_loop(server, tls):
    port = server("ok")
    s = run_forked(make_cfg(port, nconns=4, window=8, tls=tls, duration=1.0))
    check_clean(s)
    assert s["answered"] > 0 and s["bad"] == 0 and s["timed_out"] == 0
    assert s["sent"] >= s["answered"]
    assert s["sent"] - s["answered"] <= 4 * 8
    assert s["lat"] == s["answered"]
    assert s["nconns"] == 4 and s["connects"] == 4 and s["handshakes"] == 4
    assert s["conn_errors"] == 0 and s["resumed"] == 0
    assert s["last_answer_ns"] > 0 and s["updated_ns"] >= s["last_answer_ns"]


def test_tls12_cipher_list(server):
    port = server("ok")
    s = run_forked(make_cfg(port, tls=12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256", duration=0.5))
    check_clean(s)
    assert s["answered"] > 0 and s["bad"] == 0


def test_open_loop_rate(server):
    port = server("ok")
    s = run_forked(make_cfg(port, nconns=3, window=4, rate=400.0, duration=1.5))
    check_clean(s)
    assert s["bad"] == 0 and s["timed_out"] == 0
    # 600 requests nominal; connection set-up eats a little of the run
    assert 300 <= s["answered"] <= 700, s
    assert s["sent"] >= s["answered"]


def test_pipelined_window_is_answered_clean(server):
    """8 connections with 32 requests in flight each, 2 s: every reply matched.
    (The rate is a figure for bench/throughput.py, not a test.)"""
    port = server("ok")
    s = run_forked(make_cfg(port, nconns=8, window=32, duration=2.0))
    check_clean(s)
    assert s["bad"] == 0 and s["answered"] > 1000


@pytest.mark.parametrize("mode", ["badcseq", "s500"])
def test_bad_replies(server, mode):
    port = server(mode)
    s = run_forked(make_cfg(port, duration=0.8))
    check_clean(s)
    assert s["bad"] > 0 and s["answered"] == 0


def test_garbage_reconnects(server):
    port = server("garbage")
    s = run_forked(make_cfg(port, nconns=1, duration=0.8))
    check_clean(s)
    assert s["bad"] > 0 and s["answered"] == 0
    assert s["conn_errors"] > 0 and s["connects"] > 1


def test_peer_close_reconnects(server):
    port = server("close")
    s = run_forked(make_cfg(port, nconns=2, window=1, duration=1.0))
    check_clean(s)
    assert s["bad"] == 0
    assert s["conn_errors"] > 0 and s["connects"] > 2 and s["handshakes"] > 2


def test_silent_server_times_out(server):
    port = server("silent")
    s = run_forked(make_cfg(port, nconns=2, window=2, duration=1.2, timeout=0.3))
    check_clean(s)
    assert s["answered"] == 0 and s["bad"] == 0
    assert s["timed_out"] > 0 and s["sent"] >= s["timed_out"]


def test_refused_port_no_crash(server):
    import socket
    sk = socket.socket()
    sk.bind(("127.0.0.1", 0))
    port = sk.getsockname()[1]
    sk.close()
    s = run_forked(make_cfg(port, nconns=2, duration=0.5))
    assert s["exit"] == 0 and s["done"] == 1 and s["ready"] == 0
    assert s["conn_errors"] > 0 and s["answered"] == 0 and s["sent"] == 0


@pytest.mark.parametrize("tls", [12, 13])
def test_churn_resume(server, tls):
    port = server("ok")
    s = run_forked(make_cfg(port, nconns=2, window=4, churn=10, resume=1, tls=tls,
                            duration=1.5))
    check_clean(s)
    assert s["bad"] == 0 and s["answered"] > 0
    assert s["handshakes"] > 2 and s["resumed"] > 0
    assert s["conn_errors"] == 0


def test_churn_no_resume(server):
    port = server("ok")
    s = run_forked(make_cfg(port, nconns=2, window=4, churn=10, resume=0, duration=1.0))
    check_clean(s)
    assert s["bad"] == 0 and s["handshakes"] > 2 and s["resumed"] == 0


def test_stop_flag(server):
    port = server("ok")
    t0 = time.monotonic()
    s = run_forked(make_cfg(port, duration=30.0), limit=6.0, stop_after=0.7)
    check_clean(s)
    assert time.monotonic() - t0 < 3.0
    assert s["answered"] > 0


@pytest.mark.parametrize("host", ["10.0.0.1", "8.8.8.8", "example.com", "::2", ""])
def test_refuses_non_loopback(host):
    c = ffi.new("struct tlsh_lg_counters *")
    stop = ffi.new("int *")
    rc = lib.tlsh_loadgen_run(make_cfg(1, host=host), c, stop)
    s = snapshot(c)
    assert rc == -1
    assert "loopback" in s["error"] and "\n" not in s["error"]
    assert s["sent"] == 0 and s["connects"] == 0 and s["done"] == 0


@pytest.mark.parametrize("kw", [dict(nconns=0), dict(window=0), dict(port=0), dict(port=70000),
                                dict(tls=11), dict(duration=0.0), dict(timeout=0.0),
                                dict(tls=12, ciphers="NO-SUCH-CIPHER")])
def test_refuses_bad_config(kw):
    port = kw.pop("port", 5061)
    c = ffi.new("struct tlsh_lg_counters *")
    stop = ffi.new("int *")
    rc = lib.tlsh_loadgen_run(make_cfg(port, **kw), c, stop)
    s = snapshot(c)
    assert rc == -1 and s["error"] and s["connects"] == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.1.2.3"])
def test_loopback_variants_accepted(host):
    # nothing listens on this port: runs, fails to connect, returns 0
    import socket
    sk = socket.socket()
    sk.bind(("127.0.0.1", 0))
    port = sk.getsockname()[1]
    sk.close()
    s = run_forked(make_cfg(port, host=host, nconns=1, duration=0.3), limit=5)
    assert s["exit"] == 0 and s["done"] == 1 and s["error"] == ""
    assert s["connects"] >= 1
