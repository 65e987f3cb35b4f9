"""The load generator over plain TCP (struct tlsh_lg_config.transport =
TLSH_LG_TCP, params `transport="tcp"`): the same load as over TLS, against a
small plain-TCP SIP server written here in Python (its own framing and
replies, not the project's C SIP code), so that what the load generator counts
can be checked against what the server saw.

The server answers each OPTIONS with a 200 echoing Call-ID and CSeq, and
writes down per connection: how many requests it read, any request Call-ID
it read twice (a resent write), any request it could not frame or parse (a
torn write), the Via transport of each request, and every extra reply it
sent on purpose (mode dup)."""
from __future__ import annotations

import json
import mmap
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

lg = pytest.importorskip("harness._native._tlsh_loadgen")
ffi, lib = lg.ffi, lg.lib

from harness.segments import LoadgenView  # noqa: E402
from harness.watchdog import bad_replies  # noqa: E402

# argv: mode every log.  Modes: ok; dup (every Kth request of a connection, the
# previous request's 200 is sent again before this one's); slow (a small
# receive buffer and nothing read for 0.3 s after accept: the client's writes
# must wait and be finished later).  Log lines: "conn N" (a connection closed
# after N requests), "via PROTO", "dupreq CALL-ID", "badreq", "duplicate CALL-ID CSEQ".
SERVER = textwrap.dedent(r'''
    import os, re, socket, sys, threading, time
    mode, every, logpath = sys.argv[1], int(sys.argv[2]), sys.argv[3]
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

    def header(head, name):
        m = re.search(rb"\r\n" + name + rb":[ \t]*([^\r\n]*)", head, re.I)
        return m.group(1).strip() if m else None

    def reply(head):
        """200 OK echoing Via, From, To, Call-ID and CSeq; None if not an OPTIONS."""
        if not head.startswith(b"OPTIONS "):
            return None
        hs = {n: header(head, n) for n in (b"Via", b"From", b"To", b"Call-ID", b"CSeq")}
        if None in hs.values() or not re.fullmatch(rb"\d+ OPTIONS", hs[b"CSeq"]):
            return None
        return (b"SIP/2.0 200 OK\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in hs.items())
                + b"Content-Length: 0\r\n\r\n"), hs[b"Call-ID"].decode(), hs[b"Via"]

    def serve(s):
        buf, n, prev, vias = b"", 0, None, set()
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if mode == "slow":
                time.sleep(0.3)
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
                out = []
                while True:
                    e = buf.find(b"\r\n\r\n")
                    if e < 0:
                        break
                    head, buf = buf[:e + 2], buf[e + 4:]
                    r = reply(head) if header(head, b"Content-Length") == b"0" else None
                    if r is None:
                        note("badreq")
                        return
                    rep, cid, via = r
                    vias.add(via.split(b" ")[0].decode())
                    with lock:
                        if cid in seen:
                            log.write(f"dupreq {cid}\n")
                        seen.add(cid)
                    n += 1
                    if mode == "dup" and n % every == 0 and prev is not None:
                        note(f"duplicate {prev[1]} {prev[1].split('-')[1].split('@')[0]}")
                        out.append(prev[0])
                    prev = (rep, cid)
                    out.append(rep)
                if out:
                    s.sendall(b"".join(out))
        except OSError:
            pass
        finally:
            for v in vias:
                note(f"via {v}")
            note(f"conn {n}")
            s.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
''')


@pytest.fixture
def server(tmp_path):
    procs = []
    log = tmp_path / "server.log"

    def start(mode="ok", every=5):
        script = tmp_path / "tcpserver.py"
        script.write_text(SERVER)
        p = subprocess.Popen([sys.executable, str(script), mode, str(every), str(log)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        line = p.stdout.readline()
        assert line.strip().isdigit(), "server did not start"
        return int(line)

    def seen(wait=3.0):
        """What the server wrote down, once its count of closed connections has
        stopped growing (the load generator has exited: it closed them all)."""
        rows, last, deadline = [], (-1, 0.0), time.monotonic() + wait
        while time.monotonic() < deadline:
            rows = [ln.split() for ln in log.read_text().splitlines()] if log.exists() else []
            n = sum(1 for r in rows if r[0] == "conn")
            if n != last[0]:
                last = (n, time.monotonic())
            elif n and time.monotonic() - last[1] > 0.25:
                break
            time.sleep(0.05)
        return {"conns": [int(r[1]) for r in rows if r[0] == "conn"],
                "vias": {r[1] for r in rows if r[0] == "via"},
                "dupreq": [r[1] for r in rows if r[0] == "dupreq"],
                "badreq": sum(1 for r in rows if r[0] == "badreq"),
                "injected": [(r[1], int(r[2])) for r in rows if r[0] == "duplicate"]}

    start.seen = seen
    yield start
    for p in procs:
        p.kill()
        p.wait(timeout=5)


def make_cfg(port, nconns=2, window=1, churn=0, duration=1.0, transport=None, **extra):
    cfg = ffi.new("struct tlsh_lg_config *")
    cfg.host, cfg.port, cfg.nconns, cfg.window = b"127.0.0.1", port, nconns, window
    cfg.churn, cfg.tls_version, cfg.duration_s, cfg.timeout_s = churn, 13, duration, 2.0
    cfg.transport = lib.TLSH_LG_TCP if transport is None else transport
    for k, v in extra.items():
        setattr(cfg, k, v)
    return cfg


def run(port, limit=8.0, **kw):
    """tlsh_loadgen_run over TCP in a forked child writing into a LoadgenView
    segment, as the load generator process does; returns (view, total)."""
    view = LoadgenView(1)
    cfg = make_cfg(port, **kw)
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


def check_healthy(t, seen, view, tmp_path):
    assert t["answered"] > 100 and t["bad"] == 0 and t["timed_out"] == 0, t
    assert all(n == 0 for n in t["bad_kinds"].values()) and view.bad_samples() == []
    assert bad_replies.report(view, tmp_path) == []
    assert not seen["dupreq"] and seen["badreq"] == 0, seen
    assert seen["vias"] == {"SIP/2.0/TCP"}, seen["vias"]
    # every request the server read was answered, except those still in flight at the end
    assert t["sent"] >= sum(seen["conns"]) >= t["answered"]
    assert t["conn_errors"] == 0 and t["resumed"] == 0 and t["rekeys"] == 0


@pytest.mark.parametrize("kw", [dict(nconns=3, window=8), dict(nconns=3, window=1)])
def test_persistent_healthy_no_bad_reply(server, tmp_path, kw):
    port = server("ok")
    view, t = run(port, **kw)
    try:
        seen = server.seen()
        check_healthy(t, seen, view, tmp_path)
        # persistent: one TCP connect per connection, counted as its handshake
        assert t["connects"] == t["handshakes"] == 3 and len(seen["conns"]) == 3, (t, seen)
    finally:
        view.close()


def test_churn_reconnects_counted(server, tmp_path):
    port = server("ok")
    view, t = run(port, nconns=2, window=4, churn=5, duration=1.0)
    try:
        seen = server.seen()
        check_healthy(t, seen, view, tmp_path)
        # a connect still under way when the run ended is not (yet) a handshake
        assert t["handshakes"] > 10 and 0 <= t["connects"] - t["handshakes"] <= 2, t
        # the server saw every connection, none carried more than churn requests,
        # all but the last of each connection number exactly that many
        assert t["handshakes"] <= len(seen["conns"]) <= t["connects"], (seen["conns"], t)
        assert max(seen["conns"]) <= 5 and Counter(seen["conns"])[5] >= t["handshakes"] - 2
    finally:
        view.close()


def test_writes_that_wait_are_finished_not_resent(server, tmp_path):
    """A server that does not read for a while: write(2) takes part of the
    buffer; the rest is sent later, torn nowhere and never twice."""
    port = server("slow")
    view, t = run(port, nconns=2, window=16384, duration=1.5)
    try:
        seen = server.seen(wait=4.0)
        assert t["write_waits"] > 0, "the waiting-write path was not exercised"
        assert t["answered"] > 100 and t["bad"] == 0, t
        assert not seen["dupreq"] and seen["badreq"] == 0, seen
    finally:
        view.close()


def test_duplicate_200_classified_duplicate(server, tmp_path):
    port = server("dup", every=7)
    view, t = run(port, nconns=2, window=1, duration=1.0)
    try:
        seen = server.seen()
        kept = view.bad_samples()
        assert t["answered"] > 50 and t["bad"] > 0, t
        assert t["bad_kinds"]["duplicate"] == t["bad"] <= len(seen["injected"]), t
        assert not seen["dupreq"] and seen["badreq"] == 0
        assert len(kept) == min(t["bad"], lib.TLSH_LG_BAD_SAMPLES)
        injected = set(seen["injected"])
        for r in kept:
            assert r["kind"] == "duplicate" and r["status"] == 200
            assert (r["call_id"], r["cseq"]) in injected, (r, seen["injected"][:5])
            assert r["bytes"].startswith(b"SIP/2.0 200 OK") and b"SIP/2.0/TCP" in r["bytes"]
            assert 0 < r["answered_ns"] < r["time_ns"]
            assert r["live"] == 1 and r["oldest"] == r["cseq"] + 1
        line = bad_replies.report(view, tmp_path)[0]
        assert line.startswith(f"duplicate reply on connection {kept[0]['conn']}: 200 for CSeq "
                               f"{kept[0]['cseq']}")
        doc = json.loads((tmp_path / "bad-replies.json").read_text())
        assert doc["kinds"]["duplicate"] == t["bad"]
    finally:
        view.close()


def test_same_server_over_tls_is_refused_cleanly(server):
    """A TLS client against the plain TCP server: no handshake, nothing answered,
    no bad reply invented (the transports are not mixed up)."""
    port = server("ok")
    view, t = run(port, nconns=1, duration=1.0, transport=lib.TLSH_LG_TLS, timeout_s=0.3)
    try:
        assert t["handshakes"] == 0 and t["answered"] == 0 and t["bad"] == 0, t
        assert t["conn_errors"] > 0
    finally:
        view.close()


@pytest.mark.parametrize("kw,what", [(dict(transport=2), "transport 2"),
                                     (dict(transport=-1), "transport -1"),
                                     (dict(resume=1, churn=5), "has no TLS"),
                                     (dict(rekey_every=10), "has no TLS"),
                                     (dict(reject_every=3), "has no TLS")])
def test_c_refuses_bad_transport_config(kw, what):
    c = ffi.new("struct tlsh_lg_counters *")
    rc = lib.tlsh_loadgen_run(make_cfg(5060, **kw), c, ffi.new("int *"))
    err = ffi.string(c.error).decode()
    assert rc == -1 and what in err and "\n" not in err and c.connects == 0, err


# ---- the parameter ----------------------------------------------------------

def test_param_reaches_the_c_field_with_the_c_values():
    from harness.spec.params import c_fields, defaults
    assert c_fields(defaults(), "loadgen")["transport"] == lib.TLSH_LG_TLS
    assert c_fields(defaults(transport="tcp"), "loadgen")["transport"] == lib.TLSH_LG_TCP


@pytest.mark.parametrize("bad", ["udp", "TCP", "", None, 1])
def test_bad_transport_refused_in_one_line(bad):
    from harness.spec.config import RunConfig
    from harness.spec.params import ConfigError, c_fields, defaults
    for attempt in (lambda: c_fields(defaults(transport=bad), "loadgen"),
                    lambda: RunConfig(transport=bad).validate()):
        with pytest.raises(ConfigError) as e:
            attempt()
        msg = str(e.value)
        assert msg.startswith("--transport must be one of tls, tcp") and "\n" not in msg


def test_not_a_flag_of_run():
    """The stand speaks TLS only: `tlsharness run --transport` does not exist."""
    from harness.spec import runflags
    assert "transport" not in runflags.dests()
    with pytest.raises(runflags.FlagError):
        runflags.parser().parse_args(["--transport", "tcp"])


def test_start_loadgens_over_tcp(server, tmp_path):
    """The controller's path: start_loadgens with the params' fields, two load
    generator processes, over TCP to the plain server."""
    from harness.control.children import Children, start_loadgens
    from harness.spec.params import c_fields, defaults
    port = server("ok")
    children = Children(tmp_path)
    fields = c_fields(defaults(conns=4, clients=2, window=4, duration=1.0, timeout=2.0,
                               transport="tcp"), "loadgen")
    view, procs = start_loadgens(children, port, 4, 2, fields)
    try:
        for p in procs:
            assert p.wait(timeout=15) == 0, (tmp_path / "loadgen-0.log").read_text()
        t = view.total()
        seen = server.seen()
        check_healthy(t, seen, view, tmp_path)
        assert t["connects"] == t["handshakes"] == 4 and len(seen["conns"]) == 4
        cfg = json.loads((tmp_path / "loadgen-1.json").read_text())
        assert cfg["c"]["transport"] == lib.TLSH_LG_TCP and cfg["c"]["port"] == port
    finally:
        children.stop_all(2.0)
        view.close()
