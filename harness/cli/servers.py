"""Servers tlsharness did not build: `target` and `watch`."""
from __future__ import annotations

import json
import os
import shutil
import sys

from harness.spec.config import ConfigError
from harness.spec.params import parse_tls
from harness.verdicts import EXIT_USAGE, V


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
    from harness.control.target import TargetError, run_target
    try:
        ns = _with_scenario(ns, argv)
        cfg = _target_config(ns)
        progress = None if ns.quiet else (lambda m: print(f"  ! {m}", file=sys.stderr, flush=True))
        if ns.repeat > 1:
            from harness.cli.target_series import run_series
            return run_series(cfg, ns, progress, rerun_command(argv, ns.command))
        out = run_target(cfg, progress)
        out["command"] = rerun_command(argv, ns.command)
    except (ConfigError, TargetError) as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, ConfigError) else 4
    if ns.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print_outcome(out)
    return out["exit_code"]


def rerun_command(argv: list, server_cmd: list) -> str:
    """The command line that runs this configuration once more (one run, no
    --repeat, no --json)."""
    import shlex
    keep, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--repeat":
            skip = True
        elif not a.startswith("--repeat=") and a not in ("--json", "-q", "--quiet"):
            keep.append(a)
    tail = ["--", *server_cmd] if server_cmd else []
    return "tlsharness " + " ".join(shlex.quote(str(a)) for a in keep + tail)


def _with_scenario(ns, argv):
    """--scenario NAME: a target scenario file's params as defaults, the
    command line's own flags over them."""
    if not ns.scenario:
        return ns
    from harness.spec import runflags, scenario
    try:
        sc = scenario.load(ns.scenario)
    except scenario.ScenarioError as e:
        raise ConfigError(str(e)) from None
    if not sc.target:
        raise ConfigError(f"{sc.name} is a scenario of the stand: run it with `tlsharness run "
                          f"{sc.name}`")
    if sc.target != ns.kind:
        raise ConfigError(f"{sc.name} is a scenario for target {sc.target}, not {ns.kind}")
    again = ns.parser.parse_args([ns.kind, *runflags.tokens(sc.params), *argv[2:]])
    again.command, again.scenario_name = ns.command, sc.name
    return again


def _target_config(ns):
    from harness.control.target import TargetConfig
    cmd = list(ns.command or [])
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
                            ("rate", ns.rate, 0, 10_000_000), ("repeat", ns.repeat, 1, 10_000),
                            ("port", ns.port if ns.port is not None else 1, 1, 65535)):
        if not lo <= v <= hi:
            raise ConfigError(f"--{name} must be between {lo} and {hi} (got {v})")
    build = _server_checks(ns)
    if cmd and os.path.isdir(cmd[0]):
        raise ConfigError(f"server command is a directory, not a program: {cmd[0]}")
    if cmd and not (shutil.which(cmd[0]) or (os.sep in cmd[0] and os.access(cmd[0], os.X_OK))):
        raise ConfigError(f"server command not found or not executable: {cmd[0]}")
    return TargetConfig(kind=ns.kind, command=cmd, port=ns.port or 0, workers=ns.workers,
                        conns=ns.conns, clients=ns.clients, window=ns.window, load=ns.load,
                        churn_every=ns.churn_every, rate=ns.rate,
                        tls=0 if ns.tls == "auto" else parse_tls(ns.tls),
                        duration=ns.duration, ready_timeout=ns.ready_timeout,
                        kamailio_bin=ns.kamailio_bin, kamailio_modules=ns.kamailio_modules or "",
                        tls_threads_mode=ns.tls_threads_mode, shm_mb=ns.shm_mb,
                        tcp_main_threads=ns.tcp_main_threads,
                        opensips=build, tcp_threads=ns.tcp_threads, tcp_port=ns.tcp_port,
                        chaos=ns.chaos, reload_every=ns.reload_every, db_domains=ns.db_domains,
                        transport=ns.transport, judge_shutdown=ns.judge_shutdown,
                        abort_every=ns.abort_every, rst_handshake_every=ns.rst_handshake_every,
                        garbage_hello_every=ns.garbage_hello_every,
                        no_close_notify=ns.no_close_notify,
                        rekey_every=ns.rekey_every, cores=ns.cores, out=ns.out)


def print_outcome(out: dict) -> None:
    print(f"{out['verdict'].upper()}: {out['reason']}")
    print_stuck(out["stuck"])
    for line in out["log_evidence"][:3]:
        print(f"  log: {line[:160]}")
    for f in out["families"]:
        print(f"  family: {f}")
    counted = ("" if out.get("rcv_requests") is None
               else f"; server requests counted: {out['rcv_requests']:,}")
    print(f"  {out['replies']:,} replies ({out['replies_per_s']:,.0f}/s), {out['bad']} bad, "
          f"{out['conn_errors']} connection errors{counted}")
    print(f"  results: {out['run_dir']}")
    if out["verdict"] != V.PASS and out.get("command"):
        print(f"  re-run: {out['command']}")


def _server_checks(ns) -> dict | None:
    """The checks of a named server kind before anything starts; for opensips,
    the build to run (by --opensips, else the newest matching --version,
    --tls-lib and --no-pshared-override)."""
    if ns.kind in ("kamailio", "opensips") and not 16 <= ns.shm_mb <= 65536:
        raise ConfigError(f"--shm-mb must be between 16 and 65536 (got {ns.shm_mb})")
    if ns.tcp_threads is not None and not 1 <= ns.tcp_threads <= 64:
        raise ConfigError(f"--tcp-threads must be between 1 and 64 (got {ns.tcp_threads})")
    if ns.tcp_port is not None and not 1 <= ns.tcp_port <= 65535:
        raise ConfigError(f"--tcp-port must be between 1 and 65535 (got {ns.tcp_port})")
    if ns.chaos:
        from harness.spec.config import check_chaos
        check_chaos(ns.chaos)
    if ns.kind == "kamailio":
        _kamailio_checks(ns)
    elif ns.kamailio_build or ns.tcp_main_threads is not None:
        raise ConfigError("--kamailio-build and --tcp-main-threads are target kamailio switches")
    if ns.reload_every is not None and not 0.2 <= ns.reload_every <= 3600:
        raise ConfigError(f"--reload-every must be between 0.2 and 3600 s (got {ns.reload_every})")
    if ns.transport == "tcp" and (ns.tcp_port is None or ns.rekey_every):
        raise ConfigError("--transport tcp needs --tcp-port and no --rekey-every (no TLS to rekey)")
    for flag in ("abort_every", "rst_handshake_every", "garbage_hello_every"):
        if not 0 <= getattr(ns, flag) <= 1_000_000:
            raise ConfigError(f"--{flag.replace('_', '-')} must be between 0 and 1000000 "
                              f"(got {getattr(ns, flag)})")
    if ns.transport == "tcp" and (ns.rst_handshake_every or ns.garbage_hello_every
                                  or ns.no_close_notify):
        raise ConfigError("--rst-handshake-every, --garbage-hello-every and --no-close-notify "
                          "are TLS abuse: not with --transport tcp")
    if ns.no_close_notify and ns.load != "churn":
        raise ConfigError("--no-close-notify changes how churn closes: it needs --load churn")
    if ns.rekey_every < 0:
        raise ConfigError(f"--rekey-every must be 0 (off) or more (got {ns.rekey_every})")
    if ns.kind != "opensips":
        if (ns.tcp_threads is not None or ns.tcp_port is not None or ns.reload_every is not None
                or ns.db_domains):
            raise ConfigError("--tcp-threads, --tcp-port, --reload-every and --db-domains are "
                              "target opensips switches")
        return None
    from harness.builds import opensips as builds
    try:
        b = builds.select(ns.opensips, ns.opensips_version, ns.tls_lib,
                          not ns.no_pshared_override)
    except builds.OpensipsBuildError as e:
        raise ConfigError(str(e)) from None
    if ns.tcp_threads is not None and not b["version"].startswith(("4.", "5.")):
        raise ConfigError(f"--tcp-threads: OpenSIPS {b['version']} has no tcp_threads (4.0 and "
                          "later)")
    return b


def _kamailio_checks(ns) -> None:
    """--kamailio-build NAME as its binary and module folder; the binary and
    --tcp-main-threads checked against what that Kamailio knows."""
    from harness.control.target import (KAMAILIO_MODULES, TargetError, check_kamailio,
                                        check_tcp_main_threads)
    if ns.kamailio_build:
        if ns.kamailio_bin != "kamailio" or ns.kamailio_modules:
            raise ConfigError("--kamailio-build names the binary and modules: give it or "
                              "--kamailio-bin/--kamailio-modules, not both")
        from harness.builds import kamailio as builds
        try:
            b = builds.find(ns.kamailio_build)
        except builds.KamailioBuildError as e:
            raise ConfigError(str(e)) from None
        ns.kamailio_bin, ns.kamailio_modules = b["binary"], b["modules"]
    ns.kamailio_modules = ns.kamailio_modules or KAMAILIO_MODULES
    exe = check_kamailio(ns.kamailio_bin, ns.kamailio_modules)
    try:
        check_tcp_main_threads(exe, ns.tcp_main_threads)
    except TargetError as e:
        raise ConfigError(str(e)) from None


def add_parsers(sub) -> None:
    w = sub.add_parser("watch", help="the watchdog on processes it did not start")
    w.add_argument("--pid", type=int, action="append", help="process (and its tree) to watch; repeatable")
    w.add_argument("--no-tree", action="store_true", help="only the given pids, not their children")
    w.add_argument("--port", type=int, help="SIP-over-TLS port on 127.0.0.1 to probe with OPTIONS")
    w.add_argument("--tls", default="1.3", help="TLS version of the OPTIONS probe: 1.2 or 1.3")
    w.add_argument("--probe-rate", type=float, default=5.0, help="OPTIONS/s of the probe")
    w.add_argument("--counter-cmd", help="command printing a progress counter instead of a probe (run through /bin/sh; killed with its tree after 2 s)")
    w.add_argument("--duration", type=float, default=60.0, help="seconds to watch (default 60)")
    w.add_argument("--out", default="results", help="results folder (default ./results)")
    w.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    w.add_argument("--json", action="store_true", help="print outcome.json instead of the summary")
    w.set_defaults(fn=cmd_watch)
    _add_target_parser(sub)


def _add_target_parser(sub) -> None:
    tg = sub.add_parser("target", help="drive and watch a real server: kamailio, or cmd -- COMMAND")
    tg.add_argument("kind", choices=["kamailio", "opensips", "cmd"],
                    help="kamailio (Debian's, or --kamailio-bin), opensips (a build of "
                    "`tlsharness servers build opensips`) or cmd (any server: -- COMMAND...)")
    tg.add_argument("--port", type=int, help="TLS port on 127.0.0.1 (cmd: required)")
    tg.add_argument("--workers", type=int, default=4, help="kamailio: tcp_children; opensips: "
                    "tcp_workers")
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
    tg.add_argument("--kamailio-build", default=None, metavar="NAME",
                    help="kamailio: a build of `tlsharness servers build kamailio` (or "
                    "kamailio6, make kamailio6's), instead of --kamailio-bin/--kamailio-modules")
    tg.add_argument("--tcp-main-threads", type=int, default=None, metavar="N",
                    help="kamailio 6.1+: tcp_main_threads; 1: TLS reads and encoding in "
                    "threads of TCP main (one per process), 0: off (written as given)")
    tg.add_argument("--tls-threads-mode", type=int, choices=[0, 1, 2], default=None,
                    help="kamailio 6.x: the global tls_threads_mode (6.x turns 1 into 2)")
    tg.add_argument("--shm-mb", type=int, default=128, help="kamailio, opensips: shared memory (MiB)")
    _add_opensips_flags(tg)
    tg.add_argument("--chaos", metavar="P:DELAY_US", help="contention amplifier preloaded into "
                    "the server: after a pthread lock taken in its shared memory, sleep DELAY_US "
                    "with probability P (rare cross-process races become quick)")
    tg.add_argument("--cores", action="store_true", help="let the server write core files")
    tg.add_argument("--out", default="results", help="results folder (default ./results)")
    tg.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    tg.add_argument("--json", action="store_true", help="print outcome.json instead of the summary")
    tg.add_argument("--reload-every", type=float, default=None, metavar="S",
                    help="opensips: ask the server to reload its TLS domains (MI tls_reload) "
                    "every S seconds during the load")
    tg.add_argument("--rekey-every", type=int, default=0, metavar="N",
                    help="every N requests a client asks for a TLS 1.3 key update (or "
                    "renegotiates TLS 1.2)")
    tg.add_argument("--db-domains", action="store_true",
                    help="opensips: the TLS domain in a db_text database (as deployments that "
                    "provision domains do; implied by --reload-every)")
    _add_abuse_flags(tg)
    tg.add_argument("--judge-shutdown", action="store_true",
                    help="a death or double free while the server shuts down after the load is "
                    "a crash (default: only what happens during the load is judged)")
    tg.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="N runs of this configuration: rate with its 95%% interval, median "
                    "time to failure, families (as `tlsharness repro`)")
    tg.add_argument("--scenario", metavar="NAME", help="a target scenario file's parameters "
                    "(scenarios/reports/opensips_*.py); flags given here win")
    tg.set_defaults(fn=cmd_target, command=[], parser=tg, scenario_name=None)


def _add_opensips_flags(tg) -> None:
    tg.add_argument("--opensips", default="auto", metavar="BUILD",
                    help="opensips: the build to run (see `tlsharness servers`; default: the "
                    "newest that matches --opensips-version, --tls-lib, --no-pshared-override)")
    tg.add_argument("--opensips-version", metavar="V", help="opensips: a build of this version "
                    "(3.6, 3.6.8, 4.0 ...)")
    tg.add_argument("--tls-lib", choices=["openssl", "wolfssl"], default=None,
                    help="opensips: a build with tls_openssl or tls_wolfssl")
    tg.add_argument("--no-pshared-override", action="store_true",
                    help="opensips 3.x: a build without ssl_tweaks.h (the lost wake-up fix off)")
    tg.add_argument("--tcp-threads", type=int, default=None,
                    help="opensips 4.x: threads of the TCP main process doing all TCP/TLS I/O")
    tg.add_argument("--tcp-port", type=int, default=None,
                    help="opensips: also a plain TCP socket on this port (TLS vs TCP runs)")
    tg.add_argument("--transport", choices=("tls", "tcp"), default="tls",
                    help="the load's transport: tls (default), or plain tcp to --tcp-port (the "
                    "server's TCP path beside its TLS one)")


def _add_abuse_flags(tg) -> None:
    """What real clients do to a server: resets, broken handshakes, no close_notify."""
    tg.add_argument("--abort-every", type=int, default=0, metavar="N",
                    help="every Nth connection is reset (RST, no close_notify) after its "
                    "requests are sent, before the replies are read")
    tg.add_argument("--rst-handshake-every", type=int, default=0, metavar="N",
                    help="every Nth TLS handshake is reset after the ClientHello")
    tg.add_argument("--garbage-hello-every", type=int, default=0, metavar="N",
                    help="every Nth connection sends bytes that are not a ClientHello, then "
                    "closes (scanner traffic)")
    tg.add_argument("--no-close-notify", action="store_true",
                    help="churn closes its connections without close_notify")
