"""Forked test children that are always reaped (bounded waits, killed on timeout)."""
import os
import signal
import sys
import time
import traceback


class Children:
    """Fork children; on exit, kill and reap whatever is still running."""

    def __init__(self):
        self.pids: list[int] = []

    def fork(self, fn, *args) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                r = fn(*args)
                code = 0 if r is None else int(r)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.pids.append(pid)
        return pid

    def wait(self, timeout: float = 60.0) -> dict[int, int | str]:
        """Exit codes by pid; 'timeout' for a child that had to be killed."""
        codes: dict[int, int | str] = {}
        deadline = time.monotonic() + timeout
        pending = list(self.pids)
        while pending:
            for pid in list(pending):
                r, st = os.waitpid(pid, os.WNOHANG)
                if r:
                    codes[pid] = os.waitstatus_to_exitcode(st)
                    pending.remove(pid)
                    self.pids.remove(pid)
            if not pending:
                break
            if time.monotonic() > deadline:
                for pid in pending:
                    codes[pid] = "timeout"
                self.kill_all()
                break
            time.sleep(0.005)
        return codes

    def kill_all(self):
        for pid in list(self.pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            self.pids.remove(pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill_all()
        return False
