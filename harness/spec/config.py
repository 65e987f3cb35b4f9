"""Run configuration: every parameter of `tlsharness run`, validated.

Bad values raise ConfigError with a one-line message; the CLI turns it into
exit code 2.
"""
from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field

CHOICES = {
    "memory": ("shared", "private", "interpose"),
    "handoff": ("pinned", "per-connection", "per-message"),
    "lock": ("spin", "futex", "robust"),
    "load": ("persistent", "churn"),
    "ctx": ("shared", "per-worker"),
    "cert": ("ec", "rsa"),
    "shutdown": ("kill", "exit"),
    "rand_lock": ("none", "plain"),
    "reply_by": ("self", "other"),
}
FAULTS = ("none", "block", "spin", "die", "stop", "crash", "hog", "leak")
# mitigations the servers shipped, combinable (README: "Scenarios and mitigations")
MITIGATIONS = {
    "pshared": "locks the library creates forced PTHREAD_PROCESS_SHARED (LD_PRELOAD; "
               "OpenSIPS ssl_tweaks.h, Kamailio TLS_PTHREAD_MUTEX_SHARED)",
    "prefork-thread": "library init and contexts in a throwaway thread before fork "
                      "(Kamailio tls_threads_mode=1)",
    "global-lock": "one lock around all TLS work of a connection (OpenSIPS 3.2 tls_global_lock)",
    "per-worker-ctx": "one SSL_CTX per worker, created before fork (OpenSIPS #1799)",
    "atfork-stop": "pthread_atfork(prepare = OPENSSL_thread_stop): the parent's per-thread state "
                   "released before every fork (OpenSIPS PR #3841, Kamailio tls_threads_mode=2)",
    "no-atexit": "no library cleanup at exit (OPENSSL_INIT_NO_ATEXIT; OpenSIPS #1121, #1304)",
    "locked-rand": "the RAND method under a shared lock, re-entrant per process (OpenSIPS #1799/#1953, "
                   "Kamailio rand_engine)",
    "single-process": "all TLS I/O in one process (OpenSIPS 4.0, Kamailio tcp_main_threads): one "
                      "worker serves every connection",
    "write-dup": "wolfSSL_write_dup after the handshake (OpenSIPS tls_wolfssl); needs a wolfSSL "
                 "built with HAVE_WRITE_DUP",
}


class ConfigError(ValueError):
    pass


@dataclass
class RunConfig:
    lib: str = "openssl"
    workers: int = 4
    conns: int = 50
    duration: float = 10.0
    memory: str = "shared"
    handoff: str = "per-message"
    lock: str = "spin"
    tls: int = 13
    load: str = "persistent"
    churn_every: int = 100        # requests per connection before reconnecting (churn)
    resume: bool = False
    rate: float = 0.0             # requests/s over all clients, 0 = closed loop
    window: int = 4               # outstanding requests per connection
    clients: int = 1              # load generator processes
    timeout: float = 2.0          # a request unanswered this long is timed out
    ctx: str = "shared"
    cert: str = "ec"
    ciphers: str = ""
    tickets: bool = True
    arena_mb: int = 256
    seed: int | None = None
    out: str = "results"
    linger: float = 1.0           # after a failure verdict, keep watching this long, then stop
    stop_on_failure: bool = True
    sample_hz: float = 20.0
    stall_s: float = 0.4
    fault: dict = field(default_factory=lambda: {"kind": "none"})
    global_lock: bool = False     # OpenSIPS 3.2 tls_global_lock around all TLS work
    mitigations: list = field(default_factory=list)
    chaos: str = ""               # "P:DELAY_US": delay after taking an arena lock (amplifier)
    check_random: bool = False    # each worker draws 32 random bytes after fork; duplicates = corruption
    grace: float = 3.0            # after duration: time to stop everything before SIGKILL
    parent_use: bool = False      # the library used by the stand's main thread before fork
    shutdown: str = "kill"        # end of run: kill the workers, or SIGTERM -> exit() (atexit runs)
    rand_lock: str = "none"       # "plain": RAND method under a non-recursive shared lock (#1953)
    reject_every: int = 0         # every Nth client connection rejects the server's CA (unknown ca)
    ramp: float = 0.0             # seconds over which the clients open their connections
    reply_by: str = "self"        # "other": replies written by another worker than the reader
    rekey_every: int = 0          # every N requests per connection: key update (1.3) / renegotiation (1.2)
    reload_ms: float = 0.0        # replace the server context this often under load (tls.reload)

    def validate(self) -> "RunConfig":
        for k, allowed in CHOICES.items():
            v = getattr(self, k)
            if v not in allowed:
                raise ConfigError(f"--{k.replace('_', '-')} must be one of {', '.join(allowed)} (got {v!r})")
        _range("workers", self.workers, 1, 254)
        _range("conns", self.conns, 1, 20000)
        fd_limit(self.conns)
        _range("duration", self.duration, 0.5, 3600)
        _range("window", self.window, 1, 64)
        _range("clients", self.clients, 1, 16)
        _range("churn-every", self.churn_every, 1, 10**9)
        _range("rate", self.rate, 0, 10**7)
        _range("timeout", self.timeout, 0.05, 60)
        _range("arena-mb", self.arena_mb, 8, 16384)
        _range("linger", self.linger, 0, 60)
        _range("sample-hz", self.sample_hz, 1, 200)
        _range("stall-s", self.stall_s, 0.05, 60)
        if self.tls not in (12, 13):
            raise ConfigError(f"--tls must be 1.2 or 1.3 (got {self.tls})")
        _range("reject-every", self.reject_every, 0, 10**6)
        _range("reload-ms", self.reload_ms, 0, 600_000)
        _range("rekey-every", self.rekey_every, 0, 10**9)
        _range("ramp", self.ramp, 0, 600)
        if self.ramp >= self.duration:
            raise ConfigError(f"--ramp must be shorter than --duration (got {self.ramp} >= {self.duration})")
        if 0 < self.reload_ms < 1:
            raise ConfigError(f"--reload-ms must be 0 (off) or at least 1 (got {self.reload_ms})")
        if self.reply_by == "other" and (self.memory == "private" or self.handoff != "per-message"):
            raise ConfigError("--reply-by other: another worker writes through the reader's session: "
                              "use --memory shared and --handoff per-message")
        if self.reload_ms and self.memory == "private":
            raise ConfigError("--reload-ms: the reloaded context must be reachable by every worker: "
                              "use --memory shared")
        if self.clients > self.conns:
            self.clients = self.conns
        kind = self.fault.get("kind", "none")
        if kind not in FAULTS:
            raise ConfigError(f"--fault kind must be one of {', '.join(FAULTS)} (got {kind!r})")
        if kind != "none" and not 1 <= self.fault.get("slot", 1) <= self.workers:
            raise ConfigError(f"--fault worker must be 1..{self.workers}")
        if kind == "leak" and self.memory == "private":
            raise ConfigError("--fault leak leaks arena memory: use --memory shared")
        unknown = [m for m in self.mitigations if m not in MITIGATIONS]
        if unknown:
            raise ConfigError(f"--mitigate: unknown {', '.join(unknown)} "
                              f"(known: {', '.join(MITIGATIONS)})")
        if "global-lock" in self.mitigations:
            self.global_lock = True
        if "per-worker-ctx" in self.mitigations:
            self.ctx = "per-worker"
        if "single-process" in self.mitigations:
            self.workers = 1
            if self.fault.get("kind", "none") != "none":
                self.fault["slot"] = 1
        if self.global_lock and "global-lock" not in self.mitigations:
            self.mitigations.append("global-lock")
        if self.ctx == "per-worker" and "per-worker-ctx" not in self.mitigations:
            self.mitigations.append("per-worker-ctx")
        if self.chaos:
            try:
                p, us = self.chaos.split(":")
                p, us = float(p), int(us)
                if not (0 < p <= 1 and 0 < us <= 1_000_000):
                    raise ValueError
            except ValueError:
                raise ConfigError(f"--chaos takes P:DELAY_US with 0 < P <= 1 and 0 < DELAY_US <= 1000000 "
                                  f"(got {self.chaos!r})") from None
            if self.memory == "private":
                raise ConfigError("--chaos delays locks that live in the shared arena: use --memory "
                                  "shared or interpose")
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(1, 2**31)
        return self

    @property
    def max_conns(self) -> int:
        return max(64, self.conns * 2 + 16)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _range(name, v, lo, hi):
    if not lo <= v <= hi:
        raise ConfigError(f"--{name} must be between {lo} and {hi} (got {v})")


def parse_fault(text: str) -> dict:
    """KIND[:WORKER[:AFTER_MS]], e.g. block:2:300."""
    parts = text.split(":")
    try:
        d = {"kind": parts[0]}
        if len(parts) > 1:
            d["slot"] = int(parts[1])
        if len(parts) > 2:
            d["after_ms"] = int(parts[2])
        if len(parts) > 3:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--fault takes KIND[:WORKER[:AFTER_MS]] (got {text!r})") from None
    if not 0 <= d.get("after_ms", 0) <= 86_400_000:
        raise ConfigError(f"--fault AFTER_MS must be 0..86400000 (got {d['after_ms']})")
    return d


FD_MARGIN = 256        # the stand's own descriptors beside its connections


def fd_limit(conns: int) -> None:
    """The stand's listener holds every connection: conns + a margin
    descriptors, within the hard RLIMIT_NOFILE (the soft one is raised)."""
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = conns + FD_MARGIN
    if hard != resource.RLIM_INFINITY and need > hard:
        raise ConfigError(f"--conns {conns} needs about {need} file descriptors in the stand's "
                          f"listener; this system allows {hard} (ulimit -Hn): raise that limit or "
                          f"use --conns {max(1, hard - FD_MARGIN)} or fewer")


def raise_fd_limit() -> None:
    """The soft file-descriptor limit up to the hard one (stand, load generators)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_tls(text: str) -> int:
    v = {"1.2": 12, "12": 12, "1.3": 13, "13": 13}.get(str(text))
    if v is None:
        raise ConfigError(f"--tls must be 1.2 or 1.3 (got {text!r})")
    return v


def results_root(cfg: RunConfig) -> str:
    """--out when the user gave one; else $TLSH_RESULTS; else ./results."""
    if cfg.out != RunConfig.out:
        return cfg.out
    return os.environ.get("TLSH_RESULTS") or cfg.out
