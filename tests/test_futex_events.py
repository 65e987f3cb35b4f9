"""Kernel futex events: the pairing of a lost wake-up on synthetic events, the
rule that names it at once, the forced /proc fallback, and (root with a
working bpftrace only) the real tracer on two processes, on the stand and on
a small foreign server under `watch` (which is also run forced to /proc)."""
import ctypes
import json
import mmap
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.watchdog import families, futex_events, futex_tracer
from harness.watchdog.futex_events import CONFIRM_NS, Mappings, Pairing

ROOT = Path(__file__).resolve().parent.parent
MS = 1_000_000
WAIT, WAIT_BITSET, WAKE = 0, 9, 1
P = futex_events.PRIVATE
# the same memfd page mapped at different addresses in pids 10 and 20 (and a private heap)
MAPS = {
    10: "7f0000000000-7f0000100000 rw-s 00000000 00:01 4242   /memfd:tlsh-arena (deleted)\n"
        "555500000000-555500021000 rw-p 00000000 00:00 0      [heap]\n",
    20: "7f1000000000-7f1000100000 rw-s 00000000 00:01 4242   /memfd:tlsh-arena (deleted)\n"
        "555500000000-555500021000 rw-p 00000000 00:00 0      [heap]\n"
        "7f2000000000-7f2000001000 rw-s 00000000 00:05 77     /dev/zero (deleted)\n",
    30: "7f0000000000-7f0000100000 rw-s 00000000 00:05 99     /dev/zero (deleted)\n",
}


def pairing():
    return Pairing(Mappings(lambda pid: MAPS.get(pid)), base_ns=0)


def lost_wake(p, wake_op=WAKE | P, ret=0, waker=10, wake_addr=0x7f0000000a40,
              waiter=20, wait_addr=0x7f1000000a40, wait_op=WAIT_BITSET | P, t=1000 * MS):
    p.feed(("W", waiter, waiter, t, wait_op, wait_addr))
    p.feed(("K", waker, waker, t + 5 * MS, wake_op, wake_addr, ret))
    return p.current(t + 5 * MS + CONFIRM_NS)


def test_a_private_wake_that_woke_nobody_beside_a_waiter_in_another_process_is_lost():
    p = pairing()
    got = lost_wake(p)
    assert len(got) == 1 and got[0]["waker"] == 10 and got[0]["waiter"] == 20
    assert got[0]["offset"] == 0xa40 and got[0]["mapping"] == "/memfd:tlsh-arena"
    assert p.lines() == ["wake lost: pid 10's FUTEX_WAKE|PRIVATE on /memfd:tlsh-arena+0xa40 at "
                         "1.005 s woke nobody while pid 20 waits there since 1.000 s"]
    p.feed(("X", 20, 20, 2000 * MS, 0))           # woken at last (by a timeout, say)
    assert p.current(2001 * MS) == [] and len(p.lines()) == 1


def test_not_reported_before_the_confirmation_delay_nor_once_the_waiter_left():
    p = pairing()
    p.feed(("W", 20, 20, 1000 * MS, WAIT | P, 0x7f1000000a40))
    p.feed(("K", 10, 10, 1001 * MS, WAKE | P, 0x7f0000000a40, 0))
    assert p.current(1002 * MS) == []             # a wait may still return EAGAIN at once
    p.feed(("X", 20, 20, 1003 * MS, -11))
    assert p.current(1100 * MS) == [] and p.lines() == []


@pytest.mark.parametrize("case", [
    dict(ret=1),                                          # it woke someone
    dict(wake_op=WAKE, wait_op=WAIT_BITSET),              # a shared futex (no PRIVATE flag)
    dict(wake_addr=0x555500000040, wait_addr=0x555500000040),   # a private mapping
    dict(wake_addr=0x7f0000000a44),                       # another word of the page
    dict(waker=20, waiter=20),                            # the same process (a thread)
    dict(waker=30, wake_addr=0x7f0000000a40),             # same offset, another mapping
])
def test_not_a_lost_wake(case):
    assert lost_wake(pairing(), **case) == []


def test_a_wake_before_the_wait_began_is_not_paired():
    p = pairing()
    p.feed(("K", 10, 10, 1000 * MS, WAKE | P, 0x7f0000000a40, 0))
    p.feed(("W", 20, 20, 1001 * MS, WAIT | P, 0x7f1000000a40))
    assert p.current(1100 * MS) == []


def test_anonymous_shared_memory_is_named_by_its_inode():
    m = Mappings(lambda pid: MAPS.get(pid))
    assert m.resolve(20, 0x7f2000000010) == (("00:05", 77), "[anon shared 00:05:77]", 0x10)
    assert m.resolve(20, 0x555500000010) is None and m.resolve(99, 0x10) is None


def test_the_watchdog_names_the_waiter_stuck_at_once_with_the_line():
    from tests.test_watchdog import Sim
    s = Sim()
    s.run(500)
    s.stick(2, "lock_wait", cpu_rate=0.0)              # no /proc futex sign at all
    maps = {101: MAPS[10], 102: MAPS[20]}             # the stand's worker pids in Sim
    rec = lost_wake(Pairing(Mappings(maps.get)), waker=101, waiter=102, t=s.t)
    assert len(rec) == 1
    orig = s.wd.observe
    s.wd.observe = lambda smp: orig({**smp, "lost_wakes": rec})
    v = s.step()
    assert v is not None and v.verdict == "degraded" and v.blocked[0]["pid"] == 102
    assert "woke nobody" in v.blocked[0]["why"]
    assert [e for e in v.evidence if e.startswith("wake lost: pid 101's")]
    assert "lost wake-up" in [f["family"] for f in families.name(v.to_dict(), [], [])]


def test_the_fallback_forced_says_why(monkeypatch):
    monkeypatch.setenv("TLSH_NO_BPF", "1")
    t = futex_tracer.Tracer()
    assert t.start(parent=os.getpid()) is False and t.proc is None
    assert t.outcome() == {"evidence_source": "proc",
                           "evidence_source_reason": "TLSH_NO_BPF=1 forces the /proc fallback"}
    assert t.current(time.monotonic_ns()) == [] and t.lines() == []


def test_the_script_seeds_the_pids_and_follows_forks():
    s = futex_tracer.script(seeds=[11, 12], parent=7)
    assert "@w[11] = 1; @w[12] = 1;" in s and "/@w[pid] || pid == 7/" in s
    assert "sys_enter_futex" in s and "sys_exit_futex" in s and "%%" not in s


def _kernel_or_skip():
    os.environ.pop("TLSH_NO_BPF", None)
    why = futex_tracer.unavailable()
    if why:
        pytest.skip(f"no kernel source here: {why}")


def _fork_futex(addr, op, linger=0.0):
    """A child making one futex call; it stays `linger` s after it (a waker
    must outlive the reading of its event: its address is resolved through
    its /proc/PID/maps, as a server's processes do)."""
    pid = os.fork()
    if pid == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.syscall(202, ctypes.c_void_p(addr), op, 0, None, None, 0) & 0x7f
        time.sleep(linger)
        os._exit(rc)
    return pid


def test_the_real_tracer_sees_a_lost_wake_between_two_processes():
    _kernel_or_skip()
    t = futex_tracer.Tracer(base_ns=time.monotonic_ns())
    if not t.start(parent=os.getpid()):
        pytest.skip(t.reason)
    fd = os.memfd_create("tlsh-test-futex")
    try:
        os.ftruncate(fd, 4096)
        m = mmap.mmap(fd, 4096, mmap.MAP_SHARED)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m)) + 0x40
        waiter = _fork_futex(addr, WAIT | P)
        time.sleep(0.2)
        waker = _fork_futex(addr, WAKE | P, linger=0.5)
        time.sleep(0.3)
        got = t.current(time.monotonic_ns())
        assert os.waitpid(waker, 0)[1] == 0           # woke nobody
        assert [(r["waker"], r["waiter"], r["offset"]) for r in got] == [(waker, waiter, 0x40)]
        assert "/memfd:tlsh-test-futex+0x40" in t.lines()[0]
    finally:
        t.stop()
        if "waiter" in locals():
            os.kill(waiter, 9)
            os.waitpid(waiter, 0)
        os.close(fd)


def test_a_real_stand_run_with_the_kernel_source_has_the_line(tmp_path):
    _kernel_or_skip()
    r = subprocess.run([sys.executable, "-m", "harness", "run", "--json", "-q", "--out",
                        str(tmp_path), "--memory", "shared", "--handoff", "per-message",
                        "--duration", "8"], capture_output=True, text=True, cwd=str(ROOT),
                       timeout=120)
    o = json.loads(r.stdout)
    assert o["evidence_source"] == "kernel", o["evidence_source_reason"]
    if "lost wake-up" not in o["families"]:
        pytest.skip(f"the bug did not show in this run ({o['verdict']})")
    v = json.loads(Path(o["run_dir"], "verdict.json").read_text())
    assert [e for e in v["evidence"] if e.startswith("wake lost: pid ")], v["evidence"]


# A small foreign server: two processes sharing one MAP_SHARED anonymous page
# (/dev/zero, as OpenSIPS's shared memory), a private futex on it.  Once the
# file GO exists the child waits there forever (FUTEX_WAIT|PRIVATE) and the
# parent, 0.3 s later, issues a FUTEX_WAKE|PRIVATE that cannot reach it.
LOST_SERVER = r"""
import ctypes, mmap, os, sys, time
go, libc = sys.argv[1], ctypes.CDLL(None, use_errno=True)
m = mmap.mmap(-1, 4096, mmap.MAP_SHARED)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m)) + 0x40
def futex(op):
    return libc.syscall(202, ctypes.c_void_p(addr), op, 0, None, None, 0)
end = time.monotonic() + 30                      # bounded, whatever happens
while not os.path.exists(go) and time.monotonic() < end:
    time.sleep(0.02)
if os.fork() == 0:
    futex(0 | 128)
    os._exit(0)
time.sleep(0.3)
print(futex(1 | 128), flush=True)                # 0: it woke nobody
while time.monotonic() < end:
    time.sleep(0.2)
"""


def _watch_lost_server(tmp_path, env):
    go = tmp_path / "go"
    srv = subprocess.Popen([sys.executable, "-c", LOST_SERVER, str(go)], stdout=subprocess.PIPE,
                           text=True, start_new_session=True)
    try:
        w = subprocess.Popen([sys.executable, "-m", "harness", "watch", "--pid", str(srv.pid),
                              "--duration", "6", "--json", "-q", "--out", str(tmp_path / "r")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=str(ROOT), env=env)
        deadline = time.monotonic() + 30          # the first sample: the tracer is attached
        while not any(p.stat().st_size for p in (tmp_path / "r").glob("*/samples.jsonl")):
            assert w.poll() is None and time.monotonic() < deadline, w.communicate()
            time.sleep(0.05)
        go.touch()
        out, err = w.communicate(timeout=60)
        assert srv.stdout.readline().strip() == "0"   # the wake woke nobody
        o = json.loads(out)
        v = json.loads(Path(o["run_dir"], "verdict.json").read_text())
        waiter = [c.pid for c in __import__("psutil").Process(srv.pid).children()]
        return o, v, srv.pid, waiter
    finally:
        os.killpg(srv.pid, 9)
        srv.wait()


def test_watch_on_a_foreign_server_has_the_wake_lost_line(tmp_path):
    _kernel_or_skip()
    o, v, waker, waiter = _watch_lost_server(tmp_path, dict(os.environ))
    assert o["evidence_source"] == "kernel", o["evidence_source_reason"]
    assert o["verdict"] in ("deadlock", "degraded") and "lost wake-up" in o["families"], o
    assert [s["pid"] for s in o["stuck"]] == waiter and "woke nobody" in o["stuck"][0]["why"]
    lines = [e for e in v["evidence"] if e.startswith("wake lost: ")]
    assert len(lines) == 1 and lines[0].startswith(f"wake lost: pid {waker}'s FUTEX_WAKE|PRIVATE"
                                                   " on [anon shared ") and "+0x40 at " in lines[0]
    assert lines[0].split(" while pid ")[1].startswith(f"{waiter[0]} waits there since ")


def test_watch_on_a_foreign_server_forced_to_proc_says_why_and_judges_alike(tmp_path):
    o, v, _, waiter = _watch_lost_server(tmp_path, dict(os.environ, TLSH_NO_BPF="1"))
    assert o["evidence_source"] == "proc"
    assert o["evidence_source_reason"] == "TLSH_NO_BPF=1 forces the /proc fallback"
    assert "lost wake-up" in o["families"] and [s["pid"] for s in o["stuck"]] == waiter, o
    assert not [e for e in v["evidence"] if e.startswith("wake lost: ")]
