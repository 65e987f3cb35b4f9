"""Is a server ready, and if not, why: one probe, run as a child process
(``python -m harness.control.readiness PORT TLS TIMEOUT``; the controller never
loads a TLS library).  Prints one JSON line:

  {"ready": true, "tls": "TLSv1.3", "status": 200}
  {"ready": false, "cause": "port", "detail": "..."}

Causes: port (nothing listens), plain (the port speaks something other than
TLS), version (the server refuses the TLS version asked for), alert (a
handshake alert: certificate, cipher...), closed (the server closed the
connection), sip (TLS works but the SIP answer is not a 200), silent (TLS
works, no SIP answer in time).
"""
from __future__ import annotations

import json
import socket
import ssl
import sys

VERSIONS = {0: (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3),
            12: (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2),
            13: (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)}
REQUEST = ("OPTIONS sip:tlsh@127.0.0.1 SIP/2.0\r\n"
           "Via: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK-ready-1\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:ready@127.0.0.1>;tag=ready\r\n"
           "To: <sip:tlsh@127.0.0.1>\r\nCall-ID: ready-1@tlsharness\r\n"
           "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def _ctx(tls: int) -> ssl.SSLContext:
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.minimum_version, c.maximum_version = VERSIONS[tls]
    return c


def _connect(port: int, timeout: float) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _speaks(port: int, timeout: float) -> list[str]:
    """The TLS versions the server accepts (asked one by one)."""
    out = []
    for v, name in ((12, "1.2"), (13, "1.3")):
        try:
            with _connect(port, timeout) as raw, _ctx(v).wrap_socket(raw):
                out.append(name)
        except (OSError, ssl.SSLError):
            pass
    return out


class _NotReady(Exception):
    def __init__(self, cause: str, detail: str, **extra):
        super().__init__(detail)
        self.result = {"ready": False, "cause": cause, **extra, "detail": detail}


def probe(port: int, tls: int, timeout: float) -> dict:
    """One TLS handshake and one SIP OPTIONS: {"ready": True, "tls": version}
    or {"ready": False, "cause": ..., "detail": one line naming what failed}."""
    try:
        s = _handshake(port, tls, timeout)
        with s:
            version = s.version()
            data = _options(s, version, timeout)
        return _answer(data, version)
    except _NotReady as e:
        return e.result


def _handshake(port: int, tls: int, timeout: float):
    try:
        raw = _connect(port, timeout)
    except ConnectionRefusedError:
        raise _NotReady("port", f"nothing listens on 127.0.0.1:{port}") from None
    except OSError as e:
        raise _NotReady("port", f"connect to 127.0.0.1:{port}: {e}") from None
    try:
        return _ctx(tls).wrap_socket(raw)
    except ssl.SSLError as e:
        raw.close()
        reason = (e.reason or str(e)).upper()
        if any(k in reason for k in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE",
                                     "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL")):
            raise _NotReady("plain", f"127.0.0.1:{port} answers, but not with TLS ({e.reason})") \
                from None
        if any(k in reason for k in ("PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS",
                                     "VERSION_TOO")):
            asked = {0: "1.2-1.3", 12: "1.2", 13: "1.3"}[tls]
            speaks = _speaks(port, timeout) if tls else []
            raise _NotReady("version", f"the server refuses TLS {asked}"
                            + (f"; it speaks TLS {', '.join(speaks)} (use --tls {speaks[0]})"
                               if speaks else "")) from None
        raise _NotReady("alert", f"TLS handshake failed: {e.reason or e}") from None
    except socket.timeout:
        raw.close()
        raise _NotReady("plain", f"no TLS handshake answer within {timeout:g} s (a plain TCP "
                        "server?)") from None
    except (ConnectionResetError, BrokenPipeError, EOFError, OSError) as e:
        raw.close()
        raise _NotReady("closed", "the server closed the connection during the TLS handshake "
                        f"({e})") from None


def _options(s, version: str, timeout: float) -> bytes:
    """Send OPTIONS, read the answer's head."""
    try:
        s.sendall(REQUEST)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data
    except socket.timeout:
        raise _NotReady("silent", f"TLS ({version}) works, but no SIP answer to OPTIONS within "
                        f"{timeout:g} s", tls=version) from None
    except ssl.SSLError as e:
        if "ALERT" in (e.reason or ""):
            alert = e.reason.split("ALERT_", 1)[-1].lower().replace("_", " ")
            raise _NotReady("alert", f"TLS handshake failed: the server sent alert '{alert}'"
                            + (" (it wants a client certificate)" if "certificate" in alert
                               else ""), tls=version) from None
        raise _NotReady("closed", f"TLS ({version}) works, then the connection failed: {e}",
                        tls=version) from None
    except OSError as e:
        raise _NotReady("closed", f"TLS ({version}) works, then the connection failed: {e}",
                        tls=version) from None


def _answer(data: bytes, version: str) -> dict:
    if not data:
        raise _NotReady("closed", f"TLS ({version}) works, but the server closed the connection "
                        "without a SIP answer", tls=version)
    first = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")[:100]
    parts = first.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("SIP/2.0") or not parts[1].isdigit():
        raise _NotReady("sip", f"TLS ({version}) works, but the answer is not SIP: {first!r}",
                        tls=version)
    if parts[1] != "200":
        raise _NotReady("sip", f"SIP answered OPTIONS with '{first}' instead of 200", tls=version,
                        status=int(parts[1]))
    return {"ready": True, "tls": version, "status": 200}


def probe_in_child(port: int, tls: int, timeout: float = 2.0) -> dict:
    """probe() in a child process (the controller never loads a TLS library)."""
    import subprocess
    from harness.analysis import results
    try:
        r = subprocess.run([sys.executable, "-m", "harness.control.readiness", str(port), str(tls),
                            str(timeout)], capture_output=True, text=True, timeout=timeout * 10,
                           cwd=str(results.ROOT))
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return {"ready": False, "cause": "probe", "detail": "the readiness probe itself failed"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    port, tls, timeout = int(argv[0]), int(argv[1]), float(argv[2])
    print(json.dumps(probe(port, tls, timeout)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
