"""`history`: what the run history (results/history.sqlite) says."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.cli.common import int_in, writable_file
from harness.verdicts import EXIT_USAGE

GROUPS = ("lib", "lib_version", "scenario", "mitigations", "kind", "verdict", "campaign",
          "git_commit")


def cmd_history(ns, argv) -> int:
    from harness.analysis import history
    path = Path(ns.db) if ns.db else history.db_path(ns.out)
    if not path.exists():
        print(f"tlsharness: error: no run history at {path} (runs record there; or give --db)",
              file=sys.stderr)
        return EXIT_USAGE
    if ns.safety or ns.diff or ns.markdown or ns.probe:
        from harness.cli import safety
        return safety.show(ns, path)
    by = tuple(x for x in ns.by.split(",") if x)
    bad = [x for x in by if x not in GROUPS]
    if bad or not by:
        print(f"tlsharness: error: --by takes a comma-separated list of {', '.join(GROUPS)} "
              f"(got {ns.by!r})", file=sys.stderr)
        return EXIT_USAGE
    if path.is_file() and path.stat().st_size == 0:    # read, never written into
        print("[]" if ns.json else "no recorded run matches (the history file is empty)")
        return 0
    try:
        con = history.connect(path)
        where = {"lib": ns.lib, "scenario": ns.scenario}
        if ns.runs:
            rows = history.recent(con, ns.runs)
        else:
            rows = history.rates(con, by, where, ns.since)
        if ns.plot:
            history.trend_png(history.trend(con, by, where), ns.plot)
        con.close()
    except history.HistoryError as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"tlsharness: error: {e.filename or ns.plot}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    if ns.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no recorded run matches")
        return 0
    if ns.runs:
        for r in rows:
            print(f"{r['recorded_at']}  {r['kind']:7} {r['lib'] or '-':16} {r['scenario'] or '-':24} "
                  f"{r['verdict']:12} {', '.join(json.loads(r['families'] or '[]'))}")
        return 0
    head = [*by, "runs", "failed", "rate (95% CI)", "families", "first", "last"]
    print("  ".join(head))
    for r in rows:
        fams = ", ".join(f"{k} {v}" for k, v in sorted(r["families"].items(), key=lambda x: -x[1]))
        print("  ".join([*(str(r[k] or "-") for k in by), str(r["runs"]), str(r["failures"]),
                         f"{r['rate']:.0%} ({r['ci95'][0]:.0%}-{r['ci95'][1]:.0%})", fams or "-",
                         r["first"][:10], r["last"][:10]]))
    if ns.plot:
        print(f"trend plot: {ns.plot}")
    return 0


def _date(text: str) -> str:
    """--since: a real calendar date, YYYY-MM-DD."""
    import argparse
    import datetime
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a date YYYY-MM-DD (got {text!r})") from None


def add_parsers(sub) -> None:
    h = sub.add_parser("history", help="failure rates over time from the run history "
                       "(results/history.sqlite)")
    h.add_argument("--out", default="results", help="results folder holding history.sqlite")
    h.add_argument("--db", help="a history file elsewhere")
    h.add_argument("--by", default="lib,lib_version,scenario",
                   help=f"group by, comma-separated: {', '.join(GROUPS)}")
    h.add_argument("--lib", help="only this library")
    h.add_argument("--scenario", help="only this scenario")
    h.add_argument("--since", type=_date, help="only runs recorded since this date (YYYY-MM-DD)")
    h.add_argument("--runs", type=int_in(1, 1_000_000), metavar="N",
                   help="list the last N runs instead")
    h.add_argument("--json", action="store_true", help="print the rows as JSON")
    h.add_argument("--plot", metavar="PNG", type=writable_file, help="also draw the failure rate per day of each group")
    from harness.cli import safety
    safety.add_flags(h)
    h.set_defaults(fn=cmd_history)
