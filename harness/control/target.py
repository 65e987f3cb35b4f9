"""Real servers as targets: `tlsharness target kamailio` and
`tlsharness target cmd --port PORT -- COMMAND...`.

The server runs under a keeper (harness.control.keeper: a child subreaper
that kills the server's whole tree when the controller dies by any signal,
and caps the server's log); its process tree is the keeper's descendants;
the port must be served by that tree only (harness.control.ports); the load
generator drives it over TLS on 127.0.0.1 and is the progress source; the
watchdog judges; the server's log is kept in the run folder and scanned for
known evidence (e.g. "freeing already freed pointer").  Everything is
stopped at the end, also after a crash, a hang or SIGTERM/SIGINT.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis import history
from harness.control import interrupt, measures, opensips, ports, readiness
from harness.control.kamailio import (KAMAILIO_MODULES, TargetError, check_kamailio,  # noqa: F401
                                      check_tcp_main_threads, kamailio_config, kamcmd,
                                      roles as _roles)
from harness.control.kept import Kept, log_tail as kept_log_tail
from harness.analysis import results
from harness.watchdog import bad_replies, families
from harness.watchdog.foreign import (ForeignSampler, ForeignWatchdog, kernel_source, observe,
                                      stuck_summary, take_stacks)
from harness.control.children import Children, start_loadgens
from harness.segments import abuse_figures
from harness.spec.params import c_fields, defaults
from harness.verdicts import exit_code
from harness.watchdog import Thresholds, Verdict
from harness.verdicts import V

DEATH_RE = re.compile(r"child process (\d+) exited by a signal (\d+)")
EVIDENCE_RE = re.compile(r"freeing already freed|double free|exited by a signal|SIGSEGV|SIGABRT|"
                         r"[Ss]egmentation fault|BUG:|corrupted|qm_debug_check|fm_free|ser_free")


@dataclass
class TargetConfig:
    kind: str = "kamailio"           # kamailio | opensips | cmd
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
    tcp_main_threads: int | None = None  # kamailio 6.1+: TLS I/O in threads of TCP main
    opensips: dict | None = None     # the build to run (harness.builds.opensips build.json)
    tcp_threads: int | None = None   # opensips 4.x: TCP/TLS I/O threads
    tcp_port: int | None = None      # opensips: a plain TCP socket beside the TLS one
    chaos: str | None = None         # "P:DELAY_US": the contention amplifier preloaded
    reload_every: float | None = None  # opensips: MI tls_reload this often during the load
    rekey_every: int = 0             # the clients' TLS 1.3 key updates (or 1.2 renegotiations)
    db_domains: bool = False         # opensips: TLS domains from a db_text table
    transport: str = "tls"           # the load generators': tls | tcp (to tcp_port)
    judge_shutdown: bool = False     # a crash while the server shuts down is a verdict too
    abort_every: int = 0             # the clients' abuse: RST after sending, before the reply
    rst_handshake_every: int = 0     # RST in the middle of a TLS handshake
    garbage_hello_every: int = 0     # bytes that are not a ClientHello, then close
    no_close_notify: bool = False    # churn closes without close_notify
    out: str = "results"
    linger: float = 1.0


def chaos_env(chaos: str | None) -> dict:
    """The server's environment for --chaos: libtlsh_chaos preloaded, delaying
    after a pthread lock taken in any shared mapping of the server (its
    shared memory); nothing without it."""
    if not chaos:
        return {}
    from harness.builds import native
    lib = native.NATIVE_DIR / "libtlsh_chaos.so"
    if not lib.exists():
        raise TargetError("--chaos: libtlsh_chaos.so is not built (make setup)")
    return {"LD_PRELOAD": str(lib), "TLSH_CHAOS": chaos, "TLSH_CHAOS_SHARED": "1"}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_command(cfg: TargetConfig) -> None:
    """A `target cmd` command that cannot run, refused before anything is made."""
    if not cfg.command:
        raise TargetError("target cmd needs a command after --")
    if not cfg.port:
        raise TargetError("target cmd needs --port (the server's TLS port on 127.0.0.1)")
    exe = cfg.command[0]
    if os.path.isdir(exe):
        raise TargetError(f"server command is a directory, not a program: {exe}")
    if not (shutil.which(exe) or (os.sep in exe and os.path.isfile(exe) and os.access(exe, os.X_OK))):
        raise TargetError(f"server command not found or not executable: {exe}")


@dataclass
class _Live:
    """What a target run has started, stopped whatever happens."""
    children: Children
    kept: Kept | None = None
    lg: object = None
    futex: object = None             # the kernel futex events (foreign.kernel_source)

    def stop(self) -> None:
        if self.futex:
            self.futex.stop()
        if self.kept:
            self.kept.stop()
        self.children.stop_all(5.0)
        if self.lg:
            self.lg.close()
            self.lg = None


def run_target(cfg: TargetConfig, progress=None) -> dict:
    """The server under a keeper (harness.control.keeper), readiness, load, the
    watchdog, evidence from its log.  A server that never becomes ready, or a
    port answered by another process, is a TargetError with an `error`
    outcome in the run folder; SIGTERM/SIGINT an `interrupted` one."""
    if cfg.kind == "cmd":
        _check_command(cfg)
    port = cfg.port or _free_port()
    taken = ports.listeners(port)
    d = results.new_run_dir(cfg.out)
    if taken and progress:
        progress(f"127.0.0.1:{port} is already taken by {ports.describe(taken)} before the "
                 "server starts")
    live = _Live(Children(d))
    try:
        with interrupt.trapped():
            try:
                return _run(cfg, d, port, taken, live, progress)
            finally:
                live.stop()
    except interrupt.Interrupted as e:
        return _early(cfg, d, V.INTERRUPTED, f"controller received {e}", e.exit_code)
    except TargetError as e:
        _early(cfg, d, V.ERROR, str(e), exit_code(V.ERROR))
        raise


def _run(cfg: TargetConfig, d: Path, port: int, taken: list, live: _Live, progress) -> dict:
    if cfg.kind == "kamailio":
        cmd = kamailio_config(d, port, cfg.workers, cfg.cores, cfg.kamailio_bin,
                              cfg.kamailio_modules, cfg.shm_mb, cfg.tls_threads_mode,
                              cfg.tcp_main_threads)
    elif cfg.kind == "opensips":
        cmd = opensips.config(d, port, cfg.opensips, cfg.workers, cfg.tls, cfg.shm_mb,
                              cfg.tcp_threads, cfg.tcp_port,
                              db_domains=cfg.db_domains or bool(cfg.reload_every))
    else:
        cmd = cfg.command
    results.write_json(d / "manifest.json", {"tool": "tlsharness target", "kind": cfg.kind,
                                             "command": cmd, "port": port, "config": cfg.__dict__,
                                             "machine": results.machine()})
    live.kept = Kept(d, cmd, env=chaos_env(cfg.chaos))
    ready = wait_ready(live.kept, port, cfg.tls, cfg.ready_timeout, d / "server.log", taken)
    roles = _roles(d) if cfg.kind == "kamailio" else opensips.roles(d) if cfg.kind == "opensips" \
        else {}
    if roles:
        results.write_json(d / "roles.json", {str(pid): role for pid, role in sorted(roles.items())})
    if progress:
        progress(f"server ready on 127.0.0.1:{port} ({len(live.kept.tree_pids())} processes, "
                 f"{ready['tls']})")
    # the keeper's tree from now on, seeded before the load so the first waits are seen
    live.futex = kernel_source([live.kept.pid] + live.kept.tree_pids(), progress)
    lg_port = cfg.tcp_port if cfg.transport == "tcp" else port
    live.lg, _ = start_loadgens(live.children, lg_port, cfg.conns, cfg.clients, c_fields(defaults(
        conns=cfg.conns, window=cfg.window, load=cfg.load, churn_every=cfg.churn_every, tls=cfg.tls,
        rekey_every=cfg.rekey_every, transport=cfg.transport, abort_every=cfg.abort_every,
        rst_handshake_every=cfg.rst_handshake_every, garbage_hello_every=cfg.garbage_hello_every,
        no_close_notify=cfg.no_close_notify,
        rate=cfg.rate, clients=cfg.clients, duration=cfg.duration, timeout=2.0), "loadgen"))
    if cfg.reload_every:
        with opensips.Reloader(d, cfg.reload_every) as rl:
            out = _watch(cfg, d, live, port, roles, progress)
        out["tls_reloads"] = rl.counts()
    else:
        out = _watch(cfg, d, live, port, roles, progress)
    out["tls_negotiated"] = ready["tls"]
    results.write_json(d / "outcome.json", out)
    history.record(d.parent, dict(out, command=" ".join(map(str, cmd))), "target",
                   params={k: v for k, v in cfg.__dict__.items() if k not in ("out", "command")})
    return out


def _early(cfg: TargetConfig, d: Path, verdict: str, reason: str, code: int) -> dict:
    """The outcome of a run that ended before its verdict (no figures), written."""
    out = {"run_dir": str(d), "target": cfg.kind, "verdict": verdict, "reason": reason,
           "exit_code": code, "families": [], "replies": 0, "replies_per_s": 0, "bad": 0,
           "conn_errors": 0, "rcv_requests": None, "stuck": [], "log_evidence": [],
           "deaths": [], "server_log_tail": kept_log_tail(d / "server.log")}
    results.write_json(d / "outcome.json", out)
    return out


def _watch(cfg, d: Path, live: _Live, port: int, roles: dict, progress) -> dict:
    kept, lg = live.kept, live.lg
    sampler = ForeignSampler([kept.pid], port=port, roles=roles, skip_roots=True)
    wd = ForeignWatchdog(Thresholds(), unread=sampler.unread_holders)
    owner = ports.OwnerWatch(port, kept.tree_pids)
    v, s, t0 = observe(sampler, wd, lg.total, cfg.duration, cfg.linger, 20.0,
                       results.SampleLog(d / "samples.jsonl"), progress, alive=owner.ok,
                       futex=live.futex)
    if owner.check():
        if not v.failed:
            v = Verdict(V.INCONCLUSIVE, reason=owner.reason())
        else:
            v.evidence.append(owner.reason())
    stats = (kamcmd(d, "stats.get_statistics", "all") if cfg.kind == "kamailio" else
             opensips.statistics(d) if cfg.kind == "opensips" else None) if kept.alive() else None
    taken = take_stacks(v, sampler, d / "stacks") if v.failed and v.verdict != V.CRASH else []
    kept.stop()                       # the log is complete (and capped) once the keeper is done
    text = kept.log_text()
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
    v.evidence += evidence[:5]
    if cfg.judge_shutdown:
        _judge_shutdown(v, kept, roles)
    v.evidence += bad_replies.report(lg, d)          # and d/bad-replies.json
    v.families = families.name(v.to_dict(), taken, [], text.splitlines())
    out = _outcome(cfg, d, v, s, t0, sampler, kept, stats, deaths, evidence)
    out.update(measures.load_figures(lg, sampler, out, (s["t"] - t0) / 1e9 if s else 0))
    out.update(live.futex.outcome())
    results.write_json(d / "verdict.json", v.to_dict())
    results.write_json(d / "outcome.json", out)
    return out


def _judge_shutdown(v, kept: Kept, roles: dict) -> None:
    """--judge-shutdown: a death or a double free while the server shut down
    after the load (OpenSIPS #3767, #1121) is a crash at shutdown, not noise."""
    text = kept.log_text(shutdown=True)
    deaths = [(int(p), int(sig)) for p, sig in DEATH_RE.findall(text)]
    lines = [l.strip() for l in text.splitlines() if EVIDENCE_RE.search(l)]
    if not (deaths or lines):
        return
    if v.verdict == V.PASS:
        v.verdict = V.CRASH
        v.reason = "at shutdown: " + ("; ".join(
            f"{roles.get(p, 'process')} {p} died of {signal.Signals(sig).name}"
            for p, sig in deaths[:3]) if deaths else lines[0][:160])
    v.evidence += [f"at shutdown: {l[:200]}" for l in lines[:5]]


def _outcome(cfg, d: Path, v, s, t0: int, sampler, kept: Kept, stats, deaths, evidence) -> dict:
    gone = {tr.pid: tr.gone_ns for tr in sampler.tracks.values() if tr.gone_ns}
    onset = v.onset_ns or (min(gone.values()) if gone else None)
    lgt = s["lg"] if s else {}
    load_s = (s["t"] - t0) / 1e9 if s else 0
    st = kept.status()
    return {"run_dir": str(d), "target": cfg.kind, "verdict": v.verdict, "reason": v.reason,
            "exit_code": exit_code(v.verdict), "families": [f["family"] for f in v.families],
            "time_to_failure_ms": round((onset - t0) / 1e6, 1) if onset and v.failed else None,
            "detected_after_onset_ms": (round((v.detect_ns - v.onset_ns) / 1e6, 1)
                                        if v.failed and v.detect_ns and v.onset_ns else None),
            "replies": lgt.get("answered", 0),
            "replies_per_s": round(lgt.get("answered", 0) / load_s, 1) if load_s else 0,
            "bad": lgt.get("bad", 0), "bad_kinds": lgt.get("bad_kinds", {}),
            "conn_errors": lgt.get("conn_errors", 0),
            "handshakes_client": lgt.get("handshakes", 0), "server_exit": st.get("server_exit"),
            "processes": len(sampler.tracks), "vanished": len(gone),
            "workers_seen": sorted(tr.pid for tr in sampler.tracks.values() if tr.role == "worker"),
            "deaths": deaths, "log_evidence": evidence[:10],
            "server_log": {"bytes": st.get("log_bytes"), "dropped": st.get("log_dropped")},
            "processes_left": st.get("left"),
            "rcv_requests": _stat(stats, "rcv_requests"), "workers": cfg.workers,
            "server_stats": stats if isinstance(stats, dict) else None, **abuse_figures(lgt),
            "server_build": {k: cfg.opensips.get(k) for k in opensips.BUILD_FACTS}
            if cfg.opensips else None,
            "stuck": stuck_summary(v)}


def wait_ready(kept: Kept, port: int, tls: int, timeout: float, log: Path,
               taken: list = ()) -> dict:
    """Probe until a TLS OPTIONS gets its 200, the server's processes are all
    gone, or timeout: a failure names its cause in one line (nothing listens,
    not TLS, TLS version refused, handshake alert, closed, no or wrong SIP
    answer, the port answered by another process)."""
    why = kept.wait_started()
    if why:
        raise TargetError(why)
    deadline = time.monotonic() + timeout
    last, same = None, 0
    while True:
        if not kept.alive():
            raise TargetError(_exited(kept, port, log, taken))
        res = readiness.probe_in_child(port, tls)
        if res["ready"]:
            other = ports.foreign(port, kept.tree_pids)
            if other:
                raise TargetError(f"127.0.0.1:{port} is answered by {ports.describe(other)}, not "
                                  "by the started server's processes")
            return res
        same = same + 1 if last and last["cause"] == res["cause"] else 1
        last = res
        if same >= 3 and res["cause"] in ("plain", "version", "alert", "sip"):
            break                                   # the same answer three times: final
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not kept.alive():
        raise TargetError(_exited(kept, port, log, taken))
    held = f" (127.0.0.1:{port} was taken by {ports.describe(taken)} before it started)" \
        if taken else ""
    raise TargetError(f"server on 127.0.0.1:{port} not ready: {last['detail']}{held}"
                      + (f" (server log: {_tail(log)})" if last["cause"] in ("port", "silent") else ""))


def _exited(kept: Kept, port: int, log: Path, taken: list) -> str:
    rc = kept.server_exit()
    for _ in range(10):                 # the keeper reaps within half a second
        if rc is not None:
            break
        time.sleep(0.1)
        rc = kept.server_exit()
    if taken:
        return (f"127.0.0.1:{port} is taken by {ports.describe(taken)}: the server exited with "
                f"{rc} before it was ready (it could not bind the port?): {_tail(log)}")
    return f"server exited with {rc} before it was ready: {_tail(log)}"


def _stat(text: str | dict | None, name: str) -> int | None:
    if isinstance(text, dict):
        return text.get(name)
    if not text:
        return None
    m = re.search(rf"{name}\s*=\s*(\d+)", text)
    return int(m.group(1)) if m else None


def _tail(path: Path) -> str:
    return kept_log_tail(path)
