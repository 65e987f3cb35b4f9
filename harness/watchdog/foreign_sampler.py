"""Sampling a server tlsharness did not build: everything from /proc.

No status segment, no cooperation.  Per process, per sample:

- `schedstat` (run and run-queue time) always: a process that has not run
  since the last sample is still where it was, so nothing else is re-read for
  it (blocked and idle processes cost one read).
- when it ran: `stat` (state, threads), `syscall` (what it waits in), the
  read/write system-call counts (`io`) and its voluntary context switches:
  whether it did I/O or slept since the last sample.

From these each process gets a condition, with the time it began:

| condition  | what /proc shows                                                   |
|------------|--------------------------------------------------------------------|
| serve      | it made read/write system calls or slept and woke since last time |
| idle       | asleep waiting for input or time (epoll_wait, recvmsg, nanosleep…)|
| lock_wait  | asleep in a futex wait (or SysV semop) without a timeout           |
| spin       | running or yielding, no read/write, never asleep                   |
| stopped    | state T                                                            |

The judge (`ForeignWatchdog`) turns conditions into stuck processes:

- a futex wait carrying FUTEX_PRIVATE_FLAG on an address inside a *shared*
  mapping of a single-threaded process can never be woken by another process:
  the lost wake-up, stuck after `futex_samples` samples;
- a private futex wait in a single-threaded process, on private memory: no
  thread exists that could wake it (a lock inherited locked through fork):
  stuck after `stall_s`;
- a wait on a process-shared futex is contention: stuck only after
  `shared_wait_s` without running, and only while load is offered;
- spinning `stall_s` without any I/O is stuck only while no replies arrive
  (or next to blocked processes): "high CPU, no SIP processing";
- idle processes (the main process in pause, timers, receivers in
  epoll_wait) are never stuck.

Workers are the processes that ever held a connection accepted on the
server's port (matched through /proc/PID/fd and /proc/net/tcp*).

The process tree is found with psutil (`children(recursive=True)`).  The
per-sample reads stay hand-written on purpose: psutil has no equivalent of
/proc/PID/syscall, wchan or schedstat, and the port's sockets are matched
from one read of /proc/net/tcp* per 200 ms for the whole tree, where
psutil's per-process net_connections() would re-read it for every process
at 20 Hz (harness.control.ports uses psutil for who listens on the port).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import psutil

from harness.watchdog import procfs

# system calls that mean "waiting for input, a peer or time": an idle process
IDLE_SYSCALLS = {
    0: "read", 1: "write", 7: "poll", 17: "pread64", 19: "readv", 20: "writev", 23: "select",
    34: "pause", 35: "nanosleep", 42: "connect", 43: "accept", 44: "sendto", 45: "recvfrom",
    46: "sendmsg", 47: "recvmsg", 61: "wait4", 69: "msgsnd", 70: "msgrcv", 128: "rt_sigtimedwait",
    130: "rt_sigsuspend", 230: "clock_nanosleep", 232: "epoll_wait", 247: "waitid",
    270: "pselect6", 271: "ppoll", 281: "epoll_pwait", 288: "accept4", 299: "recvmmsg",
    307: "sendmmsg", 425: "io_uring_enter", 441: "epoll_pwait2",
}
SEM_SYSCALLS = {65: "semop", 220: "semtimedop"}
SCHED_YIELD = 24
FUTEX_WAIT_CMDS = {"wait", "wait_bitset", "6", "11", "13"}   # + lock_pi, wait_requeue_pi, lock_pi2


@dataclass
class Track:
    """What is known of one watched process."""
    pid: int
    first_ns: int
    run_ns: int = -1
    wait_ns: int = 0
    counts: int = -1                # -1 until the first full look
    io: int = 0                     # read/write-class system calls (/proc/PID/io)
    vol: int = 0                    # voluntary context switches (it slept)
    served: int = 0                 # times the counts moved (the slot's "requests")
    cond: str = "new"
    since_ns: int = 0
    samples: int = 0                # samples in this condition
    key: object = None              # the futex address of a lock_wait
    state: str = "?"
    ppid: int = 0
    threads: int = 1
    syscall: dict | None = None
    shared: list | None = None      # shared mappings, read when first needed
    maps_ns: int = 0
    mapping: str | None = None      # the shared mapping a futex wait lies in
    role: str = "process"
    sockets_ns: int = 0
    gone_ns: int = 0
    stat_tick: int = 0


@dataclass
class ForeignSampler:
    """Samples a process tree (or single pids) into the watchdog's format."""
    roots: list
    port: int | None = None
    tree: bool = True
    skip_roots: bool = False        # the roots are a keeper: judge only their descendants
    roles: dict = field(default_factory=dict)
    stat_every: int = 4             # state re-read this often for processes that did not run
    sockets_every_s: float = 1.0
    tracks: dict = field(default_factory=dict)
    tick: int = 0
    _port_inodes: set = field(default_factory=set)
    _port_ns: int = 0

    tree_every: int = 10            # the process tree re-discovered this often (ticks)
    _fds: procfs.FdCache = field(default_factory=procfs.FdCache)
    _pids: list = field(default_factory=list)

    def pids(self, fresh: bool = False) -> list[int]:
        if fresh or self.tick % self.tree_every == 1 or not self._pids:
            out = []
            for r in self.roots:
                out += ([] if self.skip_roots else [r]) + (_descendants(r) if self.tree else [])
            self._pids = list(dict.fromkeys(out))
        return self._pids

    def _read(self, pid: int, name: str) -> str | None:
        return self._fds.read(pid, name)

    def _forget(self, pid: int) -> None:
        self._fds.forget(pid)

    def close(self) -> None:
        self._fds.close()

    def sample(self, now: int | None = None, lg: dict | None = None) -> dict:
        now = now or time.monotonic_ns()
        self.tick += 1
        live = self._sample_all(self.pids(), now)
        if not live and self.tree:            # all gone, or replaced (a daemon's fork)?
            live = self._sample_all(self.pids(fresh=True), now)
        for pid, tr in self.tracks.items():
            if pid not in live and not tr.gone_ns:
                tr.gone_ns = now
                self._forget(pid)
        if self.port:
            self._find_workers(now, live)
        procs = {p: self._proc(self.tracks[p]) for p in live}
        return {"t": now, "slots": self.slots(), "procs": procs,
                "lg": lg or {"answered": 0, "bad": 0, "ready": 0, "done": 0, "start_ns": 0,
                             "errors": []},
                "hdr": {"ok": True, "arena": {"double_free": 0, "wild_free": 0},
                        "cross_handoffs": 0}}

    def _sample_all(self, pids: list[int], now: int) -> set:
        live = set()
        for pid in pids:
            tr = self.tracks.get(pid)
            if tr is None or tr.gone_ns:
                tr = self.tracks[pid] = Track(pid, now, since_ns=now)
            if self._update(tr, now):
                live.add(pid)
        return live

    # -- one process ----------------------------------------------------------------
    def _update(self, tr: Track, now: int) -> bool:
        ss = self._read(tr.pid, "schedstat")
        if ss is None:
            return False
        parts = ss.split()
        run_ns, wait_ns = int(parts[0]), int(parts[1])
        ran = run_ns != tr.run_ns
        tr.run_ns, tr.wait_ns = run_ns, wait_ns
        fresh = tr.cond == "new"
        if fresh or self.tick - tr.stat_tick >= self.stat_every:
            stat = self._read(tr.pid, "stat")         # state, threads: the costly read
            if stat is None:
                return False
            rest = stat[stat.rfind(")") + 2:].split()
            old_state = tr.state
            tr.state, tr.ppid, tr.threads = rest[0], int(rest[1]), int(rest[17])
            tr.stat_tick = self.tick
            if not ran and not fresh and tr.state == old_state:
                tr.samples += 1
                return True
        elif not ran:
            tr.samples += 1                   # has not run: still where it was
            return True
        # it ran (or is new, or its state changed): where is it now?
        sc = procfs.parse_syscall(self._read(tr.pid, "syscall"))
        if tr.stat_tick != self.tick and tr.state not in ("T", "t"):
            tr.state = "R" if (sc is None or sc.get("running")
                               or sc.get("nr") in (SCHED_YIELD, -1)) else "S"
        # did it do I/O or sleep since last time? the read/write counts first;
        # the context switches (a larger file) only when those did not move
        io = procfs.io_count(self._read(tr.pid, "io"))
        if tr.counts < 0:                     # first look: nothing to compare with
            moved, tr.counts = False, 0
            tr.vol = procfs.voluntary_count(self._read(tr.pid, "status"))
        elif io != tr.io:
            moved = True
        else:
            vol = procfs.voluntary_count(self._read(tr.pid, "status"))
            moved, tr.vol = vol != tr.vol, vol
        tr.io = io
        if moved:
            tr.served += 1
        tr.syscall = sc
        cond, key = self._condition(tr, sc, moved)
        if cond == tr.cond and key == tr.key and (cond == "spin" or not ran):
            tr.samples += 1                   # still spinning, or unchanged
        else:
            tr.cond, tr.key, tr.samples = cond, key, 1
            tr.since_ns = tr.first_ns if fresh else now
            tr.mapping = None
            if cond == "lock_wait" and isinstance(key, int) and sc["futex"]["private"]:
                tr.mapping = self._shared_mapping(tr, key, now)
        return True

    def _condition(self, tr: Track, sc: dict | None, moved: bool) -> tuple[str, object]:
        if tr.state in ("T", "t"):
            return "stopped", None
        if sc is None:
            return ("serve" if moved else "spin"), None
        if sc.get("running") or sc.get("nr") in (SCHED_YIELD, -1):
            return ("serve" if moved else "spin"), None
        fx = sc.get("futex")
        if fx:
            if fx["cmd"] in FUTEX_WAIT_CMDS and not sc["args"][3]:   # no timeout
                return "lock_wait", fx["addr"]
            return "idle", None                  # a timed wait wakes by itself
        if sc["nr"] in SEM_SYSCALLS:
            return "lock_wait", f"sem:{sc['args'][0]}"
        if sc["nr"] in IDLE_SYSCALLS:
            return "idle", None
        return ("serve" if moved else "sys"), None

    def _shared_mapping(self, tr: Track, addr: int, now: int) -> str | None:
        """The shared mapping holding addr: maps read at the first suspect wait,
        again only when the address is not in the known ones (a new mapping)."""
        def lookup():
            return next((f"{label} +{addr - lo:#x}" for lo, hi, label in tr.shared or []
                         if lo <= addr < hi), None)
        found = lookup()
        if found is None and (tr.shared is None or now - tr.maps_ns >= 200_000_000):
            tr.shared = procfs.shared_mappings(tr.pid) or []
            tr.maps_ns = now
            found = lookup()
        return found

    def _find_workers(self, now: int, live: set) -> None:
        """Processes that hold a connection accepted on the server's port are
        its workers (the listening socket says nothing: children inherit it)."""
        todo = [self.tracks[p] for p in live if self.tracks[p].role == "process"
                and now - self.tracks[p].sockets_ns >= self.sockets_every_s * 1e9]
        if not todo:
            return
        if now - self._port_ns >= 200_000_000:
            self._port_inodes = procfs.port_connections(self.port)
            self._port_ns = now
        for tr in todo:
            tr.sockets_ns = now
            if self._port_inodes & procfs.socket_inodes(tr.pid):
                tr.role = "worker"

    def unread_holders(self) -> dict[int, int]:
        """pid -> bytes waiting in the receive queues of the server's
        connections that pid holds (only with a port)."""
        if not self.port:
            return {}
        queued = procfs.port_unread(self.port)
        if not queued:
            return {}
        out = {}
        for pid, tr in self.tracks.items():
            if tr.gone_ns:
                continue
            n = sum(queued.get(i, 0) for i in procfs.socket_inodes(pid))
            if n:
                out[pid] = n
        return out

    def _proc(self, tr: Track) -> dict:
        sc = tr.syscall
        return {"pid": tr.pid, "state": tr.state, "ppid": tr.ppid, "cpu_s": tr.run_ns / 1e9,
                "run_ns": tr.run_ns, "wait_ns": tr.wait_ns, "threads": tr.threads,
                "syscall": sc if tr.cond == "lock_wait" else None, "cond": tr.cond,
                "wchan": None}

    def slots(self) -> list[dict]:
        out = []
        for i, tr in enumerate(self.tracks.values()):
            role = self.roles.get(tr.pid) or tr.role
            out.append({"slot": i, "pid": tr.pid, "role": role,
                        "state": "dead" if tr.gone_ns else "alive",
                        "activity": tr.cond, "since_ns": tr.since_ns, "samples": tr.samples,
                        "requests": tr.served, "threads": tr.threads, "mapping": tr.mapping,
                        "lock_waiting": -1, "lock_held": -1, "ok": True, "exit_signal": 0,
                        "exit_code": -1 if tr.gone_ns else 0, "exit_ns": tr.gone_ns})
        return out


def _descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []
