"""From a failing run to a bug report: `shrink` (the smallest configuration
that still fails, harness/control/shrink.py) and `bundle` (the evidence as
one Markdown text and one archive, harness/analysis/bundle.py)."""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from harness.verdicts import EXIT_CANNOT_TELL, EXIT_INTERRUPTED, EXIT_USAGE


def rate_type(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"takes K/N, e.g. 4/5 (got {text!r})")
    k, n = int(m.group(1)), int(m.group(2))
    if not 1 <= k <= n <= 100:
        raise argparse.ArgumentTypeError(f"K/N needs 1 <= K <= N <= 100 (got {text})")
    return k, n


def runs_type(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of runs (got {text!r})") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {v})")
    return v


def time_type(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"takes seconds, or a number with s, m or h (got {text!r})")
    v = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 (got {text})")
    return v


def cmd_shrink(ns, argv) -> int:
    from harness.control import shrink
    from harness.control.shrink_space import ShrinkError, load_origin
    k, n = ns.rate
    try:
        origin = load_origin(ns.run_folder)
        folder = Path(ns.out).absolute() if ns.out else shrink.default_folder(origin)
        if origin.kind == "target" and origin.target == "kamailio":
            from harness.control.target import KAMAILIO_MODULES, TargetError, check_kamailio
            try:                          # the server must still be there before anything is made
                check_kamailio(origin.config.get("kamailio_bin") or "kamailio",
                               origin.config.get("kamailio_modules") or KAMAILIO_MODULES)
            except TargetError as e:
                raise ShrinkError(str(e)) from None
        job = shrink.Shrink(origin, folder, k, n, ns.max_runs, ns.max_time,
                            shrink.runner(origin, folder), shrink.progress_printer(ns.quiet))
    except ShrinkError as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"tlsharness: error: {e.filename or ns.out}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        res = job.run()
    except KeyboardInterrupt:
        print(f"interrupted: {job.state['runs_total']} runs recorded in {folder / shrink.STATE}; "
              "the same command continues where it stopped", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    if ns.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        print("\n".join(shrink.result_lines(res, folder)))
    return EXIT_CANNOT_TELL if res["minimal"] is None else 0


def cmd_bundle(ns, argv) -> int:
    from harness.analysis import bundle
    try:
        made = bundle.make(Path(ns.folder), Path(ns.out) if ns.out else None, ns.keep_paths)
    except bundle.BundleError as e:
        print(f"tlsharness: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"tlsharness: error: {e.filename or ns.folder}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"bundle: {made['markdown']}\narchive: {made['archive']} ({made['files']} files)")
    return 0


def add_parsers(sub) -> None:
    s = sub.add_parser("shrink", help="the smallest configuration of a failing run that still "
                       "fails with the same family (resumable)")
    s.add_argument("run_folder", help="a failing run's folder (results/<id>, of run or target)")
    s.add_argument("--rate", type=rate_type, default=(4, 5), metavar="K/N",
                   help="keep a candidate when it fails with the same family in at least K of N "
                   "runs (default 4/5)")
    s.add_argument("--max-runs", type=runs_type, default=100,
                   help="at most this many runs in all, every session of the shrink (default 100)")
    s.add_argument("--max-time", type=time_type, default=1800.0, metavar="T",
                   help="at most this long in all: seconds, or 20m, 1h (default 30m)")
    s.add_argument("--out", help="the shrink's folder (default: shrink-<run-id> beside the run); "
                   "the same folder again continues an interrupted shrink")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(fn=cmd_shrink)
    b = sub.add_parser("bundle", help="a failing run (or a shrink) as a bug report: bundle.md and "
                       "an archive")
    b.add_argument("folder", help="a run folder or a shrink folder")
    b.add_argument("--out", help="where to write bundle.md and the archive (default: the folder)")
    b.add_argument("--keep-paths", action="store_true",
                   help="keep this machine's paths (default: <results>, <tlsharness>, ~)")
    b.set_defaults(fn=cmd_bundle)
