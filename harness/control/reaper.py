"""Process lifetimes: the kernel's guards (prctl) and killing a whole tree safely.

- `set_subreaper()`: orphans of our descendants (a server that double-forks, a
  child that calls setsid()) are re-parented to us, not to init, so they stay
  in our tree and are found and killed.
- `set_pdeathsig(sig)`: the kernel sends `sig` when our parent dies, even by
  SIGKILL (a backstop: the keeper also watches a pipe).
- `kill_tree(procs)`: SIGTERM, a grace, then SIGKILL, through psutil
  `Process` objects, which remember each process's create_time: a pid that
  was reused by an unrelated process is never signalled.
- `run_bounded(cmd)`: a command through /bin/sh with a time limit that kills
  the command's whole tree on timeout, not only the shell.

The process tree and the kills use psutil; nothing here walks /proc by hand.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time

import psutil

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_libc = None


def _prctl(option: int, arg: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl({option}): {os.strerror(e)}")


def set_subreaper() -> None:
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_pdeathsig(sig: int = signal.SIGKILL) -> None:
    _prctl(PR_SET_PDEATHSIG, int(sig))


def die_with_parent() -> None:
    """preexec_fn for a child that must not outlive the process that started it."""
    set_pdeathsig(signal.SIGKILL)


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of pid (not pid itself), zombies left out."""
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return [p for p in kids if alive(p)]


def descendants_direct(pid: int) -> list[psutil.Process]:
    """pid's own live children (a subreaper's include the orphans it adopted)."""
    try:
        return [p for p in psutil.Process(pid).children() if alive(p)]
    except psutil.Error:
        return []


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_all(procs: list[psutil.Process], sig: int) -> None:
    for p in procs:
        try:
            p.send_signal(sig)            # checks create_time first: never a reused pid
        except psutil.Error:
            pass


def kill_tree(procs: list[psutil.Process], grace: float, more=lambda: [],
              reap=lambda: None, hard: float = 5.0) -> list[psutil.Process]:
    """SIGTERM every process in procs, wait up to `grace` s, then SIGKILL what
    is left (and whatever `more()` finds that was forked meanwhile); `reap()`
    is called while waiting (a subreaper's zombies).  Returns what survived."""
    signal_all(procs, signal.SIGTERM)
    left = _wait_gone(procs, grace, more, reap)
    left = _merge(left, more())
    signal_all(left, signal.SIGKILL)
    return _wait_gone(left, hard, lambda: [], reap, kill_new=True)


def _merge(a: list, b: list) -> list:
    seen = {p.pid for p in a}
    return a + [p for p in b if p.pid not in seen]


def _wait_gone(procs, timeout, more, reap, kill_new=False):
    deadline = time.monotonic() + timeout
    while True:
        reap()
        procs = [p for p in procs if alive(p)]
        new = [p for p in more() if p.pid not in {q.pid for q in procs}]
        if kill_new and new:
            signal_all(new, signal.SIGKILL)
        procs += new
        if not procs or time.monotonic() >= deadline:
            return procs
        time.sleep(0.02)


def run_bounded(cmd: str, timeout: float) -> tuple[int | None, str, str]:
    """`/bin/sh -c cmd` in its own session, dying with us, its output captured;
    on timeout its whole tree is killed.  (rc or None on timeout, stdout, stderr)."""
    p = subprocess.Popen(["/bin/sh", "-c", cmd], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True, preexec_fn=die_with_parent)
    try:
        shell = psutil.Process(p.pid)
    except psutil.Error:
        shell = None
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        rc = None
    if rc is None or descendants(p.pid) or _group_alive(p.pid):
        tree = ([shell] if shell else []) + descendants(p.pid)
        kill_tree(tree, 0.2, more=lambda: descendants(p.pid))
        _killpg(p.pid)
        try:
            out, err = p.communicate(timeout=2)
        except subprocess.TimeoutExpired:     # a grandchild that escaped holds the pipes
            out, err = b"", b""
            for f in (p.stdout, p.stderr):
                f.close()
            p.wait(2)
    return rc, out.decode(errors="replace"), err.decode(errors="replace")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
