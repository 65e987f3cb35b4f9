"""Watchdog rules on synthetic sample histories (no processes needed)."""
import pytest

from harness.verdicts import exit_code
from harness.watchdog import Thresholds, Watchdog, families

ARENA = (0x7f0000000000, 256 << 20)
MS = 1_000_000


class Sim:
    """Builds samples at 20 Hz for a stand with n workers."""

    def __init__(self, n=4):
        self.t = 1_000_000_000_000
        self.n = n
        self.answered = 0
        self.cpu = {}
        self.wait = {}
        self.workers = {i: dict(activity="idle", since=self.t, requests=0, state="alive",
                                pstate="S", futex=None, cpu_rate=0.1, wait_rate=0.0,
                                lock_waiting=-1, lock_held=-1, exit_signal=0, ok=True)
                        for i in range(1, n + 1)}
        self.arena = {"double_free": 0, "wild_free": 0}
        self.bad = 0
        self.wd = Watchdog(Thresholds(), ARENA)

    def step(self, ms=50, progress=True):
        self.t += ms * MS
        if progress:
            self.answered += 100
        slots = [dict(slot=0, pid=100, role="listener", state="alive", activity="idle",
                      since_ns=self.t, requests=0, lock_waiting=-1, lock_held=-1, ok=True,
                      exit_signal=0, exit_code=0, exit_ns=0)]
        procs = {100: {"pid": 100, "state": "S", "cpu_s": 0.0, "syscall": None, "wait_ns": 0}}
        for i, w in self.workers.items():
            pid = 100 + i
            if progress and w["activity"] == "idle" and w["state"] == "alive":
                w["requests"] += 25
            self.cpu[pid] = self.cpu.get(pid, 0) + w["cpu_rate"] * ms / 1000
            self.wait[pid] = self.wait.get(pid, 0) + int(w["wait_rate"] * ms * MS)
            slots.append(dict(slot=i, pid=pid, role="worker", state=w["state"],
                              activity=w["activity"], since_ns=w["since"], requests=w["requests"],
                              lock_waiting=w["lock_waiting"], lock_held=w["lock_held"], ok=w["ok"],
                              exit_signal=w["exit_signal"], exit_code=0,
                              exit_ns=self.t if w["state"] == "dead" else 0))
            sc = None
            if w["futex"] is not None:
                addr, op = w["futex"]
                sc = {"nr": 202, "futex": {"addr": addr, "op": op, "private": bool(op & 128),
                                           "cmd": "wait_bitset" if op & 127 == 9 else "wait"}}
            procs[pid] = {"pid": pid, "state": w["pstate"], "cpu_s": self.cpu[pid], "syscall": sc,
                          "run_ns": int(self.cpu[pid] * 1e9),
                          "wait_ns": self.wait[pid], "wchan": "futex_do_wait" if sc else None}
        s = {"t": self.t, "slots": slots, "procs": procs,
             "hdr": {"ok": True, "arena": dict(self.arena), "cross_handoffs": 10},
             "lg": {"answered": self.answered, "bad": self.bad, "ready": 1, "done": 0,
                    "start_ns": 1_000_000_000_000, "errors": []}}
        return self.wd.observe(s)

    def run(self, ms_total, **kw):
        got = None
        for _ in range(ms_total // 50):
            v = self.step(**kw)
            got = got or v
        return got

    def stick(self, i, activity, **kw):
        self.workers[i].update(activity=activity, since=self.t, **kw)


def test_healthy_is_pass():
    s = Sim()
    assert s.run(5000) is None
    assert s.wd.final().verdict == "pass"


def test_lost_wakeup_sign_fires_fast_and_is_degraded_when_others_serve():
    s = Sim()
    s.run(500)
    s.stick(2, "handshake", futex=(ARENA[0] + 0x68b5c, 0x189), cpu_rate=0.0)
    t0 = s.t
    v = s.run(2000)
    assert v is not None and v.verdict == "degraded"
    assert (v.detect_ns - t0) <= 150 * MS          # 2 samples at 20 Hz, not the 1 s stall rule
    assert v.blocked[0]["futex"]["private"] and v.blocked[0]["futex"]["in_arena"]
    fams = families.name(v.to_dict(), [], [])
    assert "lost wake-up" in [f["family"] for f in fams]


def test_process_shared_futex_wait_is_not_a_hang():
    s = Sim()
    s.run(300)
    # a PROCESS_SHARED waiter (no private flag) briefly blocked, then served again
    s.stick(1, "idle", futex=(ARENA[0] + 0x100, 0x9), cpu_rate=0.0)
    assert s.run(3000) is None


def test_private_futex_outside_arena_alone_is_not_the_sign():
    s = Sim()
    s.run(300)
    s.workers[1]["futex"] = (0x5555_0000_1000, 0x189)   # idle worker, futex in its own heap
    assert s.run(3000) is None


def test_all_blocked_no_progress_is_deadlock():
    s = Sim()
    s.run(500)
    for i in s.workers:
        s.stick(i, "handshake", futex=(ARENA[0] + 0x40, 0x189), cpu_rate=0.0)
    v = s.run(1500, progress=False)
    assert v.verdict == "deadlock" and len(v.blocked) == 4


def test_spinners_no_progress_is_livelock():
    s = Sim()
    s.run(500)
    for i in s.workers:
        s.stick(i, "lock_wait", cpu_rate=0.5, pstate="R", lock_waiting=7)
    v = s.run(1500, progress=False)
    assert v.verdict == "livelock" and len(v.spinning) == 4
    assert "application spinlock on a blocked holder" in [
        f["family"] for f in families.name(v.to_dict(), [], [])]


def test_blocked_holder_and_spinners_is_mixed():
    s = Sim()
    s.run(500)
    s.stick(1, "write", futex=(ARENA[0] + 0x40, 0x189), cpu_rate=0.0, lock_held=7)
    for i in (2, 3, 4):
        s.stick(i, "lock_wait", cpu_rate=0.6, pstate="R", lock_waiting=7)
    v = s.run(1500, progress=False)
    assert v.verdict == "mixed"
    assert [p["slot"] for p in v.blocked] == [1] and len(v.spinning) == 3


def test_stopped_process_is_not_a_hang():
    s = Sim()
    s.run(500)
    s.stick(3, "fault", pstate="T", cpu_rate=0.0)
    v = s.run(1500, progress=False)
    assert v.verdict == "stopped" and exit_code(v.verdict) == 3


def test_dead_worker_is_crash_with_signal_and_activity():
    s = Sim()
    s.run(500)
    s.workers[2].update(state="dead", exit_signal=11, activity="read")
    v = s.step()
    assert v.verdict == "crash" and v.crashed[0]["signal"] == 11
    assert "SIGSEGV during read" in v.reason


def test_double_free_and_bad_replies_are_corruption():
    s = Sim()
    s.run(300)
    s.arena["double_free"] = 1
    v = s.step()
    assert v.verdict == "corruption" and "double free" in v.reason
    s2 = Sim()
    s2.run(300)
    s2.bad = 3
    assert s2.step().verdict == "corruption"


def test_overwritten_status_slot_is_corruption():
    s = Sim()
    s.run(300)
    s.workers[4]["ok"] = False
    assert s.step().verdict == "corruption"


def test_no_progress_while_waiting_for_cpu_is_overload():
    s = Sim()
    s.run(500)
    for w in s.workers.values():
        w.update(wait_rate=0.9, cpu_rate=0.05, pstate="R")
    v = s.run(3000, progress=False)
    assert v is not None and v.verdict == "overload"


def test_no_load_is_inconclusive():
    s = Sim()
    s.answered = 0
    for _ in range(10):
        s.t += 50 * MS
        s.wd.observe({"t": s.t, "slots": [], "procs": {}, "hdr": {"ok": True, "arena": s.arena},
                      "lg": {"answered": 0, "bad": 0, "ready": 0, "done": 0, "start_ns": 0,
                             "errors": ["connect refused"]}})
    v = s.wd.final()
    assert v.verdict == "inconclusive" and "connect refused" in v.reason


@pytest.mark.parametrize("verdict,code", [("pass", 0), ("degraded", 1), ("crash", 1),
                                          ("overload", 3), ("inconclusive", 3)])
def test_exit_codes(verdict, code):
    assert exit_code(verdict) == code


def test_frames_signature_in_order():
    stacks = [{"pid": 5, "slot": 1, "frames": ["__futex_abstimed_wait_common", "pthread_rwlock_wrlock",
                                               "CRYPTO_THREAD_write_lock", "ossl_drbg_lock_parent",
                                               "RAND_bytes", "SSL_write"]}]
    v = {"verdict": "deadlock", "blocked": [], "spinning": [], "stopped": []}
    names = [f["family"] for f in families.name(v, stacks, [])]
    assert "lost wake-up" in names and "DRBG lock" in names
    assert "algorithm fetch lock" not in names


def test_bad_catalogue_is_one_clear_error(tmp_path):
    p = tmp_path / "sig.toml"
    p.write_text('[[signature]]\nfamily = "x"\nframes = ["("]\n')
    with pytest.raises(families.CatalogueError, match="bad regex"):
        families.load(p)
    p.write_text('[[signature]]\nfamily = "x"\nproc = "nope"\n')
    with pytest.raises(families.CatalogueError, match="unknown proc predicate"):
        families.load(p)


def test_contention_on_a_process_shared_futex_is_not_a_hang_until_long():
    """pshared locks under pressure: long but legitimate waits (woken later)."""
    s = Sim()
    s.run(500)
    s.stick(2, "handshake", futex=(ARENA[0] + 0xa18, 0x0), cpu_rate=0.0)   # FUTEX_WAIT, shared
    assert s.run(1500) is None
    v = s.run(1500)                                   # still there after 2 s: now it is stuck
    assert v is not None and v.verdict == "degraded" and "shared futex wait" in v.blocked[0]["why"]


def test_clean_exit_at_shutdown_is_not_a_crash_but_a_signal_is():
    s = Sim()
    s.run(500)
    s.wd.begin_shutdown(s.t)
    for i in s.workers:
        s.workers[i].update(state="dead", exit_signal=0, activity="exited")
    assert s.run(500, progress=False) is None          # leaving on purpose, no progress expected
    s2 = Sim()
    s2.run(500)
    s2.wd.begin_shutdown(s2.t)
    s2.workers[1].update(state="dead", exit_signal=0, activity="exited")
    s2.workers[3].update(state="dead", exit_signal=6, activity="exited")
    v = s2.step(progress=False)
    assert v.verdict == "crash" and v.reason.startswith("at shutdown:") and "SIGABRT" in v.reason
    fams = [f["family"] for f in families.name(v.to_dict(), [], [])]
    assert "exit double free" in fams


def test_double_free_at_shutdown_names_exit_double_free():
    s = Sim()
    s.run(300)
    s.wd.begin_shutdown(s.t)
    s.arena["double_free"] = 2
    v = s.step(progress=False)
    assert v.verdict == "corruption"
    fams = [f["family"] for f in families.name(v.to_dict(), [], [{"kind": "double_free"}])]
    assert "exit double free" in fams and "double free in shared memory" in fams


def test_a_crash_outside_shutdown_is_not_exit_double_free():
    s = Sim()
    s.run(500)
    s.workers[2].update(state="dead", exit_signal=6, activity="handshake")
    v = s.step()
    assert "exit double free" not in [f["family"] for f in families.name(v.to_dict(), [], [])]


def _soak(grow_per_step, opens=lambda i: 50, closed_per_step=10, steps=200):
    """10 s of samples with the arena in use growing by grow_per_step bytes."""
    s = Sim()
    state = {"in_use": 10 << 20, "closed": 0, "i": 0}
    observe = s.wd.observe

    def feed(sample):
        state["i"] += 1
        state["in_use"] += grow_per_step(state["i"]) if callable(grow_per_step) else grow_per_step
        state["closed"] += closed_per_step
        sample["hdr"].update(arena_size=256 << 20, conns_closed=state["closed"],
                             conns_open=opens(state["i"]))
        sample["hdr"]["arena"]["in_use"] = state["in_use"]
        return observe(sample)
    s.wd.observe = feed
    assert s.run(steps * 50) is None
    return s.wd.final()


def test_steady_arena_growth_per_closed_connection_is_a_leak():
    v = _soak(20 << 10)
    assert v.verdict == "leak" and v.failed and exit_code("leak") == 1
    assert "bytes per connection closed" in v.reason
    assert [f["family"] for f in families.name(v.to_dict(), [], [])] == ["leak"]


def test_flat_or_noisy_arena_is_not_a_leak():
    assert _soak(0).verdict == "pass"
    assert _soak(lambda i: 300_000 if i % 2 else -300_000).verdict == "pass"


def test_growth_explained_by_more_open_connections_is_not_judged_a_leak():
    assert _soak(20 << 10, opens=lambda i: 50 + i).verdict == "pass"


def test_small_growth_per_connection_is_not_a_leak():
    # 1 MiB+ in the half, but a few hundred bytes per closed connection: caches warming
    assert _soak(20 << 10, closed_per_step=200).verdict == "pass"
    assert _soak(20 << 10, closed_per_step=40).verdict == "pass"      # 512 bytes each
    assert _soak(20 << 10, closed_per_step=15).verdict == "leak"      # 1.4 KiB each


def test_worker_stuck_inside_exit_at_shutdown_is_a_hang():
    s = Sim()
    s.run(500)
    s.wd.begin_shutdown(s.t)
    for i in (1, 2):
        s.workers[i].update(state="dead", activity="exited")
    s.stick(3, "exited", pstate="S", cpu_rate=0.0)
    s.stick(4, "exited", pstate="S", cpu_rate=0.0)
    v = s.run(1500, progress=False)
    assert v is not None and v.verdict == "deadlock" and v.reason.startswith("at shutdown:")
    assert "exit double free" in [f["family"] for f in families.name(v.to_dict(), [], [])]


def test_worker_stuck_serving_while_others_exit_is_a_hang_at_shutdown():
    s = Sim()
    s.run(500)
    s.wd.begin_shutdown(s.t)
    s.workers[1].update(state="dead", activity="exited")
    for i in (2, 3, 4):
        s.stick(i, "attach", pstate="S", cpu_rate=0.0)
    v = s.run(1500, progress=False)
    assert v is not None and v.verdict == "deadlock" and "while others exit" in str(v.blocked)


def test_busy_machine_slows_the_stall_rule_but_not_for_spinners():
    """Machine CPU pressure (PSI) high: a worker that is not spinning needs
    pressure_stall_s in one activity to be stuck; without pressure, stall_s."""
    for pressured, after_ms, want in ((False, 500, "stuck"), (True, 500, None),
                                      (True, 1700, "stuck")):
        sim = Sim()
        psi = [0]
        orig = sim.step

        def step(ms=50, progress=True):
            psi[0] += int(ms * 1000 * (0.9 if pressured else 0.0))
            sim.wd.note_pressure({"t": sim.t + ms * MS, "psi_cpu_us": psi[0]})
            return orig(ms, progress)
        for _ in range(5):
            step()
        w = sim.workers[2]
        w.update(activity="write", since=sim.t, cpu_rate=0.02, pstate="S")
        v = None
        for _ in range(after_ms // 50):
            v = v or step()
        got = "stuck" if v is not None and v.verdict == "degraded" else None
        assert got == want, (pressured, after_ms, v)


# ---- the faulting instruction of a crash (harness/watchdog/insn.py) --------

@pytest.mark.parametrize("code,want", [
    ("0f 29 83 80 00 00 00", "movaps"),            # store, [rbx+0x80]: wolfSSL at align 8
    ("0f 28 07", "movaps"), ("66 0f 28 07", "movapd"), ("66 0f 6f 07", "movdqa"),
    ("66 41 0f 7f 06", "movdqa"),                  # REX.B
    ("c5 f9 6f 07", "vmovdqa"), ("c4 e1 78 29 07", "vmovaps"),
    ("66 0f 38 dc 07", "SSE 0f 38 dc with a 128-bit memory operand"),    # aesenc xmm, [rdi]
    ("66 0f ef 07", "SSE 0f ef with a 128-bit memory operand"),          # pxor xmm, [rdi]
    ("0f 58 07", "SSE 0f 58 with a 128-bit memory operand"),             # addps
    ("f3 0f 6f 07", None), ("0f 10 07", None), ("c5 fa 6f 07", None),   # unaligned moves
    ("0f 28 c1", None), ("66 0f 38 dc c1", None),  # register operands only
    ("0f ef 07", None),                            # MMX: 64-bit operand
    ("48 8b 07", None), ("", None), ("0f", None),
])
def test_aligned_operand_decoding(code, want):
    from harness.watchdog import insn
    assert insn.aligned_operand(bytes.fromhex(code.replace(" ", ""))) == want


def test_crash_record_fault_line_and_evidence(tmp_path):
    from harness.watchdog import insn, stacks
    assert insn.parse("ip 0x7f00 code 128 insn 0f 29 83 80")["aligned_operand"] == "movaps"
    assert insn.parse("ip 0x7f00 code x insn 0f") is None and insn.parse("garbage") is None
    nul = insn.parse("ip (nil) code 1 insn unreadable")       # a call through a NULL pointer
    assert nul["insn"] == "unreadable" and nul["aligned_operand"] is False
    (tmp_path / "crash--1-42.txt").write_text(
        "signal 11 (Segmentation fault) address (nil) pid 42\n"
        "ip 0x7f00 code 128 insn 0f 29 83 80 00 00 00\n--- backtrace\n")
    (tmp_path / "crash-3-43.txt").write_text("signal 6 (Aborted) address (nil) pid 43\n")
    (tmp_path / "crash-bad-name.txt").write_text("ignored")
    got = {c["pid"]: c for c in stacks.crash_stacks(tmp_path)}
    assert set(got) == {42, 43}
    assert got[42]["role"] == "stand" and got[42]["fault"]["aligned_operand"] == "movaps"
    assert got[43]["role"] == "crashed" and got[43]["fault"] is None
    ev = stacks.fault_evidence(list(got.values()), 8)
    assert len(ev) == 1 and ev[0].startswith("aligned vector access: pid 42 (stand) faulted at movaps")
    assert stacks.fault_evidence(list(got.values()), 16) == []   # aligned blocks: not this family


def test_no_reply_while_every_process_waits_for_input_is_not_a_hang():
    # measured with wolfSSL 5.7's write_dup and TLS 1.3 key updates: every
    # connection fails, every stand process sits in epoll_wait: no deadlock
    s = Sim()
    s.run(500)
    for i in s.workers:
        s.workers[i]["cpu_rate"] = 0.0
    s.workers[2].update(pstate="R", cpu_rate=0.3)      # busy between failing connections
    v = s.run(3000, progress=False)
    assert v is not None and v.verdict == "inconclusive", v
    assert "waits for input" in v.reason and "not a hang" in v.reason
    assert s.wd.final().verdict == "inconclusive"


def test_a_sampling_gap_longer_than_the_window_is_not_no_progress():
    # seen beside a CPU hog: the controller took no sample for 0.7 s while
    # the others kept serving; the one stuck worker must read degraded
    s = Sim()
    s.run(500)
    s.stick(2, "handshake", futex=(ARENA[0] + 0x68b5c, 0x189), cpu_rate=0.0)
    assert s.step() is None                       # the sign's first sample
    v = s.step(ms=700)                            # its second, after the gap: decided here
    assert v is not None and v.verdict == "degraded", v
