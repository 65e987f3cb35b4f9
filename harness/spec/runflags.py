"""The flags of `tlsharness run` (also used by repro, demo and scenario files)."""
from __future__ import annotations

import argparse

from harness.spec.config import RunConfig, parse_fault, parse_tls


class FlagError(ValueError):
    pass


class RaisingParser(argparse.ArgumentParser):
    """For parsing scenario parameters: errors raise instead of exiting."""

    def error(self, message):
        raise FlagError(message)


def add_run_flags(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    a = p.add_argument
    a("--lib", default=d.lib, help="TLS library of the stand: see 'tlsharness libs' (default %(default)s)")
    a("--lib-prefix", help="your own build's install prefix (compiled against the adapter on first use)")
    a("--lib-kind", default="openssl", help="adapter for --lib-prefix: openssl (LibreSSL, BoringSSL), "
      "wolfssl, mbedtls, gnutls")
    a("--workers", type=int, default=d.workers, help="worker processes (default %(default)s)")
    a("--conns", type=int, default=d.conns, help="client connections (default %(default)s)")
    a("--duration", type=float, default=d.duration, help="seconds of load (default %(default)s)")
    a("--memory", default=d.memory, help="shared (TLS objects in the arena) | private | "
      "interpose (forced: the whole stand's malloc in the arena, for libraries without a hook)")
    a("--handoff", default=d.handoff, help="pinned | per-connection | per-message")
    a("--lock", default=d.lock, help="connection lock: spin | futex | robust")
    a("--tls", type=str, default="1.3", help="1.2 | 1.3")
    a("--load", default=d.load, help="persistent | churn")
    a("--churn-every", type=int, default=d.churn_every, help="requests per connection (churn)")
    a("--resume", action="store_true", help="churn: resume the previous TLS session")
    a("--rate", type=float, default=d.rate, help="requests/s in all, 0 = closed loop")
    a("--window", type=int, default=d.window, help="outstanding requests per connection")
    a("--clients", type=int, default=d.clients, help="load generator processes")
    a("--timeout", type=float, default=d.timeout, help="seconds before a request times out")
    a("--ctx", default=d.ctx, help="SSL_CTX: shared | per-worker")
    a("--cert", default=d.cert, help="ec | rsa")
    a("--ciphers", default=d.ciphers, help="TLS 1.2 cipher list")
    a("--no-tickets", action="store_true", help="disable session tickets")
    a("--arena-mb", type=int, default=d.arena_mb, help="shared arena size (default %(default)s)")
    a("--seed", type=int, default=None, help="seed (recorded; printed in the re-run command)")
    a("--out", default=d.out, help="results root (default ./results, or $TLSH_RESULTS)")
    a("--linger", type=float, default=d.linger, help="seconds to keep watching after a failure")
    a("--keep-going", action="store_true", help="do not stop at the first failure verdict")
    a("--sample-hz", type=float, default=d.sample_hz, help="watchdog sampling rate")
    a("--stall-s", type=float, default=d.stall_s, help="busy this long = stuck (default %(default)s)")
    a("--fault", default="none", help="inject KIND[:WORKER[:AFTER_MS]]: block, spin, die, stop, "
      "crash (in a worker, holding its locks), hog (CPU hogs outside the stand, stand at nice 19), "
      "leak (32 KiB of arena per handshake never freed)")
    a("--global-lock", action="store_true", help="one lock around all TLS work (OpenSIPS 3.2)")
    a("--chaos", default="", metavar="P:DELAY_US", help="contention amplifier: after taking a "
      "lock that lives in the arena, sleep DELAY_US with probability P")
    a("--check-random", action="store_true", help="each worker draws random bytes right after "
      "fork; identical blocks in two workers are a corruption verdict")
    a("--mitigate", default="", help="comma-separated mitigations: pshared, prefork-thread, "
      "global-lock, per-worker-ctx, atfork-stop, no-atexit, locked-rand, single-process "
      "(see README)")
    a("--parent-use", action="store_true", help="the stand's main thread uses the library before "
      "fork, as other modules of a server do (libcurl, TLS redis)")
    a("--shutdown", default=d.shutdown, help="end of run: kill (workers SIGKILLed) | exit (workers "
      "leave through exit(), running the library's atexit cleanup; judged too)")
    a("--rand-lock", default=d.rand_lock, help="none | plain: the RAND method wrapped in a "
      "non-recursive shared lock (OpenSIPS #1953); --mitigate locked-rand makes it re-entrant")
    a("--reject-every", type=int, default=d.reject_every, metavar="N", help="every Nth client "
      "connection rejects the server certificate (alert unknown_ca): failing handshakes")
    a("--ramp", type=float, default=d.ramp, metavar="S", help="open the connections over S "
      "seconds instead of all at once (default %(default)s)")
    a("--reply-by", default=d.reply_by, help="self | other: the replies to what one worker read "
      "are written by another worker (its own fd, the connection's lock), as SIP replies and "
      "forwarded requests are in the servers")
    a("--rekey-every", type=int, default=d.rekey_every, metavar="N", help="every N requests on a "
      "connection the client asks for a TLS 1.3 key update, or renegotiates TLS 1.2 (0 = never)")
    a("--reload-ms", type=float, default=d.reload_ms, metavar="MS", help="replace the server's "
      "SSL_CTX this often under load, as tls.reload does (0 = never)")
    a("--quiet", "-q", action="store_true", help="no live progress")
    a("--json", action="store_true", help="print the outcome as JSON")
    a("--bisect", action="store_true", help="exit 0 good / 1 bad / 125 cannot tell (git bisect run)")


def config_from_args(ns) -> RunConfig:
    cfg = RunConfig(
        lib=ns.lib, workers=ns.workers, conns=ns.conns, duration=ns.duration, memory=ns.memory,
        handoff=ns.handoff, lock=ns.lock, tls=parse_tls(ns.tls), load=ns.load,
        churn_every=ns.churn_every, resume=ns.resume, rate=ns.rate, window=ns.window,
        clients=ns.clients, timeout=ns.timeout, ctx=ns.ctx, cert=ns.cert, ciphers=ns.ciphers,
        tickets=not ns.no_tickets, arena_mb=ns.arena_mb, seed=ns.seed, out=ns.out,
        linger=ns.linger, stop_on_failure=not ns.keep_going, sample_hz=ns.sample_hz,
        stall_s=ns.stall_s, fault=parse_fault(ns.fault), global_lock=ns.global_lock,
        mitigations=[m for m in ns.mitigate.split(",") if m], check_random=ns.check_random, chaos=ns.chaos,
        parent_use=ns.parent_use, shutdown=ns.shutdown, rand_lock=ns.rand_lock,
        reject_every=ns.reject_every, reload_ms=ns.reload_ms, rekey_every=ns.rekey_every,
        reply_by=ns.reply_by, ramp=ns.ramp)
    return cfg.validate()




def parser() -> RaisingParser:
    """The run flags alone, raising FlagError instead of exiting."""
    p = RaisingParser(add_help=False)
    add_run_flags(p)
    return p


def dests() -> set[str]:
    return {a.dest for a in parser()._actions}


def tokens(params: dict) -> list[str]:
    """A scenario's params as command-line tokens."""
    out = []
    for k, v in params.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        elif v is False or v is None:
            continue
        elif isinstance(v, (list, tuple)):
            out += [flag, ",".join(str(x) for x in v)]
        else:
            out += [flag, str(v)]
    return out
