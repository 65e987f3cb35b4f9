"""`campaign plan | run | merge`: a matrix of runs as data, run here or on
Dask workers, resumable, merged into the report `compare` gives."""
from __future__ import annotations

import json
import sys

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
                       "workers, resumable, sharded), merge into a report",
                       description="A matrix of runs as data: `campaign plan` writes the "
                       "manifest, `campaign run` runs what is left of it (here, sharded, or on "
                       "Dask workers), `campaign merge` joins shards into the compare report.")
    verbs = c.add_subparsers(dest="action", required=True, metavar="{plan,run,merge}",
                             help="each verb has its own options: campaign VERB --help",
                             parser_class=type(c))
    _add_plan(verbs)
    r = verbs.add_parser("run", help="run what is left of a campaign (resumable)",
                         description="Run every run of the campaign that has no outcome yet, "
                         "one at a time here or on Dask workers; run it again to go on.")
    r.add_argument("dir", nargs="?", metavar="DIR",
                   help="the campaign folder, or its campaign.json")
    r.add_argument("--scheduler", help="Dask scheduler address (tcp://HOST:8786); default: here")
    r.add_argument("--shard", help="I/N: every N-th run starting at I")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    r.set_defaults(fn=_checked)
    m = verbs.add_parser("merge", help="join shard folders into DIR and write the report",
                         description="Join the outcomes of shard folders into the campaign "
                         "folder DIR and write the report `compare` gives, with the time per "
                         "machine.")
    m.add_argument("dir", nargs="?", metavar="DIR", help="the campaign folder, or its campaign.json")
    m.add_argument("others", nargs="*", metavar="SHARD", help="shard folders to join into DIR")
    m.set_defaults(fn=_checked)


def _add_plan(verbs) -> None:
    p = verbs.add_parser("plan", help="write a campaign's manifest (libraries x scenarios x "
                         "mitigation sets x repeats)",
                         description="Write a new campaign folder under --out with its manifest "
                         "campaign.json, every run checked before the folder exists.")
    p.add_argument("--libs", default=None, help="comma-separated (default: every built system library)")
    p.add_argument("--scenarios", default="handoff-per-message", help="comma-separated scenarios")
    p.add_argument("--mitigations", default="none", help="';'-separated sets, each comma-separated")
    p.add_argument("--repeat", type=int_in(1, 10000), default=3, help="runs per cell (default 3)")
    p.add_argument("--duration", type=float, default=None, help="override the scenarios' durations")
    p.add_argument("--emit", choices=["github-matrix"], help="print a CI matrix instead")
    p.add_argument("--shards", type=int_in(1, 256), default=4,
                   help="with --emit: number of shards (default 4)")
    p.add_argument("--out", default="results", help="results folder (default ./results)")
    p.set_defaults(fn=_checked)


def _checked(ns, argv) -> int:
    if ns.action in ("run", "merge") and not ns.dir:
        print(f"tlsharness: error: campaign {ns.action} needs the campaign folder", file=sys.stderr)
        return EXIT_USAGE
    return cmd_campaign(ns, argv)
