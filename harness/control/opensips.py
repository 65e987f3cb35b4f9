"""Real OpenSIPS as a target: its config, generated in the run folder, and
its management interface (MI over a FIFO) for process roles and statistics.

3.x is the shared-memory model: `tcp_workers` processes share every TLS
connection, the TLS library allocates from OpenSIPS's shared memory.  4.x
does all TCP/TLS I/O in `tcp_threads` threads of one TCP main process and the
library uses libc malloc; workers only parse and route.  One config serves
both; what only one knows is written only for it.
"""
from __future__ import annotations

import json
import os
import select
import threading
import time
from pathlib import Path

from harness.spec import certs

# what a run's outcome says of the build it ran
BUILD_FACTS = ("name", "version", "tls_lib", "openssl", "wolfssl", "override", "pshared_override",
               "tls_links")
# the TLS methods of tls_mgm for a --tls choice (0: negotiate 1.2-1.3)
TLS_METHOD = {0: "TLSv1_2-", 12: "TLSv1_2", 13: "TLSv1_3"}


def major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def config(d: Path, port: int, build: dict, workers: int, tls: int, shm_mb: int,
           tcp_threads: int | None = None, tcp_port: int | None = None,
           extra_route: str = "", db_domains: bool = False) -> list[str]:
    """Write opensips.cfg (and a certificate) in d; return the command line.
    tcp_port: a plain TCP socket beside the TLS one (for TLS-vs-TCP runs);
    db_domains: the TLS domain in a db_text table instead of the script (what
    MI tls_reload reloads)."""
    cert, key = certs.make_cert(d, "ec")
    mods = build["modules"]
    v4 = major(build["version"]) >= 4
    tls_mod = f"tls_{build['tls_lib']}"
    sockets = [f"socket=tls:127.0.0.1:{port}"] + ([f"socket=tcp:127.0.0.1:{tcp_port}"]
                                                   if tcp_port else [])
    domain = (_db_domain(d, cert, key, tls) if db_domains else
              ['modparam("tls_mgm", "server_domain", "dom")',
               'modparam("tls_mgm", "match_ip_address", "[dom]*")',
               f'modparam("tls_mgm", "certificate", "[dom]{cert}")',
               f'modparam("tls_mgm", "private_key", "[dom]{key}")',
               f'modparam("tls_mgm", "tls_method", "[dom]{TLS_METHOD[tls]}")',
               'modparam("tls_mgm", "verify_cert", "[dom]0")',
               'modparam("tls_mgm", "require_cert", "[dom]0")'])
    lines = ["log_level=2", "stderror_enabled=yes", "syslog_enabled=no", "udp_workers=1",
             f"tcp_workers={workers}", *sockets,
             *([f"tcp_threads={tcp_threads}"] if v4 and tcp_threads else []),
             f'mpath="{mods}/"', 'loadmodule "sl.so"', 'loadmodule "mi_fifo.so"',
             f'modparam("mi_fifo", "fifo_name", "{d / "opensips_fifo"}")',
             f'modparam("mi_fifo", "reply_dir", "{d}/")',
             *(['loadmodule "proto_tcp.so"'] if tcp_port else []),
             *(['loadmodule "db_text.so"'] if db_domains else []),
             'loadmodule "proto_tls.so"', 'loadmodule "tls_mgm.so"', f'loadmodule "{tls_mod}.so"',
             *domain,
             "route {", extra_route,
             '    if ($rm == "OPTIONS" || $rm == "REGISTER") { sl_send_reply(200, "OK"); exit; }',
             '    sl_send_reply(404, "Not here");', "}"]
    (d / "opensips.cfg").write_text("\n".join(l for l in lines if l) + "\n")
    cmd = [build["binary"], "-F", "-f", str(d / "opensips.cfg"), "-m", str(shm_mb), "-M", "16",
           "-w", str(d)]
    return cmd


def _db_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace(":", "\\:")


def _db_domain(d: Path, cert: Path, key: Path, tls: int) -> list[str]:
    """The TLS domain as a row of db_text's tls_mgm table (version 3), the
    certificate and key inline as OpenSIPS keeps them in a database."""
    db = d / "db"
    db.mkdir(exist_ok=True)
    (db / "version").write_text("table_name(string) table_version(int) \ntls_mgm:3\n")
    cols = ("id(int,auto) domain(string) match_ip_address(string,null) match_sip_domain(string,null) "
            "type(int) method(string,null) verify_cert(int,null) require_cert(int,null) "
            "certificate(blob,null) private_key(blob,null) crl_check_all(int,null) "
            "crl_dir(string,null) ca_list(blob,null) ca_dir(string,null) cipher_list(string,null) "
            "dh_params(blob,null) ec_curve(string,null) ")
    row = ["1", "dom", "*", "", "2", TLS_METHOD[tls], "0", "0",        # type 2: a server domain
           _db_escape(Path(cert).read_text()), _db_escape(Path(key).read_text()),
           "0", "", "", "", "", "", ""]
    (db / "tls_mgm").write_text(cols + "\n" + ":".join(row) + "\n")
    return [f'modparam("tls_mgm", "db_url", "text://{db}")']


def mi(d: Path, method: str, params: dict | None = None, timeout: float = 2.0) -> dict | None:
    """One MI command over the FIFO (JSON-RPC, `:reply-fifo:` prefix); its
    result, or None when the server does not answer in time."""
    fifo = d / "opensips_fifo"
    if not fifo.exists():
        return None
    name = f"tlsh_reply_{os.getpid()}_{time.monotonic_ns()}"
    reply = d / name
    os.mkfifo(reply, 0o600)
    try:
        rfd = os.open(reply, os.O_RDONLY | os.O_NONBLOCK)
        try:
            req = {"jsonrpc": "2.0", "method": method, "id": 1, **({"params": params} if params else {})}
            wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(wfd, f":{name}:{json.dumps(req)}\n".encode())
            finally:
                os.close(wfd)
            return _read_reply(rfd, timeout)
        finally:
            os.close(rfd)
    except OSError:
        return None
    finally:
        reply.unlink(missing_ok=True)


def _read_reply(fd: int, timeout: float) -> dict | None:
    buf, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            if buf:
                break
            time.sleep(0.01)                 # the writer has not opened it yet
            continue
        buf += chunk
        try:
            return json.loads(buf).get("result")
        except ValueError:
            continue
    return None


def roles(d: Path) -> dict[int, str]:
    """pid -> OpenSIPS's own name of the process (`ps`: attendant, TCP main,
    TCP receiver, timer, MI FIFO, ...)."""
    res = mi(d, "ps") or {}
    return {p["PID"]: p.get("Type", "process") for p in res.get("Processes", [])
            if isinstance(p, dict) and isinstance(p.get("PID"), int)}


def statistics(d: Path) -> dict:
    """The counters a run reports: requests received, shared memory used."""
    res = mi(d, "get_statistics", {"statistics": ["rcv_requests", "shmem:"]}) or {}
    return {k.split(":", 1)[1]: v for k, v in res.items() if isinstance(v, int)}


class Reloader:
    """MI `tls_reload` every `every` seconds while the load runs (OpenSIPS
    #3272: a reload every 5 s for an hour, here faster); counts the reloads
    the server acknowledged and those it did not."""

    def __init__(self, d: Path, every: float):
        self.d, self.every = d, every
        self.ok = self.failed = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            if mi(self.d, "tls_reload", timeout=min(2.0, self.every)) is not None:
                self.ok += 1
            else:
                self.failed += 1

    def __enter__(self) -> "Reloader":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join(3)

    def counts(self) -> dict:
        return {"every_s": self.every, "done": self.ok, "unanswered": self.failed}
