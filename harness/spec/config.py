"""Run configuration: every parameter of `tlsharness run`, validated.

Bad values raise ConfigError with a one-line message; the CLI turns it into
exit code 2.
"""
from __future__ import annotations

import dataclasses
import os
import random

from harness.spec import params
from harness.spec import io_model
from harness.spec.params import FAULTS, MITIGATIONS, PARAMS, ConfigError
from harness.vocab import M


def _field(p):
    v = p.initial()
    if isinstance(v, (list, dict)):
        return dataclasses.field(default_factory=lambda: p.initial())
    return dataclasses.field(default=v)


class _RunConfig:
    def validate(self) -> "RunConfig":
        """Each value against its declaration, then the rules between them;
        fills the seed. Raises ConfigError with one line."""
        for p in PARAMS:
            p.check(getattr(self, p.name))
        fd_limit(self.conns)
        _check_relations(self)
        _apply_mitigations(self)
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(1, 2**31)
        return self

    @property
    def max_conns(self) -> int:
        return params.max_conns(self.conns)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# every parameter of `tlsharness run` as a field, from harness/spec/params.py
RunConfig = dataclasses.make_dataclass(
    "RunConfig", [(p.name, p.type | None if p.default is None else p.type, _field(p))
                  for p in PARAMS], bases=(_RunConfig,))
RunConfig.__module__ = __name__


def _check_relations(cfg) -> None:
    io_model.check(cfg)
    threads = cfg.io_model == "threads"
    if cfg.ramp >= cfg.duration:
        raise ConfigError(f"--ramp must be shorter than --duration (got {cfg.ramp} >= {cfg.duration})")
    if cfg.no_close_notify and cfg.load != "churn":
        raise ConfigError("--no-close-notify changes how churn closes its connections: use --load churn")
    if 0 < cfg.reload_ms < 1:
        raise ConfigError(f"--reload-ms must be 0 (off) or at least 1 (got {cfg.reload_ms})")
    if cfg.reply_by == "other" and not threads and (cfg.memory == "private" or cfg.handoff != "per-message"):
        raise ConfigError("--reply-by other: another worker writes through the reader's session: "
                          "use --memory shared and --handoff per-message")
    if cfg.reload_ms and cfg.memory == "private":
        raise ConfigError("--reload-ms: the reloaded context must be reachable by every worker: "
                          "use --memory shared")
    cfg.clients = min(cfg.clients, cfg.conns)
    kind = cfg.fault.get("kind", "none")
    if kind not in FAULTS:
        raise ConfigError(f"--fault kind must be one of {', '.join(FAULTS)} (got {kind!r})")
    if kind != "none" and not threads and not 1 <= cfg.fault.get("slot", 1) <= cfg.workers:
        raise ConfigError(f"--fault worker must be 1..{cfg.workers}")
    if kind == "leak" and cfg.memory == "private":
        raise ConfigError("--fault leak leaks arena memory: use --memory shared")
    if cfg.chaos:
        _check_chaos(cfg)


def check_chaos(spec: str) -> None:
    """--chaos P:DELAY_US, for the stand and for a target alike."""
    try:
        p, us = spec.split(":")
        p, us = float(p), int(us)
        if not (0 < p <= 1 and 0 < us <= 1_000_000):
            raise ValueError
    except ValueError:
        raise ConfigError(f"--chaos takes P:DELAY_US with 0 < P <= 1 and 0 < DELAY_US <= 1000000 "
                          f"(got {spec!r})") from None


def _check_chaos(cfg) -> None:
    check_chaos(cfg.chaos)
    if cfg.memory == "private":
        raise ConfigError("--chaos delays locks that live in the shared arena: use --memory "
                          "shared or interpose")


def _apply_mitigations(cfg) -> None:
    """Mitigations and the switches they stand for, made consistent both ways."""
    unknown = [m for m in cfg.mitigations if m not in MITIGATIONS]
    if unknown:
        raise ConfigError(f"--mitigate: unknown {', '.join(unknown)} "
                          f"(known: {', '.join(MITIGATIONS)})")
    if M.GLOBAL_LOCK in cfg.mitigations:
        cfg.global_lock = True
    if M.PER_WORKER_CTX in cfg.mitigations:
        cfg.ctx = "per-worker"
    if M.SINGLE_PROCESS in cfg.mitigations:
        cfg.workers = 1
        if cfg.fault.get("kind", "none") != "none":
            cfg.fault["slot"] = 1
    if cfg.global_lock and M.GLOBAL_LOCK not in cfg.mitigations:
        cfg.mitigations.append(M.GLOBAL_LOCK)
    if cfg.ctx == "per-worker" and M.PER_WORKER_CTX not in cfg.mitigations:
        cfg.mitigations.append(M.PER_WORKER_CTX)


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


def results_root(cfg: RunConfig) -> str:
    """--out when the user gave one; else $TLSH_RESULTS; else ./results."""
    if cfg.out != RunConfig.out:
        return cfg.out
    return os.environ.get("TLSH_RESULTS") or cfg.out
