"""The stand process: ``python -m harness.stand CONFIG STATUS_FD CONTROLLER_PID``.

Started fresh by the controller (never a fork of it).  Order matters:
load the TLS extension and install the allocator hooks before anything can
touch the library, then create arena, contexts and the status segment, then
fork the listener and the workers, then supervise them until told to stop.
"""
from __future__ import annotations

import json
import mmap
import os
import signal
import sys
import time

from harness.vocab import M, ProcExit


def _guard_libcrypto():
    for m in ("ssl", "_ssl", "_hashlib", "hashlib"):
        if m in sys.modules:
            raise SystemExit(f"stand: {m} was imported before the TLS hooks; refusing")


class SetupFailed(Exception):
    """The stand cannot be set up: the reason goes to the status segment."""

    def __init__(self, msg: str, code: int = ProcExit.SETUP):
        super().__init__(msg)
        self.code = code


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = json.loads(open(argv[0]).read())
    status_fd, controller = int(argv[1]), int(argv[2])
    _guard_libcrypto()
    from harness.spec.config import raise_fd_limit
    raise_fd_limit()                        # the listener holds every connection

    from harness.builds import backends
    be = backends.get(cfg["lib"])
    ffi, lib = be.ffi, be.lib
    if lib.tlsh_set_pdeathsig(signal.SIGKILL, controller) != 0:
        os._exit(ProcExit.ORPHANED)         # the controller is already gone
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from harness.spec.io_model import nslots_of
    st, _mapping = _status(ffi, lib, status_fd, nslots_of(cfg))   # the mapping lives as long as main
    if cfg.get("stacks_dir"):               # a crash in set-up leaves its own record
        os.makedirs(cfg["stacks_dir"], exist_ok=True)
        lib.tlsh_stand_crash_handler(cfg["stacks_dir"].encode())
    try:
        arena = _arena(cfg, be, st)
        _check_mitigations(cfg, be)
        cfg["ciphers"] = _ciphers(cfg, be)
        try:
            ctxs = _contexts(cfg, be, st)
        except backends.Unsupported as e:
            raise SetupFailed(str(e), ProcExit.UNSUPPORTED) from None
        except backends.BackendError as e:
            raise SetupFailed(str(e)) from None
        if cfg["memory"] == "shared":
            _check_in_arena(be, arena, ctxs[0])
        if cfg.get("chaos"):
            _chaos(st)
        stand = _new_stand(cfg, ffi, lib, st, arena)
        if M.WRITE_DUP in cfg.get("mitigations", []):
            lib.tlsh_stand_set_write_dup(stand, be._optional("write_dup"))
    except SetupFailed as e:
        data = str(e).encode()[:255]
        ffi.memmove(st.error, data + b"\0", len(data) + 1)
        print(f"stand: {e}", file=sys.stderr, flush=True)
        return e.code

    ops = be.ops()
    if cfg.get("io_model") == "threads":     # one I/O process (slot 0 + its threads), SIP workers
        children = spawn_threaded(lib, stand, ops, ctxs[0], cfg)
        lib.tlsh_stand_parent_close(stand)
        return supervise(be, st, stand, children)
    children = {lib.tlsh_stand_spawn_listener(stand): 0}
    for slot in range(1, cfg["workers"] + 1):
        pid = lib.tlsh_stand_spawn_worker(stand, slot, ops, ctxs[(slot - 1) % len(ctxs)])
        children[pid] = slot
    lib.tlsh_stand_parent_close(stand)

    def reload():
        new = be.ctx_new(cfg["cert"], cfg["key"], cfg["tls"], cfg.get("ciphers", ""),
                         cfg.get("tickets", True))
        lib.tlsh_stand_swap_ctx(stand, new, ffi.addressof(lib, "tlsh_lib_ctx_free"))
    return supervise(be, st, stand, children, reload if cfg.get("reload_ms") else None,
                     cfg.get("reload_ms", 0) / 1000)


def spawn_threaded(lib, stand, ops, ctx, cfg) -> dict:
    """--io-model threads: pid -> slot, the I/O process's entry naming its
    accepting thread's slot and its TLS threads' slots (dead with it)."""
    w, n = cfg["workers"], cfg["io_threads"]
    children = {lib.tlsh_stand_spawn_io(stand, ops, ctx): (0, *range(w + 1, w + 1 + n))}
    for slot in range(1, w + 1):
        children[lib.tlsh_stand_spawn_sip(stand, slot)] = slot
    return children


def _status(ffi, lib, fd: int, nslots: int):
    """The status segment the controller reads (its memfd), headed and marked;
    returns (pointer, mapping): the caller keeps the mapping alive."""
    mm = mmap.mmap(fd, int(lib.tlsh_status_bytes(nslots)))
    st = ffi.cast("struct tlsh_status *", ffi.from_buffer(mm))
    st.version = lib.TLSH_STATUS_VERSION
    st.nslots = nslots
    st.stand_pid = os.getpid()
    st.magic2 = lib.TLSH_STATUS_MAGIC
    st.magic = lib.TLSH_STATUS_MAGIC
    return st, mm


def _preloaded(symbol: str):
    import ctypes
    return getattr(ctypes.CDLL(None), symbol, None)


def _arena(cfg, be, st):
    """The arena the library allocates from (shared), the preloaded allocator's
    (interpose), or none (private)."""
    from harness.builds import backends
    ffi, lib = be.ffi, be.lib
    if cfg["memory"] == "interpose":       # the LD_PRELOAD allocator's arena (created at exec)
        import ctypes
        get = _preloaded("tlsh_interpose_arena")
        if get is None:
            raise SetupFailed("--memory interpose: libtlsh_interpose.so is not preloaded")
        get.restype = ctypes.c_void_p
        arena = ffi.cast("tlsh_arena *", get())
    elif cfg["memory"] == "shared":
        arena = lib.tlsh_arena_create(cfg["arena_mb"] << 20)
        if arena == ffi.NULL:
            raise SetupFailed(f"cannot create a {cfg['arena_mb']} MiB arena")
        if lib.tlsh_arena_set_align(arena, int(cfg.get("arena_align", "16"))) != 0:
            raise SetupFailed(f"--arena-align {cfg.get('arena_align')}: refused by the arena")
        try:
            hooked = be.hook(arena)
        except backends.Unsupported as e:
            raise SetupFailed(str(e), ProcExit.UNSUPPORTED) from None
        if not hooked:
            raise _refused(cfg, be)
    else:
        return ffi.NULL
    st.arena_base = lib.tlsh_arena_base(arena)
    st.arena_size = lib.tlsh_arena_size(arena)
    return arena


def _refused(cfg, be) -> SetupFailed:
    """A refused allocator hook, classified by a fresh process's measurement
    (harness/stand/hookcheck.py): a stub that never takes effect makes the
    run unsupported; a library that allocated before the hook is an error."""
    from harness.stand import hookcheck
    what, reason = hookcheck.classify(be.name, be.kind,
                                      hookcheck.measure(be.name, cfg["cert"], cfg["key"]))
    return SetupFailed(reason, ProcExit.UNSUPPORTED if what == "stub" else ProcExit.SETUP)


def _ciphers(cfg, be) -> str:
    """The TLS 1.2 cipher list in the library's own words (GnuTLS: a priority string)."""
    from harness.builds import ciphers
    try:
        return ciphers.for_kind(be.kind, cfg.get("ciphers", ""))
    except ciphers.CipherError as e:
        raise SetupFailed(f"{be.name}: {e}", ProcExit.UNSUPPORTED) from None


def _check_mitigations(cfg, be) -> None:
    mitig = cfg.get("mitigations", [])
    if M.WRITE_DUP in mitig and be._optional("write_dup") is None:
        raise SetupFailed(f"{be.name}: {be.UNSUPPORTED['write_dup']}; this build has "
                          f"{be.caps()['flags'] or 'no such flag'}", ProcExit.UNSUPPORTED)
    if M.PSHARED in mitig and _preloaded("tlsh_pshared_forced") is None:
        raise SetupFailed("--mitigate pshared: libtlsh_pshared.so is not preloaded")


def _contexts(cfg, be, st) -> list:
    """Library init and the server contexts, as the mitigations ask; then the
    parent's own use of the library (--parent-use)."""
    from harness.builds import backends
    ffi, lib = be.ffi, be.lib
    mitig = cfg.get("mitigations", [])
    ver = be.version().encode()[:95]
    ffi.memmove(st.lib_version, ver + b"\0", len(ver) + 1)
    nctx = cfg["workers"] if cfg["ctx"] == "per-worker" else 1
    no_atexit = M.NO_ATEXIT in mitig
    if M.PREFORK_THREAD in mitig:
        # init and contexts in a throwaway thread: the main thread, whose
        # state every worker inherits, never touches the library
        be.check_tls(cfg["tls"])
        arr = ffi.new("void *[]", nctx)
        err = ffi.new("char[256]")
        if lib.tlsh_prefork_thread_init(lib.TLSH_INIT_NO_ATEXIT if no_atexit else 0,
                                            cfg["cert"].encode(), cfg["key"].encode(), cfg["tls"],
                                            cfg.get("ciphers", "").encode(),
                                            int(cfg.get("tickets", True)), nctx, arr, err, 256) != 0:
            raise be.ctx_error(ffi.string(err).decode(errors="replace"), cfg.get("ciphers", ""))
        ctxs = [arr[i] for i in range(nctx)]
    else:
        be.init(no_atexit)
        ctxs = [be.ctx_new(cfg["cert"], cfg["key"], cfg["tls"], cfg.get("ciphers", ""),
                           cfg.get("tickets", True)) for _ in range(nctx)]
    if M.LOCKED_RAND in mitig or cfg.get("rand_lock", "none") != "none":
        be.rand_wrap(reentrant=M.LOCKED_RAND in mitig)
    if M.ATFORK_STOP in mitig:
        be.atfork_stop()
    if M.WARM_METHODS in mitig:
        be.warm_methods()
    if cfg.get("parent_use"):
        be.parent_use()
    return ctxs


def _check_in_arena(be, arena, ctx) -> None:
    """Measured, not assumed: a hook can be accepted and never called (GnuTLS)."""
    probe = be.ops().sess_new(ctx)
    in_arena = probe != be.ffi.NULL and be.lib.tlsh_arena_contains(arena, probe)
    if probe != be.ffi.NULL:
        be.ops().free(probe)
    if not in_arena:
        raise SetupFailed(f"{be.name}: its allocator hook was accepted but a session object is "
                          "not in the arena, so it cannot be shared (use --memory interpose)",
                          ProcExit.UNSUPPORTED)


def _chaos(st) -> None:
    import ctypes
    setter = _preloaded("tlsh_chaos_arena")
    if setter is None:
        raise SetupFailed("--chaos: libtlsh_chaos.so is not preloaded")
    setter.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    setter(int(st.arena_base), int(st.arena_size))


def _new_stand(cfg, ffi, lib, st, arena):
    c = ffi.new("struct tlsh_stand_cfg *")
    for name, value in cfg["c"].items():     # field by field, as the controller declared them
        setattr(c, name, value)
    if cfg.get("stacks_dir"):
        os.makedirs(cfg["stacks_dir"], exist_ok=True)
        c.crash_dir = cfg["stacks_dir"].encode()[:199]
    err = ffi.new("char[256]")
    stand = lib.tlsh_stand_new(c, st, arena, err, 256)
    if stand == ffi.NULL:
        raise SetupFailed(ffi.string(err).decode(errors="replace"))
    return stand


def supervise(be, st, stand, children: dict, reload=None, reload_s: float = 0) -> int:
    """Reap children (recording how each died) and publish arena statistics.
    SIGUSR1: shut the workers down gracefully (SIGTERM; they leave through
    exit()), still recording how each ends.  reload: called every reload_s."""
    lib = be.lib
    stopping, shutdown = [], []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGUSR1, lambda *_: shutdown.append(1))
    alive = dict(children)
    next_reload = time.monotonic() + reload_s if reload else None
    reloads = 0
    while alive and not stopping:
        _reap(lib, st, alive, children)
        lib.tlsh_stand_publish_arena(stand)
        st.rand_calls = be.rand_calls()
        st.rand_reentries = be.rand_reentries()
        if shutdown and shutdown[0] == 1:
            shutdown[0] = 2
            next_reload = None
            for pid, slot in alive.items():
                if slot > 0:
                    os.kill(pid, signal.SIGTERM)
        if next_reload and time.monotonic() >= next_reload:
            try:
                reload()
                reloads += 1
            except Exception as e:         # a failed reload is logged, as a server would
                print(f"stand: reload {reloads + 1} failed: {e}", file=sys.stderr, flush=True)
            next_reload = time.monotonic() + reload_s
        time.sleep(0.02 if not next_reload else max(0.001, min(0.02, next_reload - time.monotonic())))
    if reload:
        print(f"stand: {reloads} context reloads", file=sys.stderr, flush=True)
    st.stopping = 1
    for pid in list(alive):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while alive and time.monotonic() < deadline:
        if not _reap(lib, st, alive, children, block=True):
            break
    return 0


def _reap(lib, st, alive, children, block=False) -> bool:
    reaped = False
    while alive:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            alive.clear()
            return True
        if pid == 0:
            break
        reaped = True
        slot = children.get(pid)
        alive.pop(pid, None)
        if slot is None:
            continue
        for one in slot if isinstance(slot, tuple) else (slot,):
            w = st.slots[one]
            if not st.stopping:
                w.exit_signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
                w.exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 0
                w.exit_ns = lib.tlsh_now_ns()
                w.state = lib.TLSH_SLOT_DEAD
        if block:
            break
    return reaped
