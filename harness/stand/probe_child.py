"""One probe process: ``python -m harness.stand.probe_child LIB CERT KEY PORTFILE``.

Runs under LD_PRELOAD=libtlsh_count.so.  Measures, for one library build:
allocator hook (accepted? arena allocations during real handshakes), lock
hook (calls counted where there is one), thread-local storage (pthread keys
created during init, the ELF PT_TLS segment of the library file), locks the
library creates, and whether a session object lands in the arena.  Prints one
JSON object.  The client is a load generator process started by the caller.
"""
from __future__ import annotations

import ctypes
import json
import os
import socket
import struct
import sys


def counts() -> dict:
    try:
        f = ctypes.CDLL(None).tlsh_count_get
    except AttributeError:
        return {}
    f.restype = ctypes.POINTER(ctypes.c_ulong * 5)
    v = f().contents
    return {"key_create": v[0], "mutex_init": v[1], "rwlock_init": v[2], "pshared_requests": v[3],
            "direct_allocs": v[4]}


def watch_library_code(paths: list[str]) -> int:
    """Name the TLS library's executable mappings to the counter, whose
    malloc/calloc/realloc then count the calls made from there; the number
    of ranges named (0 without the counter)."""
    try:
        watch = ctypes.CDLL(None).tlsh_count_watch
    except AttributeError:
        return 0
    watch.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    n = 0
    real = {os.path.realpath(p) for p in paths}
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and "x" in parts[1] and os.path.realpath(parts[5].strip()) in real:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                if watch(lo, hi) == 0:
                    n += 1
    return n


def delta(a: dict, b: dict) -> dict:
    return {k: b[k] - a[k] for k in a}


def elf_tls_bytes(path: str) -> int | None:
    """Size of the PT_TLS segment of an ELF64 file (0: none)."""
    try:
        with open(path, "rb") as f:
            h = f.read(64)
            if h[:4] != b"\x7fELF" or h[4] != 2:
                return None
            phoff, = struct.unpack_from("<Q", h, 32)
            phentsize, phnum = struct.unpack_from("<HH", h, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
        for i in range(phnum):
            p_type, = struct.unpack_from("<I", table, i * phentsize)
            if p_type == 7:                       # PT_TLS
                return struct.unpack_from("<Q", table, i * phentsize + 40)[0]   # p_memsz
        return 0
    except OSError:
        return None


def main(argv=None) -> int:
    name, cert, key, portfile = (sys.argv[1:] if argv is None else argv)[:4]
    from harness.builds import backends
    out = {"lib": name}
    c0 = counts()
    be = backends.get(name)
    ffi, lib = be.ffi, be.lib
    out["watched_code_ranges"] = watch_library_code(backends.loaded_tls_libraries())
    arena = lib.tlsh_arena_create(64 << 20)
    try:
        out["alloc_hook_accepted"] = be.hook(arena)
    except backends.Unsupported:
        out["alloc_hook_accepted"] = None
    out["lock_hook"] = be.set_lock_counting(True)     # "hook", "wrapped" or None
    c1 = counts()
    be.init()
    c2 = counts()
    out["version"] = be.version()
    out["caps"] = be.caps()
    out["init"] = delta(c1, c2)
    out["libraries"] = [{"path": p, "tls_segment_bytes": elf_tls_bytes(os.path.realpath(p))}
                        for p in backends.loaded_tls_libraries()]
    tls = 13 if out["caps"]["tls13"] else 12          # wolfSSL 4.6's TLS 1.2 fails with OpenSSL 3 clients
    out["tls"] = tls
    c3 = counts()
    ctx = be.ctx_new(cert, key, tls, "", True)
    out["ctx_new"] = delta(c3, counts())
    sess = be.ops().sess_new(ctx)
    out["session_in_arena"] = bool(lib.tlsh_arena_contains(arena, sess))
    be.ops().free(sess)
    lfd = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lfd.bind(("127.0.0.1", 0))
    lfd.listen(8)
    with open(portfile + ".tmp", "w") as f:
        f.write(f"{lfd.getsockname()[1]} {tls}")
    os.replace(portfile + ".tmp", portfile)          # the caller starts the client now
    s0 = ffi.new("struct tlsh_arena_stats *")
    lib.tlsh_arena_get_stats(arena, s0)
    k0, l0 = counts(), be.lock_calls()
    err = ffi.new("char[200]")
    n = lib.tlsh_probe_serve(be.ops(), ctx, lfd.fileno(), 5, 10000, err, 200)
    s1 = ffi.new("struct tlsh_arena_stats *")
    lib.tlsh_arena_get_stats(arena, s1)
    out["handshakes"] = n
    out["handshake_error"] = ffi.string(err).decode(errors="replace")
    out["arena_allocs_during_handshakes"] = s1.n_alloc - s0.n_alloc
    out["lock_calls_during_handshakes"] = be.lock_calls() - l0
    out["during_handshakes"] = delta(k0, counts())
    out["preload"] = bool(c0)
    print(json.dumps(out))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
