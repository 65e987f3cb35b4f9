"""The keeper: a small process between the controller and a server it did
not build (`target cmd`, `target kamailio`).

    python -m harness.control.keeper --guard FD --parent PID --status FILE
           --log FILE [--cap BYTES] [--grace S] [--cwd DIR] -- COMMAND...

Spawned fresh by the controller (never forked from it), it

- makes itself a child subreaper, so that a server that daemonizes (double
  fork) or a child that calls setsid() stays its descendant;
- starts the server in its own session and process group, its stdout and
  stderr on a pipe that the keeper drains into the log, capped: the first
  half of the cap is kept, then a rolling tail of the other half, with a
  marker line saying how many bytes were dropped in between;
- notices the controller's death by any signal: the guard pipe, whose write
  end only the controller holds, reaches EOF (PR_SET_PDEATHSIG=SIGTERM is
  the backstop); it then kills every descendant (SIGTERM, 1 s, SIGKILL);
- on SIGTERM from the controller (an ordinary stop) writes a stop marker
  into the log, sends SIGTERM to its direct children (the server leader, or
  the daemons it adopted) so that the server shuts down in its own order,
  and after --grace seconds kills whatever is left;
- reaps every zombie it inherits, and writes what it knows (the server's
  pid, the leader's exit status, bytes logged and dropped) to --status.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time

from harness.control import reaper

F_SETPIPE_SZ = 1031
STOP_MARKER = b"[tlsharness keeper: stopping the server]"
DROP_MARKER = "[tlsharness keeper: {n} bytes of output dropped here; the first {h} and the last {t} bytes are kept]"


class CappedLog:
    """A log file that keeps its first `head` bytes on disk as they come and
    the last `tail` bytes in memory, written out at close()."""

    def __init__(self, path: str, cap: int):
        self.f = open(path, "wb")
        self.head, self.tail = cap // 2, cap - cap // 2
        self.written = self.dropped = 0
        self.ring = bytearray()             # the tail, up to twice its size before a cut

    @property
    def ring_len(self) -> int:
        return len(self.ring)

    def write(self, data: bytes) -> None:
        room = self.head - self.written
        if room > 0:
            self.f.write(data[:room])
            self.f.flush()
            self.written += min(room, len(data))
            data = data[room:]
        if not data:
            return
        self.ring += data
        if len(self.ring) > 2 * self.tail:
            cut = len(self.ring) - self.tail
            del self.ring[:cut]
            self.dropped += cut

    def close(self) -> None:
        if len(self.ring) > self.tail:
            cut = len(self.ring) - self.tail
            del self.ring[:cut]
            self.dropped += cut
        if self.dropped:
            line = DROP_MARKER.format(n=self.dropped, h=self.head, t=self.tail)
            self.f.write(b"\n" + line.encode() + b"\n")
        self.f.write(self.ring)
        self.f.close()
        self.ring = bytearray()


class Keeper:
    def __init__(self, a):
        self.a = a
        self.status = {"keeper_pid": os.getpid(), "server_pid": None, "server_exit": None,
                       "error": None, "stopped_by": None, "log_bytes": 0, "log_dropped": 0,
                       "left": None}
        self.log = CappedLog(a.log, a.cap)
        self.out = None                      # read end of the server's output pipe
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.stop_sig: int | None = None

    def write_status(self) -> None:
        self.status.update(log_bytes=self.log.written + self.log.ring_len + self.log.dropped,
                           log_dropped=self.log.dropped)
        tmp = self.a.status + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.status, f)
        os.replace(tmp, self.a.status)

    def on_signal(self, signum, frame) -> None:
        self.stop_sig = self.stop_sig or signum
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def start(self) -> bool:
        r, w = os.pipe()
        try:
            p = subprocess.Popen(self.a.command, stdin=subprocess.DEVNULL, stdout=w, stderr=w,
                                 start_new_session=True, cwd=self.a.cwd,
                                 preexec_fn=reaper.die_with_parent)
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            os.close(r)
            os.close(w)
            self.status["error"] = f"cannot start {self.a.command[0]}: {e}"
            self.write_status()
            return False
        os.close(w)
        try:
            fcntl.fcntl(r, F_SETPIPE_SZ, 1 << 20)    # fewer, larger reads under a flood
        except OSError:
            pass
        self.out, self.server = r, p
        self.status["server_pid"] = p.pid
        self.write_status()
        return True

    def reap(self) -> None:
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.status["server_pid"]:
                self.status["server_exit"] = (os.waitstatus_to_exitcode(st))
                self.write_status()

    def drain(self, timeout: float) -> None:
        fds = [self.wake_r, self.a.guard] + ([self.out] if self.out is not None else [])
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        if self.out in ready:
            data = os.read(self.out, 1 << 20)
            if data:
                self.log.write(data)
            else:
                os.close(self.out)
                self.out = None
        if self.a.guard in ready and not os.read(self.a.guard, 64):
            self.stop_sig = self.stop_sig or "controller gone"
        if self.wake_r in ready:
            os.read(self.wake_r, 64)

    def run(self) -> int:
        if not self.start():
            return 3
        while self.stop_sig is None:
            self.drain(0.5)
            self.reap()
        self.stop()
        return 0

    def stop(self) -> None:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        polite = self.stop_sig == signal.SIGTERM and os.getppid() == self.a.parent
        self.status["stopped_by"] = "controller" if polite else str(self.stop_sig)
        self.log.write(b"\n" + STOP_MARKER + b"\n")
        mine = os.getpid()
        if polite:                           # the server's own shutdown first
            top = reaper.descendants_direct(mine)
            reaper.signal_all(top, signal.SIGTERM)
            self.wait_gone(top, self.a.grace)
        left = reaper.kill_tree(reaper.descendants(mine), 1.0,
                                more=lambda: reaper.descendants(mine), reap=self.pump)
        self.status["left"] = [p.pid for p in left]
        deadline = time.monotonic() + 1.0     # the last output, unless something escaped
        while self.out is not None and time.monotonic() < deadline:
            self.drain(0.1)
        self.reap()
        self.log.close()
        self.write_status()

    def pump(self) -> None:
        self.drain(0)
        self.reap()

    def wait_gone(self, procs: list, grace: float) -> None:
        """Until the processes told to stop have gone (the rest of the tree is
        killed after), or the grace is over."""
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(reaper.alive(p) for p in procs):
            self.drain(0.05)
            self.reap()


def parse(argv):
    ap = argparse.ArgumentParser(prog="harness.control.keeper")
    ap.add_argument("--guard", type=int, required=True)
    ap.add_argument("--parent", type=int, required=True)
    ap.add_argument("--status", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--cap", type=int, default=16 << 20)
    ap.add_argument("--grace", type=float, default=5.0)
    ap.add_argument("--cwd", default=None)
    ap.add_argument("command", nargs="+")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    reaper.set_subreaper()
    k = Keeper(a)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, k.on_signal)
    reaper.set_pdeathsig(signal.SIGTERM)
    if os.getppid() != a.parent:             # the controller died before the guard was set
        k.stop_sig = "controller gone"
    if k.stop_sig is not None:
        k.write_status()
        return 0
    return k.run()


if __name__ == "__main__":
    sys.exit(main())
