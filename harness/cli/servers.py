"""Servers tlsharness did not build: `target` and `watch`."""
from __future__ import annotations

import json
import os
import shutil
import sys

from harness.spec.config import ConfigError
from harness.spec.params import parse_tls
from harness.verdicts import EXIT_USAGE


def cmd_watch(ns, argv) -> int:
    from harness.control.watch import WatchConfig, WatchError, watch
    try:
        if not ns.pid:
            raise ConfigError("watch needs at least one --pid")
        if ns.port is not None and not 1 <= ns.port <= 65535:
            raise ConfigError(f"--port must be 1..65535 (got {ns.port})")
        if not 0.5 <= ns.duration <= 86400:
            raise ConfigError(f"--duration must be between 0.5 and 86400 (got {ns.duration})")
        cfg = WatchConfig(pids=ns.pid, tree=not ns.no_tree, port=ns.port, tls=parse_tls(ns.tls),
                          probe_rate=ns.probe_rate, counter_cmd=ns.counter_cmd,
                          duration=ns.duration, out=ns.out)
        out = watch(cfg, progress=None if ns.quiet else
                    (lambda m: print(f"  ! {m}", file=sys.stderr, flush=True)))
    except (ConfigError, WatchError, OSError) as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, (ConfigError, WatchError)) else 4
    if ns.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print(f"{out['verdict'].upper()}: {out['reason']}")
        print_stuck(out["stuck"])
        for f in out["families"]:
            print(f"  family: {f}")
        print(f"  watched {len(out['watched'])} processes; results: {out['run_dir']}")
    return out["exit_code"]


def print_stuck(stuck: list[dict], limit: int = 8) -> None:
    """The stuck processes of a foreign verdict: what /proc showed, then the stack."""
    for p in stuck[:limit]:
        print(f"  {p['as']} pid {p['pid']} ({p['role']}) [{p['state']}, cpu {p['cpu']}]: {p['why']}")
        if p["top"]:
            print("      " + " ← ".join(p["top"]))
    if len(stuck) > limit:
        print(f"  ... {len(stuck) - limit} more in outcome.json")


def cmd_target(ns, argv) -> int:
    from harness.control.target import TargetConfig, TargetError, run_target
    cmd = list(ns.command or [])
    try:
        if ns.kind == "cmd" and not cmd:
            raise ConfigError("target cmd needs a server command after --")
        from harness.spec.config import fd_limit
        fd_limit(ns.conns)                  # the load generator's descriptors
        if ns.kind == "cmd" and ns.port is None:
            raise ConfigError("target cmd needs --port (the server's TLS port on 127.0.0.1)")
        for name, v, lo, hi in (("workers", ns.workers, 1, 64), ("conns", ns.conns, 1, 20000),
                                ("duration", ns.duration, 0.5, 3600),
                                ("ready-timeout", ns.ready_timeout, 0.5, 600),
                                ("clients", ns.clients, 1, 64), ("window", ns.window, 1, 65536),
                                ("churn-every", ns.churn_every, 1, 1_000_000),
                                ("rate", ns.rate, 0, 10_000_000),
                                ("port", ns.port if ns.port is not None else 1, 1, 65535)):
            if not lo <= v <= hi:
                raise ConfigError(f"--{name} must be between {lo} and {hi} (got {v})")
        if ns.kind == "kamailio":
            from harness.control.target import KAMAILIO_MODULES, check_kamailio
            ns.kamailio_modules = ns.kamailio_modules or KAMAILIO_MODULES
            check_kamailio(ns.kamailio_bin, ns.kamailio_modules)
            if not 16 <= ns.shm_mb <= 65536:
                raise ConfigError(f"--shm-mb must be between 16 and 65536 (got {ns.shm_mb})")
        if cmd and not (shutil.which(cmd[0]) or (os.sep in cmd[0] and os.access(cmd[0], os.X_OK))):
            raise ConfigError(f"server command not found or not executable: {cmd[0]}")
        cfg = TargetConfig(kind=ns.kind, command=cmd, port=ns.port or 0, workers=ns.workers,
                           conns=ns.conns, clients=ns.clients, window=ns.window, load=ns.load,
                           churn_every=ns.churn_every, rate=ns.rate,
                           tls=0 if ns.tls == "auto" else parse_tls(ns.tls),
                           duration=ns.duration, ready_timeout=ns.ready_timeout,
                           kamailio_bin=ns.kamailio_bin,
                           kamailio_modules=ns.kamailio_modules or "",
                           tls_threads_mode=ns.tls_threads_mode, shm_mb=ns.shm_mb,
                           cores=ns.cores, out=ns.out)
        out = run_target(cfg, None if ns.quiet else
                         (lambda m: print(f"  ! {m}", file=sys.stderr, flush=True)))
    except (ConfigError, TargetError) as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, ConfigError) else 4
    if ns.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print(f"{out['verdict'].upper()}: {out['reason']}")
        print_stuck(out["stuck"])
        for line in out["log_evidence"][:3]:
            print(f"  log: {line[:160]}")
        for f in out["families"]:
            print(f"  family: {f}")
        print(f"  {out['replies']:,} replies ({out['replies_per_s']:,.0f}/s), {out['bad']} bad, "
              f"{out['conn_errors']} connection errors; server requests counted: {out['rcv_requests']}")
        print(f"  results: {out['run_dir']}")
    return out["exit_code"]


def add_parsers(sub) -> None:
    w = sub.add_parser("watch", help="the watchdog on processes it did not start")
    w.add_argument("--pid", type=int, action="append", help="process (and its tree) to watch; repeatable")
    w.add_argument("--no-tree", action="store_true", help="only the given pids, not their children")
    w.add_argument("--port", type=int, help="SIP-over-TLS port on 127.0.0.1 to probe with OPTIONS")
    w.add_argument("--tls", default="1.3", help="TLS version of the OPTIONS probe: 1.2 or 1.3")
    w.add_argument("--probe-rate", type=float, default=5.0, help="OPTIONS/s of the probe")
    w.add_argument("--counter-cmd", help="command printing a progress counter (instead of a probe)")
    w.add_argument("--duration", type=float, default=60.0, help="seconds to watch (default 60)")
    w.add_argument("--out", default="results", help="results folder (default ./results)")
    w.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    w.add_argument("--json", action="store_true", help="print outcome.json instead of the summary")
    w.set_defaults(fn=cmd_watch)
    tg = sub.add_parser("target", help="drive and watch a real server: kamailio, or cmd -- COMMAND")
    tg.add_argument("kind", choices=["kamailio", "cmd"], help="kamailio (Debian's, or --kamailio-bin) or cmd (any server: -- COMMAND...)")
    tg.add_argument("--port", type=int, help="TLS port on 127.0.0.1 (cmd: required)")
    tg.add_argument("--workers", type=int, default=4, help="kamailio: tcp_children")
    tg.add_argument("--conns", type=int, default=20, help="client connections (default 20)")
    tg.add_argument("--clients", type=int, default=1, help="load generator processes (default 1)")
    tg.add_argument("--window", type=int, default=1, help="requests in flight per connection (default 1)")
    tg.add_argument("--load", default="churn", choices=["churn", "persistent"], help="churn: a new TLS connection every --churn-every requests; persistent: keep them")
    tg.add_argument("--churn-every", type=int, default=1, help="requests per connection under churn (default 1)")
    tg.add_argument("--rate", type=float, default=0.0, help="requests/s in all (default 0: as fast as answered)")
    tg.add_argument("--tls", default="auto",
                    help="auto (negotiate 1.2-1.3, the default), 1.2 or 1.3")
    tg.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    tg.add_argument("--ready-timeout", type=float, default=20.0,
                    help="seconds the server has to answer a TLS OPTIONS with 200")
    tg.add_argument("--kamailio-bin", default="kamailio",
                    help="kamailio: the binary to run (a build of another version)")
    tg.add_argument("--kamailio-modules", default=None, metavar="DIR",
                    help="kamailio: its module folder (default: Debian's)")
    tg.add_argument("--tls-threads-mode", type=int, choices=[0, 1, 2], default=None,
                    help="kamailio 6.x: the global tls_threads_mode (6.x turns 1 into 2)")
    tg.add_argument("--shm-mb", type=int, default=128, help="kamailio: shared memory (MiB)")
    tg.add_argument("--cores", action="store_true", help="let the server write core files")
    tg.add_argument("--out", default="results", help="results folder (default ./results)")
    tg.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    tg.add_argument("--json", action="store_true", help="print outcome.json instead of the summary")
    tg.set_defaults(fn=cmd_target, command=[])
