"""Kamailio as a target: its binary and module folder checked, its config
generated in the run folder, and its ctl RPC (kamcmd) for process roles and
statistics."""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from harness.spec import certs

KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"


class TargetError(RuntimeError):
    """A real server that cannot be started or judged: the message is one line
    (defined here, the lowest of the target modules; harness.control.target
    re-exports it)."""


def check_kamailio(binary: str = "kamailio", modules: str = KAMAILIO_MODULES) -> str:
    """The Kamailio binary to run (a path or a name on PATH), checked with its
    module folder before anything starts; one line when it cannot run."""
    exe = shutil.which(binary) or (binary if os.access(binary, os.X_OK) and os.path.isfile(binary)
                                   else None)
    if exe is None:
        if binary == "kamailio":
            raise TargetError("kamailio is not installed (apt-get install kamailio "
                              "kamailio-tls-modules), or give --kamailio-bin PATH")
        raise TargetError(f"--kamailio-bin {binary}: not an executable file")
    if not Path(modules, "tls.so").exists():
        raise TargetError(f"Kamailio's tls module is missing in {modules} "
                          + ("(apt-get install kamailio-tls-modules)" if modules == KAMAILIO_MODULES
                             else "(--kamailio-modules DIR: the folder holding tls.so)"))
    return exe


@functools.lru_cache(maxsize=16)
def kamailio_version(exe: str) -> str | None:
    """What `kamailio -v` says its version is (None when it does not say)."""
    try:
        r = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"version:\s*kamailio\s+(\d+)\.(\d+)\S*", r.stdout + r.stderr)
    return m.group(0).split()[-1] if m else None


def knows_tcp_main_threads(version: str | None) -> bool:
    """tcp_main_threads is a core parameter from Kamailio 6.1 on (6.0's parser
    does not know the word and refuses the config)."""
    m = re.match(r"(\d+)\.(\d+)", version or "")
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (6, 1)


def check_tcp_main_threads(exe: str, n: int | None) -> None:
    """--tcp-main-threads refused, in one line, for a Kamailio that lacks it."""
    if n is None:
        return
    if n not in (0, 1):
        raise TargetError(f"--tcp-main-threads must be 0 (off) or 1 (on) (got {n}): Kamailio "
                          "starts one TCP-main thread per process when it is on")
    version = kamailio_version(exe)
    if not knows_tcp_main_threads(version):
        raise TargetError(f"--tcp-main-threads: Kamailio {version or '(version unknown)'} has "
                          "no tcp_main_threads (6.1 and later)")


def kamailio_config(d: Path, port: int, workers: int, cores: bool, binary: str = "kamailio",
                    modules: str = KAMAILIO_MODULES, shm_mb: int = 128,
                    threads_mode: int | None = None,
                    tcp_main_threads: int | None = None) -> list[str]:
    """Write kamailio.cfg and tls.cfg in d; return the command line.
    threads_mode: the core's tls_threads_mode (a global setting in Kamailio 6.x; Debian's
    5.6.3 does not know it), if given.  tcp_main_threads (6.1 and later, checked): 1 makes
    TCP main start one thread per process, and the TCP workers hand their TLS reads and
    encoding to it; written only when given."""
    exe = check_kamailio(binary, modules)
    check_tcp_main_threads(exe, tcp_main_threads)
    core = "".join(f"{k}={v}\n" for k, v in (("tls_threads_mode", threads_mode),
                                             ("tcp_main_threads", tcp_main_threads))
                   if v is not None)
    cert, key = certs.make_cert(d, "ec")
    (d / "tls.cfg").write_text(f"[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
                               f"require_certificate = no\nprivate_key = {key}\ncertificate = {cert}\n")
    (d / "kamailio.cfg").write_text(f"""#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children={workers}
disable_core_dump={'no' if cores else 'yes'}
enable_tls=yes
auto_aliases=no
{core}listen=tls:127.0.0.1:{port}
mpath="{modules}/"
loadmodule "tls.so"
loadmodule "sl.so"
loadmodule "ctl.so"
loadmodule "kex.so"
loadmodule "corex.so"
modparam("tls", "config", "{d / 'tls.cfg'}")
modparam("ctl", "binrpc", "unix:{d / 'kamailio_ctl'}")
request_route {{
    if (method == "OPTIONS" || method == "REGISTER") {{ sl_send_reply("200", "OK"); exit; }}
    sl_send_reply("404", "Not here");
}}
""")
    return [exe, "-f", str(d / "kamailio.cfg"), "-P", str(d / "kamailio.pid"), "-Y", str(d),
            "-w", str(d), "-DD", "-E", "-m", str(shm_mb), "-M", "8"]


def kamcmd(d: Path, *args: str) -> str | None:
    if not shutil.which("kamcmd"):
        return None
    try:
        r = subprocess.run(["kamcmd", "-s", f"unix:{d / 'kamailio_ctl'}", *args],
                           capture_output=True, text=True, timeout=3)
        return r.stdout if r.returncode == 0 else None
    except subprocess.TimeoutExpired:
        return None


def roles(d: Path) -> dict[int, str]:
    out = kamcmd(d, "core.psx") or ""
    roles, pid = {}, None
    for line in out.splitlines():
        m = re.search(r"PID:\s*(\d+)", line)
        if m:
            pid = int(m.group(1))
        m = re.search(r"DSC:\s*(.+)", line)
        if m and pid:
            roles[pid] = m.group(1).strip()
    return roles
