"""`--io-model threads`: which switches it takes, and its status slots.

In the threaded I/O model (native_shim/src/io_threads.c) one I/O process
owns every TLS connection and does all TLS work in `--io-threads` threads;
the SIP workers are separate processes that never call the library.  What
only makes sense with sessions handed between processes, or with the arena,
is refused here in one line.
"""
from __future__ import annotations

from harness.spec.params import ConfigError
from harness.vocab import M

# mitigations that act on the process model (or need pid-keyed locks)
_NOT_WITH_THREADS = (M.SINGLE_PROCESS, M.GLOBAL_LOCK, M.WRITE_DUP, M.LOCKED_RAND)
_FAULTS = ("none", "hog", "block", "spin")


def nslots(workers: int, io_model: str = "processes", io_threads: int = 0) -> int:
    """Status slots: listener (threads: the I/O process's accepting thread),
    the workers (threads: SIP workers), and in threads mode one per TLS thread."""
    return workers + 1 + (io_threads if io_model == "threads" else 0)


def nslots_of(cfg) -> int:
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    return nslots(get("workers"), get("io_model", "processes"), get("io_threads", 0))


def check(cfg) -> None:
    """Raise ConfigError (one line) for what the chosen I/O model cannot do."""
    if cfg.io_model != "threads":
        if cfg.session_sharing != "exclusive":
            raise ConfigError("--session-sharing concurrent: sessions are shared by threads only "
                              "with --io-model threads")
        return
    pre = "--io-model threads"
    if cfg.memory != "private":
        raise ConfigError(f"{pre}: the library allocates from the I/O process's heap (no arena "
                          f"hook, as in OpenSIPS 4.0): use --memory private (got {cfg.memory})")
    if cfg.session_sharing == "concurrent" and cfg.io_threads < 2:
        raise ConfigError(f"{pre} --session-sharing concurrent: a reader and a writer thread "
                          "need --io-threads 2 or more")
    bad = [m for m in cfg.mitigations if m in _NOT_WITH_THREADS]
    if bad:
        raise ConfigError(f"{pre}: --mitigate {','.join(bad)} acts on the process model")
    for flag, on in (("--conn-locks split", cfg.conn_locks == "split"),
                     ("--rand-lock plain", cfg.rand_lock != "none"),
                     ("--shutdown exit", cfg.shutdown == "exit"),
                     ("--global-lock", cfg.global_lock), ("--check-random", cfg.check_random),
                     ("--chaos", bool(cfg.chaos)), ("--reload-ms", bool(cfg.reload_ms))):
        if on:
            raise ConfigError(f"{pre}: {flag} is not supported in the threaded model")
    kind = cfg.fault.get("kind", "none")
    if kind not in _FAULTS:
        raise ConfigError(f"{pre}: --fault takes {', '.join(_FAULTS[1:])} (got {kind!r})")
    if kind in ("block", "spin") and not 1 <= cfg.fault.get("slot", 1) <= cfg.io_threads:
        raise ConfigError(f"{pre}: --fault {kind}:N strikes I/O thread N: 1..{cfg.io_threads}")
