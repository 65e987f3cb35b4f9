"""`tlsharness watch`: the watchdog on processes it did not start.

Process tree discovered from the given pids through /proc (no ptrace until
the verdict).  Progress comes from a SIP OPTIONS probe over TLS sent by a
load generator process (the controller still never loads a TLS library), or
from a command the user names that prints a counter.  Without either, only
crashes (a watched process vanished), stopped processes and overload can be
judged.
"""
from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass

from harness import families, procfs, results, stacks
from harness.children import Children, start_loadgens
from harness.watchdog import Thresholds, Watchdog, exit_code, external_slots


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


def _counter(cmd: str) -> int | None:
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=2)
    except subprocess.TimeoutExpired:
        return None
    m = re.search(r"\d+", r.stdout)
    return int(m.group()) if m else None


def watch(cfg: WatchConfig, progress=None) -> dict:
    for pid in cfg.pids:
        if procfs.sample(pid) is None:
            raise WatchError(f"no process with pid {pid}")
    run_dir = results.new_run_dir(cfg.out)
    children = Children(run_dir)
    th = Thresholds(no_progress_s=cfg.no_progress_s)
    wd = Watchdog(th)
    lg = None
    try:
        if cfg.port:
            lg, _ = start_loadgens(children, cfg.port, conns=1, clients=1, window=1, churn=0,
                                   resume=False, tls=cfg.tls, rate=cfg.probe_rate,
                                   duration=cfg.duration + 5, timeout=1.0)
        first_seen: dict[int, int] = {}
        gone: dict[int, int] = {}
        counter, counter_at = 0, 0.0
        t0 = time.monotonic_ns()
        end, stop_at, first = t0 + int(cfg.duration * 1e9), None, None
        period = 1.0 / cfg.sample_hz
        log = results.SampleLog(run_dir / "samples.jsonl")
        while True:
            now = time.monotonic_ns()
            pids = []
            for root in cfg.pids:
                pids += procfs.tree(root) if cfg.tree else [root]
            procs = {p: s for p in dict.fromkeys(pids) if (s := procfs.sample(p, detail=True))}
            for p in procs:
                first_seen.setdefault(p, now)
            for p in list(first_seen):
                if p not in procs and p not in gone and now - first_seen[p] > 5e8:
                    gone[p] = now                # watched for 0.5 s, then vanished
            slots = external_slots(first_seen, gone)
            if lg is not None:
                lgt = lg.total()
            else:
                lgt = {"answered": 0, "bad": 0, "ready": 0, "done": 0, "start_ns": 0, "errors": []}
                if cfg.counter_cmd and time.monotonic() - counter_at >= 0.5:
                    counter_at = time.monotonic()
                    counter = _counter(cfg.counter_cmd) or counter
                if cfg.counter_cmd:
                    lgt.update(answered=counter, ready=1, start_ns=t0)
            s = {"t": now, "slots": slots, "procs": procs, "lg": lgt,
                 "hdr": {"ok": True, "arena": {"double_free": 0, "wild_free": 0}, "cross_handoffs": 0}}
            v = wd.observe(s)
            if v is not None and first is None:
                first = v
                stop_at = now + int(cfg.linger * 1e9)
                if progress:
                    progress(f"{v.verdict} detected: {v.reason}")
            log.write({"t": round((now - t0) / 1e9, 3), "answered": lgt["answered"],
                       "procs": {p: {"state": x["state"], "cpu": x["cpu_s"]} for p, x in procs.items()}})
            if now >= end or (stop_at and now >= stop_at) or (not procs and not gone):
                break
            time.sleep(max(0.0, period - (time.monotonic_ns() - now) / 1e9))
        log.close()
        v = wd.final()
        if v.verdict not in ("pass", "inconclusive"):
            live = [{"pid": p, "slot": i, "role": "process"} for i, p in enumerate(first_seen)
                    if p not in gone and procfs.sample(p)]
            taken = stacks.collect(live, run_dir / "stacks")
            v.stacks = [{k: t[k] for k in ("pid", "slot", "role", "tool", "file", "changed")}
                        | {"top": t["frames"][:12]} for t in taken]
            v.families = families.name(v.to_dict(), taken, [])
        if v.verdict == "inconclusive" and not cfg.port and not cfg.counter_cmd:
            v.reason = "no progress source (--port or --counter-cmd); no crash or stop seen"
            v.verdict = "pass"
        out = {"run_dir": str(run_dir), "verdict": v.verdict, "outcome": v.verdict,
               "reason": v.reason, "exit_code": exit_code(v.verdict),
               "watched": sorted(first_seen), "vanished": sorted(gone),
               "families": [f["family"] for f in v.families],
               "stuck": [{k: p.get(k) for k in ("slot", "pid", "activity", "state", "cpu", "why")}
                         | {"top": next((x["top"][:6] for x in v.stacks if x["pid"] == p["pid"]), [])}
                         for p in v.blocked + v.spinning + v.stopped]}
        results.write_json(run_dir / "verdict.json", v.to_dict())
        results.write_json(run_dir / "outcome.json", out)
        return out
    finally:
        children.stop_all(2.0)
        if lg:
            lg.close()
