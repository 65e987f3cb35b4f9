"""`tlsharness repro`: a series of runs of one configuration, its statistics
and its text.

Pure functions, no stand and no processes: `cli.cmd_repro` runs the series
(`run_series` with a function that does one real run) and prints what
`run_line`, `summarize` and `summary_lines` return.  The failure rate's
interval and the quantiles are compare.py's (`wilson`, `quantile`).
"""
from __future__ import annotations

from collections import Counter

from harness.analysis.stats import quantile, wilson
from harness.verdicts import EXIT_BISECT_SKIP, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_PASS, FAILURES
from harness.verdicts import V

EXIT_GOOD, EXIT_BAD, EXIT_SKIP = EXIT_PASS, EXIT_FAILURE, EXIT_BISECT_SKIP


def is_failure(o: dict) -> bool:
    """A failure verdict (exit code 1 of `tlsharness run`)."""
    code = o.get("exit_code")
    return code == 1 if code is not None else o.get("verdict") in FAILURES


def is_judged(o: dict) -> bool:
    """pass or a failure; not inconclusive, overload, stopped, unsupported."""
    code = o.get("exit_code")
    return code in (0, 1) if code is not None else (o.get("verdict") == V.PASS or is_failure(o))


def run_series(run_one, n: int, until_fail: bool = False, on_result=None) -> tuple[list[dict], bool]:
    """run_one(i) for i = 0 .. n-1, each returning an outcome dict.

    Stops after the first failure when `until_fail`, and at an interrupted run
    (exit code 130, or KeyboardInterrupt), which is not counted.  on_result(i, o)
    is called after each counted run.  Returns (outcomes, interrupted)."""
    outs: list[dict] = []
    for i in range(n):
        try:
            o = run_one(i)
        except KeyboardInterrupt:
            return outs, True
        if o.get("verdict") == V.INTERRUPTED or o.get("exit_code") == EXIT_INTERRUPTED:
            return outs, True
        outs.append(o)
        if on_result:
            on_result(i, o)
        if until_fail and is_failure(o):
            break
    return outs, False


def counts(items) -> dict:
    """Occurrences, most common first (ties in order of first appearance)."""
    return dict(Counter(items).most_common())


def summarize(outs: list[dict], scenario: str | None = None, lib: str = "",
              mitigations=(), requested: int | None = None) -> dict:
    """The series' statistics (the `--json` summary).  Each outcome may carry
    "seed" (the run's seed) and "expected" (cli.check_expectation)."""
    n = len(outs)
    failing = [(i, o) for i, o in enumerate(outs, 1) if is_failure(o)]
    k = len(failing)
    judged = sum(1 for o in outs if is_judged(o))
    lo, hi = wilson(k, judged)           # a run that could not be judged says nothing either way
    ttf = [o["time_to_failure_ms"] for _, o in failing if o.get("time_to_failure_ms") is not None]
    exp = [o["expected"] for o in outs if o.get("expected")]
    return {
        "scenario": scenario, "lib": lib, "mitigations": sorted(mitigations),
        "requested": requested if requested is not None else n,
        "runs": n, "failed": k, "judged": judged,
        "rate": k / judged if judged else None, "ci95": [lo, hi],
        "ttf_median_ms": quantile(ttf, 0.5), "ttf_p90_ms": quantile(ttf, 0.9),
        # a run names each family once; families are only named for non-pass verdicts
        "families": counts(f for o in outs for f in dict.fromkeys(o.get("families") or [])),
        "verdicts": counts(o.get("verdict", "?") for o in outs),
        "expected": {"runs": len(exp), "as_expected": sum(1 for e in exp if e.get("as_expected")),
                     "what": exp[0].get("what", "")} if exp else None,
        "failing": [{"run": i, "seed": o.get("seed"), "command": o.get("command"),
                     "run_dir": o.get("run_dir"), "verdict": o.get("verdict"),
                     "families": list(o.get("families") or []),
                     "ttf": o.get("time_to_failure_ms")} for i, o in failing],
    }


def exit_code(s: dict, min_rate: float, until_fail: bool = False, interrupted: bool = False) -> int:
    """git bisect run: 1 bad when the failure rate reaches min_rate (with
    --until-fail: when any run failed), 0 good when no run failed and every
    run was judged, 125 (skip) otherwise; 130 when interrupted."""
    if interrupted:
        return EXIT_INTERRUPTED
    n, k = s["runs"], s["failed"]
    if n == 0:
        return EXIT_SKIP
    if k and (until_fail or k / n >= min_rate):
        return EXIT_BAD
    return EXIT_GOOD if k == 0 and s["judged"] == n else EXIT_SKIP


def fmt_ms(v) -> str:
    return "-" if v is None else f"{v:,.0f} ms"


def fmt_counts(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"


def run_line(i: int, n: int, o: dict) -> str:
    """One line per run: verdict, time to failure, families, run folder (and,
    for a run that could not be judged, why)."""
    fams = ", ".join(o.get("families") or []) or "-"
    line = (f"run {i}/{n}: {o.get('verdict', '?'):12} ttf {fmt_ms(o.get('time_to_failure_ms')):>9}  "
            f"families: {fams}  ({o.get('run_dir', '?')})")
    if not is_judged(o) and o.get("reason"):
        line += f"  — {o['reason'][:90]}"
    return line


def summary_lines(s: dict, until_fail: bool = False) -> list[str]:
    n, k = s["runs"], s["failed"]
    lines = []
    if n == 0:
        return ["no run finished"]
    lo, hi = s["ci95"]
    stop = ""
    if until_fail:
        stop = (f"; stopped at the first failure (run {n} of at most {s['requested']})" if k
                else f"; no failure in {n} runs")
    elif n < s["requested"]:
        stop = f"; {n} of {s['requested']} requested runs done"
    j = s["judged"]
    rate = f"{k / j:.0%}, 95% CI {lo:.0%}–{hi:.0%}" if j else "no run judged"
    lines.append(f"reproduced in {k}/{j} judged runs ({rate}); "
                 f"{n - j} of {n} could not be judged{stop}")
    if k:
        ttf_n = sum(1 for f in s["failing"] if f["ttf"] is not None)
        lines.append(f"time to failure ({ttf_n} of {k} failing runs): median {fmt_ms(s['ttf_median_ms'])}, "
                     f"p90 {fmt_ms(s['ttf_p90_ms'])}")
    lines.append(f"verdicts: {fmt_counts(s['verdicts'])}")
    lines.append(f"families: {fmt_counts(s['families'])}")
    e = s.get("expected")
    if e:
        lines.append(f"scenario {s['scenario']}: {e['as_expected']}/{e['runs']} runs as expected "
                     f"({e['what']})")
    elif s.get("scenario"):
        mit = "+" + ",".join(s["mitigations"]) if s["mitigations"] else ""
        lines.append(f"scenario {s['scenario']}: no expectation for {s['lib']}{mit}")
    if s["failing"]:
        lines.append("re-run a failing run:" if len(s["failing"]) == 1 else "re-run the failing runs:")
        for f in s["failing"]:
            lines.append(f"  run {f['run']}: {f['command']}")
    return lines


def strip_flags(args: list[str], with_value: set[str], alone: set[str],
                options: list[str] = ()) -> list[str]:
    """args without the given flags (and their values): the `repro` flags that a
    `tlsharness run` re-run command must not carry.  `options` (every option
    of the parser) resolves argparse's unambiguous abbreviations ("--rep 5")."""
    def resolve(flag: str) -> str:
        if flag in with_value or flag in alone or not options:
            return flag
        hits = [o for o in options if o.startswith(flag)]
        return hits[0] if len(hits) == 1 else flag

    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a.startswith("--"):
            name, eq, _ = a.partition("=")
            name = resolve(name)
            if name in with_value:
                skip = not eq
                continue
            if name in alone:
                continue
        out.append(a)
    return out
