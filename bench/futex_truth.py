"""An independent /proc sampler, run beside a series to check the verdicts
against the truth: which single-threaded process sits in a process-private
futex wait on an address in a shared mapping (nothing can ever wake it), and
for how long.  Written from the kernel's files alone,
without any of the watchdog's code, so that the two can disagree.

    with Truth("opensips") as t:
        ... one run ...
    t.longest_s        # the longest private wait on shared memory seen, by any task

x86-64: /proc/PID/task/TID/syscall reads "202 0xADDR 0xOP ..." in a futex
call; FUTEX_PRIVATE_FLAG is 128; the wait ops are 0 (WAIT) and 9 (WAIT_BITSET).
"""
from __future__ import annotations

import os
import threading
import time


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _shared_ranges(pid: str) -> list[tuple[int, int]]:
    out = []
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                rng, perms = line.split()[:2]
                if perms.endswith("s"):
                    lo, hi = rng.split("-")
                    out.append((int(lo, 16), int(hi, 16)))
    except OSError:
        pass
    return out


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def private_shared_waits(comm: str, within: str = "") -> dict[str, tuple[int, int]]:
    """tid -> (pid, address) for every single-threaded process called COMM now
    in a private futex wait on an address inside one of its shared mappings.
    A process with several threads is left out: one of its own threads may be
    the waker (OpenSIPS 4.0's TCP main waits that way for its I/O threads)."""
    hits = {}
    for pid in (d for d in os.listdir("/proc") if d.isdigit()):
        if _comm(pid) != comm or (within and within not in _cmdline(pid)):
            continue
        ranges = None
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        if len(tids) != 1:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                    parts = f.read().split()
            except OSError:
                continue
            if len(parts) < 3 or parts[0] != "202":
                continue
            addr, op = int(parts[1], 16), int(parts[2], 16)
            if not op & 128 or op & 0x7F not in (0, 9):
                continue
            ranges = _shared_ranges(pid) if ranges is None else ranges
            if any(lo <= addr < hi for lo, hi in ranges):
                hits[tid] = (int(pid), addr)
    return hits


class Truth:
    """Samples at `hz` in a thread while the block runs."""

    def __init__(self, comm: str, hz: float = 20.0, within: str = ""):
        """within: only processes whose command line holds this text (the
        series' own results folder), so a server someone else runs is not counted."""
        self.comm, self.period, self.within = comm, 1.0 / hz, within
        self.since: dict[str, float] = {}
        self.longest_s = 0.0
        self.pids: set[int] = set()
        self.where: dict[str, tuple[int, int, float]] = {}   # tid -> (pid, address, since)
        self.episodes: list[dict] = []        # every wait of 0.5 s or more, as it ended
        self.samples = 0
        self._stop = threading.Event()

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            hits = private_shared_waits(self.comm, self.within)
            self.samples += 1
            for tid, (pid, addr) in hits.items():
                first = self.since.setdefault(tid, now)
                self.where[tid] = (pid, addr, first)
                self.pids.add(pid)
                self.longest_s = max(self.longest_s, now - first)
            for tid in [t for t in self.since if t not in hits]:
                self._ended(tid, now)
            self._stop.wait(self.period)

    def __enter__(self) -> "Truth":
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()
        return self

    def _ended(self, tid: str, now: float) -> None:
        first = self.since.pop(tid)
        pid, addr, _ = self.where.pop(tid, (0, 0, first))
        if now - first >= 0.5:
            self.episodes.append({"pid": pid, "tid": int(tid), "address": hex(addr),
                                  "waited_s": round(now - first, 2)})

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join(2)
        now = time.monotonic()
        for tid in list(self.since):
            self._ended(tid, now)

    def hung(self, at_least_s: float = 1.0) -> bool:
        return self.longest_s >= at_least_s
