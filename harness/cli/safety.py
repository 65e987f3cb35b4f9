"""`history --safety` and `history --diff A B`: the safety table per build
and server model (harness/analysis/safety.py), from the run history."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.verdicts import EXIT_USAGE


def _error(msg: str) -> int:
    print(f"tlsharness: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _probe_rows(path: str | None):
    """The rows of `tlsharness probe --json` saved in a file; a str when unusable."""
    if not path:
        return None
    try:
        rows = json.loads(Path(path).read_text())
    except OSError as e:
        return f"--probe {path}: {e.strerror or e}"
    except ValueError:
        return f"--probe {path}: not JSON (save `tlsharness probe --json` output)"
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return f"--probe {path}: not a list of probe rows (tlsharness probe --json)"
    return rows


def show(ns, path: Path) -> int:
    from harness.analysis import history, safety
    probe = _probe_rows(ns.probe)
    if isinstance(probe, str):
        return _error(probe)
    try:
        if path.stat().st_size == 0:
            rows = []
        else:
            con = history.connect(path)
            rows = safety.load(con, ns.since)
            con.close()
    except history.HistoryError as e:
        return _error(str(e))
    except OSError as e:
        return _error(f"{path}: {e.strerror or e}")
    t = safety.table(rows, probe)
    if ns.lib:
        t["builds"] = [b for b in t["builds"] if b["lib"] == ns.lib or b["lib"] in (ns.diff or [])]
    if ns.diff:
        missing = [lib for lib in ns.diff if lib not in {b["lib"] for b in t["builds"]}]
        if missing:
            known = ", ".join(b["lib"] for b in t["builds"]) or "none"
            return _error(f"--diff: no recorded run of {', '.join(missing)} in a server model "
                          f"(builds in the history: {known})")
    if ns.json:
        out = dict(t, diff=safety.diff(t, *ns.diff)) if ns.diff else t
        print(json.dumps(out, indent=2, default=str))
        return 0
    text = "# Safety table per build\n\n" + safety.markdown(t)
    if ns.diff:
        text += f"\n## {ns.diff[0]} → {ns.diff[1]}: cells that changed\n\n" + safety.diff_markdown(t, *ns.diff)
    print(text, end="")
    if ns.markdown:
        try:
            Path(ns.markdown).write_text(text)
        except OSError as e:
            return _error(f"--markdown {ns.markdown}: {e.strerror or e}")
        print(f"safety table: {ns.markdown}")
    return 0


def add_flags(h) -> None:
    from harness.cli.common import writable_file
    h.add_argument("--safety", action="store_true", help="the safety table: per build and server "
                   "model, safe / safe with fixes / unsafe (family, rate, 95%% CI)")
    h.add_argument("--diff", nargs=2, metavar=("LIB_A", "LIB_B"),
                   help="with the safety table: the cells that changed from build A to build B")
    h.add_argument("--markdown", metavar="FILE", type=writable_file,
                   help="also write the safety table as Markdown")
    h.add_argument("--probe", metavar="JSON", help="`tlsharness probe --json` output: its facts "
                   "annotate the shared column of builds without shared runs")
