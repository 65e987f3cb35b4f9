"""Sampling processes through /proc, without ptrace.

One read of each file per sample (psutil's oneshot discipline).  A futex
wait is decoded from /proc/PID/syscall: its address, its op, and whether the
op carries FUTEX_PRIVATE_FLAG — a private wait on an address inside the
shared arena is the lost wake-up signature.
"""
from __future__ import annotations

import os

CLK_TCK = os.sysconf("SC_CLK_TCK")
SYS_FUTEX = 202          # x86_64
FUTEX_PRIVATE_FLAG = 128
FUTEX_CMDS = {0: "wait", 1: "wake", 9: "wait_bitset", 10: "wake_bitset"}


def _read(path: str) -> str | None:
    """One small /proc file; raw os calls (several times cheaper than open())."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 4096).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def parse_syscall(text: str | None) -> dict | None:
    """Decode /proc/PID/syscall: {'nr', 'args'} or {'nr': -1} / 'running'."""
    if text is None:
        return None
    text = text.strip()
    if text == "running":
        return {"running": True}
    parts = text.split()
    try:
        nr = int(parts[0])
    except (ValueError, IndexError):
        return None
    d = {"nr": nr}
    if nr >= 0:
        d["args"] = [int(a, 16) for a in parts[1:7]]
        if nr == SYS_FUTEX and len(d["args"]) >= 2:
            op = d["args"][1]
            d["futex"] = {"addr": d["args"][0], "op": op,
                          "private": bool(op & FUTEX_PRIVATE_FLAG),
                          "cmd": FUTEX_CMDS.get(op & 127, str(op & 127))}
    return d


class FdCache:
    """/proc/PID/NAME files kept open and re-read with pread: one system call
    a read instead of open+read+close.  An fd stays bound to the task it was
    opened for, so a reused pid cannot mislead it."""

    def __init__(self):
        self.fds: dict[tuple[int, str], int] = {}

    def read(self, pid: int, name: str) -> str | None:
        key = (pid, name)
        fd = self.fds.get(key)
        if fd is None:
            try:
                fd = self.fds[key] = os.open(f"/proc/{pid}/{name}", os.O_RDONLY)
            except OSError:
                return None
        try:
            return os.pread(fd, 4096, 0).decode("ascii", "replace")
        except OSError:                 # the process has gone
            os.close(self.fds.pop(key))
            return None

    def forget(self, pid: int) -> None:
        for key in [k for k in self.fds if k[0] == pid]:
            os.close(self.fds.pop(key))

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class Reader(FdCache):
    """Samples of the stand's processes: /proc/PID/{stat,schedstat} kept open."""

    def __init__(self, stat_every: int = 4):
        super().__init__()
        self.stat_every = stat_every
        self.last: dict[int, dict] = {}      # last parsed stat per pid
        self.tick = 0

    def _pread(self, pid: int, name: str) -> str | None:
        return self.read(pid, name)

    def next_tick(self) -> None:
        self.tick += 1

    def sample(self, pid: int, detail: bool = False) -> dict | None:
        """Like sample(), but /proc/PID/stat (the costly file) is re-read only for
        suspects (detail) and every stat_every ticks; in between, state and ppid
        are the last ones read and CPU time comes from schedstat."""
        ss = self._pread(pid, "schedstat")
        prev = self.last.get(pid)
        if detail or prev is None or self.tick % self.stat_every == 0:
            d = _parse(pid, self._pread(pid, "stat"), ss, detail)
            if d is None:
                self.last.pop(pid, None)
                return None
            self.last[pid] = d
            return d
        if ss is None:
            self.last.pop(pid, None)
            return None
        parts = ss.split()
        run = int(parts[0])
        return {"pid": pid, "state": prev["state"], "ppid": prev["ppid"], "stale_state": True,
                "cpu_s": prev["cpu_s"] + (run - prev.get("run_ns", run)) / 1e9,
                "run_ns": run, "wait_ns": int(parts[1])}


def sample(pid: int, detail: bool = False) -> dict | None:
    """One sample of a process; None when it has gone.

    Always: state, ppid, CPU (stat) and run/wait times (schedstat).  With
    detail (suspects only, it costs three more reads): the syscall it sleeps
    in (futex address and op), wchan and context switches."""
    return _parse(pid, _read(f"/proc/{pid}/stat"), _read(f"/proc/{pid}/schedstat"), detail)


def _parse(pid: int, stat: str | None, ss: str | None, detail: bool) -> dict | None:
    if stat is None:
        return None
    rest = stat[stat.rfind(")") + 2:].split()
    # fields after "(comm)": state=0 ppid=1 pgrp=2 ... utime=11 stime=12
    d = {"pid": pid, "state": rest[0], "ppid": int(rest[1]),
         "cpu_s": (int(rest[11]) + int(rest[12])) / CLK_TCK}
    if ss:
        parts = ss.split()
        if len(parts) >= 2:
            d["run_ns"], d["wait_ns"] = int(parts[0]), int(parts[1])
    if detail:
        add_detail(d)
    return d


def add_detail(d: dict) -> dict:
    pid = d["pid"]
    d["syscall"] = parse_syscall(_read(f"/proc/{pid}/syscall"))
    d["wchan"] = (_read(f"/proc/{pid}/wchan") or "").strip() or None
    st = _read(f"/proc/{pid}/status")
    if st:
        i = st.find("voluntary_ctxt_switches:")
        if i >= 0:
            tail = st[i:].split()
            d["vcsw"], d["ivcsw"] = int(tail[1]), int(tail[3])
    return d


def children(pid: int) -> list[int]:
    """Direct children of pid (all threads' children lists)."""
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        txt = _read(f"/proc/{pid}/task/{t}/children")
        if txt:
            out.extend(int(x) for x in txt.split())
    return out


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(children(p))
    return seen


def _read_all(path: str) -> str | None:
    """A /proc file of any length (maps, net/tcp)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("ascii", "replace")
    except OSError:
        return None


def shared_mappings(pid: int) -> list[tuple[int, int, str]] | None:
    """(start, end, label) of every shared mapping of pid ('s' in the
    permissions of /proc/PID/maps: memfd, /dev/zero, SysV shm, /dev/shm files,
    anonymous MAP_SHARED); None when the process has gone."""
    txt = _read_all(f"/proc/{pid}/maps")
    if txt is None:
        return None
    out = []
    for line in txt.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5 or len(parts[1]) < 4 or parts[1][3] != "s":
            continue
        lo, _, hi = parts[0].partition("-")
        label = parts[5].strip() if len(parts) > 5 else "[anonymous shared]"
        out.append((int(lo, 16), int(hi, 16), f"{label} {parts[1]}"))
    return out


def io_count(txt: str | None) -> int:
    """Read- and write-class system calls so far (syscr + syscw of /proc/PID/io)."""
    n = 0
    for line in (txt or "").splitlines():
        if line.startswith(("syscr:", "syscw:")):
            n += int(line.split()[1])
    return n


def voluntary_count(txt: str | None) -> int:
    """Times the process went to sleep (voluntary_ctxt_switches of /proc/PID/status)."""
    i = (txt or "").find("\nvoluntary_ctxt_switches:")
    return int(txt[i:].split()[1]) if i >= 0 else 0


def port_connections(port: int) -> set[int]:
    """Inodes of the TCP connections (v4 and v6) accepted on local port
    `port` (not the listening socket, which every forked process may inherit)."""
    want = f":{port:04X}"
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        txt = _read_all(name) or ""
        for line in txt.splitlines()[1:]:
            f = line.split()
            if len(f) > 9 and f[1].endswith(want) and f[3] != "0A":
                out.add(int(f[9]))
    out.discard(0)
    return out


def port_unread(port: int) -> dict[int, int]:
    """inode -> bytes received and not yet read, for the connections accepted
    on local port `port` that have any (rx_queue of /proc/net/tcp*)."""
    want = f":{port:04X}"
    out = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        txt = _read_all(name) or ""
        for line in txt.splitlines()[1:]:
            f = line.split()
            if len(f) > 9 and f[1].endswith(want) and f[3] != "0A":
                rx = int(f[4].split(":")[1], 16)
                if rx and int(f[9]):
                    out[int(f[9])] = rx
    return out


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets pid holds (its fd table)."""
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out
