"""The watchdog: a checker over the sample history that decides a verdict.

Samples come from /proc (no ptrace), the stand's status segment and the
load generators' counters.  Liveness is judged per worker, not by total
throughput: the commonest failure of the model is *degraded* (some workers
stuck for good while the rest carry the load).

Verdicts: pass, livelock, deadlock, mixed, degraded, crash, corruption, leak,
overload, stopped, inconclusive.  Thresholds are `Thresholds` fields.
"""
from __future__ import annotations

from harness.verdicts import NOT_HANGS, V
from harness.watchdog.bad_replies import kinds_text
from harness.watchdog.history import History
from harness.watchdog.leak import leak_verdict
from harness.watchdog.verdict import (Thresholds, Verdict, crash_reason, in_arena, outstanding,
                                      round3)

BUSY = {"handshake", "read", "write", "lock_wait", "close", "fault", "accept", "attach", "random"}
NONBLOCKING = {"handshake", "read", "attach", "close", "fault", "random"}  # sockets are non-blocking
# TLS operations that never take many ms of CPU (a lock wait may, under fair contention)
SPIN_CHECKED = BUSY - {"lock_wait", "accept"}


# What a stall is called, in order of precedence: the first that holds names it.
# A stopped process is never a hang; other workers still serving make it
# degraded; then by what the stuck processes do.
STALLS = (
    (V.STOPPED, lambda g: g["stopped"], "{stopped} process(es) stopped (state T): not a hang"),
    (V.DEGRADED, lambda g: g["progress"] > 0,
     "{n} worker(s) stuck for good while {serving} still serve ({progress} replies in {window} s)"),
    (V.MIXED, lambda g: g["blocked"] and g["spinning"],
     "{blocked} blocked, {spinning} spinning, no progress"),
    (V.LIVELOCK, lambda g: g["spinning"], "{spinning} process(es) burn CPU, no SIP processing"),
    (V.DEADLOCK, lambda g: True, "{blocked} process(es) blocked, no progress"),
)


def failing_connections(old: dict | None, new: dict) -> list[str]:
    """The TLS errors in the stand and the clients' connection errors between
    two samples (old None: since the start), as evidence lines."""
    tls = sum(w.get("errors", 0) for w in new["slots"]) - \
        (sum(w.get("errors", 0) for w in old["slots"]) if old else 0)
    conn = new["lg"].get("conn_errors", 0) - (old["lg"].get("conn_errors", 0) if old else 0)
    return ([f"{tls} TLS errors in the stand"] if tls > 0 else []) + \
        ([f"{conn} connection/handshake errors in the clients"] if conn > 0 else [])


class Watchdog(History):
    def __init__(self, th: Thresholds, arena: tuple[int, int] = (0, 0)):
        super().__init__()
        self.th = th
        self.arena = arena
        self.futex_streak: dict[int, int] = {}
        self.sleep_streak: dict[int, tuple[int, int]] = {}   # pid -> (since_ns, samples)
        self.stop_streak: dict[int, int] = {}
        self.first: Verdict | None = None
        self.load_start_ns: int | None = None
        self.shutdown_ns: int | None = None   # graceful shutdown began (--shutdown exit)
        self.arena_track: list = []           # (t, in_use, conns_closed, conns_open), every 0.2 s

    def begin_shutdown(self, t_ns: int) -> None:
        """From now on workers leave on purpose: a clean exit is no crash, and
        no progress is expected; crashes and damage are still judged."""
        self.shutdown_ns = t_ns

    # -- the rules ----------------------------------------------------------------
    def observe(self, s: dict) -> Verdict | None:
        """Add a sample; return the first failure verdict when it is decided."""
        self.hist.append(s)
        self.note_pressure(s)
        hdr = s["hdr"]
        # the arena while the load runs (not once the clients finished and close
        # their connections: that drop is no sign of anything)
        if hdr.get("arena_size") and not self.shutdown_ns and not s["lg"].get("done") and (
                not self.arena_track or s["t"] - self.arena_track[-1][0] >= 200_000_000):
            self.arena_track.append((s["t"], hdr["arena"]["in_use"], hdr.get("conns_closed", 0),
                                     hdr.get("conns_open", 0)))
        if self.load_start_ns is None and s["lg"].get("start_ns"):
            # when the load generators started connecting (same clock as samples)
            self.load_start_ns = s["lg"]["start_ns"]
        for w in s["slots"]:
            if w["pid"] not in s["procs"]:
                continue                       # not read this sample: streaks unchanged
            p = s["procs"][w["pid"]]
            fx = (p.get("syscall") or {}).get("futex")
            if fx and fx["private"] and fx["cmd"].startswith("wait") and in_arena(fx["addr"], self.arena):
                self.futex_streak[w["pid"]] = self.futex_streak.get(w["pid"], 0) + 1
            else:
                self.futex_streak.pop(w["pid"], None)
            if p.get("stale_state"):
                continue                       # state not re-read this tick: streaks unchanged
            if p.get("state") in ("T", "t"):
                self.stop_streak[w["pid"]] = self.stop_streak.get(w["pid"], 0) + 1
            else:
                self.stop_streak.pop(w["pid"], None)
            # asleep in an activity that never sleeps unless something inside blocks (a
            # state read in this sample: an old one may be from before the activity began)
            if w["activity"] in NONBLOCKING and p.get("state") in ("S", "D"):
                since, n = self.sleep_streak.get(w["pid"], (w["since_ns"], 0))
                self.sleep_streak[w["pid"]] = (w["since_ns"], n + 1 if since == w["since_ns"] else 1)
            else:
                self.sleep_streak.pop(w["pid"], None)
        return self._decide()

    def _decide(self) -> Verdict | None:
        """Judge the newest sample; the first failure (or no-hang stall) is kept and returned."""
        if self.first is None:
            v = self.judge()
            if v.failed or v.verdict in NOT_HANGS or v.verdict == V.INCONCLUSIVE:
                self.first = v
                return v
        return None

    # The checkers in order of precedence: the first that finds something gives
    # the verdict.  Damage outranks liveness (a crash that stalls the others is a
    # crash); a graceful shutdown is judged by its own rule; then liveness.
    CHECKS = ("_crashed", "_corrupted", "_at_shutdown", "_liveness")

    def judge(self) -> Verdict:
        s = self.hist[-1]
        for name in self.CHECKS:
            v = getattr(self, name)(s)
            if v is not None:
                return v
        raise AssertionError("_liveness always decides")

    def _shutdown_note(self) -> list[str]:
        return ["shutdown: workers were leaving through exit() (atexit handlers running)"] \
            if self.shutdown_ns else []

    def _crashed(self, s) -> Verdict | None:
        """A stand process died by a signal (or exited) while the run was live."""
        sd = self.shutdown_ns
        crashed = [{"slot": w["slot"], "pid": w["pid"], "role": w["role"],
                    "signal": w["exit_signal"], "exit_code": w["exit_code"],
                    "activity": w["activity"], "at_ns": w["exit_ns"]}
                   for w in s["slots"] if w["state"] == "dead"
                   and not (sd and w["exit_ns"] >= sd and not w["exit_signal"] and w["exit_code"] == 0)]
        if not crashed:
            return None
        return Verdict(V.CRASH, reason=("at shutdown: " if sd else "") + crash_reason(crashed),
                       onset_ns=min(c["at_ns"] for c in crashed), detect_ns=s["t"],
                       crashed=crashed, evidence=self._shutdown_note())

    def _corrupted(self, s) -> Verdict | None:
        """Evidence of damage, whatever else happens."""
        hdr, ev = s["hdr"], []
        if hdr["arena"]["double_free"]:
            ev.append(f"arena: {hdr['arena']['double_free']} double free(s)")
        if hdr["arena"]["wild_free"]:
            ev.append(f"arena: {hdr['arena']['wild_free']} wild free(s)")
        if s["lg"]["bad"]:
            ev.append(f"load generator: {s['lg']['bad']} bad replies{kinds_text(s['lg'])}")
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
        if not ev:
            return None
        return Verdict(V.CORRUPTION, reason=("at shutdown: " if self.shutdown_ns else "") +
                       "; ".join(ev), onset_ns=s["t"], detect_ns=s["t"],
                       evidence=ev + self._shutdown_note())

    def _at_shutdown(self, s) -> Verdict | None:
        """Leaving on purpose: no progress expected; but a worker that entered
        exit() and is still there is stuck in the library's exit handlers (or
        a worker still serving is stuck: another one's exit cleanup freed or
        took what it needs)."""
        if not self.shutdown_ns:
            return None
        t, th = s["t"], self.th
        stuck_exit = [(w, (f"stuck inside exit() for {(t - w['since_ns']) / 1e9:.1f} s"
                           if w["activity"] == "exited" else
                           f"{w['activity']} for {(t - w['since_ns']) / 1e9:.1f} s while "
                           "others exit"))
                      for w in s["slots"] if w["state"] == "alive"
                      and (w["activity"] == "exited" or w["activity"] in BUSY)
                      and (t - w["since_ns"]) / 1e9 >= max(1.0, th.stall_s)]
        if not stuck_exit:
            return Verdict(V.PASS)
        v = self._classify(s, stuck_exit, 0)
        v.reason = "at shutdown: " + v.reason
        v.evidence += self._shutdown_note()
        return v

    def _liveness(self, s) -> Verdict:
        """Stuck workers from the stand's activities and /proc."""
        t, th = s["t"], self.th
        stuck = []
        pressure = self.cpu_pressure(th.progress_s)
        busy_machine = pressure is not None and pressure >= th.pressure
        lost = {r["waiter"]: r for r in s.get("lost_wakes") or ()}   # seen in the kernel
        streaks = (self.stop_streak, self.sleep_streak, self.futex_streak, lost)
        for w in s["slots"]:
            if w["state"] != "alive":
                continue
            age = (t - w["since_ns"]) / 1e9
            if (w["activity"] not in BUSY or age < th.spin_cpu_s) and \
                    not any(w["pid"] in k for k in streaks):
                continue                       # nothing can hold yet: the common case, cheap
            why = None
            fx = ((s["procs"].get(w["pid"]) or {}).get("syscall") or {}).get("futex")
            shared_wait = bool(fx and not fx["private"] and fx["cmd"].startswith("wait"))
            stall = th.stall_s
            if (busy_machine and age >= stall and w["activity"] in BUSY
                    and (self._cpu_share(w["pid"]) or 0) < th.spin_cpu):
                stall = max(stall, th.pressure_stall_s)    # slowed by a busy machine, not stuck
            if w["activity"] in BUSY and age >= (th.shared_wait_s if shared_wait else stall):
                why = f"{w['activity']} for {age:.1f} s" + (" (shared futex wait)" if shared_wait else "")
            elif (w["role"] == "worker" and w["activity"] in SPIN_CHECKED and age >= th.spin_cpu_s
                  and w.get("handshakes", 0) > 0     # a first handshake may set up tables
                  and self._cpu_since(w["pid"], w["since_ns"]) >= th.spin_cpu_s):
                why = (f"{self._cpu_since(w['pid'], w['since_ns']) * 1000:.0f} ms of CPU in one "
                       f"{w['activity']} ({age * 1000:.0f} ms)")
            if self.stop_streak.get(w["pid"], 0) >= 2 and not why:
                why = "stopped (state T)"
            # a worker's first handshake may wait for its library's pages (state D on a
            # cold cache): two more samples there
            need = th.sleep_samples + (0 if w.get("handshakes", 1) > 0 else 2)
            if (self.sleep_streak.get(w["pid"], (0, 0))[1] >= need and not why
                    and not shared_wait):
                why = f"asleep in {w['activity']} for {age * 1000:.0f} ms"
            fx = ((s["procs"].get(w["pid"]) or {}).get("syscall") or {}).get("futex")
            if self.futex_streak.get(w["pid"], 0) >= th.futex_samples and fx:
                why = (f"private futex wait on arena+{fx['addr'] - self.arena[0]:#x}"
                       + (f" ({why})" if why else ""))
            if w["pid"] in lost:               # the wake that went nowhere: stuck at once
                why = lost[w["pid"]]["why"] + (f" ({why})" if why else "")
            if why:
                stuck.append((w, why))
        stuck += self._holder_waiters(s, stuck)
        progress = self._progress(th.progress_s,
                                  min((w["since_ns"] for w, _ in stuck), default=0))
        if not stuck:
            if (self.load_start_ns and (t - self.load_start_ns) / 1e9 > th.no_progress_s
                    and self._progress(th.no_progress_s) == 0 and not s["lg"]["done"]
                    and outstanding(s["lg"]) > 0):
                return self._no_progress(s)
            return Verdict(V.PASS)
        v = self._classify(s, stuck, progress)
        v.evidence += [lost[w["pid"]]["line"] for w, _ in stuck if w["pid"] in lost]
        return v

    def _holder_waiters(self, s, stuck) -> list:
        """Waiting for a lock whose holder is stuck: stuck as well, without the full stall time."""
        held = {w["lock_held"]: w for w, _ in stuck if w["lock_held"] >= 0}
        ids = {w["slot"] for w, _ in stuck}
        return [(w, f"waits for lock {w['lock_waiting']} held by stuck worker "
                    f"{held[w['lock_waiting']]['slot']}")
                for w in s["slots"] if held.get(w["lock_waiting"]) and w["slot"] not in ids
                and w["state"] == "alive" and w["activity"] == "lock_wait"
                and (s["t"] - w["since_ns"]) / 1e9 >= self.th.holder_wait_s]

    def _describe(self, s, w, why) -> dict:
        p = s["procs"].get(w["pid"]) or {}
        d = {"slot": w["slot"], "pid": w["pid"], "role": w["role"], "activity": w["activity"],
             "since_ns": w["since_ns"], "why": why, "state": p.get("state"),
             "cpu": round3(self._cpu_share(w["pid"])), "wchan": p.get("wchan"),
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
            d["runq_wait"] = round3(wait)
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
            return Verdict(V.OVERLOAD, reason=f"{len(starved)} process(es) runnable but waiting "
                           "for a CPU: not a hang", detect_ns=s["t"], progressing=progressing,
                           evidence=[f"pid {d['pid']}: run-queue wait {d['runq_wait']} s/s"
                                     for d in starved])
        g = dict(n=len(stuck), blocked=len(blocked), spinning=len(spinning), stopped=len(stopped),
                 serving=len(progressing), progress=progress, window=th.progress_s)
        verdict, why = next((v, why) for v, holds, why in STALLS if holds(g))
        return Verdict(verdict, reason=why.format(**g), **kw)

    def _no_progress(self, s) -> Verdict:
        """No reply for no_progress_s and no worker stuck in an activity."""
        waits = [self._runq_wait(p) or 0 for p in s["procs"]]
        if waits and max(waits) >= self.th.overload_wait:
            return Verdict(V.OVERLOAD, reason=f"no progress while processes wait "
                           f"{max(waits):.2f} s/s for a CPU: not a hang", detect_ns=s["t"])
        alive = [w for w in s["slots"] if w["state"] == "alive"]
        # none inside the library or a lock (a process may be running: between
        # connections that fail, say): not stuck, whatever its CPU
        waiting = [w for w in alive if w["activity"] not in BUSY]
        if alive and len(waiting) == len(alive):
            return self._waiting_for_input(s)
        stuck = [(w, "no replies") for w in alive]
        v = self._classify(s, stuck, 0)
        v.onset_ns = s["t"] - int(self.th.no_progress_s * 1e9)
        return v

    def _waiting_for_input(self, s) -> Verdict:
        """No reply while every stand process waits for input, none inside the
        library or a lock: the requests are not held by a stuck process.  Not a
        hang; what the window shows instead (failing connections) is the reason."""
        seen = failing_connections(*self._window(self.th.no_progress_s))
        return Verdict(V.INCONCLUSIVE, detect_ns=s["t"], reason=(
            f"no reply for {self.th.no_progress_s:g} s while every stand process waits for "
            "input (none inside the library or a lock): not a hang"
            + (f"; the connections fail instead ({', '.join(seen)})" if seen else "")))

    def final(self) -> Verdict:
        """The verdict of the whole run, from the whole history."""
        if not self.hist:
            return Verdict(V.INCONCLUSIVE, reason="no samples")
        if self.first is not None:
            v = self.judge()           # re-judged after the linger: stuck for good?
            if v.verdict in (V.PASS,):
                v = self.first         # recovered meanwhile: keep what was seen
            v.onset_ns = min(x for x in (v.onset_ns, self.first.onset_ns) if x) \
                if (v.onset_ns or self.first.onset_ns) else None
            v.detect_ns = self.first.detect_ns
            return v
        s = self.hist[-1]
        if not self.load_start_ns or s["lg"]["answered"] == 0:
            errs = list(s["lg"].get("errors") or []) + failing_connections(None, s)
            if s["lg"].get("sent", 1) == 0 and not errs:
                return Verdict(V.INCONCLUSIVE, reason="no request was sent during the run "
                               "(is --rate too low for --duration?)")
            return Verdict(V.INCONCLUSIVE, reason="no load reached the stand"
                           + (f" ({'; '.join(errs)})" if errs else ""))
        leak = leak_verdict(self.arena_track, self.load_start_ns, self.th)
        if leak is not None:
            return leak
        return Verdict(V.PASS, reason=f"{s['lg']['answered']} replies, every worker live")
