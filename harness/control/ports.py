"""Who listens on a TCP port of 127.0.0.1: the listening sockets with the
pids that hold them (psutil.net_connections, complete as root), so that a
verdict is only given on the processes that really serve the port."""
from __future__ import annotations

import time

import psutil

LOOPBACK = {"127.0.0.1", "0.0.0.0", "::", "::ffff:127.0.0.1"}


def listeners(port: int) -> list[dict]:
    """[{pid, name}] of every process holding a LISTEN socket reachable at
    127.0.0.1:port (pid None when the kernel would not say: not root)."""
    out, seen = [], set()
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return []
    for c in conns:
        if c.status != psutil.CONN_LISTEN or not c.laddr or c.laddr.port != port:
            continue
        if c.laddr.ip not in LOOPBACK and not c.laddr.ip.startswith("127."):
            continue
        if c.pid in seen:
            continue
        seen.add(c.pid)
        out.append({"pid": c.pid, "name": _name(c.pid)})
    return out


def _name(pid: int | None) -> str:
    if pid is None:
        return "?"
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return "?"


def describe(procs: list[dict], limit: int = 3) -> str:
    """'pid 123 (nginx), pid 124 (nginx)' or 'a process whose pid is hidden'."""
    names = [f"pid {p['pid']} ({p['name']})" if p["pid"] is not None
             else "a process whose pid is hidden (not root?)" for p in procs[:limit]]
    return ", ".join(names) + (f" and {len(procs) - limit} more" if len(procs) > limit else "")


def foreign(port: int, tree) -> list[dict]:
    """Listeners on the port that are not in tree() (the pids judged), the
    tree read after the sockets so that a child forked meanwhile is in it."""
    ls = listeners(port)
    if not ls:
        return []
    mine = set(tree())
    return [p for p in ls if p["pid"] not in mine]


class OwnerWatch:
    """During a run: does the port still belong to the judged tree?  Checked
    at most every `every` s; ok() turns False (for good) once another process
    listens on it, and `found` names it."""

    def __init__(self, port: int | None, tree, every: float = 2.0):
        self.port, self.tree, self.every = port, tree, every
        self.at, self.found = 0.0, []

    def ok(self) -> bool:
        if not self.port or self.found:
            return not self.found
        if time.monotonic() - self.at >= self.every:
            self.at = time.monotonic()
            self.found = foreign(self.port, self.tree)
        return not self.found

    def check(self) -> list[dict]:
        """A last look now (at the end of the run)."""
        self.at = 0.0
        self.ok()
        return self.found

    def reason(self) -> str:
        return (f"127.0.0.1:{self.port} is served by {describe(self.found)}, outside the "
                "processes judged: its replies say nothing about them")
