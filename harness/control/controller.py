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

from harness import verdicts
from harness.builds import native
from harness.analysis import results
from harness.spec import certs, io_model
from harness.watchdog import bad_replies, families, futex_tracer, procfs, stacks
from harness.control import measures, setup_crash
from harness.control.setup_crash import StandCrashed
from harness.control.children import Children, start_loadgens
from harness.spec.config import RunConfig, results_root
from harness.spec.params import c_fields
from harness.control.progress import Progress
from harness.segments import LoadgenView, StatusView, abuse_figures, hist_quantile
from harness.verdicts import exit_code
from harness.watchdog.history import cpu_stall_us
from harness.watchdog import BUSY, Thresholds, Verdict, Watchdog
from harness.verdicts import V
from harness.vocab import M, ProcExit


MEMORY_LABELS = {"shared": "shared (library allocator hooked to the arena)",
                 "private": "private (each worker's own heap)",
                 "interpose": "interpose (FORCED: the whole stand process's malloc in the "
                              "shared arena via LD_PRELOAD)"}


# a process that is not a suspect is read from /proc every READ_EVERY samples
READ_EVERY = 4


class HarnessError(RuntimeError):
    """The run could not be carried out (not a verdict on the library)."""


class Unsupported(HarnessError):
    """The library cannot do what the run asks: verdict 'unsupported'."""


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
        self.children = Children(self.dir)
        self.proc = procfs.Reader(stat_every=8)   # suspects are read in full every sample
        self.seen_since: dict[int, int] = {}     # pid -> its activity's start, one sample ago
        self.cpu_now: dict[int, float] = {}      # pid -> CPU seconds at its last read
        self.stand: subprocess.Popen | None = None
        self.loadgens: list[subprocess.Popen] = []
        self.status: StatusView | None = None
        self.lg: LoadgenView | None = None
        self.futex = futex_tracer.Tracer()      # kernel futex events, or /proc alone

    def _kill_all(self) -> None:
        self.children.stop_all(self.cfg.grace)

    # -- the run --------------------------------------------------------------------
    def execute(self) -> dict:
        old = {s: signal.signal(s, _on_term) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            return self._execute()
        except StandCrashed as e:
            self._kill_all()
            return setup_crash.outcome_of(self, e.sig)
        except Unsupported as e:
            return self.early_outcome(V.UNSUPPORTED, str(e))
        except (Interrupted, KeyboardInterrupt) as e:
            self._kill_all()
            name = str(e) if isinstance(e, Interrupted) and str(e) else "SIGINT"
            # the shell's convention, 128 + the signal: 130 SIGINT, 143 SIGTERM, 129 SIGHUP
            code = 128 + signal.Signals[name] if name in signal.Signals.__members__ \
                else verdicts.EXIT_INTERRUPTED
            out = {"verdict": V.INTERRUPTED, "outcome": V.INTERRUPTED,
                   "reason": f"controller received {name}", "exit_code": code,
                   "run_dir": str(self.dir)}
            if self.lg is not None:                # the counters gathered so far
                try:
                    t = self.lg.total()
                    out.update({k: t.get(k, 0) for k in ("sent", "answered", "bad", "timed_out",
                                                          "handshakes", "conn_errors")})
                    out["replies"] = t.get("answered", 0)
                except Exception:                  # the view may be half set up: no counters
                    pass
            results.write_json(self.dir / "outcome.json", out)
            return out
        finally:
            self._kill_all()
            self.futex.stop()
            self.proc.close()
            for v in (self.status, self.lg):
                if v:
                    v.close()
            for s, h in old.items():
                signal.signal(s, h)

    def early_outcome(self, verdict: str, reason: str, **extra) -> dict:
        """The outcome of a run that ended before any load (no figures), written."""
        out = {"verdict": verdict, "outcome": verdicts.outcome(verdict), "reason": reason,
               "exit_code": exit_code(verdict), "run_dir": str(self.dir), "lib": self.cfg.lib,
               "replies": 0, "replies_per_s": 0, "bad": 0, "timed_out": 0,
               "cross_handoffs": 0, "time_to_failure_ms": None,
               "command": results.rerun_command(self.argv, self.cfg.seed), **extra}
        results.write_json(self.dir / "outcome.json", out)
        return out

    def _manifest(self, lib_version: str = "", **extra) -> dict:
        m = {"tool": "tlsharness", "config": self.cfg.to_dict(), "lib": self.cfg.lib,
             "lib_version": lib_version, "machine": results.machine(),
             "git_revision": results.git_revision(), "run_dir": str(self.dir),
             "command": results.rerun_command(self.argv, self.cfg.seed),
             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
        results.write_json(self.dir / "manifest.json", m)
        return m

    def _start_stand(self) -> None:
        cfg = self.cfg
        cert, key = certs.make_cert(self.dir, cfg.cert)
        self.status = StatusView(io_model.nslots_of(cfg))
        # the whole configuration for the stand's own Python, and the fields of its C struct
        sc = {**cfg.to_dict(), "cert": cert, "key": key, "stacks_dir": str(self.dir / "stacks"),
              "c": c_fields(cfg, "stand")}
        (self.dir / "stand.json").write_text(json.dumps(sc, indent=2))
        env, preload = {}, []
        if cfg.memory == "interpose":        # forced mode: the whole stand's heap in the arena
            preload.append("libtlsh_interpose.so")
            env["TLSH_INTERPOSE_MB"] = str(cfg.arena_mb)
        if M.PSHARED in cfg.mitigations:
            preload.append("libtlsh_pshared.so")
        if cfg.chaos:
            preload.append("libtlsh_chaos.so")
            env["TLSH_CHAOS"] = cfg.chaos
        for so in preload:
            if not (native.NATIVE_DIR / so).exists():
                raise HarnessError(f"{so} is not built (make setup)")
        if preload:
            env["LD_PRELOAD"] = ":".join(str(native.NATIVE_DIR / so) for so in preload)
        self.stand = self.children.spawn(["harness.stand", str(self.dir / "stand.json"),
                                          str(self.status.fd), str(os.getpid())],
                                         [self.status.fd], "stand.log", env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.status.s.ready and self.status.s.port:
                return
            if self.stand.poll() is not None:
                err = self.status.header()["error"] or measures.tail(self.dir / "stand.log")
                if self.stand.returncode == ProcExit.UNSUPPORTED:
                    raise Unsupported(err)
                if self.stand.returncode < 0:       # killed by a signal: the library, in set-up
                    raise StandCrashed(-self.stand.returncode)
                raise HarnessError(f"stand failed to start: {err}")
            time.sleep(0.01)
        raise HarnessError("stand did not become ready within 20 s")

    def _start_loadgens(self) -> None:
        cfg = self.cfg
        ext, self.client = native.client_extension(cfg.client)
        self.lg, self.loadgens = start_loadgens(self.children, self.status.s.port, cfg.conns,
                                                cfg.clients, c_fields(cfg, "loadgen"), ext)

    def _start_hog(self) -> None:
        """The 'hog' fault: one busy loop per CPU outside the stand, the stand at nice 19,
        so that its processes wait for a CPU: overload, which must never read as a hang."""
        for i in range(os.cpu_count() or 1):
            self.children.spawn_cmd([sys.executable, "-c", "while True: pass"], [], f"hog-{i}.log")
        for pid in procfs.tree(self.stand.pid):
            try:
                os.setpriority(os.PRIO_PROCESS, pid, 19)
            except OSError:
                pass
        self.progress.event("fault: CPU hogs started, stand at nice 19")

    def _sample(self, t: int) -> dict:
        st = self.status
        slots = st.slots()
        procs = {}
        self.proc.next_tick()
        sup = self.proc.sample(self.stand.pid)
        if sup is not None:
            procs[self.stand.pid] = sup
        seen, self.seen_since = self.seen_since, {}
        tick = self.proc.tick
        for w in slots:
            pid = w["pid"]
            if pid <= 0:
                continue
            # suspects get the detailed reads (stat, syscall, wchan): still inside the
            # same busy activity as one sample ago.  Any busy worker gets its CPU time
            # (schedstat, cheap: the spin rule needs it from the activity's start);
            # an idle one is read every READ_EVERY samples (spread by pid)
            self.seen_since[pid] = w["since_ns"]
            busy = w["activity"] in BUSY and w["state"] == "alive"
            suspect = busy and seen.get(pid) == w["since_ns"]
            if not busy and (tick + pid) % READ_EVERY and pid in self.cpu_now:
                continue
            p = self.proc.sample(pid, detail=suspect)
            if p is not None:
                procs[pid] = p
                self.cpu_now[pid] = p["cpu_s"]
        return {"t": t, "hdr": st.header(), "slots": slots, "procs": procs, "lg": self.lg.total(),
                "psi_cpu_us": cpu_stall_us(), "cpu": dict(self.cpu_now),
                "lost_wakes": self.futex.current(t)}

    def _execute(self) -> dict:
        cfg = self.cfg
        self._manifest()
        if not self.futex.start(parent=os.getpid()):   # the stand and its workers, from fork on
            self.progress.event(f"evidence from /proc only: {self.futex.reason}")
        self._start_stand()
        hdr = self.status.header()
        self.arena_baseline = hdr["arena"]["in_use"]      # contexts and library globals, no connection
        manifest = self._manifest(hdr["lib_version"], stand_pid=self.stand.pid, port=hdr["port"])
        wd = Watchdog(Thresholds(stall_s=cfg.stall_s), (hdr["arena_base"], hdr["arena_size"]))
        self._start_loadgens()
        log = results.SampleLog(self.dir / "samples.jsonl")
        self.t0 = t0 = self.futex.pairing.base_ns = time.monotonic_ns()
        self.cpu_at_load = None
        self.all_open_ns = None                # when every connection had been opened once
        try:
            s, first = self._observe(wd, log, t0)
            if cfg.shutdown == "exit" and first is None and self.stand.poll() is None:
                s = self._shutdown(wd, log, t0) or s
        finally:
            log.close()
        final = wd.final()
        final.evidence += bad_replies.report(self.lg, self.dir)   # and bad-replies.json
        self.progress.done()
        if final.verdict not in (V.PASS, V.INCONCLUSIVE) and s is not None:
            self._evidence(final, s)
        self.loadgen_cpu_s = measures.cpu_of([p.pid for p in self.loadgens])   # before they are reaped
        self._kill_all()
        return self._outcome(final, s, wd, t0, manifest)

    def _observe(self, wd: Watchdog, log, t0: int) -> tuple[dict | None, Verdict | None]:
        """Sample, judge, log and show progress until the duration is over, the
        linger after a first failure is over, the stand is gone, or every load
        generator gave up before any load.  Returns the last sample and the
        first verdict."""
        cfg = self.cfg
        period = 1.0 / cfg.sample_hz
        end = t0 + int(cfg.duration * 1e9)
        stop_at, next_log, first, s = None, t0, None, None
        log_ns = 100_000_000 * -(-cfg.workers // 64)   # the log's cost grows with the workers
        hog_at = t0 + cfg.fault.get("after_ms", 500) * 1_000_000 \
            if cfg.fault.get("kind") == "hog" else None
        while True:
            now = time.monotonic_ns()
            s = self._sample(now)
            if self.cpu_at_load is None and s["lg"].get("ready"):
                self.cpu_at_load = measures.stand_cpu(s)
            if self.all_open_ns is None and s["lg"].get("handshakes", 0) >= cfg.conns:
                self.all_open_ns = now            # every connection opened once
            v = wd.observe(s)
            if v is not None and first is None:
                first = v
                self.progress.event(f"{v.verdict} detected: {v.reason}")
                if cfg.stop_on_failure:
                    stop_at = now + int(cfg.linger * 1e9)
            if hog_at and now >= hog_at:
                self._start_hog()
                hog_at = None
            if now >= next_log:
                log.write(measures.sample_record(s, t0, wd))
                next_log = now + log_ns
            self.progress.update(s, (now - t0) / 1e9, cfg.duration)
            if now >= end or (stop_at and now >= stop_at):
                return s, first
            if self.stand.poll() is not None:
                s = self._sample(time.monotonic_ns())
                wd.observe(s)
                return s, first
            if wd.load_start_ns is None and all(p.poll() is not None for p in self.loadgens):
                return s, first               # every load generator gave up before any load
            time.sleep(max(0.0, period - (time.monotonic_ns() - now) / 1e9))

    def _shutdown(self, wd: Watchdog, log, t0: int) -> dict | None:
        """--shutdown exit: the stand asks every worker to leave through exit()
        (the library's atexit cleanup runs in each); watched like the run."""
        self.progress.event("shutdown: workers leaving through exit()")
        wd.begin_shutdown(time.monotonic_ns())
        os.kill(self.stand.pid, signal.SIGUSR1)
        deadline = time.monotonic() + max(2.0, self.cfg.grace)
        s = None
        while time.monotonic() < deadline:
            s = self._sample(time.monotonic_ns())
            v = wd.observe(s)
            log.write(measures.sample_record(s, t0, wd))
            if v is not None:
                self.progress.event(f"{v.verdict} detected: {v.reason}")
            workers = [w for w in s["slots"] if w["role"] == "worker"]
            if all(w["state"] == "dead" for w in workers) or self.stand.poll() is not None:
                break
            time.sleep(1.0 / self.cfg.sample_hz)
        return s

    def _evidence(self, v: Verdict, s: dict) -> None:
        """After the verdict only: stacks (ptrace), then family names."""
        procs = [{"pid": w["pid"], "slot": w["slot"], "role": w["role"]}
                 for w in s["slots"] if w["state"] == "alive" and w["pid"] > 0]
        procs.append({"pid": self.stand.pid, "slot": -1, "role": "supervisor"})
        self.progress.event(f"collecting stacks of {len(procs)} processes")
        taken = stacks.collect(procs, self.dir / "stacks")
        crashed = stacks.crash_stacks(self.dir / "stacks")
        v.stacks = stacks.summary(taken + crashed)
        v.evidence += stacks.fault_evidence(crashed, int(self.cfg.arena_align))
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
            "outcome": verdicts.outcome(v.verdict), "reason": v.reason,
            "exit_code": exit_code(v.verdict), "lib": self.cfg.lib,
            "memory": MEMORY_LABELS[self.cfg.memory],
            "mitigations": self.cfg.mitigations, "chaos": self.cfg.chaos or None,
            "lib_version": manifest.get("lib_version"),
            "time_to_failure_ms": rel(v.onset_ns) if v.failed else None,
            "detect_latency_ms": round((v.detect_ns - v.onset_ns) / 1e6, 1)
            if v.failed and v.detect_ns and v.onset_ns else None,
            "load_seconds": round(load_s, 3),
            "replies": lg.get("answered", 0), "sent": lg.get("sent", 0),
            "bad": lg.get("bad", 0), "bad_kinds": lg.get("bad_kinds", {}),
            "timed_out": lg.get("timed_out", 0), "handshakes_client": lg.get("handshakes", 0),
            "conn_errors": lg.get("conn_errors", 0),
            "replies_per_s": round(lg.get("answered", 0) / load_s, 1) if load_s > 0 else 0,
            "latency_ms": {"p50": hist_quantile(hist, 0.5), "p99": hist_quantile(hist, 0.99)},
            "cross_handoffs": s["hdr"]["cross_handoffs"] if s else 0,
            "t0_ns": self.t0, "load_start_ns": load_start,
            "conns_open": s["hdr"]["conns_open"] if s else 0,
            "all_conns_open_s": rel(self.all_open_ns) / 1000 if rel(self.all_open_ns) is not None
            else None,
            "rand_method": {"calls": s["hdr"]["rand_calls"], "reentries": s["hdr"]["rand_reentries"]}
            if s and (self.cfg.rand_lock != "none" or M.LOCKED_RAND in self.cfg.mitigations) else None,
            "rejected_handshakes": lg.get("rejected", 0), "rekeys": lg.get("rekeys", 0),
            **abuse_figures(lg),
            "rw_overlaps": s["hdr"]["rw_overlaps"] if s and (self.cfg.conn_locks == "split"
                                                          or self.cfg.session_sharing == "concurrent")
            else None,
            "write_dups": s["hdr"]["write_dups"] if s and M.WRITE_DUP in self.cfg.mitigations
            else None,
            "resumed_handshakes": lg.get("resumed", 0), "client": getattr(self, "client", None),
            "loadgen_cpu_s": getattr(self, "loadgen_cpu_s", None),
            "arena_baseline": getattr(self, "arena_baseline", 0),
            "arena_bytes_per_conn": measures.per_conn(s, getattr(self, "arena_baseline", 0)),
            "stand_cpu_s": round(measures.stand_cpu(s) - (self.cpu_at_load or 0), 3) if s else None,
            "arena": s["hdr"]["arena"] if s else {},
            "arena_events": self.status.arena_events() if self.status else [],
            "workers": [{k: w[k] for k in ("slot", "pid", "role", "state", "activity", "requests",
                                           "handshakes", "errors", "malformed", "handoffs",
                                           "exit_signal")} for w in (s["slots"] if s else [])],
            "command": manifest["command"], **self.futex.outcome(),
            "families": [f["family"] for f in v.families],
            "stuck": [{k: p.get(k) for k in ("slot", "pid", "activity", "state", "cpu", "why")}
                      | {"top": measures.top(v, p["pid"])} for p in v.blocked + v.spinning + v.stopped],
        }
        results.write_json(self.dir / "verdict.json", v.to_dict())
        results.write_json(self.dir / "outcome.json", out)
        return out
