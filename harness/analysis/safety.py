"""The safety table: for each build and server model, one answer a server
maintainer can act on, derived from the run history (and the probe, when its
JSON is given), never from missing data.

Server models (the columns), read from each run's recorded params:

    shared hand-off   --memory shared, --handoff per-message|per-connection,
                      worker processes (the OpenSIPS/Kamailio pre-4.0 model)
    private           --memory private, worker processes (the baseline)
    threads           --io-model threads (TLS I/O in one process's threads),
                      one thread on a session at a time
    threads, shared session
                      --io-model threads --session-sharing concurrent
                      (both threads columns shown once the history holds such runs)

A run without io_model in its params is a process-model run.  Runs with an
injected fault (--fault) or an application bug turned on (--rand-lock plain)
say nothing about the library and are left out; so are shrink, target and
watch runs.

The rule of one cell (first match wins), `judged` being runs whose verdict
the tool could judge, `fixes` a mitigation set:

    no run at all                                  -> not measured
    no judged run unfixed, some unsupported        -> unsupported: reason
    unfixed judged runs failed (k of n) and a set
      with 0 failures in >= MIN_RUNS judged runs
      of every scenario that failed unfixed        -> safe with fixes X, Y
    unfixed judged runs failed (k of n)            -> unsafe: family (k/n, 95% CI)
    unfixed: 0 failures, but runs with a set failed -> inconclusive (which set, family)
    unfixed: 0 failures in >= MIN_RUNS judged runs -> safe
    unfixed: 0 failures in fewer judged runs       -> inconclusive (too few runs)
    runs, none judged                              -> inconclusive (their verdicts)
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from harness.analysis.stats import wilson
from harness.verdicts import FAILURES, NOT_HANGS, NOT_JUDGED, V

MIN_RUNS = 3
KINDS = ("run", "repro", "compare", "mitigations", "campaign")
SAFE, FIXED, UNSAFE, NOT_MEASURED = "safe", "safe with fixes", "unsafe", "not measured"
UNSUPPORTED, INCONCLUSIVE = V.UNSUPPORTED.value, V.INCONCLUSIVE.value
UNJUDGED = NOT_JUDGED | NOT_HANGS


def _shared_handoff(p: dict) -> bool:
    return (p.get("io_model", "processes") == "processes" and p.get("memory") == "shared"
            and p.get("handoff") in ("per-message", "per-connection"))


def _private(p: dict) -> bool:
    return p.get("io_model", "processes") == "processes" and p.get("memory") == "private"


def _threads(p: dict) -> bool:
    return p.get("io_model") == "threads" and p.get("session_sharing", "exclusive") == "exclusive"


def _threads_shared_session(p: dict) -> bool:
    return p.get("io_model") == "threads" and p.get("session_sharing") == "concurrent"


# (column, what it means, which runs belong to it, always shown)
MODELS = [
    ("shared hand-off", "--memory shared, hand-off per message or per connection, worker processes",
     _shared_handoff, True),
    ("private", "--memory private, worker processes (baseline)", _private, True),
    ("threads", "--io-model threads: TLS I/O in threads of one process, one thread per session "
     "at a time", _threads, False),
    ("threads, shared session", "--io-model threads --session-sharing concurrent: a reader and "
     "a writer thread on one session at once", _threads_shared_session, False),
]


def _json(x, default):
    if isinstance(x, str):
        try:
            return json.loads(x)
        except ValueError:
            return default
    return default if x is None else x


def _injected(p: dict) -> bool:
    fault = p.get("fault") or {}
    kind = fault.get("kind", "none") if isinstance(fault, dict) else str(fault)
    return kind not in ("none", "") or p.get("rand_lock", "none") != "none"


def prepare(row: dict) -> dict | None:
    """One history row -> the fields a cell needs (mitigations as really
    applied: the run's params, else the column), or None when it does not count."""
    if row.get("kind") not in KINDS or not row.get("lib") or str(row["lib"]).startswith("target:"):
        return None
    p = _json(row.get("params"), {})
    if _injected(p):
        return None
    model = next((name for name, _, pred, _ in MODELS if pred(p)), None)
    if model is None:
        return None
    mits = p.get("mitigations") if isinstance(p.get("mitigations"), list) else _json(row.get("mitigations"), [])
    return {"lib": row["lib"], "lib_version": row.get("lib_version"), "model": model,
            "scenario": row.get("scenario") or "-", "mitigations": tuple(sorted(set(mits))),
            "verdict": row.get("verdict"), "families": _json(row.get("families"), []),
            "reason": row.get("reason"), "recorded_at": row.get("recorded_at") or ""}


def _families(runs: list[dict]) -> list[str]:
    """The families of the failed runs, most common first (their verdict when none was named)."""
    return [n for n, _ in Counter(f for r in runs for f in (r["families"] or [r["verdict"]])).most_common()]


def _fam_text(fams: list[str]) -> str:
    more = len(fams) - 3
    return ", ".join(fams[:3]) + (f" and {more} more" if more > 0 else "")


def _rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k}/{n}, 95% {lo:.0%}–{hi:.0%}"


def _fixes(runs: list[dict], failed_scenarios: set[str]) -> list[dict]:
    """The smallest mitigation sets (all of that size) with no failure in >=
    MIN_RUNS judged runs of every scenario that failed without one: [{set, n}]."""
    found = []
    for mits in sorted({r["mitigations"] for r in runs if r["mitigations"]}, key=lambda m: (len(m), m)):
        if found and len(mits) > len(found[0]["set"]):
            break
        judged = [r for r in runs if r["mitigations"] == mits and r["verdict"] not in UNJUDGED]
        if any(r["verdict"] in FAILURES for r in judged):
            continue
        per = Counter(r["scenario"] for r in judged)
        if all(per[s] >= MIN_RUNS for s in failed_scenarios):
            found.append({"set": mits, "n": sum(per[s] for s in failed_scenarios)})
    return sorted(found, key=lambda f: -f["n"])


def cell(runs: list[dict], probe_note: str | None = None) -> dict:
    """The answer for one build in one server model (the rule in the module
    docstring), from its prepared runs."""
    out = {"status": NOT_MEASURED, "text": NOT_MEASURED, "runs": len(runs), "judged": 0,
           "failed": 0, "family": None, "families": [], "ci95": None, "fixes": None, "fix_runs": None,
           "alternatives": []}
    if not runs:
        if probe_note:
            out["text"] = f"{NOT_MEASURED} ({probe_note})"
        return out
    bare = [r for r in runs if not r["mitigations"]]
    judged = [r for r in bare if r["verdict"] not in UNJUDGED]
    failed = [r for r in judged if r["verdict"] in FAILURES]
    out.update(judged=len(judged), failed=len(failed))
    unsup = [r for r in bare if r["verdict"] == V.UNSUPPORTED]
    if not judged and unsup:
        why = next((r["reason"] for r in unsup if r.get("reason")), None) or probe_note
        return out | {"status": UNSUPPORTED, "text": f"{UNSUPPORTED}: {why or 'reason not recorded'}"}
    if failed:
        lo, hi = wilson(len(failed), len(judged))
        fams = _families(failed)
        out.update(family=fams[0], families=fams, ci95=[round(lo, 3), round(hi, 3)])
        unsafe = f"{_fam_text(fams)} ({_rate(len(failed), len(judged))})"
        fixes = _fixes(runs, {r["scenario"] for r in failed})
        if fixes:
            sets = " or ".join(f"{', '.join(f['set'])} (0/{f['n']})" for f in fixes)
            return out | {"status": FIXED, "fixes": list(fixes[0]["set"]), "fix_runs": fixes[0]["n"],
                          "alternatives": [list(f["set"]) for f in fixes[1:]],
                          "text": f"{FIXED} {sets}; without: {unsafe}"}
        return out | {"status": UNSAFE, "text": f"{UNSAFE}: {unsafe}"}
    worse = [r for r in runs if r["mitigations"] and r["verdict"] in FAILURES]
    if worse:                       # a fix does not make a library fail: the bare runs were lucky
        sets = ", ".join(sorted({",".join(r["mitigations"]) for r in worse}))
        fams = _families(worse)
        return out | {"status": INCONCLUSIVE, "family": fams[0], "families": fams,
                      "text": f"{INCONCLUSIVE} (0/{len(judged)} failed unfixed, but "
                              f"{len(worse)} run(s) with {sets} failed: {_fam_text(fams)})"}
    if len(judged) >= MIN_RUNS:
        lo, hi = wilson(0, len(judged))
        return out | {"status": SAFE, "ci95": [0.0, round(hi, 3)],
                      "text": f"{SAFE} (0/{len(judged)}, failure rate under {hi:.0%} at 95%)"}
    if judged:
        return out | {"status": INCONCLUSIVE,
                      "text": f"{INCONCLUSIVE} (0/{len(judged)} failed unfixed: fewer than "
                              f"{MIN_RUNS} judged runs)"}
    seen = Counter(r["verdict"] for r in bare)
    why = ", ".join(f"{n} {v}" for v, n in seen.most_common()) or "only runs with mitigations"
    return out | {"status": INCONCLUSIVE, "text": f"{INCONCLUSIVE} (no judged run without fixes: {why})"}


def probe_notes(probe_rows: list[dict] | None) -> dict[str, str]:
    """What `tlsharness probe --json` says about putting a build's objects in
    shared memory, per library: a note for its shared column."""
    notes = {}
    for r in probe_rows or []:
        if not isinstance(r, dict) or "lib" not in r or "error" in r:
            continue
        parts = []
        if r.get("alloc_hook_accepted") is False:
            parts.append("probe: allocator hook refused")
        elif r.get("alloc_hook_accepted") is None:
            parts.append("probe: no allocator hook")
        if r.get("session_in_arena") is False:
            parts.append("session not in the arena")
        if parts:
            notes[r["lib"]] = ", ".join(parts)
    return notes


def table(history_rows: list[dict], probe_rows: list[dict] | None = None) -> dict:
    """History rows (+ probe rows) -> {models, builds: [{lib, version, cells}], left_out}.
    Only the most recently recorded version of each build counts."""
    prepared = [prepare(r) for r in history_rows]
    runs = [r for r in prepared if r]
    latest: dict[str, tuple] = {}
    for r in runs:
        if r["lib_version"] and (r["lib"] not in latest or r["recorded_at"] >= latest[r["lib"]][0]):
            latest[r["lib"]] = (r["recorded_at"], r["lib_version"])
    runs = [r for r in runs if r["lib_version"] in (None, latest.get(r["lib"], (0, None))[1])]
    models = [m for m, _, _, always in MODELS if always or any(r["model"] == m for r in runs)]
    notes = probe_notes(probe_rows)
    builds = []
    for lib in sorted({r["lib"] for r in runs} | set(notes)):
        mine = [r for r in runs if r["lib"] == lib]
        cells = {m: cell([r for r in mine if r["model"] == m],
                         notes.get(lib) if m == "shared hand-off" else None) for m in models}
        builds.append({"lib": lib, "version": latest.get(lib, (0, None))[1], "cells": cells})
    return {"models": models, "builds": builds,
            "left_out": len(prepared) - sum(1 for r in prepared if r),
            "model_meaning": {m: what for m, what, _, _ in MODELS if m in models}}


def diff(t: dict, lib_a: str, lib_b: str) -> list[dict]:
    """The cells that changed from build A to build B: [{model, a, b}].
    KeyError (naming the build) when one is not in the table."""
    by = {b["lib"]: b for b in t["builds"]}
    for lib in (lib_a, lib_b):
        if lib not in by:
            raise KeyError(lib)
    out = []
    for m in t["models"]:
        a, b = by[lib_a]["cells"][m], by[lib_b]["cells"][m]
        key = ("status", "family", "fixes")
        if any(a[k] != b[k] for k in key) or a["failed"] * b["judged"] != b["failed"] * a["judged"]:
            out.append({"model": m, "a": a, "b": b})
    return out


def rate_change(a: dict, b: dict) -> str:
    """Whether the unfixed failure rates of two cells differ beyond chance
    (their 95% Wilson intervals do not overlap)."""
    if not a["judged"] or not b["judged"]:
        return "no judged unfixed runs on one side"
    (alo, ahi), (blo, bhi) = wilson(a["failed"], a["judged"]), wilson(b["failed"], b["judged"])
    word = ("intervals overlap: not a measured change" if alo <= bhi and blo <= ahi
            else "distinct at 95%")
    return f"{a['failed']}/{a['judged']} → {b['failed']}/{b['judged']} ({word})"


def _md_cell(c: dict) -> str:
    return c["text"].replace("|", "\\|")


def markdown(t: dict) -> str:
    ms = t["models"]
    lines = ["| build | version | " + " | ".join(ms) + " |", "|---|---|" + "---|" * len(ms)]
    for b in t["builds"]:
        lines.append(f"| {b['lib']} | {b['version'] or '-'} | "
                     + " | ".join(_md_cell(b["cells"][m]) for m in ms) + " |")
    lines += [""] + [f"- {m}: {what}" for m, what in t["model_meaning"].items()]
    lines.append(f"- a cell is \"safe\" only with 0 failures in at least {MIN_RUNS} judged runs "
                 "without mitigations; fixes: the smallest measured set with 0 failures in at least "
                 f"{MIN_RUNS} judged runs of each scenario that failed without it")
    if t["left_out"]:
        lines.append(f"- {t['left_out']} history rows left out (other kinds, injected faults, "
                     "other server models)")
    return "\n".join(lines) + "\n"


def diff_markdown(t: dict, lib_a: str, lib_b: str) -> str:
    changed = diff(t, lib_a, lib_b)
    if not changed:
        return f"{lib_a} → {lib_b}: no cell changed ({', '.join(t['models'])})\n"
    lines = [f"| model | {lib_a} | {lib_b} | unfixed failures |", "|---|---|---|---|"]
    lines += [f"| {d['model']} | {_md_cell(d['a'])} | {_md_cell(d['b'])} | "
              f"{rate_change(d['a'], d['b'])} |" for d in changed]
    return "\n".join(lines) + "\n"


def html_table(t: dict) -> str:
    import html
    ms = t["models"]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["build", "version", *ms])
    cls = {SAFE: "pass", FIXED: "", UNSAFE: "fail"}
    body = "".join("<tr>" + f"<td>{html.escape(b['lib'])}</td><td>{html.escape(b['version'] or '-')}</td>"
                   + "".join(f"<td class='{cls.get(b['cells'][m]['status'], '')}'>"
                             f"{html.escape(b['cells'][m]['text'])}</td>" for m in ms) + "</tr>"
                   for b in t["builds"])
    notes = "".join(f"<li>{html.escape(line[2:])}</li>" for line in markdown(t).splitlines()
                    if line.startswith("- "))
    return f"<table><tr>{head}</tr>{body}</table><ul>{notes}</ul>"


def for_report(db: Path, libs: list[str]) -> tuple[str, str] | None:
    """The safety table of these builds from the history at `db` (Markdown,
    HTML), or None when there is no usable history or none of them is in it."""
    from harness.analysis import history
    if not db.is_file() or db.stat().st_size == 0:
        return None
    try:
        con = history.connect(db)
        t = table(load(con))
        con.close()
    except (history.HistoryError, OSError):
        return None
    t["builds"] = [b for b in t["builds"] if b["lib"] in libs]
    return (markdown(t), html_table(t)) if t["builds"] else None


def load(con, since: str | None = None) -> list[dict]:
    """Every history row (as dicts), with the reason of unsupported runs read
    from their run folder's outcome.json (the history keeps no reason)."""
    sql, args = "SELECT * FROM runs", []
    if since:
        sql, args = sql + " WHERE recorded_at >= ?", [since]
    cur = con.execute(sql + " ORDER BY id", args)
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur]
    for r in rows:
        if r.get("verdict") == V.UNSUPPORTED and r.get("run_dir"):
            try:
                r["reason"] = json.loads((Path(r["run_dir"]) / "outcome.json").read_text()).get("reason")
            except (OSError, ValueError, AttributeError):
                pass
    return rows
