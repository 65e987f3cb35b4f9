"""`tlsharness watch`: the watchdog on processes it did not start.

Process tree discovered from the given pids through /proc (no ptrace until
the verdict).  Progress comes from a SIP OPTIONS probe over TLS sent by a
load generator process (the controller still never loads a TLS library), or
from a command the user names that prints a counter (run through /bin/sh;
one that hangs has its whole tree killed).  With a port, the processes that
listen on it must be in the watched tree (and their descendants): a port
served by another process is `inconclusive`, naming it.  Without either, what
/proc alone shows is judged (crashes, stopped processes, lost wake-ups,
processes blocked or spinning); a run in which none of that is seen is
`inconclusive`, never a pass.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

from harness.analysis import history
from harness.analysis import results
from harness.watchdog import families, procfs
from harness.control import interrupt, ports, reaper
from harness.control.children import Children, start_loadgens
from harness.spec.params import c_fields, defaults
from harness.watchdog.foreign import (ForeignSampler, ForeignWatchdog, kernel_source, observe,
                                      stuck_summary, take_stacks)
from harness.verdicts import exit_code
from harness.watchdog import Thresholds, Verdict
from harness.verdicts import V


@dataclass
class WatchConfig:
    pids: list
    tree: bool = True
    port: int | None = None
    tls: int = 13
    probe_rate: float = 5.0
    counter_cmd: str | None = None
    duration: float = 60.0
    linger: float = 1.0
    sample_hz: float = 20.0
    out: str = "results"
    no_progress_s: float = 2.0


class WatchError(RuntimeError):
    pass


class Counter:
    """A user's command that prints the server's progress counter (the first
    number in its output), run through /bin/sh at most twice a second; one
    that hangs has its whole process tree killed after 2 s."""

    def __init__(self, cmd: str):
        self.cmd, self.value, self.at = cmd, 0, 0.0
        self.ok, self.failures, self.last_error = False, 0, ""

    def read(self) -> int:
        if time.monotonic() - self.at < 0.5:
            return self.value
        self.at = time.monotonic()
        rc, out, err = reaper.run_bounded(self.cmd, 2.0)
        if rc is None:
            self.failures, self.last_error = self.failures + 1, "timed out after 2 s"
            return self.value
        m = re.search(r"\d+", out)
        if rc != 0 or not m:
            self.failures += 1
            self.last_error = (f"exit {rc}" if rc else "no number") + \
                (f": {err.strip()[:100]}" if err.strip() else "")
            return self.value
        self.ok, self.value = True, int(m.group())
        return self.value


def why_unanswered(port: int, tls: int) -> str:
    """The readiness probe's one line on a port that answered no OPTIONS."""
    from harness.control import readiness
    res = readiness.probe_in_child(port, tls)
    return res.get("detail") or "it answers now (too slow during the watch?)"


def watch(cfg: WatchConfig, progress=None) -> dict:
    for pid in cfg.pids:
        if procfs.sample(pid) is None:
            raise WatchError(f"no process with pid {pid}")
    run_dir = results.new_run_dir(cfg.out)
    children = Children(run_dir)
    lg = None
    try:
        with interrupt.trapped():
            try:
                owner = ports.OwnerWatch(cfg.port, lambda: _tree(cfg.pids))
                if owner.check():             # the port is served by someone else: say so now
                    return _write(cfg, run_dir, Verdict(V.INCONCLUSIVE, reason=owner.reason()),
                                  [], [])
                if cfg.port:
                    lg, _ = start_loadgens(children, cfg.port, 1, 1, c_fields(defaults(
                        window=1, tls=cfg.tls, rate=cfg.probe_rate, duration=cfg.duration + 5,
                        timeout=1.0), "loadgen"))
                return _observe(cfg, run_dir, lg, owner, progress)
            finally:
                children.stop_all(2.0)
                if lg:
                    lg.close()
    except interrupt.Interrupted as e:
        out = {"run_dir": str(run_dir), "verdict": V.INTERRUPTED, "outcome": V.INTERRUPTED,
               "reason": f"controller received {e}", "exit_code": e.exit_code, "watched": [],
               "vanished": [], "families": [], "stuck": []}
        results.write_json(run_dir / "outcome.json", out)
        return out


def _tree(pids: list[int]) -> list[int]:
    """The given processes and all their descendants (who may hold the port)."""
    out = list(pids)
    for p in pids:
        out += [c.pid for c in reaper.descendants(p)]
    return out


def _observe(cfg: WatchConfig, run_dir, lg, owner, progress) -> dict:
    th = Thresholds(no_progress_s=cfg.no_progress_s)
    source = bool(cfg.port or cfg.counter_cmd)
    sampler = ForeignSampler(list(cfg.pids), port=cfg.port, tree=cfg.tree)
    wd = ForeignWatchdog(th, progress_source=source, unread=sampler.unread_holders)
    counter = Counter(cfg.counter_cmd) if cfg.counter_cmd else None
    t0 = time.monotonic_ns()

    def lg_total():
        if lg is not None:
            return lg.total()
        d = {"answered": 0, "bad": 0, "ready": 0, "done": 0, "start_ns": 0, "errors": []}
        if counter is not None:
            d.update(answered=counter.read(), ready=1, start_ns=t0)
        return d

    futex = kernel_source(_tree(cfg.pids) if cfg.tree else list(cfg.pids), progress)
    try:
        v, s, _ = observe(sampler, wd, lg_total, cfg.duration, cfg.linger, cfg.sample_hz,
                          results.SampleLog(run_dir / "samples.jsonl"), progress,
                          alive=owner.ok, futex=futex)
    finally:
        futex.stop()
    if owner.check():
        if not v.failed:
            v = Verdict(V.INCONCLUSIVE, reason=owner.reason())
        else:
            v.evidence.append(owner.reason())
    elif counter is not None and counter.failures and not counter.ok:
        v = Verdict(V.INCONCLUSIVE, reason=f"--counter-cmd never printed a number "
                    f"({counter.failures} tries; last: {counter.last_error})")
    elif lg is not None and (s is None or s["lg"].get("answered", 0) == 0) and not v.failed:
        why = why_unanswered(cfg.port, cfg.tls)
        v = Verdict(V.INCONCLUSIVE, reason=f"the SIP OPTIONS probe on 127.0.0.1:{cfg.port} "
                    f"was never answered: {why}")
    taken = take_stacks(v, sampler, run_dir / "stacks") if v.failed else []
    if v.failed:
        v.families = families.name(v.to_dict(), taken, [])
    gone = sorted(tr.pid for tr in sampler.tracks.values() if tr.gone_ns)
    return _write(cfg, run_dir, v, sorted(sampler.tracks), gone, futex.outcome())


def _write(cfg: WatchConfig, run_dir, v: Verdict, watched: list, gone: list,
           source: dict | None = None) -> dict:
    out = {**(source or {}), "run_dir": str(run_dir), "verdict": v.verdict, "outcome": v.verdict,
           "reason": v.reason, "exit_code": exit_code(v.verdict),
           "watched": watched, "vanished": gone,
           "families": [f["family"] for f in v.families],
           "stuck": stuck_summary(v)}
    results.write_json(run_dir / "verdict.json", v.to_dict())
    results.write_json(run_dir / "outcome.json", out)
    history.record(run_dir.parent, dict(out, lib="watch"), "watch",
                   params={"pids": cfg.pids, "port": cfg.port, "duration": cfg.duration})
    return out
