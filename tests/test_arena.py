"""Shared-memory arena allocator (native_shim/src/arena.c).

Every forked child ends with os._exit and is reaped with a timeout; a child
still running at the deadline is killed (SIGKILL) and reaped."""
from __future__ import annotations

import os
import random

import pytest

from harness._native._tlsh_core import ffi, lib

MiB = 1 << 20
ALIGN = 16
HDR = 16


# ---------------------------------------------------------------- helpers

from forked import Children  # noqa: E402


@pytest.fixture
def arena():
    a = lib.tlsh_arena_create(64 * MiB)
    assert a != ffi.NULL
    yield a
    lib.tlsh_arena_destroy(a)


def stats(a):
    s = ffi.new("struct tlsh_arena_stats *")
    lib.tlsh_arena_get_stats(a, s)
    return s


def events(a, n=lib.TLSH_ARENA_MAX_EVENTS):
    buf = ffi.new("struct tlsh_arena_event[]", n)
    k = lib.tlsh_arena_get_events(a, buf, n)
    return [buf[i] for i in range(k)]


def addr(p) -> int:
    return int(ffi.cast("uintptr_t", p))


def fill(p, n, tag: int):
    """Write a pattern identifying (tag) over the n bytes of p."""
    pat = tag.to_bytes(8, "little")
    ffi.memmove(p, (pat * (n // 8 + 1))[:n], n)


def check(p, n, tag: int) -> bool:
    pat = tag.to_bytes(8, "little")
    return ffi.buffer(p, n)[:] == (pat * (n // 8 + 1))[:n]


# ---------------------------------------------------------------- basics

def test_create_rejects_small_and_rounds_to_pages():
    assert lib.tlsh_arena_create(1000) == ffi.NULL
    assert lib.tlsh_arena_create(MiB - 1) == ffi.NULL
    a = lib.tlsh_arena_create(MiB + 1)
    assert a != ffi.NULL
    try:
        page = os.sysconf("SC_PAGESIZE")
        size = lib.tlsh_arena_size(a)
        assert size % page == 0 and MiB + 1 <= size < MiB + 1 + page
        assert stats(a).size == size
        assert lib.tlsh_arena_base(a) == addr(a)
        assert lib.tlsh_arena_contains(a, a)
        assert not lib.tlsh_arena_contains(a, ffi.cast("void *", addr(a) + size))
        assert not lib.tlsh_arena_contains(a, ffi.cast("void *", addr(a) - 1))
    finally:
        lib.tlsh_arena_destroy(a)


def test_alignment_and_bounded_waste(arena):
    sizes = list(range(1, 2100)) + list(range(2100, 70001, 97)) + [4095, 4096, 4097,
                                                                  65535, 65536, 65537, 70000]
    live = []
    for n in sizes:
        before = stats(arena).in_use
        p = lib.tlsh_arena_malloc(arena, n)
        assert p != ffi.NULL, n
        cap = stats(arena).in_use - before
        assert addr(p) % ALIGN == 0, (n, hex(addr(p)))
        assert lib.tlsh_arena_contains(arena, p)
        assert lib.tlsh_arena_contains(arena, ffi.cast("char *", p) + n - 1)
        # capacity covers the request; waste bounded (16-byte steps, then <= 25%)
        assert cap >= n + HDR, (n, cap)
        assert cap <= HDR + max(((n + 15) // 16) * 16, n + n // 4 + 16), (n, cap)
        fill(p, n, n)
        live.append((p, n))
        if len(live) >= 200:
            for q, m in live:
                assert check(q, m, m), m
                lib.tlsh_arena_free(arena, q)
            live.clear()
    for q, m in live:
        assert check(q, m, m), m
        lib.tlsh_arena_free(arena, q)
    s = stats(arena)
    assert s.in_use == 0 and s.requested == 0
    assert s.n_alloc == s.n_free == len(sizes)
    assert s.n_fail == s.n_double_free == s.n_wild_free == s.n_events == 0


def test_malloc_zero_is_a_distinct_live_block(arena):
    p = lib.tlsh_arena_malloc(arena, 0)
    q = lib.tlsh_arena_malloc(arena, 0)
    assert p != ffi.NULL and q != ffi.NULL and p != q
    lib.tlsh_arena_free(arena, p)
    lib.tlsh_arena_free(arena, q)
    assert stats(arena).n_double_free == 0 and stats(arena).n_wild_free == 0


def test_free_then_malloc_reuses_block(arena):
    for n in (1, 16, 100, 1024, 1025, 5000, 70000, 3 * MiB):
        p = lib.tlsh_arena_malloc(arena, n)
        assert p != ffi.NULL
        lib.tlsh_arena_free(arena, p)
        q = lib.tlsh_arena_malloc(arena, n)
        assert q == p, n
        lib.tlsh_arena_free(arena, q)


def test_free_null_is_noop(arena):
    before = stats(arena)
    lib.tlsh_arena_free(arena, ffi.NULL)
    after = stats(arena)
    assert (after.n_free, after.n_wild_free, after.n_events) == (before.n_free, 0, 0)


def test_calloc_zeroes_reused_memory(arena):
    p = lib.tlsh_arena_malloc(arena, 4000)
    ffi.memmove(p, b"\xff" * 4000, 4000)
    lib.tlsh_arena_free(arena, p)
    q = lib.tlsh_arena_calloc(arena, 40, 100)
    assert q == p  # same class: the dirty block is reused and must be zeroed
    assert ffi.buffer(q, 4000)[:] == bytes(4000)
    lib.tlsh_arena_free(arena, q)


def test_calloc_overflow_fails(arena):
    assert lib.tlsh_arena_calloc(arena, 1 << 62, 8) == ffi.NULL
    s = stats(arena)
    assert s.n_fail == 1
    assert events(arena)[-1].kind == lib.TLSH_EV_OUT_OF_MEMORY


def test_realloc(arena):
    # NULL -> malloc
    p = lib.tlsh_arena_realloc(arena, ffi.NULL, 100)
    assert p != ffi.NULL
    fill(p, 100, 0xABCDEF)
    # within capacity: same pointer, requested tracked
    q = lib.tlsh_arena_realloc(arena, p, 110)
    assert q == p
    assert stats(arena).requested == 110
    assert check(q, 100, 0xABCDEF)
    # grow: data kept, old block freed
    r = lib.tlsh_arena_realloc(arena, q, 50000)
    assert r != ffi.NULL and r != q
    assert check(r, 100, 0xABCDEF)
    s = stats(arena)
    assert s.n_alloc - s.n_free == 1 and s.requested == 50000
    # shrink: same block, data kept
    t = lib.tlsh_arena_realloc(arena, r, 10)
    assert t == r and check(t, 10, 0xABCDEF)
    # realloc(p, 0) frees and returns NULL
    assert lib.tlsh_arena_realloc(arena, t, 0) == ffi.NULL
    s = stats(arena)
    assert s.n_alloc == s.n_free and s.in_use == 0 and s.requested == 0
    assert s.n_events == 0


def test_realloc_of_non_live_pointer(arena):
    p = lib.tlsh_arena_malloc(arena, 64)
    lib.tlsh_arena_free(arena, p)
    assert lib.tlsh_arena_realloc(arena, p, 128) == ffi.NULL
    outside = ffi.new("char[64]")
    assert lib.tlsh_arena_realloc(arena, outside, 128) == ffi.NULL
    ev = events(arena)
    assert [e.kind for e in ev] == [lib.TLSH_EV_BAD_REALLOC] * 2
    assert ev[0].inside == 1 and ev[0].offset == addr(p) - addr(arena)
    assert ev[1].inside == 0 and ev[1].offset == addr(outside)
    s = stats(arena)
    assert s.n_alloc == 1 and s.n_free == 1  # nothing allocated or freed


def test_stats_in_use_peak_and_baseline(arena):
    base = stats(arena)
    assert base.in_use == 0 and base.peak == 0
    ptrs = [lib.tlsh_arena_malloc(arena, n) for n in range(1, 3000, 13)]
    s = stats(arena)
    assert s.requested == sum(range(1, 3000, 13))
    assert s.in_use >= s.requested + HDR * len(ptrs)
    assert s.peak >= s.in_use
    high = s.in_use
    for p in ptrs[::2]:
        lib.tlsh_arena_free(arena, p)
    s = stats(arena)
    assert 0 < s.in_use < high and s.peak == high
    for p in ptrs[1::2]:
        lib.tlsh_arena_free(arena, p)
    s = stats(arena)
    assert s.in_use == 0 and s.requested == 0 and s.peak == high
    assert s.n_alloc == s.n_free == len(ptrs)


# ---------------------------------------------------------------- bad frees

def test_double_free_detected_and_arena_survives(arena):
    p = lib.tlsh_arena_malloc(arena, 64)
    lib.tlsh_arena_free(arena, p)
    lib.tlsh_arena_free(arena, p)  # double free
    s = stats(arena)
    assert s.n_double_free == 1 and s.n_free == 1 and s.n_events == 1
    (e,) = events(arena)
    assert e.kind == lib.TLSH_EV_DOUBLE_FREE
    assert e.pid == os.getpid() and e.prev_pid == os.getpid()
    assert e.inside == 1 and e.offset == addr(p) - addr(arena)
    assert e.time_ns > 0
    # The block must be on the free list once only: two allocations of the
    # same class must be distinct and keep their contents.
    q1 = lib.tlsh_arena_malloc(arena, 64)
    q2 = lib.tlsh_arena_malloc(arena, 64)
    q3 = lib.tlsh_arena_malloc(arena, 64)
    assert len({addr(q1), addr(q2), addr(q3)}) == 3
    assert p in (q1, q2, q3)
    for i, q in enumerate((q1, q2, q3)):
        fill(q, 64, 1000 + i)
    for i, q in enumerate((q1, q2, q3)):
        assert check(q, 64, 1000 + i)
        lib.tlsh_arena_free(arena, q)
    s = stats(arena)
    assert s.in_use == 0 and s.n_double_free == 1 and s.n_wild_free == 0


def test_double_free_records_first_freeing_pid(arena):
    p = lib.tlsh_arena_malloc(arena, 300)
    with Children() as ch:
        child = ch.fork(lambda: lib.tlsh_arena_free(arena, p))
        assert ch.wait(30) == {child: 0}
    lib.tlsh_arena_free(arena, p)  # parent frees it again
    (e,) = events(arena)
    assert e.kind == lib.TLSH_EV_DOUBLE_FREE
    assert e.prev_pid == child and e.pid == os.getpid()
    assert stats(arena).n_double_free == 1


def test_wild_frees_detected(arena):
    live = lib.tlsh_arena_malloc(arena, 256)
    ffi.memmove(live, b"\xab" * 256, 256)
    outside = ffi.new("char[64]")
    wild = [
        outside,                                  # outside the arena
        ffi.cast("char *", live) + 1,             # inside, misaligned
        ffi.cast("char *", live) + 32,            # inside, aligned, garbage header
        ffi.cast("void *", addr(arena)),          # the arena's own header
        ffi.cast("void *", addr(arena) + lib.tlsh_arena_size(arena) - 16),  # beyond top
    ]
    for w in wild:
        lib.tlsh_arena_free(arena, w)
    s = stats(arena)
    assert s.n_wild_free == len(wild) and s.n_free == 0 and s.n_double_free == 0
    ev = events(arena)
    assert [e.kind for e in ev] == [lib.TLSH_EV_WILD_FREE] * len(wild)
    assert ev[0].inside == 0 and ev[0].offset == addr(outside)
    for e, w in zip(ev[1:], wild[1:]):
        assert e.inside == 1 and e.offset == addr(w) - addr(arena)
        assert e.pid == os.getpid()
    # the live block is untouched and still frees normally
    assert ffi.buffer(live, 256)[:] == b"\xab" * 256
    lib.tlsh_arena_free(arena, live)
    s = stats(arena)
    assert s.n_free == 1 and s.in_use == 0


def test_event_ring_keeps_last_events_oldest_first(arena):
    total = lib.TLSH_ARENA_MAX_EVENTS + 36
    for i in range(total):
        lib.tlsh_arena_free(arena, ffi.cast("void *", 0x1000 + 16 * i))
    s = stats(arena)
    assert s.n_events == total and s.n_wild_free == total
    ev = events(arena)
    assert len(ev) == lib.TLSH_ARENA_MAX_EVENTS
    first = total - lib.TLSH_ARENA_MAX_EVENTS
    assert [e.offset for e in ev] == [0x1000 + 16 * i for i in range(first, total)]
    assert all(ev[i].time_ns <= ev[i + 1].time_ns for i in range(len(ev) - 1))
    few = events(arena, 5)
    assert [e.offset for e in few] == [0x1000 + 16 * i for i in range(total - 5, total)]


# ---------------------------------------------------------------- out of memory

def test_out_of_memory():
    a = lib.tlsh_arena_create(MiB)
    assert a != ffi.NULL
    try:
        assert lib.tlsh_arena_malloc(a, 2 * MiB) == ffi.NULL
        s = stats(a)
        assert s.n_fail == 1 and s.n_alloc == 0
        (e,) = events(a)
        assert e.kind == lib.TLSH_EV_OUT_OF_MEMORY and e.pid == os.getpid()
        ptrs = []
        for _ in range(100):
            p = lib.tlsh_arena_malloc(a, 60000)
            if p == ffi.NULL:
                break
            ptrs.append(p)
        else:
            pytest.fail("1 MiB arena gave out 100 blocks of 60000 bytes")
        assert 10 <= len(ptrs) < 18
        assert stats(a).n_fail == 2
        # freeing makes room again
        lib.tlsh_arena_free(a, ptrs.pop())
        p = lib.tlsh_arena_malloc(a, 60000)
        assert p != ffi.NULL
        ptrs.append(p)
        for p in ptrs:
            lib.tlsh_arena_free(a, p)
        assert stats(a).in_use == 0
    finally:
        lib.tlsh_arena_destroy(a)


# ---------------------------------------------------------------- across processes

def test_child_frees_parent_block_and_parent_reuses_it(arena):
    p = lib.tlsh_arena_malloc(arena, 200)
    fill(p, 200, 77)

    def child():
        if not check(p, 200, 77):
            return 2
        lib.tlsh_arena_free(arena, p)
        return 0

    with Children() as ch:
        pid = ch.fork(child)
        assert ch.wait(30) == {pid: 0}
    s = stats(arena)
    assert s.n_free == 1 and s.in_use == 0 and s.n_events == 0
    assert lib.tlsh_arena_malloc(arena, 200) == p


def test_per_process_stats_slots(arena):
    nproc = 3

    def child(slot):
        lib.tlsh_arena_set_proc_slot(arena, slot)
        ptrs = [lib.tlsh_arena_malloc(arena, 32) for _ in range(10 + slot)]
        for q in ptrs[:slot + 1]:
            lib.tlsh_arena_free(arena, q)
        return 0

    # the parent has no slot: its own calls are not counted anywhere
    mine = lib.tlsh_arena_malloc(arena, 32)
    with Children() as ch:
        pids = [ch.fork(child, 5 + i) for i in range(nproc)]
        assert ch.wait(30) == {pid: 0 for pid in pids}
    lib.tlsh_arena_free(arena, mine)
    out = ffi.new("struct tlsh_arena_proc[]", lib.TLSH_ARENA_MAX_PROCS)
    n = lib.tlsh_arena_get_procs(arena, out, lib.TLSH_ARENA_MAX_PROCS)
    assert n == nproc
    got = sorted((out[i].pid, out[i].allocs, out[i].frees) for i in range(n))
    assert got == sorted((pid, 10 + 5 + i, 5 + i + 1) for i, pid in enumerate(pids))
    assert lib.tlsh_arena_get_procs(arena, out, 1) == 1


def test_concurrent_malloc_free_four_processes():
    nproc, nops = 4, 20000
    a = lib.tlsh_arena_create(64 * MiB)
    assert a != ffi.NULL
    # per child: [live blocks, live requested bytes, allocs, frees, corruptions]
    report = ffi.cast("uint64_t *", lib.tlsh_shared_map(4096))
    assert report != ffi.NULL

    def child(idx):
        lib.tlsh_arena_set_proc_slot(a, idx)
        rng = random.Random(idx)
        live = []  # (ptr, n, tag)
        allocs = frees = bad = 0
        for op in range(nops):
            if live and (rng.random() < 0.5 or len(live) > 300):
                p, n, tag = live.pop(rng.randrange(len(live)))
                if not check(p, n, tag):
                    bad += 1
                lib.tlsh_arena_free(a, p)
                frees += 1
            else:
                n = rng.choice((rng.randint(1, 256), rng.randint(1, 4096),
                                rng.randint(1, 70000)))
                p = lib.tlsh_arena_malloc(a, n)
                if p == ffi.NULL or addr(p) % ALIGN:
                    return 3
                tag = (idx + 1) << 40 | op
                fill(p, n, tag)
                live.append((p, n, tag))
                allocs += 1
        for p, n, tag in live:  # final check; blocks stay live on purpose
            if not check(p, n, tag):
                bad += 1
        r = report + 8 * idx
        r[0], r[1], r[2], r[3], r[4] = (len(live), sum(n for _, n, _ in live),
                                        allocs, frees, bad)
        return 0

    try:
        with Children() as ch:
            pids = [ch.fork(child, i) for i in range(nproc)]
            assert ch.wait(120) == {pid: 0 for pid in pids}
        rows = [[report[8 * i + k] for k in range(5)] for i in range(nproc)]
        assert [r[4] for r in rows] == [0] * nproc, "corrupted blocks"
        s = stats(a)
        assert s.n_alloc == sum(r[2] for r in rows)
        assert s.n_free == sum(r[3] for r in rows)
        assert s.n_alloc - s.n_free == sum(r[0] for r in rows)
        assert s.requested == sum(r[1] for r in rows)
        assert s.n_fail == s.n_double_free == s.n_wild_free == s.n_events == 0
        assert s.peak >= s.in_use > s.requested
        out = ffi.new("struct tlsh_arena_proc[]", lib.TLSH_ARENA_MAX_PROCS)
        n = lib.tlsh_arena_get_procs(a, out, lib.TLSH_ARENA_MAX_PROCS)
        assert n == nproc
        by_pid = {out[i].pid: (out[i].allocs, out[i].frees) for i in range(n)}
        assert by_pid == {pid: (rows[i][2], rows[i][3]) for i, pid in enumerate(pids)}
    finally:
        lib.tlsh_shared_unmap(report, 4096)
        lib.tlsh_arena_destroy(a)


# ---------------------------------------------------------------- --arena-align 8

def test_align_8_gives_blocks_off_16_that_free_and_realloc_find():
    a = lib.tlsh_arena_create(16 * MiB)
    try:
        assert lib.tlsh_arena_set_align(a, 12) == -1         # only 8 or 16
        assert lib.tlsh_arena_set_align(a, 8) == 0
        blocks = []
        for n in (1, 8, 16, 24, 100, 1000, 5000):
            p = lib.tlsh_arena_malloc(a, n)
            assert addr(p) % 16 == 8 and addr(p) % 8 == 0, (n, hex(addr(p)))
            assert lib.tlsh_arena_usable_size(a, p) == n
            fill(p, n, n)
            blocks.append((p, n, n))
        p, n, _ = blocks.pop()
        q = lib.tlsh_arena_realloc(a, p, 3 * n)               # moves: the content follows
        assert addr(q) % 16 == 8 and check(q, n, n)
        r = lib.tlsh_arena_realloc(a, q, n // 2)              # in place
        assert addr(r) == addr(q) and lib.tlsh_arena_usable_size(a, r) == n // 2
        blocks.append((r, n // 2, n))
        c = lib.tlsh_arena_calloc(a, 10, 10)
        assert addr(c) % 16 == 8 and ffi.buffer(c, 100)[:] == b"\0" * 100
        for p, n, tag in blocks:
            assert check(p, n, tag), n
            lib.tlsh_arena_free(a, p)
        lib.tlsh_arena_free(a, c)
        s = stats(a)
        assert s.in_use == 0 and s.requested == 0
        assert s.n_double_free == s.n_wild_free == 0
        lib.tlsh_arena_free(a, blocks[0][0])                  # still recognised as a double free
        assert stats(a).n_double_free == 1
        assert lib.tlsh_arena_set_align(a, 16) == -1          # blocks exist: refused
    finally:
        lib.tlsh_arena_destroy(a)
