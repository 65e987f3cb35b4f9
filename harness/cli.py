"""The tlsharness command line (the controller).

Exit codes of `run`: 0 clean, 1 failure found, 2 usage error,
3 inconclusive (includes overload, stopped, unsupported), 4 harness error,
130 interrupted.  With --bisect (and for `repro`), git-bisect-run codes:
0 good, 1 bad, 125 cannot tell (skip this commit).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from harness import __version__
from harness.config import ConfigError, parse_tls
from harness.runflags import add_run_flags as _add_run_flags, config_from_args
from harness.verdicts import EXIT_HARNESS, EXIT_USAGE, bisect_code


class ArgParser(argparse.ArgumentParser):
    def error(self, message):           # one line, exit 2 (argparse prints usage too)
        self.exit(EXIT_USAGE, f"tlsharness: error: {message}\n")


def summary(out: dict) -> str:
    lines = [f"{out['outcome'].upper()}: {out['verdict']} — {out.get('reason', '')}"]
    if out.get("memory", "").startswith("interpose"):
        lines.append("  memory: " + out["memory"])
    ttf = out.get("time_to_failure_ms")
    if ttf is not None:
        when = (f"{ttf:.0f} ms after load started" if ttf >= 0
                else f"{-ttf:.0f} ms before load started (at fork)")
        lines.append(f"  failure {when} (detected {out.get('detect_latency_ms')} ms after onset)")
    for p in out.get("stuck", [])[:8]:
        top = " ← ".join(p.get("top") or []) or "(no stack)"
        lines.append(f"  worker {p['slot']} pid {p['pid']} [{p['state']}, cpu {p['cpu']}] "
                     f"{p['why']}\n      {top}")
    for f in out.get("families", []):
        lines.append(f"  family: {f}")
    if "replies" in out:
        rate = f" ({out['replies_per_s']:,.0f}/s)" if out.get("replies_per_s") is not None else ""
        lines.append(f"  {out['replies']:,} replies{rate}, {out.get('bad', 0)} bad, "
                     f"{out.get('timed_out', 0)} timed out"
                     + (f", {out['cross_handoffs']:,} cross-process handoffs"
                        if out.get("cross_handoffs") is not None else ""))
    lines.append(f"  results: {out['run_dir']}")
    exp = out.get("expected")
    if exp:
        note = (f"; the scenario's {', '.join(exp['overridden'])} overridden, so its expectation "
                "may not apply" if exp.get("overridden") else "")
        lines.append(f"  scenario {out['scenario']}: {'as expected' if exp['as_expected'] else 'NOT as expected'}"
                     f" ({exp['what']}; {', '.join(exp['refs'])}{note})")
    if out.get("command") and out["exit_code"] != 0:
        lines.append(f"  re-run:  {out['command']}")
    return "\n".join(lines)


def with_scenario(ns, argv):
    """Scenario params first, the user's own flags after them (so they win)."""
    from harness import scenario
    sc = scenario.load(ns.scenario)
    user = list(argv[1:])
    user.remove(ns.scenario)
    sub = ArgParser(prog="tlsharness run")
    _add_run_flags(sub)
    sub.add_argument("scenario", nargs="?")
    ns2 = sub.parse_args([*scenario_tokens(sc), *user])
    ns2.scenario = sc
    given = {a.split("=")[0][2:].replace("-", "_") for a in user if a.startswith("--")}
    sc.overridden = sorted(k for k in sc.params if k in given)
    return ns2


def scenario_tokens(sc):
    from harness.runflags import tokens
    return tokens(sc.params)


def cmd_run(ns, argv) -> int:
    from harness import scenario
    from harness.controller import HarnessError, Run
    from harness.progress import Progress
    sc = None
    if ns.scenario:
        try:
            ns = with_scenario(ns, argv)
            sc = ns.scenario
        except scenario.ScenarioError as e:
            print(f"tlsharness: error: {e}", file=sys.stderr)
            return EXIT_USAGE
    try:
        cfg = checked_config(ns)
    except ConfigError as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        run = Run(cfg, argv, Progress(quiet=ns.quiet))
        out = run.execute()
    except (HarnessError, OSError) as e:
        print(f"tlsharness: {e}", file=sys.stderr)
        return bisect_code(EXIT_HARNESS) if ns.bisect else EXIT_HARNESS
    if sc is not None:
        check_expectation(sc, cfg, out)
    if out.get("run_dir"):
        from pathlib import Path
        from harness import report
        report.index(Path(out["run_dir"]).parent)
    print(json.dumps(out, indent=2, default=str) if ns.json else summary(out))
    return bisect_code(out["exit_code"]) if ns.bisect else out["exit_code"]


def check_expectation(sc, cfg, out: dict) -> None:
    """Record whether the run came out as the scenario expects for this
    library and these mitigations (in outcome.json too)."""
    from harness import results
    from pathlib import Path
    out["scenario"] = sc.name
    e = sc.expectation(cfg.lib, sorted(cfg.mitigations))
    if e is None:
        out["expected"] = None
    else:
        ok, what = e.check(out)
        over = getattr(sc, "overridden", [])
        out["expected"] = {"as_expected": ok, "what": what, "refs": sc.refs, "overridden": over}
    if out.get("run_dir"):
        results.write_json(Path(out["run_dir"]) / "outcome.json", out)




REPRO_VALUE_FLAGS = {"--repeat", "--runs", "--min-rate", "--json"}   # not `run` flags
REPRO_ALONE_FLAGS = {"--until-fail"}


def add_repro_flags(p: argparse.ArgumentParser) -> None:
    """`repro`: the run flags, a scenario, and its own (p needs conflict_handler="resolve":
    its --json FILE replaces run's --json)."""
    _add_run_flags(p)
    p.add_argument("scenario", nargs="?", help="a scenario name or file (tlsharness scenarios)")
    p.add_argument("--repeat", "--runs", dest="repeat", type=int, default=3,
                   help="number of runs (with --until-fail: at most); --runs is the old name (default 3)")
    p.add_argument("--min-rate", type=float, default=0.5,
                   help="share of failing runs that counts as reproduced (default 0.5)")
    p.add_argument("--until-fail", action="store_true",
                   help="stop at the first failing run (then any failure is bad)")
    p.add_argument("--json", metavar="FILE", help="write the summary as JSON to FILE")


def checked_config(ns):
    """The run configuration of ns, with --lib-prefix built and registered
    first and the library checked to be built here (ConfigError otherwise)."""
    if ns.lib_prefix:
        from harness import userlibs
        try:
            ns.lib = userlibs.add(userlibs.name_for(ns.lib_prefix, ns.lib_kind), ns.lib_prefix,
                                  ns.lib_kind)
        except userlibs.UserLibError as e:
            raise ConfigError(str(e)) from None
    cfg = config_from_args(ns)
    err = _lib_error(cfg.lib)
    if err:
        raise ConfigError(err)
    return cfg


def _lib_error(lib: str) -> str | None:
    from harness import backends
    built = backends.availability()
    if lib not in built:
        return f"unknown --lib {lib!r} (known: {', '.join(sorted(built))})"
    if not built[lib][0]:
        return f"--lib {lib} is not built here: {built[lib][1]}"
    return None


def cmd_repro(ns, argv) -> int:
    """N runs of one configuration (or scenario); bad (1) when the failure
    reproduces in at least --min-rate of them, good (0) when no run failed and
    every run was judged, 125 otherwise; prints the statistics (harness/repro.py)."""
    from pathlib import Path
    from harness import repro, results, scenario
    from harness.controller import HarnessError, Run
    from harness.progress import Progress
    sc = None
    try:
        if ns.scenario:                 # scenario params first, the user's flags after them
            sc = scenario.load(ns.scenario)
            user = list(argv[1:])
            user.remove(ns.scenario)
            sub = ArgParser(prog="tlsharness repro", conflict_handler="resolve")
            add_repro_flags(sub)
            skip = ns.bisect_usage_skip
            ns = sub.parse_args([*scenario_tokens(sc), *user])
            ns.bisect_usage_skip = skip
            given = {a.split("=")[0][2:].replace("-", "_") for a in user if a.startswith("--")}
            sc.overridden = sorted(k for k in sc.params if k in given)
        if not 1 <= ns.repeat <= 1000:
            raise ConfigError(f"--repeat must be between 1 and 1000 (got {ns.repeat})")
        if not 0 < ns.min_rate <= 1:
            raise ConfigError(f"--min-rate must be in (0, 1] (got {ns.min_rate})")
        if ns.json and not Path(ns.json).resolve().parent.is_dir():
            raise ConfigError(f"--json {ns.json}: no such directory {Path(ns.json).resolve().parent}")
        cfg0 = checked_config(ns)
    except (ConfigError, scenario.ScenarioError) as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return 125 if ns.bisect_usage_skip else EXIT_USAGE
    probe = ArgParser(conflict_handler="resolve")
    add_repro_flags(probe)
    options = [o for a in probe._actions for o in a.option_strings if o.startswith("--")]
    run_argv = ["run", *repro.strip_flags(argv[1:], REPRO_VALUE_FLAGS, REPRO_ALONE_FLAGS, options)]
    n, seed0, done = ns.repeat, cfg0.seed, []

    class Abort(Exception):
        pass

    def one(i):
        cfg = config_from_args(ns)
        cfg.seed = seed0 + i
        try:
            out = Run(cfg, run_argv, Progress(quiet=True)).execute()
        except (HarnessError, OSError) as e:
            raise Abort(str(e)) from None
        out["seed"] = cfg.seed
        if sc is not None and out.get("exit_code") != 130:
            check_expectation(sc, cfg, out)
        return out

    def shown(i, out):
        done.append(out)
        print(repro.run_line(i + 1, n, out), flush=True)

    aborted = None
    try:
        outs, interrupted = repro.run_series(one, n, ns.until_fail, shown)
    except KeyboardInterrupt:
        outs, interrupted = done, True
    except Abort as e:
        outs, interrupted, aborted = done, False, str(e)
        print(f"tlsharness: {e}", file=sys.stderr)
    s = repro.summarize(outs, scenario=sc.name if sc else None, lib=cfg0.lib,
                        mitigations=cfg0.mitigations, requested=n)
    code = 125 if aborted else repro.exit_code(s, ns.min_rate, ns.until_fail, interrupted)
    s.update(min_rate=ns.min_rate, until_fail=ns.until_fail, interrupted=interrupted,
             error=aborted, exit_code=code)
    if interrupted:
        print(f"interrupted after {len(outs)} of {n} runs", flush=True)
    print("\n".join(repro.summary_lines(s, ns.until_fail)), flush=True)
    if ns.json:
        try:
            results.write_json(Path(ns.json), s)
        except OSError as e:
            print(f"tlsharness: cannot write --json {ns.json}: {e}", file=sys.stderr)
    return code


def cmd_mitigations(ns, argv) -> int:
    """Failure families (scenarios that declare one) × mitigation sets, for one
    library, N runs each: which sets cure which family.  compare.py's machinery
    (compare.json, resumable), plus matrix.md / matrix.json."""
    from pathlib import Path
    from harness import compare, config, report, results, scenario
    try:
        if ns.resume:
            d = Path(ns.resume)
            state = compare.load_state(d)
            if state.get("tool") != "tlsharness mitigations":
                raise compare.CompareError(f"{d}: not a mitigations matrix (tlsharness compare --resume?)")
        else:
            if not ns.lib:
                raise ConfigError("mitigations needs --lib LIB (or --resume DIR)")
            err = _lib_error(ns.lib)
            if err:
                raise ConfigError(err)
            if not 1 <= ns.repeat <= 1000:
                raise ConfigError(f"--repeat must be between 1 and 1000 (got {ns.repeat})")
            if ns.duration is not None and not 0.5 <= ns.duration <= 3600:
                raise ConfigError(f"--duration must be between 0.5 and 3600 (got {ns.duration})")
            known = dict(config.MITIGATIONS)            # read now: the list grows
            sets = (compare.parse_sets(ns.sets, known) if ns.sets is not None
                    else compare.default_sets(known))
            wanted = [f for f in (ns.families or "").split(",") if f.strip()]
            named = [x for x in (ns.scenarios or "").split(",") if x.strip()]
            cat = [scenario.load(x.strip()) for x in named] if named else scenario.catalogue()
            picked, skipped = compare.pick_family_scenarios(cat, wanted, ns.lib, explicit=bool(named))
            for sc, why in skipped:
                print(f"skipping {sc.name}: {why}", file=sys.stderr)
            ids = [_scenario_id(sc) for sc in picked]
            for sid in ids:                             # every cell valid before any run
                for m in sets:
                    compare.cell_config(compare.Cell(ns.lib, sid, m), ns.duration, Path("."),
                                        add_to_scenario=True)
            state = compare.new_state([ns.lib], ids, sets, ns.repeat, ns.duration)
            state.update(tool="tlsharness mitigations", mitigate_mode="add", families=wanted,
                         rows=[{"scenario": sid, "name": sc.name, "family": sc.family,
                                "base": compare.scenario_mitigations(sc)} for sid, sc in zip(ids, picked)])
            d = results.new_run_dir(ns.out)
            results.write_json(d / "compare.json", state)
    except (ConfigError, compare.CompareError, scenario.ScenarioError) as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"tlsharness: {e}", file=sys.stderr)
        return 4
    print(f"mitigations {d}: {len(state['rows'])} scenarios × {len(state['mitigation_sets'])} sets × "
          f"{state['repeat']} runs ({state['libs'][0]})", file=sys.stderr, flush=True)
    state = run_matrix_cli(ns, d, state, "mitigations")
    if isinstance(state, int):
        return state
    m = compare.mitigation_matrix(state)
    md = compare.matrix_markdown(m, str(d))
    results.write_json(d / "matrix.json", m)
    (d / "matrix.md").write_text(md)
    html_path, _ = report.compare_report(d)
    report.index(d.parent)
    print(md)
    print(f"matrix: {d / 'matrix.md'}, {d / 'matrix.json'}; report: {html_path}")
    return 0


def _scenario_id(sc) -> str:
    """How a cell names its scenario: the catalogue name, or the file's absolute path."""
    from pathlib import Path
    from harness import scenario
    try:
        if scenario.load(sc.name).path == sc.path:
            return sc.name
    except scenario.ScenarioError:
        pass
    return str(Path(sc.path).resolve())


def cmd_demo(ns, argv) -> int:
    """The main job: every built library, private baseline vs the OpenSIPS
    model (shared arena, per-message handoff), with a report."""
    cmp_args = ["compare", "--scenarios", "baseline-private,handoff-per-message",
                "--repeat", str(ns.repeat), "--duration", str(ns.duration), "--out", ns.out]
    if ns.libs:
        cmp_args += ["--libs", ns.libs]
    if ns.quiet:
        cmp_args.append("-q")
    rc = main(cmp_args)
    if rc == 0:
        print("\nRead it as: a library that passes the baseline but fails in the shared arena breaks "
              "when its objects live in shared memory and move between processes; the baseline shows "
              "the harness itself is sound. 'unsupported' says why a library cannot take part.")
    return rc


def cmd_watch(ns, argv) -> int:
    from harness.watch import WatchConfig, WatchError, watch
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


def cmd_probe(ns, argv) -> int:
    from harness import probe
    try:
        rows = probe.run(ns.lib or None)
    except probe.ProbeError as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if ns.json:
        print(json.dumps(rows, indent=2))
    else:
        print(probe.table(rows))
    if ns.markdown:
        with open(ns.markdown, "w") as f:
            f.write(probe.markdown(rows))
    return 0 if all("error" not in r for r in rows) else 1


def run_matrix_cli(ns, d, state: dict, cmd: str):
    """Run (or finish) a matrix with a progress line per run; the new state,
    or an exit code when interrupted (130) or refused (2)."""
    from harness import compare

    def prog(done, total, cell, verdict, eta):
        if not ns.quiet:
            print(f"{compare.bar(done, total)} {cell.key}: {verdict:12} ETA {int(eta // 60)}:{int(eta % 60):02d}",
                  file=sys.stderr, flush=True)
    try:
        return compare.run_matrix(d, state, prog)
    except KeyboardInterrupt:
        print(f"interrupted; resume with: tlsharness {cmd} --resume {d}", file=sys.stderr)
        return 130
    except compare.CompareError as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE


def cmd_compare(ns, argv) -> int:
    """Libraries × scenarios × mitigations, N runs each; resumable; a report."""
    from pathlib import Path
    from harness import backends, compare, report, results, scenario
    try:
        if ns.resume:
            d = Path(ns.resume)
            state = compare.load_state(d)
        else:
            avail = backends.availability()
            libs = [l for l in (ns.libs.split(",") if ns.libs else [n for n, (ok, _) in avail.items() if ok and "@" not in n]) if l]
            for l in libs:
                if l not in avail:
                    raise ConfigError(f"unknown library {l!r} (known: {', '.join(avail)})")
            libs = [l for l in libs if avail[l][0]]
            scens = [s for s in ns.scenarios.split(",") if s]
            mits = [tuple(m for m in part.split(",") if m and m != "none")
                    for part in ns.mitigations.split(";")]
            if not 1 <= ns.repeat <= 1000:
                raise ConfigError(f"--repeat must be between 1 and 1000 (got {ns.repeat})")
            state = compare.new_state(libs, scens, mits, ns.repeat, ns.duration)
            d = results.new_run_dir(ns.out)
            results.write_json(d / "compare.json", state)
    except (ConfigError, compare.CompareError, scenario.ScenarioError) as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    cells = len(state["cells"])
    print(f"comparison {d}: {cells} cells × {state['repeat']} runs", file=sys.stderr, flush=True)
    state = run_matrix_cli(ns, d, state, "compare")
    if isinstance(state, int):
        return state
    html_path, md_path = report.compare_report(d)
    report.index(d.parent)
    print(md_path.read_text())
    print(f"report: {html_path}")
    return 0


def cmd_report(ns, argv) -> int:
    from pathlib import Path
    from harness import report
    d = Path(ns.path).absolute()
    try:
        if (d / "compare.json").exists():
            h, _ = report.compare_report(d)
        elif (d / "outcome.json").exists() or (d / "manifest.json").exists():
            h, _ = report.run_report(d)
        else:
            raise report.ReportError(f"{d}: neither a run nor a comparison folder")
    except report.ReportError as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    _, bad = report.read_samples(d / "samples.jsonl")
    if bad:
        print(f"tlsharness: warning: {d / 'samples.jsonl'}: {bad} damaged line(s) skipped",
              file=sys.stderr)
    report.index(d.parent)
    print(f"report: {h}")
    return 0


def cmd_target(ns, argv) -> int:
    from harness.target import TargetConfig, TargetError, run_target
    cmd = list(ns.command or [])
    try:
        if ns.kind == "cmd" and not cmd:
            raise ConfigError("target cmd needs a server command after --")
        if ns.kind == "cmd" and ns.port is None:
            raise ConfigError("target cmd needs --port (the server's TLS port on 127.0.0.1)")
        for name, v, lo, hi in (("workers", ns.workers, 1, 64), ("conns", ns.conns, 1, 4096),
                                ("duration", ns.duration, 0.5, 3600),
                                ("ready-timeout", ns.ready_timeout, 0.5, 600),
                                ("clients", ns.clients, 1, 64), ("window", ns.window, 1, 65536),
                                ("churn-every", ns.churn_every, 1, 1_000_000),
                                ("rate", ns.rate, 0, 10_000_000),
                                ("port", ns.port if ns.port is not None else 1, 1, 65535)):
            if not lo <= v <= hi:
                raise ConfigError(f"--{name} must be between {lo} and {hi} (got {v})")
        if ns.kind == "kamailio":
            from harness.target import KAMAILIO_MODULES, check_kamailio
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


def cmd_scenarios(ns, argv) -> int:
    from harness import scenario
    rows = scenario.catalogue()
    width = max((len(s.name) for s in rows), default=10)
    for s in rows:
        refs = f"  [{', '.join(s.refs)}]" if s.refs else ""
        print(f"{s.name:{width}}  {s.summary}{refs}")
        if s.notes:
            print(f"{'':{width}}    note: {s.notes}")
    return 1 if any(s.summary.startswith("BROKEN") for s in rows) else 0


def cmd_libs(ns, argv) -> int:
    from harness import backends
    if ns.action == "add":
        from harness import userlibs
        if not (ns.name and ns.prefix):
            print("tlsharness: error: libs add NAME --prefix PATH [--kind openssl]", file=sys.stderr)
            return EXIT_USAGE
        try:
            print(f"built {userlibs.add(ns.name, ns.prefix, ns.kind)}: use --lib {ns.name}")
        except userlibs.UserLibError as e:
            print(f"tlsharness: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        return 0
    avail = backends.availability()
    print(f"{'library':16} {'state':8} {'version':22} where")
    for name, (built, reason) in avail.items():
        inf = backends.info(name)
        where = inf.get("prefix") or ("system" if built else reason)
        ver = inf.get("version", "") or ("" if built else "-")
        print(f"{name:16} {'built' if built else 'missing':8} {ver:22} {where}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    for stream in (sys.stdout, sys.stderr):     # an ASCII-only terminal: '?' for '—', no crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    p = ArgParser(prog="tlsharness", description="Stress and deadlock reproduction harness "
                  "for TLS libraries inside multi-process servers.")
    p.add_argument("--version", action="version", version=f"tlsharness {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=ArgParser)
    r = sub.add_parser("run", help="run the stand (or a scenario) under load and judge it")
    _add_run_flags(r)
    r.add_argument("scenario", nargs="?", help="a scenario name or file (tlsharness scenarios)")
    r.set_defaults(fn=cmd_run)
    rp = sub.add_parser("repro", conflict_handler="resolve",
                        help="N runs (or a scenario): rate, time to failure, families; exit 1 if "
                        "the failure reproduces (git bisect run)")
    add_repro_flags(rp)
    rp.set_defaults(fn=cmd_repro, bisect_usage_skip=False)
    mt = sub.add_parser("mitigations", help="failure families x mitigation sets for one library: "
                        "which sets cure which family")
    mt.add_argument("--lib", help="the TLS library (tlsharness libs)")
    mt.add_argument("--repeat", type=int, default=5, help="runs per cell (default 5)")
    mt.add_argument("--duration", type=float, default=None, help="override the scenarios' durations")
    mt.add_argument("--families", default="", help="comma-separated families (or scenario names); "
                    "default: every catalogue scenario that declares a family")
    mt.add_argument("--scenarios", default="", help="comma-separated scenario names or files to run "
                    "instead of the catalogue's family scenarios")
    mt.add_argument("--sets", default=None, help="';'-separated mitigation sets, each comma-separated "
                    "(default: none, each single mitigation but write-dup, pshared,prefork-thread)")
    mt.add_argument("--out", default="results", help="results root (a new folder under it)")
    mt.add_argument("--resume", metavar="DIR", help="finish an interrupted matrix")
    mt.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    mt.set_defaults(fn=cmd_mitigations)
    dm = sub.add_parser("demo", help="baseline vs shared-arena model, side by side")
    dm.add_argument("--libs", default="", help="default: every built system library")
    dm.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    dm.add_argument("--repeat", type=int, default=2, help="runs per library and scenario (default 2)")
    dm.add_argument("--out", default="results", help="results folder (default ./results)")
    dm.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    dm.set_defaults(fn=cmd_demo)
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
    cp = sub.add_parser("compare", help="libraries x scenarios x mitigations, with a report")
    cp.add_argument("--libs", default="", help="comma-separated (default: every built system library)")
    cp.add_argument("--scenarios", default="handoff-per-message", help="comma-separated scenario names or files (default handoff-per-message)")
    cp.add_argument("--mitigations", default="none",
                    help="';'-separated sets, each comma-separated, e.g. 'none;pshared,prefork-thread'")
    cp.add_argument("--repeat", type=int, default=3, help="runs per cell (default 3)")
    cp.add_argument("--duration", type=float, default=None, help="override the scenarios' durations")
    cp.add_argument("--out", default="results", help="results folder (default ./results)")
    cp.add_argument("--resume", metavar="DIR", help="finish an interrupted comparison")
    cp.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    cp.set_defaults(fn=cmd_compare)
    rpt = sub.add_parser("report", help="regenerate report.html/report.md from a run or comparison folder")
    rpt.add_argument("path", help="a run or comparison folder")
    rpt.set_defaults(fn=cmd_report)
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
    sc = sub.add_parser("scenarios", help="list the scenario catalogue")
    sc.set_defaults(fn=cmd_scenarios)
    pr = sub.add_parser("probe", help="measure each library's hooks and thread-local state")
    pr.add_argument("--lib", action="append", help="library to probe (repeatable; default all built)")
    pr.add_argument("--json", action="store_true", help="print the rows as JSON")
    pr.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    pr.set_defaults(fn=cmd_probe)
    lb = sub.add_parser("libs", help="list the TLS libraries built here; 'libs add' your own build")
    lb.add_argument("action", nargs="?", choices=["list", "add"], default="list", help="list (default) or add NAME --prefix PATH")
    lb.add_argument("name", nargs="?", help="add: the name to give the build (then --lib NAME)")
    lb.add_argument("--prefix", help="add: the install prefix (include/ and lib/)")
    lb.add_argument("--kind", default="openssl", help="add: openssl, wolfssl, mbedtls or gnutls (default openssl)")
    lb.set_defaults(fn=cmd_libs)
    server_cmd = []
    if argv and argv[0] == "target" and "--" in argv:     # target cmd [flags] -- COMMAND...
        i = argv.index("--")
        argv, server_cmd = argv[:i], argv[i + 1:]
    ns = p.parse_args(argv)
    if server_cmd:
        ns.command = server_cmd
    from harness import certs, native, results
    try:
        return ns.fn(ns, argv)
    except results.ResultsError as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (certs.CertError, native.NativeMissing) as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return bisect_code(EXIT_HARNESS) if getattr(ns, "bisect", False) else EXIT_HARNESS
    except BrokenPipeError:             # output piped into head & co: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
