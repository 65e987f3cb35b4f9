"""Shared segments between the controller and the processes it starts.

Each segment is a memfd created by the controller and inherited by the
child: it vanishes with the last process that holds it, so no run can leave
anything in /dev/shm.  The controller maps them read-only.
"""
from __future__ import annotations

import mmap
import os
import struct

from harness.builds import native

ROLES = {0: "none", 1: "worker", 2: "listener", 3: "sip-worker"}
SLOT_STATES = {0: "unused", 1: "alive", 2: "dead"}


_activities: list[str] | None = None


def activities() -> list[str]:
    """Activity names by number, as the core extension defines them (the one
    list is TLSH_ACTIVITIES in native_shim/include/tlsh_status.h)."""
    global _activities
    if _activities is None:
        ffi, lib = native.core()
        _activities = [ffi.string(lib.tlsh_activity_name(i)).decode()
                       for i in range(lib.tlsh_activity_count())]
    return _activities


class Segment:
    """A memfd of `size` bytes; `fd` is inheritable for pass_fds."""

    def __init__(self, name: str, size: int):
        self.size = size
        self.fd = os.memfd_create(name, 0)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size, prot=mmap.PROT_READ)

    def close(self):
        if self.map is not None:
            self.map.close()
            self.map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_CODES = {"int32_t": "i", "uint32_t": "I", "int64_t": "q", "uint64_t": "Q", "int": "i"}
_BYTES = {"uint8_t", "char", "unsigned char"}


def struct_of(ffi, ctype: str) -> tuple[struct.Struct, list[str]]:
    """A struct.Struct for a C struct of scalar fields, from cffi's offsets
    (the C header stays the only definition of the layout)."""
    t = ffi.typeof(ctype)
    fmt, pos, names = "=", 0, []
    for name, f in sorted(t.fields, key=lambda nf: nf[1].offset):
        code = _CODES.get(f.type.cname)
        if f.type.kind == "array" and f.type.item.cname in _BYTES:
            code = f"{f.type.length}s"
        if code is None:
            raise TypeError(f"{ctype}.{name}: {f.type.cname} is not a scalar")
        fmt += "x" * (f.offset - pos) + code
        pos = f.offset + ffi.sizeof(f.type)
        names.append(name)
    fmt += "x" * (ffi.sizeof(t) - pos)
    return struct.Struct(fmt), names


def _cstr(ffi, arr) -> str:
    return ffi.string(arr).decode("utf-8", "replace")


class StatusView:
    """Read-only view of the stand's status segment."""

    def __init__(self, nslots: int):
        ffi, lib = native.core()
        self.ffi, self.lib = ffi, lib
        self.nslots = nslots
        self.seg = Segment("tlsh-status", int(lib.tlsh_status_bytes(nslots)))
        self.buf = ffi.from_buffer(self.seg.map)
        self.s = ffi.cast("struct tlsh_status *", self.buf)
        self._slot_st, self._slot_names = struct_of(ffi, "struct tlsh_slot")

    @property
    def fd(self):
        return self.seg.fd

    def header_ok(self) -> bool:
        return self.s.magic == self.lib.TLSH_STATUS_MAGIC and self.s.magic2 == self.lib.TLSH_STATUS_MAGIC

    def header(self) -> dict:
        s, ffi = self.s, self.ffi
        a = s.arena
        return {
            "ok": self.header_ok(), "ready": s.ready, "port": s.port, "stand_pid": s.stand_pid,
            "arena_base": s.arena_base, "arena_size": s.arena_size,
            "arena": {"in_use": a.in_use, "peak": a.peak, "requested": a.requested,
                      "n_alloc": a.n_alloc, "n_free": a.n_free, "n_fail": a.n_fail,
                      "double_free": a.n_double_free, "wild_free": a.n_wild_free,
                      "events": a.n_events},
            "accepted": s.accepted, "dispatched": s.dispatched,
            "cross_handoffs": s.cross_handoffs, "conns_open": s.conns_open,
            "conns_closed": s.conns_closed, "rand_calls": s.rand_calls,
            "rand_reentries": s.rand_reentries, "rw_overlaps": s.rw_overlaps,
            "write_dups": s.write_dups,
            "lib_version": _cstr(ffi, s.lib_version), "error": _cstr(ffi, s.error),
        }

    def arena_events(self) -> list[dict]:
        names = {1: "double_free", 2: "wild_free", 3: "out_of_memory", 4: "bad_realloc"}
        out = []
        for i in range(min(self.s.n_arena_events, self.lib.TLSH_ARENA_MAX_EVENTS)):
            e = self.s.arena_events[i]
            out.append({"kind": names.get(e.kind, str(e.kind)), "pid": e.pid,
                        "offset": e.offset, "prev_pid": e.prev_pid, "inside": bool(e.inside),
                        "time_ns": e.time_ns})
        return out

    def slots(self) -> list[dict]:
        """Every slot, from one copy of the slot array."""
        raw = self.ffi.buffer(self.s.slots, self.nslots * self._slot_st.size)[:]
        magic, acts, out = self.lib.TLSH_SLOT_MAGIC, activities(), []
        names, nacts = self._slot_names, len(acts)
        for i, vals in enumerate(self._slot_st.iter_unpack(raw)):
            w = dict(zip(names, vals))          # one dict per slot, fixed up in place
            a = w["activity"]
            w["slot"] = i
            m1, m2 = w.pop("magic"), w.pop("magic2")
            w["ok"] = m1 == magic and m2 == magic
            w["role"] = ROLES.get(w["role"], "?")
            w["state"] = SLOT_STATES.get(w["state"], "?")
            w["activity"] = acts[a] if 0 <= a < nacts else "?"
            w["since_ns"] = w.pop("activity_since_ns")
            out.append(w)
        return out

    def close(self):
        self.buf = None
        self.s = None
        self.seg.close()


# The kinds of bad reply (enum tlsh_bad_kind) and why an unparseable one is
# (enum tlsh_bad_why), by their C names: the header holds the numbers.
BAD_KINDS = {"TLSH_BAD_DUPLICATE": "duplicate", "TLSH_BAD_UNKNOWN": "unknown",
             "TLSH_BAD_WRONG_CONN": "wrong-connection", "TLSH_BAD_STATUS": "status",
             "TLSH_BAD_UNPARSEABLE": "unparseable"}
BAD_WHY = {"TLSH_WHY_NONE": "", "TLSH_WHY_PARSE": "no status line, Call-ID or CSeq",
           "TLSH_WHY_CALLID": "Call-ID not of the form <conn>-<seq>@tlsharness",
           "TLSH_WHY_CSEQ": "CSeq differs from the seq in the Call-ID",
           "TLSH_WHY_FRAMING": "the stream cannot be framed (connection dropped)",
           "TLSH_WHY_OVERSIZE": "no complete message within the read buffer's limit "
                                "(connection dropped)"}
_BAD_SCALARS = ("status", "conn", "time_ns", "cseq", "cid_conn", "cid_seq", "oldest", "newest",
                "next_seq", "live", "msg_len", "answered_ns")


# what the load generators did wrong on purpose (--abort-every and friends): counter -> the
# figure's name in outcome.json; none of it is the server's failure
ABUSE_FIGURES = {"aborted": "aborted_conns", "abandoned": "abandoned_requests",
                 "rst_handshakes": "rst_handshakes", "garbage_hellos": "garbage_hellos",
                 "plain_closes": "plain_closes"}


def abuse_figures(lg: dict) -> dict:
    """The abuse counters of a LoadgenView.total() (or a sample's "lg"), as figures."""
    return {name: lg.get(k, 0) for k, name in ABUSE_FIGURES.items()}


class LoadgenView:
    """Read-only view of the load generators' counters (one struct each)."""

    FIELDS = ("sent", "answered", "bad", "timed_out", "connects", "handshakes",
              "resumed", "conn_errors", "rejected", "rekeys", "write_waits",
              "aborted", "abandoned", "rst_handshakes", "garbage_hellos", "plain_closes")

    def __init__(self, nprocs: int):
        ffi, lib = native.core()
        self.ffi, self.lib = ffi, lib
        self.n = nprocs
        self.stride = ffi.sizeof("struct tlsh_lg_counters")
        self.seg = Segment("tlsh-loadgen", self.stride * nprocs)
        self.buf = ffi.from_buffer(self.seg.map)
        self.c = ffi.cast("struct tlsh_lg_counters *", self.buf)
        self.kinds = {getattr(lib, k): v for k, v in BAD_KINDS.items()}
        self.why = {getattr(lib, k): v for k, v in BAD_WHY.items()}

    @property
    def fd(self):
        return self.seg.fd

    def proc(self, i: int) -> dict:
        c = self.c[i]
        d = {f: getattr(c, f) for f in self.FIELDS}
        d["bad_kinds"] = {name: c.bad_kind[k] for k, name in self.kinds.items()}
        d.update(pid=c.pid, done=c.done, ready=c.ready, ok=c.magic == self.lib.TLSH_LG_MAGIC,
                 last_answer_ns=c.last_answer_ns, updated_ns=c.updated_ns, ready_ns=c.ready_ns, start_ns=c.start_ns,
                 error=_cstr(self.ffi, c.error))
        return d

    def total(self) -> dict:
        procs = [self.proc(i) for i in range(self.n)]
        t = {f: sum(p[f] for p in procs) for f in self.FIELDS}
        t["bad_kinds"] = {k: sum(p["bad_kinds"][k] for p in procs) for k in self.kinds.values()}
        t["ready"] = sum(1 for p in procs if p["ready"])
        t["done"] = sum(1 for p in procs if p["done"])
        t["last_answer_ns"] = max((p["last_answer_ns"] for p in procs), default=0)
        t["ready_ns"] = min((p["ready_ns"] for p in procs if p["ready_ns"]), default=0)
        t["start_ns"] = min((p["start_ns"] for p in procs if p["start_ns"]), default=0)
        t["errors"] = [p["error"] for p in procs if p["error"]]
        return t

    def bad_samples(self) -> list[dict]:
        """The bad replies each load generator kept (its first few), oldest first:
        kind, why, the connection and its window then, the reply's fields and first
        bytes (raw).  t_ms is since that load generator started."""
        ffi, out = self.ffi, []
        for i in range(self.n):
            c = self.c[i]
            if c.magic != self.lib.TLSH_LG_MAGIC:
                continue
            for j in range(min(c.n_bad_samples, self.lib.TLSH_LG_BAD_SAMPLES)):
                b = c.bad_samples[j]
                r = {k: getattr(b, k) for k in _BAD_SCALARS}
                r.update(proc=i, pid=c.pid, kind=self.kinds.get(b.kind, str(b.kind)),
                         why=self.why.get(b.why, str(b.why)),
                         call_id=ffi.string(b.callid).decode("utf-8", "replace"),
                         bytes=ffi.buffer(b.bytes, min(b.nbytes, len(b.bytes)))[:],
                         t_ms=round((b.time_ns - c.start_ns) / 1e6, 3) if c.start_ns else None)
                out.append(r)
        return sorted(out, key=lambda r: r["time_ns"])

    def latency_hist(self) -> list[int]:
        n = self.lib.TLSH_LAT_BUCKETS
        return [sum(self.c[i].lat_hist[b] for i in range(self.n)) for b in range(n)]

    def close(self):
        self.buf = None
        self.c = None
        self.seg.close()


def bucket_lower_us(b: int) -> int:
    """Lower bound in µs of latency bucket b (inverse of tlsh_lat_bucket)."""
    if b < 8:
        return b
    msb = 3 + (b - 8) // 8
    sub = (b - 8) % 8
    return (8 + sub) << (msb - 3)


def hist_quantile(hist: list[int], q: float) -> float | None:
    total = sum(hist)
    if not total:
        return None
    target, acc = q * total, 0
    for b, n in enumerate(hist):
        acc += n
        if acc >= target:
            return bucket_lower_us(b) / 1000.0     # ms
    return None
