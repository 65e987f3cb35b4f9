"""The sample history the rules read: a window of recent samples and the
CPU, run-queue and progress figures over it."""
from __future__ import annotations

import os
from collections import deque


PSI_CPU = "/proc/pressure/cpu"


_psi_fd: list[int] = []          # kept open: read at every sample


def cpu_stall_us() -> int | None:
    """Microseconds in which some runnable task waited for a CPU, so far
    (the kernel's pressure stall information); None without PSI."""
    try:
        if not _psi_fd:
            _psi_fd.append(os.open(PSI_CPU, os.O_RDONLY | os.O_CLOEXEC))
        line = os.pread(_psi_fd[0], 256, 0).decode().split("\n", 1)[0]
        return int(line.rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


class History:
    def __init__(self, maxlen: int = 400):
        self.hist: deque = deque(maxlen=maxlen)
        self.psi: deque = deque(maxlen=maxlen)     # (t_ns, cpu stall us)
        self.ncpu = os.cpu_count() or 1

    def note_pressure(self, s: dict) -> None:
        """The sample's machine CPU stall counter (psi_cpu_us), if it has one."""
        if s.get("psi_cpu_us") is not None:
            self.psi.append((s["t"], s["psi_cpu_us"]))

    def cpu_pressure(self, seconds: float = 0.5) -> float | None:
        """Share of the last `seconds` in which some task waited for a CPU
        (machine-wide): a busy machine, whoever makes it busy."""
        if len(self.psi) < 2:
            return None
        t1, v1 = self.psi[-1]
        t0, v0 = t1, v1
        for t, v in reversed(self.psi):
            t0, v0 = t, v
            if t1 - t >= seconds * 1e9:
                break
        return (v1 - v0) * 1000 / (t1 - t0) if t1 > t0 else None

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
        """CPU share over about `seconds`, between the oldest and the newest
        samples in that window that read the process."""
        a = b = None
        for s in reversed(self.hist):
            if pid in s["procs"]:
                if b is None:
                    b = s
                elif b["t"] - s["t"] > seconds * 1e9:
                    break
                a = s
        if a is None or a is b:
            return None
        return (b["procs"][pid]["cpu_s"] - a["procs"][pid]["cpu_s"]) / ((b["t"] - a["t"]) / 1e9)

    def _cpu_since(self, pid: int, since_ns: int) -> float:
        """CPU seconds the process ran since since_ns (schedstat, else stat ticks)."""
        new = self.hist[-1]["procs"].get(pid)
        old = None
        for s in reversed(self.hist):         # the activity began recently: scan from the end
            if s["t"] < since_ns:
                break
            if pid in s["procs"]:
                old = s["procs"][pid]
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
                # a gap in the samples longer than the window (a starved controller):
                # measure from the sample before it, if that is still after since_ns,
                # instead of finding no interval at all and calling it no progress
                if old is new and s["t"] >= since_ns:
                    old = s
                break
            old = s
        return new["lg"]["answered"] - old["lg"]["answered"]
