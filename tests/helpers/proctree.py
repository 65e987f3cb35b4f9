"""A process tree in known conditions, for the foreign watchdog's tests.

    python proctree.py ROLE [ROLE ...]

The process started waits in waitpid (idle, like a server's main process)
and forks one child per ROLE:
  lost    futex wait with FUTEX_PRIVATE_FLAG on a MAP_SHARED page (lost wake-up)
  shared  futex wait without the flag on the same page (woken only by a peer)
  heap    private futex wait on its own heap (a lock inherited locked)
  spin    sched_yield in a loop, no other system call
  idle    sleeps (a timer process)
  io      writes to /dev/null every 10 ms (a process that serves)
Every child dies with the parent (PR_SET_PDEATHSIG) and after 60 s at most.
"""
import ctypes
import mmap
import os
import signal
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
page = mmap.mmap(-1, 4096, mmap.MAP_SHARED)
word = ctypes.addressof((ctypes.c_int * 1).from_buffer(page))


def futex_wait(addr: int, op: int) -> None:
    libc.syscall(202, ctypes.c_void_p(addr), op, 0, None, None, ctypes.c_uint(0xFFFFFFFF))


def child(role: str) -> None:
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.alarm(60)
    end = time.monotonic() + 60
    if role == "lost":
        futex_wait(word, 128 | 9)
    elif role == "shared":
        futex_wait(word, 9)
    elif role == "heap":
        own = (ctypes.c_int * 1)()
        futex_wait(ctypes.addressof(own), 128)
    elif role == "spin":
        while time.monotonic() < end:
            os.sched_yield()
    elif role == "io":
        with open("/dev/null", "w") as f:
            while time.monotonic() < end:
                f.write("x")
                f.flush()
                time.sleep(0.01)
    else:
        time.sleep(60)
    os._exit(0)


def main() -> None:
    signal.alarm(60)
    pids = []
    for role in sys.argv[1:]:
        pid = os.fork()
        if pid == 0:
            child(role)
        pids.append(pid)
    print(" ".join(map(str, pids)), flush=True)
    for _ in pids:
        try:
            os.wait()
        except ChildProcessError:
            break


if __name__ == "__main__":
    main()
