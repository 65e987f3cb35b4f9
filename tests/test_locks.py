"""Application locks in shared memory (native_shim/src/lock.c).

Every forked child ends with os._exit and is reaped with a timeout; a child
still running at the deadline is killed (SIGKILL) and reaped."""
from __future__ import annotations

import errno
import os
import time

import pytest

from harness._native._tlsh_core import ffi, lib

FLAVORS = {"spin": lib.TLSH_LOCK_SPIN, "futex": lib.TLSH_LOCK_FUTEX,
           "robust": lib.TLSH_LOCK_ROBUST}
MAP = 4096
NPROC, NITER = 4, 20000


from forked import Children  # noqa: E402


class Shared:
    """A MAP_SHARED page: the lock at offset 0, uint64 cells from offset 1024."""

    def __init__(self):
        self.mem = lib.tlsh_shared_map(MAP)
        assert self.mem != ffi.NULL
        self.lock = ffi.cast("tlsh_lock *", self.mem)
        assert ffi.sizeof("tlsh_lock") <= 1024
        self.cell = ffi.cast("uint64_t *", ffi.cast("char *", self.mem) + 1024)

    def close(self):
        lib.tlsh_shared_unmap(self.mem, MAP)


@pytest.fixture
def shm():
    s = Shared()
    yield s
    s.close()


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_flavor_names_and_bad_flavor(shm):
    assert ffi.string(lib.tlsh_lock_flavor_name(lib.TLSH_LOCK_SPIN)) == b"spin"
    assert ffi.string(lib.tlsh_lock_flavor_name(lib.TLSH_LOCK_FUTEX)) == b"futex"
    assert ffi.string(lib.tlsh_lock_flavor_name(lib.TLSH_LOCK_ROBUST)) == b"robust"
    assert ffi.string(lib.tlsh_lock_flavor_name(7)) == b"unknown"
    assert ffi.string(lib.tlsh_lock_flavor_name(-1)) == b"unknown"
    assert lib.tlsh_lock_init(shm.lock, 3, 0) == errno.EINVAL
    assert lib.tlsh_lock_init(shm.lock, -1, 0) == errno.EINVAL


@pytest.mark.parametrize("flavor", FLAVORS)
def test_single_process_state(shm, flavor):
    l = shm.lock
    assert lib.tlsh_lock_init(l, FLAVORS[flavor], 42) == 0
    assert (l.flavor, l.id, l.holder_pid, l.acquisitions, l.owner_died) == \
        (FLAVORS[flavor], 42, 0, 0, 0)
    assert lib.tlsh_lock_get(l) == 0
    assert l.holder_pid == os.getpid() and l.acquisitions == 1
    lib.tlsh_lock_release(l)
    assert l.holder_pid == 0
    assert lib.tlsh_lock_try(l) == 0
    assert l.holder_pid == os.getpid() and l.acquisitions == 2
    lib.tlsh_lock_release(l)
    assert l.holder_pid == 0
    lib.tlsh_lock_destroy(l)


def _count(l, cell, n):
    for _ in range(n):
        rc = lib.tlsh_lock_get(l)
        if rc != 0:
            return 10 + rc
        if l.holder_pid != os.getpid():
            return 3
        v = cell[0]        # non-atomic read-modify-write, widened by a yield
        if v % 64 == 0:
            os.sched_yield()
        cell[0] = v + 1
        lib.tlsh_lock_release(l)
    return 0


@pytest.mark.parametrize("flavor", FLAVORS)
def test_mutual_exclusion_four_processes(shm, flavor):
    assert lib.tlsh_lock_init(shm.lock, FLAVORS[flavor], 1) == 0
    shm.cell[0] = 0
    with Children() as ch:
        pids = [ch.fork(_count, shm.lock, shm.cell, NITER) for _ in range(NPROC)]
        assert ch.wait(120) == {pid: 0 for pid in pids}
    assert shm.cell[0] == NPROC * NITER
    assert shm.lock.acquisitions == NPROC * NITER
    assert shm.lock.holder_pid == 0
    assert shm.lock.owner_died == 0
    assert lib.tlsh_lock_try(shm.lock) == 0  # left free
    lib.tlsh_lock_release(shm.lock)
    lib.tlsh_lock_destroy(shm.lock)


def test_counter_without_lock_loses_updates(shm):
    """Control: the same counting without the lock must lose updates, which
    shows that the mutual-exclusion test above is able to fail."""
    shm.cell[0] = 0

    def racer():
        c = shm.cell
        for _ in range(NITER):
            v = c[0]
            if v % 64 == 0:
                os.sched_yield()
            c[0] = v + 1

    with Children() as ch:
        pids = [ch.fork(racer) for _ in range(NPROC)]
        assert ch.wait(120) == {pid: 0 for pid in pids}
    if shm.cell[0] == NPROC * NITER:
        pytest.skip("no lost update observed without a lock (race did not trigger)")
    assert shm.cell[0] < NPROC * NITER


@pytest.mark.parametrize("flavor", FLAVORS)
def test_try_busy_while_held_by_parent(shm, flavor):
    l = shm.lock
    assert lib.tlsh_lock_init(l, FLAVORS[flavor], 2) == 0
    assert lib.tlsh_lock_get(l) == 0

    def child():
        if lib.tlsh_lock_try(l) != errno.EBUSY:
            return 2
        if l.holder_pid != os.getppid():
            return 3
        return 0

    with Children() as ch:
        pid = ch.fork(child)
        assert ch.wait(30) == {pid: 0}
    assert l.holder_pid == os.getpid()
    lib.tlsh_lock_release(l)
    lib.tlsh_lock_destroy(l)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_try_busy_while_held_by_child(shm, flavor):
    l = shm.lock
    assert lib.tlsh_lock_init(l, FLAVORS[flavor], 3) == 0
    flags = shm.cell  # [1]: child holds, [2]: parent done, child may release
    flags[1] = flags[2] = 0

    def child():
        if lib.tlsh_lock_get(l) != 0:
            return 2
        flags[1] = 1
        if not wait_for(lambda: flags[2] == 1):
            return 3
        lib.tlsh_lock_release(l)
        return 0

    with Children() as ch:
        pid = ch.fork(child)
        try:
            assert wait_for(lambda: flags[1] == 1), "child never took the lock"
            assert l.holder_pid == pid
            assert lib.tlsh_lock_try(l) == errno.EBUSY
            assert lib.tlsh_lock_try(l) == errno.EBUSY
        finally:
            flags[2] = 1
        assert ch.wait(30) == {pid: 0}
    assert l.holder_pid == 0
    assert lib.tlsh_lock_get(l) == 0  # blocking get works once released
    assert l.holder_pid == os.getpid()
    lib.tlsh_lock_release(l)
    assert l.acquisitions == 2
    lib.tlsh_lock_destroy(l)


def test_robust_owner_died(shm):
    l = shm.lock
    assert lib.tlsh_lock_init(l, lib.TLSH_LOCK_ROBUST, 4) == 0

    def child():
        if lib.tlsh_lock_get(l) != 0:
            return 2
        os._exit(0)  # dies holding the lock

    with Children() as ch:
        pid = ch.fork(child)
        assert ch.wait(30) == {pid: 0}
    assert l.holder_pid == pid  # stale: published by the dead owner
    assert lib.tlsh_lock_get(l) == 1  # owner died, made consistent, taken
    assert l.owner_died == 1
    assert l.holder_pid == os.getpid()
    lib.tlsh_lock_release(l)
    assert l.holder_pid == 0
    # works normally afterwards, from this and another process
    assert lib.tlsh_lock_get(l) == 0
    lib.tlsh_lock_release(l)

    def child2():
        if lib.tlsh_lock_try(l) != 0:
            return 2
        lib.tlsh_lock_release(l)
        return 0

    with Children() as ch:
        pid = ch.fork(child2)
        assert ch.wait(30) == {pid: 0}
    assert l.owner_died == 1
    assert l.acquisitions == 4
    lib.tlsh_lock_destroy(l)


def test_robust_owner_died_seen_by_try(shm):
    l = shm.lock
    assert lib.tlsh_lock_init(l, lib.TLSH_LOCK_ROBUST, 5) == 0
    with Children() as ch:
        pid = ch.fork(lambda: lib.tlsh_lock_get(l))  # exits holding it
        assert ch.wait(30) == {pid: 0}
    assert lib.tlsh_lock_try(l) == 0  # taken (made consistent)
    assert l.owner_died == 1 and l.holder_pid == os.getpid()
    lib.tlsh_lock_release(l)
    assert lib.tlsh_lock_try(l) == 0
    lib.tlsh_lock_release(l)
    lib.tlsh_lock_destroy(l)
