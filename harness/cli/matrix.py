"""Matrices of runs: `compare`, `mitigations`, `demo`, and `report`."""
from __future__ import annotations

import sys

from harness.spec.config import ConfigError
from harness.verdicts import EXIT_HARNESS, EXIT_USAGE
from harness.cli.common import int_in
from harness.cli.runs import lib_error


def cmd_mitigations(ns, argv) -> int:
    """Failure families (scenarios that declare one) × mitigation sets, for one
    library, N runs each: which sets cure which family.  compare.py's machinery
    (compare.json, resumable), plus matrix.md / matrix.json."""
    from pathlib import Path
    from harness.analysis import report, results
    from harness.analysis.matrix import matrix_markdown, mitigation_matrix
    from harness.control import compare
    from harness.spec import scenario
    try:
        if ns.resume:
            d = compare.folder(ns.resume)
            state = compare.load_state(d)
            if state.get("tool") != "tlsharness mitigations":
                raise compare.CompareError(f"{d}: not a mitigations matrix (tlsharness compare --resume?)")
        else:
            d, state = _new_mitigations(ns)
    except (ConfigError, compare.CompareError, scenario.ScenarioError) as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"tlsharness: {e}", file=sys.stderr)
        return EXIT_HARNESS
    print(f"mitigations {d}: {len(state['rows'])} scenarios × {len(state['mitigation_sets'])} sets × "
          f"{state['repeat']} runs ({state['libs'][0]})", file=sys.stderr, flush=True)
    state = run_matrix_cli(ns, d, state, "mitigations")
    if isinstance(state, int):
        return state
    m = mitigation_matrix(state)
    md = matrix_markdown(m, str(d))
    results.write_json(d / "matrix.json", m)
    (d / "matrix.md").write_text(md)
    html_path, _ = report.compare_report(d)
    report.index(d.parent)
    print(md)
    print(f"matrix: {d / 'matrix.md'}, {d / 'matrix.json'}; report: {html_path}")
    return 0


def _new_mitigations(ns):
    """The matrix's folder and plan, every cell checked before a folder exists."""
    from pathlib import Path
    from harness.analysis import results
    from harness.control import compare
    from harness.spec import params, scenario
    if not ns.lib:
        raise ConfigError("mitigations needs --lib LIB (or --resume DIR)")
    err = lib_error(ns.lib)
    if err:
        raise ConfigError(err)
    if ns.duration is not None and not 0.5 <= ns.duration <= 3600:
        raise ConfigError(f"--duration must be between 0.5 and 3600 (got {ns.duration})")
    known = dict(params.MITIGATIONS)
    sets = (compare.parse_sets(ns.sets, known) if ns.sets is not None
            else compare.default_sets(known, ns.lib))
    wanted = [f for f in (ns.families or "").split(",") if f.strip()]
    named = [x for x in (ns.scenarios or "").split(",") if x.strip()]
    cat = [scenario.load(x.strip()) for x in named] if named else scenario.catalogue()
    picked, skipped = compare.pick_family_scenarios(cat, wanted, ns.lib, explicit=bool(named))
    for sc, why in skipped:
        print(f"skipping {sc.name}: {why}", file=sys.stderr)
    ids = [_scenario_id(sc) for sc in picked]
    for sid in ids:
        for m in sets:
            compare.cell_config(compare.Cell(ns.lib, sid, m), ns.duration, Path("."),
                                add_to_scenario=True)
    state = compare.new_state([ns.lib], ids, sets, ns.repeat, ns.duration)
    state.update(tool="tlsharness mitigations", mitigate_mode="add", families=wanted,
                 rows=[{"scenario": sid, "name": sc.name, "family": sc.family,
                        "base": compare.scenario_mitigations(sc)} for sid, sc in zip(ids, picked)])
    d = results.new_run_dir(ns.out)
    results.write_json(d / "compare.json", state)
    return d, state


def _scenario_id(sc) -> str:
    """How a cell names its scenario: the catalogue name, or the file's absolute path."""
    from pathlib import Path
    from harness.spec import scenario
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
    import argparse                        # the compare command, as a user would run it
    p = argparse.ArgumentParser(prog="tlsharness")
    add_parsers(p.add_subparsers(dest="cmd"))
    cns = p.parse_args(cmp_args)
    rc = cns.fn(cns, cmp_args)
    if rc == 0:
        print("\nRead it as: a library that passes the baseline but fails in the shared arena breaks "
              "when its objects live in shared memory and move between processes; the baseline shows "
              "the harness itself is sound. 'unsupported' says why a library cannot take part.")
    return rc


def run_matrix_cli(ns, d, state: dict, cmd: str):
    """Run (or finish) a matrix with a progress line per run; the new state,
    or an exit code when interrupted (130) or refused (2)."""
    from harness.control import compare

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
    from harness.analysis import report
    from harness.control import compare
    from harness.analysis import results
    from harness.spec import scenario
    from harness.builds import backends
    try:
        if ns.resume:
            d = compare.folder(ns.resume)
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
    from harness.analysis import report
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


def add_parsers(sub) -> None:
    mt = sub.add_parser("mitigations", help="failure families x mitigation sets for one library: "
                        "which sets cure which family")
    mt.add_argument("--lib", help="the TLS library (tlsharness libs)")
    mt.add_argument("--repeat", type=int_in(1, 1000), default=5, help="runs per cell (default 5)")
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
    dm.add_argument("--repeat", type=int_in(1, 1000), default=2, help="runs per library and scenario (default 2)")
    dm.add_argument("--out", default="results", help="results folder (default ./results)")
    dm.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    dm.set_defaults(fn=cmd_demo)
    cp = sub.add_parser("compare", help="libraries x scenarios x mitigations, with a report")
    cp.add_argument("--libs", default="", help="comma-separated (default: every built system library)")
    cp.add_argument("--scenarios", default="handoff-per-message", help="comma-separated scenario names or files (default handoff-per-message)")
    cp.add_argument("--mitigations", default="none",
                    help="';'-separated sets, each comma-separated, e.g. 'none;pshared,prefork-thread'")
    cp.add_argument("--repeat", type=int_in(1, 1000), default=3, help="runs per cell (default 3)")
    cp.add_argument("--duration", type=float, default=None, help="override the scenarios' durations")
    cp.add_argument("--out", default="results", help="results folder (default ./results)")
    cp.add_argument("--resume", metavar="DIR", help="finish an interrupted comparison")
    cp.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    cp.set_defaults(fn=cmd_compare)
    rpt = sub.add_parser("report", help="regenerate report.html/report.md from a run or comparison folder")
    rpt.add_argument("path", help="a run or comparison folder")
    rpt.set_defaults(fn=cmd_report)
