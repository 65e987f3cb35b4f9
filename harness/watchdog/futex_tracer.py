"""The kernel event source: Debian's bpftrace, run as a child process.

bpftrace attaches to tracepoint:syscalls:sys_enter_futex / sys_exit_futex and
prints one line per PRIVATE futex wait, wait return and wake that woke
nobody, for the watched processes only: a BPF hash map of pids, filled in
the kernel from the seeds (a foreign server's pids) and from
sched_process_fork (every process forked after the probes are attached by
a watched one, or by the `parent` pid: the controller, so the stand and its
workers are in it from their fork on).  The test in the kernel is one map
lookup per futex call, whatever the number of workers.

Where BPF cannot be loaded (TLSH_NO_BPF=1, not root, no BTF, no tracefs,
no bpftrace, bpftrace refused: a seccomp profile, a locked-down kernel) the
source says why once, and the watchdog works from /proc alone.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
import time

from harness.watchdog.futex_events import Pairing

ENV_OFF = "TLSH_NO_BPF"
BTF = "/sys/kernel/btf/vmlinux"
TRACEFS = "/sys/kernel/tracing"
READY_S = 20.0

PROBES = r"""
tracepoint:sched:sched_process_fork /@w[pid]%(parent)s/ { @w[args->child_pid] = 1; }
tracepoint:sched:sched_process_exit /@w[tid]/ { delete(@w[tid]); }
tracepoint:syscalls:sys_enter_futex /@w[pid] && (args->op & 128) &&
  ((args->op & 127) <= 1 || (args->op & 127) == 9 || (args->op & 127) == 10)/ {
  @ua[tid] = (uint64)args->uaddr; @op[tid] = args->op;
  if ((args->op & 127) == 0 || (args->op & 127) == 9) {
    printf("W %%d %%d %%llu %%d %%llx\n", pid, tid, nsecs, args->op, (uint64)args->uaddr);
  }
}
tracepoint:syscalls:sys_exit_futex /@op[tid]/ {
  $c = @op[tid] & 127;
  if ($c == 1 || $c == 10) {
    if (args->ret == 0) {
      printf("K %%d %%d %%llu %%d %%llx 0\n", pid, tid, nsecs, @op[tid], @ua[tid]);
    }
  } else {
    printf("X %%d %%d %%llu %%d\n", pid, tid, nsecs, args->ret);
  }
  delete(@op[tid]); delete(@ua[tid]);
}
END { clear(@w); clear(@op); clear(@ua); }
"""


def script(seeds=(), parent: int | None = None) -> str:
    """The bpftrace program watching the seeds' trees (and the parent's new children)."""
    seed = " ".join(f"@w[{int(p)}] = 1;" for p in seeds)
    begin = "BEGIN { " + seed + ' printf("R\\n"); }\n'
    return begin + PROBES % {"parent": f" || pid == {int(parent)}" if parent else ""}


def _tracefs() -> str | None:
    """None when tracefs is there (mounted by us if root and it was not); else why not."""
    if os.path.exists(os.path.join(TRACEFS, "events")):
        return None
    if os.geteuid() != 0:
        return f"tracefs is not mounted at {TRACEFS} (and mounting it needs root)"
    r = subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], capture_output=True,
                       text=True, timeout=10)
    if r.returncode != 0 or not os.path.exists(os.path.join(TRACEFS, "events")):
        return f"cannot mount tracefs at {TRACEFS}: {(r.stderr or '').strip() or r.returncode}"
    return None


def unavailable() -> str | None:
    """Why the kernel source cannot run here (None: it may)."""
    if os.environ.get(ENV_OFF, "") not in ("", "0"):
        return f"{ENV_OFF}={os.environ[ENV_OFF]} forces the /proc fallback"
    if os.geteuid() != 0:
        return "not root: loading BPF programs needs CAP_BPF and CAP_PERFMON"
    if not os.path.exists(BTF):
        return f"the kernel has no BTF ({BTF} missing)"
    if not shutil.which("bpftrace"):
        return "bpftrace is not installed (tools/system-deps.sh installs it)"
    return _tracefs()


def _die_with_parent():
    try:
        ctypes.CDLL(None).prctl(1, 9)        # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass


class Tracer:
    """One bpftrace child and the pairing of its events; `source` is 'kernel'
    when it runs, 'proc' (with `reason`) when it could not be started."""

    def __init__(self, base_ns: int = 0):
        self.source, self.reason = "proc", "not started"
        self.pairing = Pairing(base_ns=base_ns)
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None
        self.err = ""
        self.ready = threading.Event()

    def start(self, seeds=(), parent: int | None = None) -> bool:
        why = unavailable()
        if why:
            self.reason = why
            return False
        try:
            self.proc = subprocess.Popen(["bpftrace", "-B", "line", "-e", script(seeds, parent)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as e:
            self.reason = f"bpftrace could not be started: {e}"
            return False
        threading.Thread(target=self._read_err, args=(self.proc.stderr,), daemon=True).start()
        self.thread = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + READY_S      # "Attaching N probes...", then BEGIN's R
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                time.sleep(0.05)                  # the stderr reader's last lines
                self.reason = "bpftrace could not attach its probes: " + (
                    self.err or ("no reply in %g s" % READY_S))
                return False
        self.source, self.reason = "kernel", ""
        return True

    def _read_err(self, stream) -> None:
        for line in stream:
            line = line.strip()
            if line and "RLIMIT_MEMLOCK" not in line and not self.err:
                self.err = line[:200]

    def _read(self, stream) -> None:
        feed = self.pairing.feed
        for line in stream:
            p = line.split()
            try:
                if p == ["R"]:
                    self.ready.set()
                elif p[0] in ("W", "K") and len(p) >= 6:
                    ev = (p[0], int(p[1]), int(p[2]), int(p[3]), int(p[4]), int(p[5], 16))
                    feed(ev + ((int(p[6]),) if p[0] == "K" else ()))
                elif p[0] == "X" and len(p) == 5:
                    feed(("X", int(p[1]), int(p[2]), int(p[3]), int(p[4])))
            except (ValueError, IndexError):
                continue                              # the maps printed at exit, blank lines

    def current(self, now_ns: int) -> list[dict]:
        return self.pairing.current(now_ns) if self.source == "kernel" else []

    def lines(self) -> list[str]:
        return self.pairing.lines()

    def outcome(self) -> dict:
        return {"evidence_source": self.source,
                "evidence_source_reason": self.reason or None}

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        try:
            os.kill(p.pid, 15)                        # bpftrace detaches its probes on SIGTERM
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, 9)
            p.wait(timeout=5)
        except ProcessLookupError:
            pass
