"""The sample history the rules read: a window of recent samples and the
CPU, run-queue and progress figures over it."""
from __future__ import annotations

import os
from collections import deque


class History:
    def __init__(self, maxlen: int = 400):
        self.hist: deque = deque(maxlen=maxlen)
        self.ncpu = os.cpu_count() or 1

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
