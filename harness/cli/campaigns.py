"""`campaign plan | run | merge`: a matrix of runs as data, run here or on
Dask workers, resumable, merged into the report `compare` gives."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.cli.common import int_in
from harness.verdicts import EXIT_USAGE


def cmd_campaign(ns, argv) -> int:
    from harness.control import campaign, compare
    from harness.spec import scenario
    try:
        return {"plan": _plan, "run": _run, "merge": _merge}[ns.action](ns)
    except (campaign.CampaignError, compare.CompareError, scenario.ScenarioError) as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE


def _plan(ns) -> int:
    from harness.analysis import results
    from harness.control import campaign
    from harness.builds import backends
    if ns.emit == "github-matrix":
        print(json.dumps(campaign.github_matrix(ns.shards)))
        return 0
    from harness.control import compare
    from harness.spec.params import MITIGATIONS
    avail = backends.availability()
    if ns.libs is not None:
        libs = _items(ns.libs, "--libs")
    else:
        libs = [n for n, (ok, _) in avail.items() if ok and "@" not in n]
    for x in libs:
        if x not in avail:
            raise campaign.CampaignError(f"unknown library {x!r} (known: {', '.join(avail)})")
    mits = compare.parse_sets(ns.mitigations, MITIGATIONS)
    state = campaign.plan([x for x in libs if avail[x][0]], _items(ns.scenarios, "--scenarios"),
                          mits, ns.repeat, ns.duration)
    d = results.new_run_dir(ns.out)
    results.write_json(d / "campaign.json", state)
    print(f"campaign {d}: {len(state['specs'])} runs ({len(state['cells'])} cells x {ns.repeat})")
    return 0


def _items(text: str, flag: str) -> list[str]:
    """The comma-separated items of TEXT, each once, in order; an empty list
    is an error naming FLAG (never "all of them")."""
    from harness.control import campaign
    items = list(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    if not items:
        raise campaign.CampaignError(f"{flag} names nothing (got {text!r}); leave it out for the default")
    return items


def _run(ns) -> int:
    from harness.control import campaign
    d = campaign.folder(ns.dir)
    if ns.scheduler:
        campaign.check_scheduler(ns.scheduler)
    state = campaign.load(d)
    specs = campaign.todo(d, state, campaign.parse_shard(ns.shard))
    print(f"campaign {d}: {len(specs)} runs to do"
          + (f" (shard {ns.shard})" if ns.shard else "")
          + (f" on {ns.scheduler}" if ns.scheduler else " on this machine"),
          file=sys.stderr, flush=True)

    def shown(k, n, spec, out):
        if not ns.quiet:
            print(f"  [{k}/{n}] {spec['lib']} | {spec['scenario']} | "
                  f"{','.join(spec['mitigations']) or 'none'} #{spec['rep']}: "
                  f"{out.get('verdict')} ({out.get('host') or '-'}, "
                  f"{out.get('seconds') or '-'} s)", file=sys.stderr, flush=True)
    try:
        if ns.scheduler:
            campaign.run_dask(d, state, specs, ns.scheduler, shown)
        else:
            campaign.run_embedded(d, state, specs, shown)
    except KeyboardInterrupt:
        left = len(campaign.todo(d, state, campaign.parse_shard(ns.shard)))
        print(f"campaign {d}: interrupted, {len(specs) - left} done, {left} left "
              f"(campaign run {d} goes on from there)")
        return 130
    left = len(campaign.todo(d, state, campaign.parse_shard(ns.shard)))
    print(f"campaign {d}: {len(specs) - left} done, {left} left"
          + (" (lost attempts run again next time)" if left else ""))
    return 0 if not left else 3


def _merge(ns) -> int:
    from harness.analysis import report
    from harness.control import campaign
    d = campaign.folder(ns.dir)
    summary = campaign.merge(d, [campaign.folder(o) for o in ns.others])
    html_path, md_path = report.compare_report(d)
    print(md_path.read_text())
    print(f"{summary['done']} of {summary['total']} runs"
          + (f" ({summary['errors']} ended in error: not counted, run again by campaign run)"
             if summary.get("errors") else "") + "; time per machine:")
    for host, t in sorted(summary["timing"].items()):
        print(f"  {host}: {t['runs']} runs, {t['seconds']:.0f} s")
    print(f"report: {html_path}")
    return 0


def add_parsers(sub) -> None:
    c = sub.add_parser("campaign", help="a matrix of runs as data: plan, run (here or on Dask "
                       "workers, resumable, sharded), merge into a report")
    c.add_argument("action", choices=["plan", "run", "merge"], help="plan | run DIR | merge DIR [DIR...]")
    c.add_argument("dir", nargs="?", help="run/merge: the campaign folder")
    c.add_argument("others", nargs="*", help="merge: shard folders to join into DIR")
    c.add_argument("--libs", default=None, help="plan: comma-separated (default: every built system library)")
    c.add_argument("--scenarios", default="handoff-per-message", help="plan: comma-separated scenarios")
    c.add_argument("--mitigations", default="none", help="plan: ';'-separated sets, each comma-separated")
    c.add_argument("--repeat", type=int_in(1, 10000), default=3, help="plan: runs per cell (default 3)")
    c.add_argument("--duration", type=float, default=None, help="plan: override the scenarios' durations")
    c.add_argument("--emit", choices=["github-matrix"], help="plan: print a CI matrix instead")
    c.add_argument("--shards", type=int_in(1, 256), default=4, help="plan --emit: number of shards (default 4)")
    c.add_argument("--scheduler", help="run: Dask scheduler address (tcp://HOST:8786); default: here")
    c.add_argument("--shard", help="run: I/N, every N-th run starting at I")
    c.add_argument("--out", default="results", help="plan: results folder (default ./results)")
    c.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    c.set_defaults(fn=_checked)


def _checked(ns, argv) -> int:
    if ns.action in ("run", "merge") and not ns.dir:
        print(f"tlsharness: error: campaign {ns.action} needs the campaign folder", file=sys.stderr)
        return EXIT_USAGE
    return cmd_campaign(ns, argv)
