"""What `tlsharness bundle` gathers beside the run folder: the library build's
facts, the reproduction rate and the curing mitigations measured in the run
history, and the scrubbing of this machine's paths from the text."""
from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

from harness.analysis import history
from harness.analysis.stats import wilson
from harness.builds import native
from harness.verdicts import FAILURES

# options that stand for mitigations: they differ between the cells of a matrix
MITIGATION_KEYS = ("mitigations", "global_lock", "ctx", "workers")


def lib_build(lib: str) -> dict | None:
    """The adapter's facts in harness/_native/build.json (what it was built against,
    the library's capabilities as compiled), for the run's library."""
    report = native.build_report()
    from harness.builds import backends
    ext = backends.registry().get(lib)
    info = report.get(ext) if ext else None
    if not info:
        return None
    out = {"adapter": ext, "built_against": info.get("reason"), "version": info.get("version")}
    out.update({k: v for k, v in (info.get("caps") or {}).items()})
    return out


def params_of(config: dict, kind: str) -> str:
    """A run's parameters as the history records them (its configuration without the
    results folder and the seed; a target's also without the server command)."""
    drop = ("out", "seed") if kind == "run" else ("out", "command")
    return json.dumps({k: v for k, v in config.items() if k not in drop}, sort_keys=True, default=str)


def _rows(root: Path, where: str, args: list) -> list[tuple]:
    path = history.db_path(root)
    if not path.is_file():
        return []
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(f"SELECT verdict, families, mitigations, params, kind, campaign "
                               f"FROM runs WHERE {where}", args).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []


def _judged(rows) -> list[tuple]:
    return [r for r in rows if r[0] not in history.UNJUDGED]


def history_rate(root: Path, lib: str, params: str, family: str | None) -> dict | None:
    """Every judged run of exactly this configuration in the history: failures of the
    family (or any failure, when none was named) out of them, with a 95% interval."""
    rows = _judged(_rows(root, "lib = ? AND params = ?", [lib, params]))
    if not rows:
        return None
    k = sum(1 for r in rows if r[0] in FAILURES and (not family or family in json.loads(r[1] or "[]")))
    lo, hi = wilson(k, len(rows))
    return {"runs": len(rows), "matched": k, "ci95": [round(lo, 3), round(hi, 3)],
            "kinds": sorted({r[4] for r in rows})}


def cures(root: Path, lib: str, scenario: str | None, config: dict, kind: str,
          own: list) -> list[dict]:
    """Mitigation sets measured in the history for the same library and the same
    scenario (or the same configuration but for its mitigations), with no failure in
    any judged run: what cured it.  Each: the set, its runs, the matrices (campaign)."""
    base = {k: v for k, v in config.items() if k not in (*MITIGATION_KEYS, "out", "seed", "command")}
    if scenario:
        rows = _rows(root, "lib = ? AND scenario = ?", [lib, scenario])
    else:
        rows = []
        for r in _rows(root, "lib = ?", [lib]):
            try:
                p = json.loads(r[3] or "{}")
            except ValueError:
                continue
            if {k: v for k, v in p.items() if k not in MITIGATION_KEYS} == \
                    json.loads(json.dumps(base, default=str)):
                rows.append(r)
    sets: dict[tuple, list] = {}
    for r in _judged(rows):
        sets.setdefault(tuple(sorted(json.loads(r[2] or "[]"))), []).append(r)
    out = []
    for mits, rs in sorted(sets.items()):
        if mits and list(mits) != sorted(own) and not any(r[0] in FAILURES for r in rs):
            out.append({"mitigations": list(mits), "runs": len(rs),
                        "kinds": sorted({r[4] for r in rs})})
    return out


def scrubber(pairs: list[tuple[str, str]], keep: bool = False):
    """text -> text with each path of `pairs` (longest first) replaced by its
    placeholder, then any other absolute path under /tmp, /var/tmp, /work, /root or
    /home by <path>.  keep=True: the text as it is."""
    if keep:
        return lambda text: text
    home = os.path.expanduser("~")
    pairs = [(str(p).rstrip("/"), ph) for p, ph in pairs if p and str(p) not in ("/", "")]
    if home not in ("/", ""):
        pairs.append((home, "~"))
    pairs.sort(key=lambda x: -len(x[0]))
    rest = re.compile(r"(?<![\w.~<>-])/(?:tmp|var/tmp|work|root|home)(?![\w.-])[^\s'\"`,;)\]}>]*")

    def scrub(text: str) -> str:
        for p, ph in pairs:
            text = re.sub(re.escape(p) + r"(?![\w.-])", lambda _: ph, text)
        return rest.sub("<path>", text)
    return scrub


def default_pairs(results_root: Path, extra: list[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    return [(str(results_root), "<results>"), (str(native.ROOT), "<tlsharness>"), *extra]
