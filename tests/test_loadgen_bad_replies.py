"""Bad replies told apart by kind and kept whole: the native load generator
against a small Python TLS SIP server that answers every request correctly
and, every Kth request of a connection, adds one bad reply of a chosen kind
(and writes down what it sent).  The load generator's counters live in a
LoadgenView segment as in a run, so the reader and the run-folder report are
the ones the controller uses.  The server also notes any request Call-ID it
receives twice: the load generator must never send one (a resent write)."""
from __future__ import annotations

import json
import mmap
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

from harness.segments import LoadgenView  # noqa: E402
from harness.watchdog import bad_replies  # noqa: E402

# argv: root cert key mode every log.  Modes: ok, slow (a small receive
# buffer, and nothing read for 0.3 s after the handshake), dup (the previous request's 200 again before the reply), unknown
# (a reply for a seq never sent), wrongconn (another connection's Call-ID),
# s500 (500 instead of the 200), nocallid (a framed reply without Call-ID),
# garbage (bytes that cannot be framed).  The log has one line per bad reply
# sent ("kind call-id cseq") and per request Call-ID seen twice ("dupreq ...").
SERVER = textwrap.dedent(r'''
    import os, re, socket, ssl, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    from harness._native._tlsh_core import ffi, lib
    cert, key, mode, every, logpath = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if mode == "slow":
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    print(ls.getsockname()[1], flush=True)
    lock, seen = threading.Lock(), set()
    log = open(logpath, "a", buffering=1)

    def note(line):
        with lock:
            log.write(line + "\n")

    def orphan_watch():            # exit when the test process goes away
        sys.stdin.read()
        os._exit(0)
    threading.Thread(target=orphan_watch, daemon=True).start()
    CID = re.compile(rb"Call-ID: (\d+)-(\d+)@tlsharness")

    def bad_for(rep, conn, seq, prev):
        """The extra reply of this mode (or None) and what it is, for the log."""
        if mode == "dup" and prev is not None:
            return prev[0], f"duplicate {prev[1]}-{prev[2]}@tlsharness {prev[2]}"
        if mode == "unknown":
            s2 = seq + 1000000
            r = rep.replace(b"%d-%d@" % (conn, seq), b"%d-%d@" % (conn, s2))
            return r.replace(b"CSeq: %d " % seq, b"CSeq: %d " % s2), f"unknown {conn}-{s2}@tlsharness {s2}"
        if mode == "wrongconn":
            r = rep.replace(b"%d-%d@" % (conn, seq), b"%d-%d@" % (conn + 500, seq))
            return r, f"wrong-connection {conn + 500}-{seq}@tlsharness {seq}"
        if mode == "nocallid":
            return b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", "unparseable - 0"
        if mode == "garbage":
            return b"\x00\x01garbage\r\n\r\n", "unparseable - 0"
        return None, None

    def serve(s):
        out = ffi.new("char[]", 4096)
        ml = ffi.new("size_t *")
        buf, n, prev = b"", 0, None
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s = ctx.wrap_socket(s, server_side=True)
            if mode == "slow":          # the client's writes fill the socket and must wait
                time.sleep(0.3)
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
                while buf:
                    r = lib.tlsh_sip_frame(buf, len(buf), ml)
                    if r <= 0:
                        if r < 0:
                            return
                        break
                    msg, buf = buf[:ml[0]], buf[ml[0]:]
                    m = CID.search(msg)
                    conn, seq = int(m.group(1)), int(m.group(2))
                    with lock:
                        if (conn, seq) in seen:
                            log.write(f"dupreq {conn}-{seq}@tlsharness\n")
                        seen.add((conn, seq))
                    k = lib.tlsh_sip_reply(msg, len(msg), out, 4096)
                    rep = ffi.buffer(out, k)[:]
                    n += 1
                    if n % every == 0:
                        if mode == "s500":
                            rep = rep.replace(b"SIP/2.0 200 OK", b"SIP/2.0 500 Server Error", 1)
                            note(f"status {conn}-{seq}@tlsharness {seq}")
                        else:
                            extra, what = bad_for(rep, conn, seq, prev)
                            if extra is not None:
                                note(what)
                                s.sendall(extra)
                    prev = (rep, conn, seq)
                    s.sendall(rep)
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


@pytest.fixture(scope="module")
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
    log = tmp_path / "server.log"

    def start(mode="ok", every=5):
        script = tmp_path / "server.py"
        script.write_text(SERVER)
        p = subprocess.Popen([sys.executable, str(script), str(ROOT), str(cert[0]),
                              str(cert[1]), mode, str(every), str(log)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        line = p.stdout.readline()
        assert line.strip().isdigit(), "server did not start"
        return int(line)

    def sent():
        """What the server wrote down: [(kind, call_id, cseq)] and duplicate requests."""
        rows = [l.split() for l in log.read_text().splitlines()] if log.exists() else []
        return ([(r[0], r[1], int(r[2])) for r in rows if r[0] != "dupreq"],
                [r[1] for r in rows if r[0] == "dupreq"])

    start.sent = sent
    yield start
    for p in procs:
        p.kill()
        p.wait(timeout=5)


def run(port, nconns=2, window=1, churn=0, duration=1.0, limit=8.0):
    """tlsh_loadgen_run in a forked child writing into a LoadgenView segment, as
    the load generator process does; returns (view, total) with the view still
    open (closed by the caller's fixture-less cleanup at the end of the test)."""
    view = LoadgenView(1)
    cfg = ffi.new("struct tlsh_lg_config *")
    cfg.host, cfg.port, cfg.nconns, cfg.window = b"127.0.0.1", port, nconns, window
    cfg.churn, cfg.tls_version, cfg.duration_s, cfg.timeout_s = churn, 13, duration, 2.0
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            mm = mmap.mmap(view.fd, view.stride)
            c = ffi.cast("struct tlsh_lg_counters *", ffi.from_buffer(mm))
            code = 0 if lib.tlsh_loadgen_run(cfg, c, ffi.new("int *")) == 0 else 3
        finally:
            os._exit(code)
    deadline, status = time.monotonic() + limit, None
    while time.monotonic() < deadline and status is None:
        r, st = os.waitpid(pid, os.WNOHANG)
        status = st if r == pid else None
        time.sleep(0.02)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert status is not None and os.waitstatus_to_exitcode(status) == 0
    t = view.total()
    assert t["done"] == 1 and not t["errors"], t
    return view, t


OTHERS = {"duplicate", "unknown", "wrong-connection", "status", "unparseable"}


def check_kind(t, kept, kind, injected):
    """Only `kind` counted; every kept reply is one the server sent as that kind."""
    assert t["bad"] > 0 and t["bad_kinds"][kind] == t["bad"], t
    assert all(t["bad_kinds"][k] == 0 for k in OTHERS - {kind}), t
    assert t["bad"] <= len(injected)              # nothing counted that was not sent
    assert len(kept) == min(t["bad"], lib.TLSH_LG_BAD_SAMPLES)
    sent = {(cid, cseq) for _, cid, cseq in injected}
    for r in kept:
        assert r["kind"] == kind
        assert r["bytes"] and len(r["bytes"]) <= lib.TLSH_LG_BAD_BYTES
        if kind != "unparseable":
            assert (r["call_id"], r["cseq"]) in sent, (r, injected[:5])
            assert r["call_id"].encode() in r["bytes"]


def test_duplicate_reply_named_with_its_cseq(server, tmp_path):
    port = server("dup", every=7)
    view, t = run(port, nconns=2, window=1, duration=1.0)
    try:
        injected, dupreq = server.sent()
        kept = view.bad_samples()
        check_kind(t, kept, "duplicate", injected)
        assert t["answered"] > 50 and not dupreq
        for r in kept:
            assert r["status"] == 200 and r["bytes"].startswith(b"SIP/2.0 200 OK")
            assert r["call_id"] == f"{r['conn']}-{r['cseq']}@tlsharness"
            assert 0 < r["answered_ns"] < r["time_ns"]
            # window 1: the client had read the first 200 and sent the next request
            assert r["live"] == 1 and r["oldest"] == r["cseq"] + 1 == r["next_seq"] - 1
        lines = bad_replies.report(view, tmp_path)
        r = kept[0]
        assert lines[0].startswith(f"duplicate reply on connection {r['conn']}: 200 for CSeq "
                                   f"{r['cseq']} (Call-ID {r['call_id']}) ")
        assert lines[0].endswith(f"after it was answered, while {r['cseq'] + 1} was outstanding")
        doc = json.loads((tmp_path / "bad-replies.json").read_text())
        assert doc["bad"] == t["bad"] and doc["kinds"]["duplicate"] == t["bad"]
        assert doc["replies"][0]["call_id"] == r["call_id"]
        assert bytes.fromhex(doc["replies"][0]["bytes_hex"]) == r["bytes"]
        assert bad_replies.kinds_text(t) == f" ({t['bad']} duplicate)"
    finally:
        view.close()


@pytest.mark.parametrize("mode,kind", [("unknown", "unknown"), ("wrongconn", "wrong-connection"),
                                       ("s500", "status"), ("nocallid", "unparseable"),
                                       ("garbage", "unparseable")])
def test_each_kind_counted_and_kept(server, tmp_path, mode, kind):
    port = server(mode, every=5)
    view, t = run(port, nconns=2, window=2, duration=0.8)
    try:
        injected, dupreq = server.sent()
        kept = view.bad_samples()
        check_kind(t, kept, kind, injected)
        assert not dupreq
        r = kept[0]
        line = bad_replies.report(view, tmp_path)[0]
        assert "\n" not in line and "\r" not in line
        if mode == "unknown":
            assert r["cseq"] >= r["next_seq"] and "never sent" in line
        elif mode == "wrongconn":
            assert r["cid_conn"] == r["conn"] + 500
            assert line.startswith(f"reply for connection {r['conn'] + 500} read on connection")
        elif mode == "s500":
            assert r["status"] == 500 and r["bytes"].startswith(b"SIP/2.0 500 Server Error")
            assert line.startswith(f"non-200 reply on connection {r['conn']}: 500 for CSeq")
            assert t["answered"] > 0
        elif mode == "nocallid":
            assert r["why"].startswith("no status line") and r["status"] == 0
            assert r["bytes"] == b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
            assert "SIP/2.0 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n" in line
        else:
            assert r["why"].startswith("the stream cannot be framed")
            assert r["bytes"].startswith(b"\x00\x01garbage") and "\\x00\\x01garbage" in line
            assert t["conn_errors"] > 0            # a framing error drops the connection
    finally:
        view.close()


def test_first_replies_kept_all_counted(server):
    port = server("dup", every=2)
    view, t = run(port, nconns=2, window=1, duration=1.0)
    try:
        kept = view.bad_samples()
        assert t["bad"] > lib.TLSH_LG_BAD_SAMPLES and len(kept) == lib.TLSH_LG_BAD_SAMPLES
        assert [r["time_ns"] for r in kept] == sorted(r["time_ns"] for r in kept)
        assert t["bad_kinds"]["duplicate"] == t["bad"]
    finally:
        view.close()


@pytest.mark.parametrize("mode,kw", [("ok", dict(nconns=3, window=8)),
                                     ("ok", dict(nconns=3, window=4, churn=5)),
                                     ("slow", dict(nconns=2, window=16384, duration=1.5))])
def test_healthy_server_no_bad_reply_no_resent_request(server, tmp_path, mode, kw):
    """A correct server: no bad reply of any kind, nothing kept, no file, and no
    request the server received twice (persistent, churn, and writes that had to
    wait for the socket and be retried)."""
    port = server(mode)
    view, t = run(port, **kw)
    try:
        injected, dupreq = server.sent()
        assert not injected and not dupreq, dupreq[:5]
        assert t["answered"] > 100 and t["bad"] == 0, t
        assert all(n == 0 for n in t["bad_kinds"].values()) and view.bad_samples() == []
        assert bad_replies.report(view, tmp_path) == []
        assert not (tmp_path / "bad-replies.json").exists()
        if mode == "slow":
            assert t["write_waits"] > 0, "the retry path was not exercised"
        if kw.get("churn"):
            assert t["handshakes"] > 3
    finally:
        view.close()


def test_reason_names_the_kinds():
    from harness.verdicts import V
    from harness.watchdog import Thresholds, Watchdog
    wd = Watchdog(Thresholds(), (0, 0))
    s = {"t": 1, "hdr": {"ok": True, "arena": {"double_free": 0, "wild_free": 0}}, "slots": [],
         "lg": {"bad": 4, "bad_kinds": {"duplicate": 3, "unknown": 0, "wrong-connection": 0,
                                        "status": 1, "unparseable": 0}}}
    v = wd._corrupted(s)
    assert v.verdict == V.CORRUPTION
    assert v.reason == "load generator: 4 bad replies (3 duplicate, 1 status)"
    s["lg"] = {"bad": 2}                       # a source without kinds (watch --counter-cmd)
    assert wd._corrupted(s).reason == "load generator: 2 bad replies"
