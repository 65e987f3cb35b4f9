"""Why an allocator hook was refused, measured in a fresh process.

A library's setter (CRYPTO_set_mem_functions...) can refuse for two
reasons that call for different answers:

- the library allocated before the hook (something loaded and used it
  earlier in the process): a set-up fault, an error;
- the setter is a stub that never takes effect (LibreSSL's returns 0 and its
  CRYPTO_malloc calls malloc): the library cannot put its objects in the
  arena, so the run is unsupported there.

The stand tells them apart by starting ``python -m harness.stand.hookcheck
LIB CERT KEY`` under the LD_PRELOAD counter: the hook is its first call into
the library; then the library's init, a server context and a session, with
the allocations its own code makes counted against those that reached the
arena.  ``classify`` decides from those figures alone.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

SETTERS = {"openssl": "CRYPTO_set_mem_functions", "wolfssl": "wolfSSL_SetAllocators",
           "mbedtls": "mbedtls_platform_set_calloc_free",
           "gnutls": "gnutls_global_set_mem_functions"}


def classify(name: str, kind: str, m: dict) -> tuple[str, str]:
    """(what, reason) for a hook the stand saw refused, from a fresh
    process's measurement m: what is "stub" (never takes effect:
    unsupported), "late" (the library allocated before the hook in the
    stand: an error) or "unknown" (not told apart: an error, with why)."""
    setter = SETTERS.get(kind, "its allocator hook")
    if m.get("error"):
        return "unknown", (f"{name}: allocator hook refused, and a fresh process could not tell "
                           f"why ({m['error']})")
    if m.get("accepted"):
        return "late", (f"{name}: allocator hook refused in the stand, though a fresh process's "
                        f"first call to {setter} takes it: the library allocated before the "
                        f"hook (was it loaded earlier in this process?)")
    reached, total = m.get("arena_allocs", 0), m.get("lib_allocs")
    block = m.get("block_in_arena")
    if reached == 0 and not m.get("session_in_arena") and (total or block is False):
        counted = (f"0 of {total} allocations reached the hook" if total else
                   "its allocations uncounted (no libtlsh_count.so)")
        if block is False:
            counted += ", nor did a CRYPTO_malloc block"
        return "stub", (f"{name}: {setter} is a stub (returns 0 as the first call into it in a "
                        f"fresh process; {counted}) — try --memory interpose")
    return "unknown", (f"{name}: {setter} refused the hook as the first call in a fresh process, "
                       f"yet {reached} allocations reached the arena "
                       f"(of {total if total is not None else 'uncounted'})")


def measure(lib: str, cert: str, key: str, timeout: float = 30.0) -> dict:
    """Run the measurement in a fresh process (its JSON, or {"error": why})."""
    from harness.builds import native
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    counter = native.NATIVE_DIR / "libtlsh_count.so"
    if counter.exists():
        env["LD_PRELOAD"] = str(counter)
    try:
        r = subprocess.run([sys.executable, "-m", "harness.stand.hookcheck", lib, cert, key],
                           capture_output=True, text=True, timeout=timeout, env=env,
                           cwd=str(native.ROOT))
    except subprocess.TimeoutExpired:
        return {"error": f"no answer in {timeout:.0f} s"}
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        return {"error": (lines[-1] if lines else f"exit {r.returncode}")[:200]}


def _own_block_in_arena(be, arena) -> bool | None:
    """Whether a block asked of the library's own allocator (CRYPTO_malloc)
    lands in the arena; None where the library has no such entry point."""
    import ctypes
    from harness.builds import backends
    for path in backends.loaded_tls_libraries():
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
            alloc, free = lib.CRYPTO_malloc, lib.CRYPTO_free
        except (OSError, AttributeError):
            continue
        alloc.restype, alloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t, ctypes.c_char_p,
                                                          ctypes.c_int]
        free.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        p = alloc(64, b"hookcheck", 0)
        inside = bool(p) and bool(be.lib.tlsh_arena_contains(arena, be.ffi.cast("void *", p)))
        free(p, b"hookcheck", 0)
        return inside
    return None


def main(argv=None) -> int:
    name, cert, key = (sys.argv[1:] if argv is None else argv)[:3]
    from harness.builds import backends
    from harness.stand import probe_child as pc
    be = backends.get(name)
    ffi, lib = be.ffi, be.lib
    watched = pc.watch_library_code(backends.loaded_tls_libraries())
    arena = lib.tlsh_arena_create(32 << 20)
    out = {"accepted": be.hook(arena)}            # the first call into the library
    s0, c0 = ffi.new("struct tlsh_arena_stats *"), pc.counts()
    lib.tlsh_arena_get_stats(arena, s0)
    be.init()
    ctx = be.ctx_new(cert, key, 13 if be.caps()["tls13"] else 12, "", True)
    sess = be.ops().sess_new(ctx)
    out["session_in_arena"] = sess != ffi.NULL and bool(lib.tlsh_arena_contains(arena, sess))
    if sess != ffi.NULL:
        be.ops().free(sess)
    out["block_in_arena"] = _own_block_in_arena(be, arena)
    s1 = ffi.new("struct tlsh_arena_stats *")
    lib.tlsh_arena_get_stats(arena, s1)
    out["arena_allocs"] = s1.n_alloc - s0.n_alloc
    out["lib_allocs"] = (pc.counts()["direct_allocs"] - c0["direct_allocs"]) if watched and c0 \
        else None
    out["version"] = be.version()
    print(json.dumps(out), flush=True)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
