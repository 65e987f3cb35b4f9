"""Judging a server tlsharness did not build from ForeignSampler's
conditions (see foreign_sampler.py for what each condition means), and the
observation loop shared by `target` and `watch`."""
from __future__ import annotations

import time

from harness.watchdog.foreign_sampler import ForeignSampler
from harness.watchdog.futex_tracer import Tracer
from harness.watchdog.rules import Watchdog
from harness.watchdog.verdict import Thresholds, Verdict, outstanding
from harness.verdicts import V


class ForeignWatchdog(Watchdog):
    """The watchdog's verdicts (crash, degraded, deadlock, livelock, mixed,
    stopped, overload) decided from ForeignSampler conditions."""

    def __init__(self, th: Thresholds, progress_source: bool = True, unread=None):
        """unread(): pid -> bytes waiting unread on the server's connections it
        holds (ForeignSampler.unread_holders), read only when replies stop."""
        super().__init__(th)
        self.unread = unread
        self.progress_source = progress_source
        self.unjudged: str | None = None

    def observe(self, s: dict) -> Verdict | None:
        self.hist.append(s)
        if self.load_start_ns is None and s["lg"].get("start_ns"):
            self.load_start_ns = s["lg"]["start_ns"]
        return self._decide()

    def _offered(self, s: dict) -> bool:
        """Requests outstanding (sent, not yet settled), when a load generator is known."""
        if not self.progress_source:
            return False
        return outstanding(s["lg"]) > 0 if "sent" in s["lg"] else bool(s["lg"].get("ready"))

    def _io_progress(self, seconds: float, exclude: set) -> int:
        old, new = self._window(seconds)
        before = {w["pid"]: w["requests"] for w in old["slots"]}
        return sum(max(0, w["requests"] - before.get(w["pid"], w["requests"]))
                   for w in new["slots"] if w["pid"] not in exclude and w["state"] == "alive")

    def _find_stuck(self, s: dict) -> list:
        t, th = s["t"], self.th
        offered = self._offered(s)
        stuck, spin = [], []
        for w in s["slots"]:
            if w["state"] != "alive":
                continue
            age = (t - w["since_ns"]) / 1e9
            act = w["activity"]
            fx = ((s["procs"].get(w["pid"]) or {}).get("syscall") or {}).get("futex")
            why = None
            if act == "stopped" and w["samples"] >= 2:
                why = "stopped (state T)"
            elif act == "lock_wait":
                single = w["threads"] == 1
                where = f"private futex wait on {w['mapping']}" if w["mapping"] else None
                if fx and fx["private"] and w["mapping"] and single \
                        and w["samples"] >= th.futex_samples:
                    why = f"{where}: a process-private wait on shared memory, no other " \
                          f"process can wake it ({age:.1f} s)"
                elif fx and fx["private"] and single and age >= th.stall_s and not w["mapping"]:
                    why = f"private futex wait at {fx['addr']:#x} in a single-threaded process " \
                          f"for {age:.1f} s: no thread exists that could wake it"
                elif fx and fx["private"] and w["mapping"] and age >= th.shared_wait_s:
                    why = f"{where} for {age:.1f} s without running ({w['threads']} threads)"
                elif (not fx or not fx["private"]) and offered and age >= th.shared_wait_s:
                    what = f"shared futex {fx['addr']:#x}" if fx else "a semaphore"
                    why = f"waits on {what} for {age:.1f} s without running while load is offered"
            elif act in ("spin", "sys") and age >= th.stall_s:
                spin.append((w, f"{'running' if act == 'spin' else 'in a system call'} "
                                f"{age:.1f} s without any I/O"))
            if why:
                stuck.append((w, why))
        if spin:
            replies = self._progress(th.progress_s) if self.progress_source else 0
            if stuck or (offered and replies == 0):
                stuck += spin
        return stuck

    def _liveness(self, s: dict) -> Verdict:
        t, th = s["t"], self.th
        stuck, lost = self._seen_lost(s, self._find_stuck(s))
        if stuck:
            since = min(w["since_ns"] for w, _ in stuck)
            if self.progress_source:
                progress = self._progress(th.progress_s, since)
            else:
                progress = self._io_progress(th.progress_s, {w["pid"] for w, _ in stuck})
            v = self._classify(s, stuck, progress)
            v.evidence += lost
            return v
        if (self.progress_source and self.load_start_ns
                and (t - self.load_start_ns) / 1e9 > th.no_progress_s
                and self._progress(th.no_progress_s) == 0 and self._offered(s)):
            waits = [self._runq_wait(p) or 0 for p in s["procs"]]
            if waits and max(waits) >= th.overload_wait:
                return Verdict(V.OVERLOAD, reason=f"no replies for {th.no_progress_s:g} s while "
                               f"the server's processes wait {max(waits):.2f} s/s for a CPU and "
                               "none is stuck: not a hang", detect_ns=t)
            if s["lg"].get("answered", 0) > 0 and self.unread is not None:
                v = self._deaf(s)              # it answered before, and stopped
                if v is not None:
                    return v
            if self.unjudged is None:
                conds = sorted({w["activity"] for w in s["slots"] if w["state"] == "alive"})
                self.unjudged = (f"no replies for {th.no_progress_s:g} s to requests outstanding "
                                 f"while no server process is stuck (their conditions: "
                                 f"{', '.join(conds)}): the requests do not reach a worker, or "
                                 "it drops them")
        return Verdict(V.PASS)

    @staticmethod
    def _seen_lost(s: dict, stuck: list) -> tuple[list, list]:
        """The kernel's lost wake-ups (s["lost_wakes"], futex_tracer): their
        waiters stuck at once, without waiting for samples; and their lines."""
        lost = {r["waiter"]: r for r in s.get("lost_wakes") or ()}
        if not lost:
            return stuck, []
        why = dict((w["pid"], y) for w, y in stuck)
        out = [(w, y) for w, y in stuck if w["pid"] not in lost]
        for w in s["slots"]:
            if w["state"] == "alive" and w["pid"] in lost:
                y = why.get(w["pid"])
                out.append((w, lost[w["pid"]]["why"] + (f" ({y})" if y else "")))
        return out, [lost[w["pid"]]["line"] for w, _ in out if w["pid"] in lost]

    def _deaf(self, s: dict) -> Verdict | None:
        """The server answered, then stopped: no reply for no_progress_s while
        requests are outstanding.  The processes holding a connection with a
        request unread in its receive queue (/proc/net/tcp) are stuck, whatever
        they sleep in (a wait /proc cannot tell from idle: pause, a pipe)."""
        th = self.th
        holders = self.unread()
        stuck = [(w, f"{w['activity']} with {holders[w['pid']]} bytes unread on its "
                     f"connection(s) for {th.no_progress_s:g} s while no reply arrives")
                 for w in s["slots"] if w["state"] == "alive" and w["pid"] in holders]
        if not stuck:
            return None
        for w, _ in stuck:
            w["since_ns"] = min(w["since_ns"], s["t"] - int(th.no_progress_s * 1e9))
        v = self._classify(s, stuck, 0)
        v.reason = "the server stopped answering: " + v.reason
        return v

    def _describe(self, s, w, why) -> dict:
        d = super()._describe(s, w, why)
        d["condition"] = w["activity"]
        if "futex" in d:
            d["futex"]["in_arena"] = False
            d["futex"]["in_shared_mapping"] = bool(w.get("mapping"))
            d["futex"]["mapping"] = w.get("mapping")
        if w["activity"] == "lock_wait" and "futex" not in d:
            d["wait"] = "semaphore"
        return d

    def final(self) -> Verdict:
        v = super().final()
        if v.verdict == V.PASS and self.unjudged and self.first is None:
            return Verdict(V.INCONCLUSIVE, reason=self.unjudged)
        if v.verdict == V.INCONCLUSIVE and not self.progress_source:
            v.reason = ("no progress source (--port or --counter-cmd): crashes, stopped "
                        "processes, lost wake-ups and blocked or spinning processes were looked "
                        "for and not seen, but whether requests are answered is unknown")
        return v


def stuck_pids(v: Verdict) -> list[int]:
    return [d["pid"] for d in v.blocked + v.spinning + v.stopped]


def kernel_source(seeds, progress=None) -> Tracer:
    """The kernel futex events of the watched tree (the seeds, their forks from
    now on), or /proc alone: said once, through progress."""
    tracer = Tracer()
    if not tracer.start(seeds=seeds) and progress:
        progress(f"evidence from /proc only: {tracer.reason}")
    return tracer


def observe(sampler: ForeignSampler, wd: ForeignWatchdog, lg_total, duration: float,
            linger: float, sample_hz: float, log, progress=None, alive=lambda: True,
            futex: Tracer | None = None):
    """Sample at sample_hz until duration ends, or `linger` s after the first
    failure (to see whether it lasts), or everything watched has gone.
    lg_total() gives the progress counters; futex (kernel_source) the lost
    wake-ups seen in the kernel.  Returns (final verdict, last sample, t0)."""
    t0 = time.monotonic_ns()
    if futex is not None:
        futex.pairing.base_ns = t0
    end, stop_at = t0 + int(duration * 1e9), None
    period = 1.0 / sample_hz
    s = None
    while True:
        now = time.monotonic_ns()
        s = sampler.sample(now, lg_total())
        s["lost_wakes"] = futex.current(now) if futex is not None else []
        v = wd.observe(s)
        if v is not None and stop_at is None:
            stop_at = now + int(linger * 1e9)
            if progress:
                progress(f"{v.verdict} detected: {v.reason}")
        log.write({"t": round((now - t0) / 1e9, 3),
                   "lg": {k: s["lg"].get(k, 0) for k in ("sent", "answered", "bad")},
                   "procs": {p: {"state": x["state"], "cpu": round(x["cpu_s"], 3),
                                 "cond": x["cond"]} for p, x in s["procs"].items()}})
        if now >= end or (stop_at and now >= stop_at) or not s["procs"] or not alive():
            if not alive() and s["procs"]:
                s = sampler.sample(time.monotonic_ns(), lg_total())
                s["lost_wakes"] = futex.current(s["t"]) if futex is not None else []
                wd.observe(s)
            break
        time.sleep(max(0.0, period - (time.monotonic_ns() - now) / 1e9))
    log.close()
    return wd.final(), s, t0


def take_stacks(v: Verdict, sampler: ForeignSampler, out_dir) -> list[dict]:
    """Stacks of the processes the watchdog judged stuck, and only those
    (ptrace after the verdict; never the whole tree)."""
    from harness.watchdog import stacks
    pids = set(stuck_pids(v))
    procs = [{"pid": w["pid"], "slot": w["slot"], "role": w["role"]} for w in sampler.slots()
             if w["pid"] in pids and w["state"] == "alive"]
    taken = stacks.collect(procs, out_dir) if procs else []
    v.stacks = [{k: t[k] for k in ("pid", "slot", "role", "tool", "file", "changed")}
                | {"top": t["frames"][:12]} for t in taken]
    return taken


def stuck_summary(v: Verdict) -> list[dict]:
    """One line of facts per stuck process, for outcome.json and the terminal."""
    out = []
    for kind, lst in (("blocked", v.blocked), ("spinning", v.spinning), ("stopped", v.stopped)):
        for d in lst:
            e = {"pid": d["pid"], "role": d.get("role"), "as": kind, "why": d.get("why"),
                 "state": d.get("state"), "cpu": d.get("cpu")}
            fx = d.get("futex")
            if fx:
                e["futex"] = {k: fx.get(k) for k in ("addr", "op", "private", "mapping")}
            e["top"] = next((x["top"][:6] for x in v.stacks if x["pid"] == d["pid"]), [])
            out.append(e)
    return out
