"""Real servers as targets: `tlsharness target kamailio` and
`tlsharness target cmd --port PORT -- COMMAND...`.

The server runs as a child of the controller in its own process group; its
process tree is found through /proc from the started pid; the load
generator drives it over TLS on 127.0.0.1 and is the progress source; the
watchdog judges; the server's log is kept in the run folder and scanned for
known evidence (e.g. "freeing already freed pointer").  Everything is
stopped by process group at the end, also after a crash or a hang.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis import history
from harness.control import readiness
from harness.analysis import results
from harness.spec import certs
from harness.watchdog import families, procfs
from harness.watchdog.foreign import (ForeignSampler, ForeignWatchdog, observe, stuck_summary,
                             take_stacks)
from harness.control.children import Children, start_loadgens
from harness.spec.params import c_fields, defaults
from harness.verdicts import exit_code
from harness.watchdog import Thresholds
from harness.verdicts import V

KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"
DEATH_RE = re.compile(r"child process (\d+) exited by a signal (\d+)")
EVIDENCE_RE = re.compile(r"freeing already freed|double free|exited by a signal|SIGSEGV|SIGABRT|"
                         r"[Ss]egmentation fault|BUG:|corrupted|qm_debug_check|fm_free|ser_free")


class TargetError(RuntimeError):
    pass


@dataclass
class TargetConfig:
    kind: str = "kamailio"           # kamailio | cmd
    command: list = field(default_factory=list)
    port: int = 0
    workers: int = 4                 # kamailio tcp_children
    conns: int = 20
    clients: int = 1
    window: int = 1
    load: str = "churn"
    churn_every: int = 1
    rate: float = 0.0
    tls: int = 0                     # 0: negotiate 1.2-1.3; 12 or 13: pinned
    duration: float = 20.0
    ready_timeout: float = 20.0
    cores: bool = False
    shm_mb: int = 128
    kamailio_bin: str = "kamailio"   # a user's build: its binary and module folder
    kamailio_modules: str = KAMAILIO_MODULES
    tls_threads_mode: int | None = None
    out: str = "results"
    linger: float = 1.0


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def kamailio_config(d: Path, port: int, workers: int, cores: bool, binary: str = "kamailio",
                    modules: str = KAMAILIO_MODULES, shm_mb: int = 128,
                    threads_mode: int | None = None) -> list[str]:
    """Write kamailio.cfg and tls.cfg in d; return the command line.
    threads_mode: the core's tls_threads_mode (a global setting in Kamailio 6.x; Debian's
    5.6.3 does not know it), if given."""
    exe = check_kamailio(binary, modules)
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
{'' if threads_mode is None else f'tls_threads_mode={threads_mode}' + chr(10)}listen=tls:127.0.0.1:{port}
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


def _roles(d: Path) -> dict[int, str]:
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


def run_target(cfg: TargetConfig, progress=None) -> dict:
    d = results.new_run_dir(cfg.out)
    children = Children(d)
    port = cfg.port or _free_port()
    if cfg.kind == "kamailio":
        cmd = kamailio_config(d, port, cfg.workers, cfg.cores, cfg.kamailio_bin,
                              cfg.kamailio_modules, cfg.shm_mb, cfg.tls_threads_mode)
    else:
        if not cfg.command:
            raise TargetError("target cmd needs a command after --")
        if not cfg.port:
            raise TargetError("target cmd needs --port (the server's TLS port on 127.0.0.1)")
        cmd = cfg.command
    results.write_json(d / "manifest.json", {"tool": "tlsharness target", "kind": cfg.kind,
                                             "command": cmd, "port": port, "config": cfg.__dict__,
                                             "machine": results.machine()})
    lg = None
    try:
        server = children.spawn_cmd(cmd, [], "server.log")
        ready = wait_ready(server, port, cfg.tls, cfg.ready_timeout, d / "server.log")
        roles = _roles(d) if cfg.kind == "kamailio" else {}
        if progress:
            progress(f"server ready on 127.0.0.1:{port} ({len(procfs.tree(server.pid))} processes, "
                     f"{ready['tls']})")
        lg, _ = start_loadgens(children, port, cfg.conns, cfg.clients, c_fields(defaults(
            conns=cfg.conns, window=cfg.window, load=cfg.load, churn_every=cfg.churn_every, tls=cfg.tls,
            rate=cfg.rate, clients=cfg.clients, duration=cfg.duration, timeout=2.0), "loadgen"))
        out = _watch(cfg, d, server, port, lg, roles, progress)
        out["tls_negotiated"] = ready["tls"]
        results.write_json(d / "outcome.json", out)
        history.record(d.parent, dict(out, command=" ".join(map(str, cmd))), "target",
                       params={k: v for k, v in cfg.__dict__.items() if k not in ("out", "command")})
        return out
    finally:
        children.stop_all(5.0)
        if lg:
            lg.close()


def _watch(cfg, d: Path, server, port: int, lg, roles: dict, progress) -> dict:
    sampler = ForeignSampler([server.pid], port=port, roles=roles)
    wd = ForeignWatchdog(Thresholds(), unread=sampler.unread_holders)
    v, s, t0 = observe(sampler, wd, lg.total, cfg.duration, cfg.linger, 20.0,
                       results.SampleLog(d / "samples.jsonl"), progress,
                       alive=lambda: server.poll() is None)
    gone = {tr.pid: tr.gone_ns for tr in sampler.tracks.values() if tr.gone_ns}
    text = (d / "server.log").read_text(errors="replace") if (d / "server.log").exists() else ""
    evidence = [l.strip() for l in text.splitlines() if EVIDENCE_RE.search(l)][:20]
    deaths = [(int(p), int(sig)) for p, sig in DEATH_RE.findall(text)]
    if deaths and v.verdict != V.CRASH:
        v.verdict = V.CRASH
    for c in v.crashed:
        for p, sig in deaths:
            if c["pid"] == p:
                c["signal"] = sig
    if deaths:
        v.reason = "; ".join(f"{roles.get(p, 'process')} {p} died of {signal.Signals(sig).name}"
                             for p, sig in deaths[:4]) + (f" (+{len(deaths) - 4} more)" if len(deaths) > 4 else "")
    taken = take_stacks(v, sampler, d / "stacks") if v.failed and v.verdict != V.CRASH else []
    v.evidence += evidence[:5]
    v.families = families.name(v.to_dict(), taken, [], text.splitlines())
    stats = kamcmd(d, "stats.get_statistics", "all") if cfg.kind == "kamailio" and server.poll() is None else None
    onset = v.onset_ns or (min(gone.values()) if gone else None)
    lgt = s["lg"] if s else {}
    load_s = (s["t"] - t0) / 1e9 if s else 0
    out = {"run_dir": str(d), "target": cfg.kind, "verdict": v.verdict, "reason": v.reason,
           "exit_code": exit_code(v.verdict), "families": [f["family"] for f in v.families],
           "time_to_failure_ms": round((onset - t0) / 1e6, 1) if onset and v.failed else None,
           "detected_after_onset_ms": (round((v.detect_ns - v.onset_ns) / 1e6, 1)
                                       if v.failed and v.detect_ns and v.onset_ns else None),
           "replies": lgt.get("answered", 0), "replies_per_s": round(lgt.get("answered", 0) / load_s, 1) if load_s else 0,
           "bad": lgt.get("bad", 0), "conn_errors": lgt.get("conn_errors", 0),
           "handshakes_client": lgt.get("handshakes", 0), "server_exit": server.poll(),
           "processes": len(sampler.tracks), "vanished": len(gone),
           "workers_seen": sorted(tr.pid for tr in sampler.tracks.values() if tr.role == "worker"), "deaths": deaths, "log_evidence": evidence[:10],
           "rcv_requests": _stat(stats, "rcv_requests"), "workers": cfg.workers,
           "stuck": stuck_summary(v)}
    results.write_json(d / "verdict.json", v.to_dict())
    results.write_json(d / "outcome.json", out)
    return out


def wait_ready(server, port: int, tls: int, timeout: float, log: Path) -> dict:
    """Probe until a TLS OPTIONS gets its 200, the server exits, or timeout:
    a failure names its cause in one line (nothing listens, not TLS, TLS
    version refused, handshake alert, closed, no or wrong SIP answer)."""
    deadline = time.monotonic() + timeout
    last, same = None, 0
    while True:
        if server.poll() is not None:
            raise TargetError(f"server exited with {server.returncode} before it was ready: "
                              f"{_tail(log)}")
        res = readiness.probe_in_child(port, tls)
        if res["ready"]:
            return res
        same = same + 1 if last and last["cause"] == res["cause"] else 1
        last = res
        if same >= 3 and res["cause"] in ("plain", "version", "alert", "sip"):
            break                                   # the same answer three times: final
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if server.poll() is not None:
        raise TargetError(f"server exited with {server.returncode} before it was ready: {_tail(log)}")
    raise TargetError(f"server on 127.0.0.1:{port} not ready: {last['detail']}"
                      + (f" (server log: {_tail(log)})" if last["cause"] in ("port", "silent") else ""))


def _stat(text: str | None, name: str) -> int | None:
    if not text:
        return None
    m = re.search(rf"{name}\s*=\s*(\d+)", text)
    return int(m.group(1)) if m else None


def _tail(path: Path) -> str:
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
        return lines[-1][:200] if lines else "(no output)"
    except OSError:
        return "(no log)"
