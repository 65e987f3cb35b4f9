"""The controller side of one run: start the stand and the load generators,
watch them, decide, clean up.

The controller never loads a TLS library; it must survive whatever the stand
does.  Every child is started in its own process group and killed by group
at the end; children carry PR_SET_PDEATHSIG so that even a SIGKILL of the
controller leaves nothing behind.  Shared segments are memfds: nothing can
be left in /dev/shm.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness import certs, families, procfs, results, stacks
from harness.config import RunConfig, results_root
from harness.progress import Progress
from harness.segments import LoadgenView, StatusView, hist_quantile
from harness.watchdog import Thresholds, Verdict, Watchdog, exit_code

EXIT_HARNESS = 4      # the stand could not be set up
EXIT_INTERRUPTED = 130
OUTCOMES = {"pass": "clean", "crash": "crashed", "corruption": "corrupt",
            "livelock": "stalled", "deadlock": "stalled", "mixed": "stalled",
            "degraded": "stalled"}


class HarnessError(RuntimeError):
    """The run could not be carried out (not a verdict on the library)."""


class Interrupted(BaseException):
    pass


def _on_term(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


class Run:
    def __init__(self, cfg: RunConfig, argv: list[str], progress: Progress | None = None):
        self.cfg = cfg
        self.argv = argv
        self.progress = progress or Progress(quiet=True)
        self.dir = results.new_run_dir(results_root(cfg))
        self.stand: subprocess.Popen | None = None
        self.loadgens: list[subprocess.Popen] = []
        self.status: StatusView | None = None
        self.lg: LoadgenView | None = None
        self.logs: list = []

    # -- process management ---------------------------------------------------------
    def _spawn(self, args: list[str], fds: list[int], log: str) -> subprocess.Popen:
        f = open(self.dir / log, "w")
        self.logs.append(f)
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        return subprocess.Popen([sys.executable, "-m", *args], pass_fds=fds, stdin=subprocess.DEVNULL,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env, cwd=str(results.ROOT))

    def _kill_all(self) -> None:
        procs = ([self.stand] if self.stand else []) + self.loadgens
        for p in procs:                       # ask the stand supervisor to stop its workers
            if p.poll() is None:
                _signal_pid(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.grace
        for p in procs:
            try:
                p.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in procs:                       # then the whole group, whatever is left
            _signal_group(p.pid, signal.SIGKILL)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for f in self.logs:
            f.close()
        self.logs = []

    # -- the run --------------------------------------------------------------------
    def execute(self) -> dict:
        old = {s: signal.signal(s, _on_term) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            return self._execute()
        except (Interrupted, KeyboardInterrupt) as e:
            self._kill_all()
            out = {"verdict": "interrupted", "outcome": "interrupted",
                   "reason": f"controller received {e or 'SIGINT'}", "exit_code": EXIT_INTERRUPTED,
                   "run_dir": str(self.dir)}
            results.write_json(self.dir / "outcome.json", out)
            return out
        finally:
            self._kill_all()
            for v in (self.status, self.lg):
                if v:
                    v.close()
            for s, h in old.items():
                signal.signal(s, h)

    def _manifest(self, lib_version: str = "") -> dict:
        m = {"tool": "tlsharness", "config": self.cfg.to_dict(), "lib": self.cfg.lib,
             "lib_version": lib_version, "machine": results.machine(),
             "git_revision": results.git_revision(), "run_dir": str(self.dir),
             "command": results.rerun_command(self.argv, self.cfg.seed),
             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        results.write_json(self.dir / "manifest.json", m)
        return m

    def _start_stand(self) -> None:
        cfg = self.cfg
        cert, key = certs.make_cert(self.dir, cfg.cert)
        self.status = StatusView(cfg.workers + 1)
        sc = {"lib": cfg.lib, "workers": cfg.workers, "memory": cfg.memory, "handoff": cfg.handoff,
              "lock": cfg.lock, "tls": cfg.tls, "ctx": cfg.ctx, "cert": cert, "key": key,
              "ciphers": cfg.ciphers, "tickets": cfg.tickets, "arena_mb": cfg.arena_mb,
              "max_conns": cfg.max_conns, "fault": cfg.fault, "seed": cfg.seed,
              "stacks_dir": str(self.dir / "stacks")}
        (self.dir / "stand.json").write_text(json.dumps(sc, indent=2))
        self.stand = self._spawn(["harness.stand", str(self.dir / "stand.json"),
                                  str(self.status.fd), str(os.getpid())],
                                 [self.status.fd], "stand.log")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.status.s.ready and self.status.s.port:
                return
            if self.stand.poll() is not None:
                err = self.status.header()["error"] or _tail(self.dir / "stand.log")
                raise HarnessError(f"stand failed to start: {err}")
            time.sleep(0.01)
        raise HarnessError("stand did not become ready within 20 s")

    def _start_loadgens(self) -> None:
        cfg = self.cfg
        self.lg = LoadgenView(cfg.clients)
        base = 0
        for i in range(cfg.clients):
            n = cfg.conns // cfg.clients + (1 if i < cfg.conns % cfg.clients else 0)
            lc = {"host": "127.0.0.1", "port": self.status.s.port, "nconns": n, "conn_base": base,
                  "window": cfg.window, "churn": cfg.churn_every if cfg.load == "churn" else 0,
                  "resume": cfg.resume, "tls": cfg.tls, "rate": cfg.rate / cfg.clients,
                  "duration": cfg.duration, "timeout": cfg.timeout, "ciphers": cfg.ciphers}
            base += n
            path = self.dir / f"loadgen-{i}.json"
            path.write_text(json.dumps(lc))
            self.loadgens.append(self._spawn(
                ["harness.loadgen", str(path), str(self.lg.fd), str(i), str(os.getpid())],
                [self.lg.fd], f"loadgen-{i}.log"))

    def _sample(self, t: int) -> dict:
        st = self.status
        slots = st.slots()
        pids = [self.stand.pid] + [w["pid"] for w in slots if w["pid"] > 0]
        procs = {}
        for pid in pids:
            p = procfs.sample(pid)
            if p is not None:
                procs[pid] = p
        return {"t": t, "hdr": st.header(), "slots": slots, "procs": procs, "lg": self.lg.total()}

    def _execute(self) -> dict:
        cfg = self.cfg
        self._manifest()
        self._start_stand()
        hdr = self.status.header()
        manifest = self._manifest(hdr["lib_version"])
        wd = Watchdog(Thresholds(stall_s=cfg.stall_s), (hdr["arena_base"], hdr["arena_size"]))
        self._start_loadgens()
        log = results.SampleLog(self.dir / "samples.jsonl")
        period = 1.0 / cfg.sample_hz
        t0 = time.monotonic_ns()
        end = t0 + int(cfg.duration * 1e9)
        stop_at = None
        next_log = t0
        verdict_first: Verdict | None = None
        s = None
        try:
            while True:
                now = time.monotonic_ns()
                s = self._sample(now)
                v = wd.observe(s)
                if v is not None and verdict_first is None:
                    verdict_first = v
                    self.progress.event(f"{v.verdict} detected: {v.reason}")
                    if cfg.stop_on_failure:
                        stop_at = now + int(cfg.linger * 1e9)
                if now >= next_log:
                    log.write(_sample_record(s, t0, wd))
                    next_log = now + 100_000_000
                self.progress.update(s, (now - t0) / 1e9, cfg.duration)
                if now >= end or (stop_at and now >= stop_at):
                    break
                if self.stand.poll() is not None:
                    s = self._sample(time.monotonic_ns())
                    wd.observe(s)
                    break
                if all(p.poll() is not None for p in self.loadgens) and wd.load_start_ns is None:
                    break                     # every load generator gave up before any load
                time.sleep(max(0.0, period - (time.monotonic_ns() - now) / 1e9))
        finally:
            log.close()
        final = wd.final()
        self.progress.done()
        if final.verdict not in ("pass", "inconclusive") and s is not None:
            self._evidence(final, s)
        self._kill_all()
        return self._outcome(final, s, wd, t0, manifest)

    def _evidence(self, v: Verdict, s: dict) -> None:
        """After the verdict only: stacks (ptrace), then family names."""
        procs = [{"pid": w["pid"], "slot": w["slot"], "role": w["role"]}
                 for w in s["slots"] if w["state"] == "alive" and w["pid"] > 0]
        procs.append({"pid": self.stand.pid, "slot": -1, "role": "supervisor"})
        self.progress.event(f"collecting stacks of {len(procs)} processes")
        taken = stacks.collect(procs, self.dir / "stacks")
        crashed = stacks.crash_stacks(self.dir / "stacks")
        v.stacks = [{k: t[k] for k in ("pid", "slot", "role", "tool", "file", "changed")}
                    | {"top": t["frames"][:12]} for t in taken + crashed if "pid" in t]
        disturbed = [t["pid"] for t in taken if t["changed"]]
        if disturbed:
            v.evidence.append(f"ptrace changed the state of pids {disturbed}: stacks were "
                              "taken after the /proc snapshot that decided the verdict")
        try:
            v.families = families.name(v.to_dict(), taken + crashed, self.status.arena_events())
        except families.CatalogueError as e:
            v.evidence.append(f"signature catalogue: {e}")

    def _outcome(self, v: Verdict, s: dict, wd: Watchdog, t0: int, manifest: dict) -> dict:
        lg = s["lg"] if s else {}
        load_start = wd.load_start_ns
        t_end = s["t"] if s else t0
        load_s = (t_end - load_start) / 1e9 if load_start else 0
        hist = self.lg.latency_hist() if self.lg else []
        rel = (lambda ns: round((ns - load_start) / 1e6, 1) if ns and load_start else None)
        out = {
            "run_dir": str(self.dir), "verdict": v.verdict,
            "outcome": OUTCOMES.get(v.verdict, "inconclusive"), "reason": v.reason,
            "exit_code": exit_code(v.verdict), "lib": self.cfg.lib,
            "lib_version": manifest.get("lib_version"),
            "time_to_failure_ms": rel(v.onset_ns) if v.failed else None,
            "detect_latency_ms": round((v.detect_ns - v.onset_ns) / 1e6, 1)
            if v.failed and v.detect_ns and v.onset_ns else None,
            "load_seconds": round(load_s, 3),
            "replies": lg.get("answered", 0), "sent": lg.get("sent", 0),
            "bad": lg.get("bad", 0), "timed_out": lg.get("timed_out", 0),
            "handshakes_client": lg.get("handshakes", 0), "conn_errors": lg.get("conn_errors", 0),
            "replies_per_s": round(lg.get("answered", 0) / load_s, 1) if load_s > 0 else 0,
            "latency_ms": {"p50": hist_quantile(hist, 0.5), "p99": hist_quantile(hist, 0.99)},
            "cross_handoffs": s["hdr"]["cross_handoffs"] if s else 0,
            "arena": s["hdr"]["arena"] if s else {},
            "arena_events": self.status.arena_events() if self.status else [],
            "workers": [{k: w[k] for k in ("slot", "pid", "role", "state", "activity", "requests",
                                           "handshakes", "errors", "malformed", "handoffs",
                                           "exit_signal")} for w in (s["slots"] if s else [])],
            "command": manifest["command"],
            "families": [f["family"] for f in v.families],
            "stuck": [{k: p.get(k) for k in ("slot", "pid", "activity", "state", "cpu", "why")}
                      | {"top": _top(v, p["pid"])} for p in v.blocked + v.spinning + v.stopped],
        }
        results.write_json(self.dir / "verdict.json", v.to_dict())
        results.write_json(self.dir / "outcome.json", out)
        return out


def _sample_record(s: dict, t0: int, wd: Watchdog) -> dict:
    t = s["t"]
    return {
        "t": round((t - t0) / 1e9, 3),
        "lg": {k: s["lg"][k] for k in ("sent", "answered", "bad", "timed_out", "handshakes",
                                       "conn_errors")},
        "arena": {"in_use": s["hdr"]["arena"]["in_use"], "peak": s["hdr"]["arena"]["peak"]},
        "cross_handoffs": s["hdr"]["cross_handoffs"],
        "workers": [{"slot": w["slot"], "pid": w["pid"], "state": w["state"], "act": w["activity"],
                     "age_ms": round((t - w["since_ns"]) / 1e6, 1), "req": w["requests"],
                     "hs": w["handshakes"], "err": w["errors"], "lock_wait": w["lock_waiting"],
                     "cpu": (s["procs"].get(w["pid"]) or {}).get("cpu_s"),
                     "pstate": (s["procs"].get(w["pid"]) or {}).get("state")}
                    for w in s["slots"]],
    }


def _top(v: Verdict, pid: int, n: int = 6) -> list[str]:
    for st in v.stacks:
        if st["pid"] == pid:
            return st["top"][:n]
    return []


def _signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, n: int = 1) -> str:
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
        return " | ".join(lines[-n:]) or "(no output)"
    except OSError:
        return "(no log)"
