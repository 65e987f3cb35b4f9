"""`target cmd`: a server that is not ready is named with its cause, in one line."""
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.spec.certs import make_cert

TINY = Path(__file__).resolve().parent / "helpers" / "tinyserver.py"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def target(tmp_path, port, *cmd, tls=None, timeout_s=4):
    args = [sys.executable, "-m", "harness", "target", "cmd", "--port", str(port), "--duration", "2",
            "--ready-timeout", str(timeout_s), "-q", "--out", str(tmp_path)]
    if tls:
        args += ["--tls", tls]
    t = time.monotonic()
    r = subprocess.run(args + ["--", *cmd], capture_output=True, text=True, timeout=90, cwd="/")
    assert "Traceback" not in r.stderr, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 4 and len(lines) == 1, r.stderr
    assert time.monotonic() - t < 30
    return lines[0]


def no_orphans(port):
    left = subprocess.run(["pgrep", "-f", f"{port}"], capture_output=True, text=True).stdout.split()
    assert not left


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("cert"), "ec")


def test_port_never_opened(tmp_path):
    port = free_port()
    line = target(tmp_path, port, "sleep", "30")
    assert f"nothing listens on 127.0.0.1:{port}" in line


def test_server_exits_with_its_last_words(tmp_path):
    line = target(tmp_path, free_port(), "sh", "-c", "echo 'cannot bind: no such cert' >&2; exit 3")
    assert "server exited with 3" in line and "cannot bind: no such cert" in line


@pytest.mark.parametrize("mode,words", [("http", "not with TLS"),
                                        ("silent", "no TLS handshake answer")])
def test_plain_tcp(tmp_path, mode, words):
    port = free_port()
    line = target(tmp_path, port, sys.executable, str(TINY), mode, str(port))
    assert words in line
    no_orphans(port)


def test_tls_version_refused_names_what_it_speaks(tmp_path, cert):
    port = free_port()
    line = target(tmp_path, port, "openssl", "s_server", "-quiet", "-tls1_2", "-accept",
                  f"127.0.0.1:{port}", "-cert", cert[0], "-key", cert[1], tls="1.3")
    assert "refuses TLS 1.3" in line and "speaks TLS 1.2" in line and "--tls 1.2" in line
    no_orphans(port)


def test_handshake_alert(tmp_path, cert):
    port = free_port()
    line = target(tmp_path, port, "openssl", "s_server", "-quiet", "-Verify", "1", "-accept",
                  f"127.0.0.1:{port}", "-cert", cert[0], "-key", cert[1])
    assert "TLS handshake failed: the server sent alert 'certificate required'" in line, line


def test_sip_answer_other_than_200(tmp_path, cert):
    port = free_port()
    line = target(tmp_path, port, sys.executable, str(TINY), "sip404", str(port), *cert)
    assert "SIP answered OPTIONS with 'SIP/2.0 404 Not here' instead of 200" in line


def test_tls_without_sip(tmp_path, cert):
    port = free_port()
    line = target(tmp_path, port, "openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}",
                  "-cert", cert[0], "-key", cert[1])
    assert "TLS (TLSv1.3) works" in line and "SIP answer" in line, line   # s_server closes
