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
    try:
        with open(path, "rb") as f:
            return f.read().decode("ascii", "replace")
    except OSError:
        return None


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


def sample(pid: int) -> dict | None:
    """One sample of a process; None when it has gone."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    rest = stat[stat.rfind(")") + 2:].split()
    # fields after "(comm)": state=0 ppid=1 pgrp=2 ... utime=11 stime=12
    d = {"pid": pid, "state": rest[0], "ppid": int(rest[1]),
         "cpu_s": (int(rest[11]) + int(rest[12])) / CLK_TCK}
    st = _read(f"/proc/{pid}/status")
    if st:
        for line in st.splitlines():
            if line.startswith("voluntary_ctxt_switches"):
                d["vcsw"] = int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches"):
                d["ivcsw"] = int(line.split()[1])
    d["wchan"] = (_read(f"/proc/{pid}/wchan") or "").strip() or None
    d["syscall"] = parse_syscall(_read(f"/proc/{pid}/syscall"))
    ss = _read(f"/proc/{pid}/schedstat")
    if ss:
        parts = ss.split()
        if len(parts) >= 2:
            d["run_ns"], d["wait_ns"] = int(parts[0]), int(parts[1])
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


def maps_contain(pid: int, needle: str) -> bool:
    txt = _read(f"/proc/{pid}/maps") or ""
    return needle in txt
