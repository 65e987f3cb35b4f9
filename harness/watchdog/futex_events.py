"""Futex waits and wakes from the kernel, paired into lost wake-ups.

The events come from futex_tracer (bpftrace's sys_enter_futex/sys_exit_futex,
filtered in the kernel to the watched processes and to the PRIVATE flag).
Here they are matched, in user space, by what the futex word *is*: its
shared mapping's identity (device and inode from /proc/PID/maps, the same in
every process that maps the page, at whatever address) and its offset there.

A lost wake-up, seen: pid A's FUTEX_WAKE|PRIVATE returned 0 (woke nobody) on
(mapping, offset) while pid B, another process, had entered a
FUTEX_WAIT(_BITSET)|PRIVATE on the same (mapping, offset) and not left it.
A private futex is keyed by (mm, address) in the kernel, so the wake from
another mm can never reach B.  A record is reported once B is still waiting
CONFIRM_NS after the wake (a wait that entered just before the waker changed
the word returns EAGAIN at once: that is no lost wake).
"""
from __future__ import annotations

import threading

PRIVATE = 128
WAITS = {0: "FUTEX_WAIT", 9: "FUTEX_WAIT_BITSET"}
WAKES = {1: "FUTEX_WAKE", 10: "FUTEX_WAKE_BITSET"}
CONFIRM_NS = 10_000_000


def parse_maps(text: str) -> list[tuple]:
    """(lo, hi, pgoff, key, label, shared) of each line of /proc/PID/maps;
    key is (device, inode) and label the path (anonymous shared memory: its inode)."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5 or len(parts[1]) < 4:
            continue
        lo, _, hi = parts[0].partition("-")
        name = parts[5].strip() if len(parts) > 5 else ""
        name = name.removesuffix(" (deleted)")
        if name in ("", "/dev/zero", "/SYSV00000000"):    # anonymous shared memory: its inode
            name = f"[anon shared {parts[3]}:{parts[4]}]"
        label = name
        out.append((int(lo, 16), int(hi, 16), int(parts[2], 16), (parts[3], int(parts[4])),
                    label, parts[1][3] == "s"))
    return out


class Mappings:
    """Resolve (pid, address) to (mapping key, label, offset) inside a shared
    mapping; None for a private mapping or an unknown address.  Each pid's
    maps are read once, and again only for an address in none of them."""

    def __init__(self, reader=None):
        self.read = reader or _read_maps
        self.cache: dict[int, list[tuple]] = {}

    def resolve(self, pid: int, addr: int):
        for fresh in (False, True):
            if fresh or pid not in self.cache:
                text = self.read(pid)
                if text is None:
                    return None
                self.cache[pid] = parse_maps(text)
            for lo, hi, pgoff, key, label, shared in self.cache[pid]:
                if lo <= addr < hi:
                    return (key, label, addr - lo + pgoff) if shared else None
        return None

    def forget(self, pid: int) -> None:
        self.cache.pop(pid, None)


def _read_maps(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return f.read()
    except OSError:
        return None


def op_name(op: int) -> str:
    cmd = op & 127
    name = WAITS.get(cmd) or WAKES.get(cmd) or f"futex op {cmd}"
    return name + ("|PRIVATE" if op & PRIVATE else "")


class Pairing:
    """Feed events (tuples, as futex_tracer parses them):
        ("W", pid, tid, t_ns, op, uaddr)   a wait entered
        ("X", pid, tid, t_ns, ret)         that wait returned
        ("K", pid, tid, t_ns, op, uaddr, ret)  a wake returned ret
    and read the lost wake-ups with current(now)."""

    def __init__(self, mappings: Mappings | None = None, base_ns: int = 0):
        self.maps = mappings or Mappings()
        self.base_ns = base_ns
        self.waits: dict[int, dict] = {}     # tid -> the wait it is in
        self.pending: list[dict] = []        # lost-wake candidates, not yet confirmed
        self.lost: list[dict] = []           # confirmed, in order
        self.events = 0
        self.lock = threading.Lock()

    def feed(self, ev: tuple) -> None:
        with self.lock:
            self.events += 1
            kind, pid, tid, t = ev[0], ev[1], ev[2], ev[3]
            if kind == "W" and ev[4] & PRIVATE and (ev[4] & 127) in WAITS:
                where = self.maps.resolve(pid, ev[5])
                if where is not None:        # a private wait on a private mapping: no concern
                    self.waits[tid] = {"pid": pid, "tid": tid, "t0": t, "op": ev[4],
                                       "where": where}
            elif kind == "X":
                self.waits.pop(tid, None)
            elif kind == "K" and ev[6] == 0 and ev[4] & PRIVATE and (ev[4] & 127) in WAKES:
                self._wake(pid, t, ev[4], ev[5])

    def _wake(self, pid: int, t: int, op: int, uaddr: int) -> None:
        where = self.maps.resolve(pid, uaddr)
        if where is None:
            return
        key, label, off = where
        for w in self.waits.values():
            if w["pid"] != pid and w["t0"] < t and w["where"][0] == key and w["where"][2] == off:
                self.pending.append({"waker": pid, "waiter": w["pid"], "waiter_tid": w["tid"],
                                     "t": t, "t0": w["t0"], "wake_op": op, "wait_op": w["op"],
                                     "mapping": label, "offset": off})

    def _line(self, r: dict) -> str:
        s = lambda ns: f"{(ns - self.base_ns) / 1e9:.3f} s"
        return (f"wake lost: pid {r['waker']}'s {op_name(r['wake_op'])} on "
                f"{r['mapping']}+{r['offset']:#x} at {s(r['t'])} woke nobody while pid "
                f"{r['waiter']} waits there since {s(r['t0'])}")

    def current(self, now_ns: int) -> list[dict]:
        """Confirm the candidates old enough; return the confirmed records whose
        waiter is still in that wait (each with its evidence line)."""
        with self.lock:
            keep = []
            for r in self.pending:
                w = self.waits.get(r["waiter_tid"])
                if w is None or w["t0"] != r["t0"]:
                    continue                 # the waiter left: it was woken after all
                if now_ns - r["t"] < CONFIRM_NS:
                    keep.append(r)
                    continue
                if not any(x["waiter_tid"] == r["waiter_tid"] and x["t0"] == r["t0"]
                           for x in self.lost):
                    r["line"] = self._line(r)
                    r["why"] = (f"private futex wait on {r['mapping']}+{r['offset']:#x}: "
                                f"pid {r['waker']}'s wake there woke nobody")
                    self.lost.append(r)
            self.pending = keep
            return [r for r in self.lost if (self.waits.get(r["waiter_tid"]) or {}).get("t0")
                    == r["t0"]]

    def lines(self) -> list[str]:
        with self.lock:
            return [r["line"] for r in self.lost]
