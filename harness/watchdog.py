"""The watchdog: a checker over the sample history that decides a verdict.

Samples come from /proc (no ptrace), the stand's status segment and the
load generators' counters.  Liveness is judged per worker, not by total
throughput: the commonest failure of the model is *degraded* (some workers
stuck for good while the rest carry the load).

Verdicts: pass, livelock, deadlock, mixed, degraded, crash, corruption, leak,
overload, stopped, inconclusive.  Thresholds are `Thresholds` fields.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import asdict, dataclass, field

from harness.verdicts import FAILURES, NOT_HANGS, exit_code  # noqa: F401  (re-exported)

BUSY = {"handshake", "read", "write", "lock_wait", "close", "fault", "accept", "attach", "random"}
NONBLOCKING = {"handshake", "read", "attach", "close", "fault", "random"}  # sockets are non-blocking


@dataclass
class Thresholds:
    stall_s: float = 0.4          # one busy activity this long: the worker is stuck
    sleep_samples: int = 3        # asleep (state S/D) this many samples inside a non-blocking
                                  # activity (handshake, read, attach, close): stuck
    progress_s: float = 0.5       # window over which progress (replies) is looked for
    no_progress_s: float = 2.0    # no reply at all this long, nobody stuck: a hang anyway
    spin_cpu: float = 0.5         # CPU share above which a stuck process is spinning
    futex_samples: int = 2        # private futex wait on an arena address, this many samples
    overload_wait: float = 0.5    # run-queue wait per wall second that makes it overload
    holder_wait_s: float = 0.1    # waiting this long for a lock held by a stuck worker: stuck
    shared_wait_s: float = 2.0    # a wait on a PROCESS_SHARED futex is normal contention (it will
                                  # be woken): stuck only after this long in the same activity
    leak_min_bytes: int = 1 << 20  # arena growth over the second half of the load that can be a leak
    leak_per_conn: int = 1024     # ... and per connection closed meanwhile (bytes; a warming
                                  # cache of a clean OpenSSL run: ~350 in 8 s runs)
    leak_steady: float = 0.75     # ... its floor (lowest use of each second) rising in this share of seconds
    leak_min_s: float = 4.0       # load shorter than this: no leak judgement
    starved_cpu_s: float = 0.05   # a stuck process that ran less than this since its activity
                                  # began, while waiting for a CPU, is starved, not stuck


@dataclass
class Verdict:
    verdict: str
    reason: str = ""
    onset_ns: int | None = None
    detect_ns: int | None = None
    blocked: list = field(default_factory=list)
    spinning: list = field(default_factory=list)
    stopped: list = field(default_factory=list)
    crashed: list = field(default_factory=list)
    progressing: list = field(default_factory=list)
    evidence: list = field(default_factory=list)
    families: list = field(default_factory=list)
    stacks: list = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.verdict in FAILURES

    def to_dict(self) -> dict:
        return asdict(self)


def external_slots(seen: dict[int, int], gone: dict[int, int], roles: dict | None = None) -> list[dict]:
    """Slots for processes that publish no status (tlsharness watch, real servers):
    seen = pid -> first seen (ns), gone = pid -> vanished (ns).  A vanished
    process is dead with exit_code -1 (we cannot know how it ended)."""
    roles = roles or {}
    return [{"slot": i, "pid": p, "role": roles.get(p, "process"),
             "state": "dead" if p in gone else "alive", "activity": "unknown",
             "since_ns": seen[p], "requests": 0, "lock_waiting": -1, "lock_held": -1, "ok": True,
             "exit_signal": 0, "exit_code": -1 if p in gone else 0, "exit_ns": gone.get(p, 0)}
            for i, p in enumerate(seen)]


def outstanding(lg: dict) -> int:
    """Requests sent and not yet settled (answered, bad or timed out); with no
    'sent' counter (a foreign progress source), assume load is offered."""
    if "sent" not in lg:
        return 1
    return lg["sent"] - lg.get("answered", 0) - lg.get("bad", 0) - lg.get("timed_out", 0)


def in_arena(addr: int, arena: tuple[int, int]) -> bool:
    base, size = arena
    return base != 0 and base <= addr < base + size


class Watchdog:
    def __init__(self, th: Thresholds, arena: tuple[int, int] = (0, 0)):
        self.th = th
        self.arena = arena
        self.hist: deque = deque(maxlen=400)
        self.futex_streak: dict[int, int] = {}
        self.sleep_streak: dict[int, tuple[int, int]] = {}   # pid -> (since_ns, samples)
        self.stop_streak: dict[int, int] = {}
        self.first: Verdict | None = None
        self.load_start_ns: int | None = None
        self.shutdown_ns: int | None = None   # graceful shutdown began (--shutdown exit)
        self.arena_track: list = []           # (t, in_use, conns_closed, conns_open), every 0.2 s
        self.ncpu = os.cpu_count() or 1

    # -- helpers over the history -------------------------------------------------
    def _window(self, seconds: float):
        """(oldest sample within `seconds`, newest sample)."""
        new = self.hist[-1]
        old = new
        for s in reversed(self.hist):
            old = s
            if new["t"] - s["t"] >= seconds * 1e9:
                break
        return old, new

    def _cpu_share(self, pid: int, seconds: float = 0.5) -> float | None:
        old, new = self._window(seconds)
        a, b = old["procs"].get(pid), new["procs"].get(pid)
        dt = (new["t"] - old["t"]) / 1e9
        if not a or not b or dt <= 0:
            return None
        return (b["cpu_s"] - a["cpu_s"]) / dt

    def _cpu_since(self, pid: int, since_ns: int) -> float:
        """CPU seconds the process ran since since_ns (schedstat, else stat ticks)."""
        new = self.hist[-1]["procs"].get(pid)
        old = None
        for s in self.hist:
            if s["t"] >= since_ns and pid in s["procs"]:
                old = s["procs"][pid]
                break
        if not new or not old:
            return 0.0
        if "run_ns" in new and "run_ns" in old:
            return (new["run_ns"] - old["run_ns"]) / 1e9
        return new["cpu_s"] - old["cpu_s"]

    def _runq_wait(self, pid: int, seconds: float = 0.5) -> float | None:
        old, new = self._window(seconds)
        a, b = old["procs"].get(pid), new["procs"].get(pid)
        dt = (new["t"] - old["t"]) / 1e9
        if not a or not b or dt <= 0 or "wait_ns" not in a or "wait_ns" not in b:
            return None
        return (b["wait_ns"] - a["wait_ns"]) / 1e9 / dt

    def _progress(self, seconds: float, since_ns: int = 0) -> int:
        """Replies within the last `seconds`, counting only samples after since_ns."""
        new = self.hist[-1]
        start = max(new["t"] - int(seconds * 1e9), since_ns)
        old = new
        for s in reversed(self.hist):
            if s["t"] < start:
                break
            old = s
        return new["lg"]["answered"] - old["lg"]["answered"]

    def begin_shutdown(self, t_ns: int) -> None:
        """From now on workers leave on purpose: a clean exit is no crash, and
        no progress is expected; crashes and damage are still judged."""
        self.shutdown_ns = t_ns

    # -- the rules ----------------------------------------------------------------
    def observe(self, s: dict) -> Verdict | None:
        """Add a sample; return the first failure verdict when it is decided."""
        self.hist.append(s)
        hdr = s["hdr"]
        if hdr.get("arena_size") and not self.shutdown_ns and (
                not self.arena_track or s["t"] - self.arena_track[-1][0] >= 200_000_000):
            self.arena_track.append((s["t"], hdr["arena"]["in_use"], hdr.get("conns_closed", 0),
                                     hdr.get("conns_open", 0)))
        if self.load_start_ns is None and s["lg"].get("start_ns"):
            # when the load generators started connecting (same clock as samples)
            self.load_start_ns = s["lg"]["start_ns"]
        for w in s["slots"]:
            p = s["procs"].get(w["pid"]) or {}
            fx = (p.get("syscall") or {}).get("futex")
            if fx and fx["private"] and fx["cmd"].startswith("wait") and in_arena(fx["addr"], self.arena):
                self.futex_streak[w["pid"]] = self.futex_streak.get(w["pid"], 0) + 1
            else:
                self.futex_streak.pop(w["pid"], None)
            if p.get("stale_state"):
                pass                           # state not re-read this tick: streaks unchanged
            elif p.get("state") in ("T", "t"):
                self.stop_streak[w["pid"]] = self.stop_streak.get(w["pid"], 0) + 1
            else:
                self.stop_streak.pop(w["pid"], None)
            # asleep in an activity that never sleeps unless something inside blocks
            if w["activity"] in NONBLOCKING and p.get("state") in ("S", "D"):
                since, n = self.sleep_streak.get(w["pid"], (w["since_ns"], 0))
                self.sleep_streak[w["pid"]] = (w["since_ns"], n + 1 if since == w["since_ns"] else 1)
            else:
                self.sleep_streak.pop(w["pid"], None)
        if self.first is None:
            v = self.judge()
            if v.failed or v.verdict in NOT_HANGS:
                self.first = v
                return v
        return None

    def judge(self) -> Verdict:
        s = self.hist[-1]
        v = self._damage(s)
        if v is not None:
            return v
        return self._liveness(s)

    def _damage(self, s) -> Verdict | None:
        """Crash, corruption, and (after a graceful shutdown began) stuck exits."""
        t, th = s["t"], self.th
        hdr = s["hdr"]
        # crash: a stand process died by a signal (or exited) while the run was live
        sd = self.shutdown_ns
        crashed = [{"slot": w["slot"], "pid": w["pid"], "role": w["role"],
                    "signal": w["exit_signal"], "exit_code": w["exit_code"],
                    "activity": w["activity"], "at_ns": w["exit_ns"]}
                   for w in s["slots"] if w["state"] == "dead"
                   and not (sd and w["exit_ns"] >= sd and not w["exit_signal"] and w["exit_code"] == 0)]
        at_shutdown = ["shutdown: workers were leaving through exit() (atexit handlers running)"] \
            if sd else []
        if crashed:
            return Verdict("crash", reason=("at shutdown: " if sd else "") + _crash_reason(crashed),
                           onset_ns=min(c["at_ns"] for c in crashed), detect_ns=t,
                           crashed=crashed, evidence=list(at_shutdown))
        # corruption: evidence of damage, whatever else happens
        ev = []
        if hdr["arena"]["double_free"]:
            ev.append(f"arena: {hdr['arena']['double_free']} double free(s)")
        if hdr["arena"]["wild_free"]:
            ev.append(f"arena: {hdr['arena']['wild_free']} wild free(s)")
        if s["lg"]["bad"]:
            ev.append(f"load generator: {s['lg']['bad']} bad replies")
        drawn: dict[bytes, list[int]] = {}
        for w in s["slots"]:
            if w.get("rand_state") == 1:
                drawn.setdefault(w["rand"], []).append(w["slot"])
        for block, who in drawn.items():
            if len(who) > 1:
                ev.append(f"workers {', '.join(map(str, who))} drew identical random bytes after "
                          f"fork ({block[:8].hex()}...)")
        bad_slots = [w["slot"] for w in s["slots"] if not w["ok"] and w["state"] != "unused"]
        if not hdr["ok"] or bad_slots:
            ev.append(f"status segment overwritten (slots {bad_slots or 'header'})")
        if ev:
            return Verdict("corruption", reason=("at shutdown: " if sd else "") + "; ".join(ev),
                           onset_ns=t, detect_ns=t, evidence=ev + at_shutdown)
        if sd:
            # leaving on purpose: no progress expected; but a worker that entered
            # exit() and is still there is stuck in the library's exit handlers
            # (or a worker still serving is stuck: another one's exit cleanup freed
            # or took what it needs)
            stuck_exit = [(w, (f"stuck inside exit() for {(t - w['since_ns']) / 1e9:.1f} s"
                               if w["activity"] == "exited" else
                               f"{w['activity']} for {(t - w['since_ns']) / 1e9:.1f} s while "
                               "others exit"))
                          for w in s["slots"] if w["state"] == "alive"
                          and (w["activity"] == "exited" or w["activity"] in BUSY)
                          and (t - w["since_ns"]) / 1e9 >= max(1.0, th.stall_s)]
            if not stuck_exit:
                return Verdict("pass")
            v = self._classify(s, stuck_exit, 0)
            v.reason = "at shutdown: " + v.reason
            v.evidence += at_shutdown
            return v
        return None

    def _liveness(self, s) -> Verdict:
        """Stuck workers from the stand's activities and /proc."""
        t, th = s["t"], self.th
        stuck = []
        for w in s["slots"]:
            if w["state"] != "alive":
                continue
            age = (t - w["since_ns"]) / 1e9
            why = None
            fx = ((s["procs"].get(w["pid"]) or {}).get("syscall") or {}).get("futex")
            shared_wait = bool(fx and not fx["private"] and fx["cmd"].startswith("wait"))
            if w["activity"] in BUSY and age >= (th.shared_wait_s if shared_wait else th.stall_s):
                why = f"{w['activity']} for {age:.1f} s" + (" (shared futex wait)" if shared_wait else "")
            if self.stop_streak.get(w["pid"], 0) >= 2 and not why:
                why = "stopped (state T)"
            if (self.sleep_streak.get(w["pid"], (0, 0))[1] >= th.sleep_samples and not why
                    and not shared_wait):
                why = f"asleep in {w['activity']} for {age * 1000:.0f} ms"
            if self.futex_streak.get(w["pid"], 0) >= th.futex_samples:
                fx = s["procs"][w["pid"]]["syscall"]["futex"]
                why = (f"private futex wait on arena+{fx['addr'] - self.arena[0]:#x}"
                       + (f" ({why})" if why else ""))
            if why:
                stuck.append((w, why))
        # waiting for a lock whose holder is stuck: stuck as well, without the full stall time
        held = {w["lock_held"]: w for w, _ in stuck if w["lock_held"] >= 0}
        ids = {w["slot"] for w, _ in stuck}
        for w in s["slots"]:
            h = held.get(w["lock_waiting"])
            if (h and w["slot"] not in ids and w["state"] == "alive" and w["activity"] == "lock_wait"
                    and (t - w["since_ns"]) / 1e9 >= th.holder_wait_s):
                stuck.append((w, f"waits for lock {w['lock_waiting']} held by stuck worker "
                                 f"{h['slot']}"))
        progress = self._progress(th.progress_s,
                                  min((w["since_ns"] for w, _ in stuck), default=0))
        if not stuck:
            if (self.load_start_ns and (t - self.load_start_ns) / 1e9 > th.no_progress_s
                    and self._progress(th.no_progress_s) == 0 and not s["lg"]["done"]
                    and outstanding(s["lg"]) > 0):
                return self._no_progress(s)
            return Verdict("pass")
        return self._classify(s, stuck, progress)

    def _describe(self, s, w, why) -> dict:
        p = s["procs"].get(w["pid"]) or {}
        d = {"slot": w["slot"], "pid": w["pid"], "role": w["role"], "activity": w["activity"],
             "since_ns": w["since_ns"], "why": why, "state": p.get("state"),
             "cpu": _round(self._cpu_share(w["pid"])), "wchan": p.get("wchan"),
             "lock_waiting": w["lock_waiting"], "lock_held": w["lock_held"]}
        fx = (p.get("syscall") or {}).get("futex")
        if fx:
            d["futex"] = {"addr": hex(fx["addr"]), "op": hex(fx["op"]),
                          "private": fx["private"], "in_arena": in_arena(fx["addr"], self.arena)}
        return d

    def _classify(self, s, stuck, progress) -> Verdict:
        th = self.th
        blocked, spinning, stopped = [], [], []
        starved = []
        # CPU eaten by the stuck processes themselves (spinners): then run-queue waits are
        # their own doing (livelock); otherwise someone else holds the CPUs (overload)
        own_cpu = sum(self._cpu_share(w["pid"]) or 0 for w, _ in stuck)
        for w, why in stuck:
            d = self._describe(s, w, why)
            wait = self._runq_wait(w["pid"])
            d["runq_wait"] = _round(wait)
            if d["state"] in ("T", "t"):
                stopped.append(d)
            elif (d["state"] == "R" and wait is not None and wait >= th.overload_wait
                  and self._cpu_since(w["pid"], w["since_ns"]) < th.starved_cpu_s
                  and own_cpu < 0.5 * self.ncpu):
                starved.append(d)              # runnable, waiting for a CPU: not stuck
            elif (d["cpu"] or 0) >= th.spin_cpu or d["state"] == "R":
                spinning.append(d)
            else:
                blocked.append(d)
        stuck_slots = {w["slot"] for w, _ in stuck}
        old, new = self._window(th.progress_s)
        progressing = [w["slot"] for w, w0 in zip(new["slots"], old["slots"])
                       if len(new["slots"]) == len(old["slots"])
                       and w["role"] == "worker" and w["slot"] not in stuck_slots
                       and w["requests"] > w0["requests"]]
        onset = min(w["since_ns"] for w, _ in stuck)
        kw = dict(onset_ns=onset, detect_ns=s["t"], blocked=blocked, spinning=spinning,
                  stopped=stopped, progressing=progressing)
        if starved and not (blocked or spinning or stopped):
            return Verdict("overload", reason=f"{len(starved)} process(es) runnable but waiting "
                           "for a CPU: not a hang", detect_ns=s["t"], progressing=progressing,
                           evidence=[f"pid {d['pid']}: run-queue wait {d['runq_wait']} s/s"
                                     for d in starved])
        if stopped:
            return Verdict("stopped", reason=f"{len(stopped)} process(es) stopped (state T): "
                           "not a hang", **kw)
        n = len(stuck)
        if progress > 0:
            return Verdict("degraded", reason=f"{n} worker(s) stuck for good while "
                           f"{len(progressing)} still serve ({progress} replies in "
                           f"{th.progress_s} s)", **kw)
        if blocked and spinning:
            return Verdict("mixed", reason=f"{len(blocked)} blocked, {len(spinning)} spinning, "
                           "no progress", **kw)
        if spinning:
            return Verdict("livelock", reason=f"{len(spinning)} process(es) burn CPU, no SIP "
                           "processing", **kw)
        return Verdict("deadlock", reason=f"{len(blocked)} process(es) blocked, no progress", **kw)

    def _no_progress(self, s) -> Verdict:
        """No reply for no_progress_s and no worker stuck in an activity."""
        waits = [self._runq_wait(p) or 0 for p in s["procs"]]
        if waits and max(waits) >= self.th.overload_wait:
            return Verdict("overload", reason=f"no progress while processes wait "
                           f"{max(waits):.2f} s/s for a CPU: not a hang", detect_ns=s["t"])
        stuck = [(w, "no replies") for w in s["slots"] if w["state"] == "alive"]
        v = self._classify(s, stuck, 0)
        v.onset_ns = s["t"] - int(self.th.no_progress_s * 1e9)
        return v

    def final(self) -> Verdict:
        """The verdict of the whole run, from the whole history."""
        if not self.hist:
            return Verdict("inconclusive", reason="no samples")
        if self.first is not None:
            v = self.judge()           # re-judged after the linger: stuck for good?
            if v.verdict in ("pass",):
                v = self.first         # recovered meanwhile: keep what was seen
            v.onset_ns = min(x for x in (v.onset_ns, self.first.onset_ns) if x) \
                if (v.onset_ns or self.first.onset_ns) else None
            v.detect_ns = self.first.detect_ns
            return v
        s = self.hist[-1]
        if not self.load_start_ns or s["lg"]["answered"] == 0:
            errs = list(s["lg"].get("errors") or [])
            stand_errs = sum(w.get("errors", 0) for w in s["slots"])
            if stand_errs:
                errs.append(f"{stand_errs} TLS errors in the stand")
            if s["lg"].get("conn_errors"):
                errs.append(f"{s['lg']['conn_errors']} connection/handshake errors in the clients")
            if s["lg"].get("sent", 1) == 0 and not errs:
                return Verdict("inconclusive", reason="no request was sent during the run "
                               "(is --rate too low for --duration?)")
            return Verdict("inconclusive", reason="no load reached the stand"
                           + (f" ({'; '.join(errs)})" if errs else ""))
        leak = self._leak()
        if leak is not None:
            return leak
        return Verdict("pass", reason=f"{s['lg']['answered']} replies, every worker live")

    def _leak(self) -> Verdict | None:
        """Arena growth over the second half of the load (after a 1 s warm-up),
        judged on its floor: the lowest use within each second (connections
        come and go; what a leak leaves behind raises the floor).  A floor
        that rises steadily, by much, and by much per connection closed
        meanwhile is a leak.  Connections still open are not leaked: as many
        must be open at both ends of the window."""
        th = self.th
        if not self.load_start_ns:
            return None
        tr = [x for x in self.arena_track if x[0] >= self.load_start_ns + 1_000_000_000]
        if len(tr) < 4 or (tr[-1][0] - tr[0][0]) / 1e9 < th.leak_min_s - 1:
            return None
        half = tr[len(tr) // 2:]
        t0, t1 = half[0][0], half[-1][0]
        floors, opens = [], []
        for x in half:
            k = int((x[0] - t0) // 1_000_000_000)
            if k == len(floors):
                floors.append(x[1])
                opens.append([x[3]])
            elif k < len(floors):
                floors[k] = min(floors[k], x[1])
                opens[k].append(x[3])
        if len(floors) < 3:
            return None
        third = max(1, len(floors) // 3)
        grown = int(sum(floors[-third:]) / third - sum(floors[:third]) / third)
        closed = half[-1][2] - half[0][2]
        o0, o1 = (sum(opens[0]) / len(opens[0]), sum(opens[-1]) / len(opens[-1]))
        steps = [b - a for a, b in zip(floors, floors[1:])]
        steady = sum(1 for d in steps if d > 0) / len(steps)
        if abs(o1 - o0) > max(4, 0.2 * max(o0, o1)):
            return None                        # connections opened or closed for good: can't tell
        per_conn = grown / closed if closed else None
        if (grown >= th.leak_min_bytes and steady >= th.leak_steady
                and (per_conn is None or per_conn >= th.leak_per_conn)):
            dt = (t1 - t0) / 1e9
            ev = [f"arena growth: +{grown / 1048576:.1f} MiB of floor in {dt:.1f} s "
                  f"({grown / dt / 1024:.0f} KiB/s), rising in {steady:.0%} of seconds"
                  + (f", {per_conn:.0f} bytes per connection closed ({closed})" if closed else "")
                  + f", about {o1:.0f} connections open at both ends"]
            return Verdict("leak", reason=ev[0][len("arena growth: "):], onset_ns=t0,
                           detect_ns=t1, evidence=ev)
        return None


def _crash_reason(crashed) -> str:
    import signal as _s
    parts = []
    for c in crashed:
        if c["exit_code"] == -1:          # a process we did not start: only that it vanished
            parts.append(f"{c['role']} (pid {c['pid']}) vanished")
            continue
        sig = _s.Signals(c["signal"]).name if c["signal"] else f"exit {c['exit_code']}"
        parts.append(f"{c['role']} {c['slot']} (pid {c['pid']}) died of {sig} during {c['activity']}")
    return "; ".join(parts)


def _round(x):
    return None if x is None else round(x, 3)
