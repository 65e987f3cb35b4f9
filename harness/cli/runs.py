"""`run` and `repro`: one run of the stand (or a scenario), or N of them."""
from __future__ import annotations

import argparse
import json
import sys

from harness.spec.config import ConfigError
from harness.spec.runflags import add_run_flags as _add_run_flags, config_from_args
from harness.verdicts import EXIT_HARNESS, EXIT_USAGE, V, bisect_code
from harness.cli.common import ArgParser, int_in


def summary(out: dict) -> str:
    lines = [f"{out['outcome'].upper()}: {out['verdict']} — {out.get('reason', '')}"]
    if out.get("memory", "").startswith("interpose"):
        lines.append("  memory: " + out["memory"])
    ttf = out.get("time_to_failure_ms")
    if out.get("failure_phase") == "set-up":
        lines.append("  failure in the stand's set-up, before any load")
    for e in out.get("evidence", [])[:3]:          # a crash in set-up: what was found
        lines.append(f"  evidence: {e}")
    if ttf is not None and out.get("detect_latency_ms") is not None:
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
    from harness.spec import scenario
    sc = scenario.load_stand(ns.scenario)
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
    from harness.spec.runflags import tokens
    return tokens(sc.params)


def cmd_run(ns, argv) -> int:
    from harness.spec import scenario
    from harness.control.controller import HarnessError, Run
    from harness.control.progress import Progress
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
    if cfg.ciphers and cfg.tls == 13:
        print(f"tlsharness: warning: --ciphers {cfg.ciphers!r} is a TLS 1.2 cipher list: ignored "
              "with TLS 1.3 (add --tls 1.2 to use it)", file=sys.stderr)
    run = None
    try:
        run = Run(cfg, argv, Progress(quiet=ns.quiet))
        out = run.execute()
    except HarnessError as e:
        print(f"tlsharness: {e}", file=sys.stderr)
        return bisect_code(EXIT_HARNESS) if ns.bisect else EXIT_HARNESS
    except OSError as e:                   # ENOSPC, EROFS...: the path it happened to, one line
        where = e.filename or getattr(run, "dir", None) or cfg.out
        print(f"tlsharness: error: {where}: {e.strerror or e}", file=sys.stderr)
        return bisect_code(EXIT_HARNESS) if ns.bisect else EXIT_HARNESS
    if sc is not None:
        check_expectation(sc, cfg, out)
    if out.get("run_dir"):
        from pathlib import Path
        from harness.analysis import history, report
        from harness.control import compare
        report.index(Path(out["run_dir"]).parent)
        history.record(Path(out["run_dir"]).parent, out, "run", scenario=sc.name if sc else None,
                       params=compare.run_params(cfg))
    print(json.dumps(out, indent=2, default=str) if ns.json else summary(out))
    return bisect_code(out["exit_code"]) if ns.bisect else out["exit_code"]


def check_expectation(sc, cfg, out: dict) -> None:
    """Record whether the run came out as the scenario expects for this
    library and these mitigations (in outcome.json too)."""
    from harness.analysis import results
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
    p.add_argument("--repeat", "--runs", dest="repeat", type=int_in(1, 1000), default=3,
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
        from harness.builds import userlibs
        try:
            ns.lib = userlibs.add(userlibs.name_for(ns.lib_prefix, ns.lib_kind), ns.lib_prefix,
                                  ns.lib_kind, ("--lib-prefix", "--lib-kind"))
        except userlibs.UserLibError as e:
            raise ConfigError(str(e)) from None
    cfg = config_from_args(ns)
    err = lib_error(cfg.lib)
    if err:
        raise ConfigError(err)
    return cfg


def lib_error(lib: str) -> str | None:
    from harness.builds import backends
    built = backends.availability()
    if lib not in built:
        return f"unknown --lib {lib!r} (known: {', '.join(sorted(built))})"
    if not built[lib][0]:
        return f"--lib {lib} is not built here: {built[lib][1]}"
    return None


def _repro_setup(ns, argv):
    """(ns, scenario or None, checked config): a scenario's params first, the
    user's flags after them; raises ConfigError / ScenarioError."""
    from pathlib import Path
    from harness.spec import scenario
    sc = None
    if ns.scenario:
        sc = scenario.load_stand(ns.scenario)
        user = list(argv[1:])
        user.remove(ns.scenario)
        sub = ArgParser(prog="tlsharness repro", conflict_handler="resolve")
        add_repro_flags(sub)
        skip = ns.bisect_usage_skip
        ns = sub.parse_args([*scenario_tokens(sc), *user])
        ns.bisect_usage_skip = skip
        given = {a.split("=")[0][2:].replace("-", "_") for a in user if a.startswith("--")}
        sc.overridden = sorted(k for k in sc.params if k in given)
    if not 0 < ns.min_rate <= 1:
        raise ConfigError(f"--min-rate must be in (0, 1] (got {ns.min_rate})")
    if ns.json and not Path(ns.json).resolve().parent.is_dir():
        raise ConfigError(f"--json {ns.json}: no such directory {Path(ns.json).resolve().parent}")
    return ns, sc, checked_config(ns)


class _Abort(Exception):
    """A run of the series could not be done at all."""


def _repro_one(ns, sc, run_argv, seed0):
    """One run of the series, recorded in the history and checked against
    the scenario's expectation."""
    from pathlib import Path
    from harness.analysis import history
    from harness.control import compare
    from harness.control.controller import HarnessError, Run
    from harness.control.progress import Progress

    def one(i):
        cfg = config_from_args(ns)
        cfg.seed = seed0 + i
        try:
            out = Run(cfg, run_argv, Progress(quiet=True)).execute()
        except (HarnessError, OSError) as e:
            raise _Abort(str(e)) from None
        out["seed"] = cfg.seed
        if out.get("verdict") != V.INTERRUPTED:
            if sc is not None:
                check_expectation(sc, cfg, out)
            if out.get("run_dir"):
                history.record(Path(out["run_dir"]).parent, out, "repro",
                               scenario=sc.name if sc else None, params=compare.run_params(cfg))
        return out
    return one


def cmd_repro(ns, argv) -> int:
    """N runs of one configuration (or scenario); bad (1) when the failure
    reproduces in at least --min-rate of them, good (0) when no run failed and
    every run was judged, 125 otherwise; prints the statistics (harness/control/repro.py)."""
    from pathlib import Path
    from harness.analysis import results
    from harness.control import repro
    from harness.spec import scenario
    try:
        ns, sc, cfg0 = _repro_setup(ns, argv)
    except (ConfigError, scenario.ScenarioError) as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return 125 if ns.bisect_usage_skip else EXIT_USAGE
    probe = ArgParser(conflict_handler="resolve")
    add_repro_flags(probe)
    options = [o for a in probe._actions for o in a.option_strings if o.startswith("--")]
    run_argv = ["run", *repro.strip_flags(argv[1:], REPRO_VALUE_FLAGS, REPRO_ALONE_FLAGS, options)]
    n, done, aborted = ns.repeat, [], None

    def shown(i, out):
        done.append(out)
        print(repro.run_line(i + 1, n, out), flush=True)
    try:
        outs, interrupted = repro.run_series(_repro_one(ns, sc, run_argv, cfg0.seed), n,
                                             ns.until_fail, shown)
    except KeyboardInterrupt:
        outs, interrupted = done, True
    except _Abort as e:
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


def add_parsers(sub) -> None:
    r = sub.add_parser("run", help="run the stand (or a scenario) under load and judge it")
    _add_run_flags(r)
    r.add_argument("scenario", nargs="?", help="a scenario name or file (tlsharness scenarios)")
    r.set_defaults(fn=cmd_run)
    rp = sub.add_parser("repro", conflict_handler="resolve",
                        help="N runs (or a scenario): rate, time to failure, families; exit 1 if "
                        "the failure reproduces (git bisect run)")
    add_repro_flags(rp)
    rp.set_defaults(fn=cmd_repro, bisect_usage_skip=False)
