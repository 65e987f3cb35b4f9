"""The mitigation matrix (`tlsharness mitigations`): failure families ×
mitigation sets for one library, as a table and in plain words."""
from __future__ import annotations

from harness.analysis.stats import quantile
from harness.verdicts import FAILURES, V


def set_label(mits) -> str:
    return ",".join(mits) or "none"


def matrix_cell(runs: list[dict]) -> dict:
    """One scenario × one mitigation set: 'failed k/N (most common failure verdict)',
    'n/a' when the library cannot do it (every run unsupported)."""
    unsup = [o for o in runs if o["verdict"] == V.UNSUPPORTED]
    judged = [o for o in runs if o["verdict"] != V.UNSUPPORTED]
    fails = [o["verdict"] for o in judged if o["verdict"] in FAILURES]
    other = [o["verdict"] for o in judged if o["verdict"] != V.PASS and o["verdict"] not in FAILURES]
    other += ["n/a"] * (len(unsup) if judged else 0)
    top = max(dict.fromkeys(fails), key=fails.count) if fails else None
    fams = [f for o in judged if o["verdict"] in FAILURES for f in (o.get("families") or [])]
    if not runs:
        status, text = "pending", "-"
    elif not judged:
        status, text = "n/a", "n/a"
    else:
        status = "fails" if fails else "unclear" if other else "cured"
        text = f"failed {len(fails)}/{len(judged)}" + (f" ({top})" if top else "")
        if other:
            text += " [" + ", ".join(f"{n} {v}" for v, n in
                                     sorted(((v, other.count(v)) for v in dict.fromkeys(other)),
                                            key=lambda x: -x[1])) + "]"
    return {"status": status, "text": text, "runs": len(runs), "judged": len(judged),
            "failed": len(fails), "top_failure": top,
            "verdicts": {v: [o["verdict"] for o in runs].count(v) for v in dict.fromkeys(o["verdict"] for o in runs)},
            "families": sorted(set(fams)),
            "ttf_ms_median": quantile([o["time_to_failure_ms"] for o in judged
                                       if o.get("time_to_failure_ms") is not None], 0.5),
            "unsupported": unsup[0].get("reason") if unsup else None}


def family_line(row: dict, sets: list[str]) -> str:
    """The plain-language verdict on one family: which sets cure it, which still fail."""
    cells = row["cells"]
    label = row["label"]

    def part(s):
        c = cells[s]
        return f"{s} ({c['failed']}/{c['judged']}" + (f", {c['top_failure']}" if c["top_failure"] else "") + ")"
    cured = [s for s in sets if cells[s]["status"] == "cured"]
    fails = [s for s in sets if cells[s]["status"] == "fails"]
    unclear = [s for s in sets if cells[s]["status"] == "unclear"]
    na = [s for s in sets if cells[s]["status"] == "n/a"]
    out = []
    base = cells.get("none")
    if base and base["status"] in ("cured", "unclear"):
        out.append(f"did not reproduce without a mitigation (0/{base['judged']} failures), so no set "
                   "can be said to cure it")
        cured = [s for s in cured if s != "none"]
        if cured:
            out.append("no failure either with " + ", ".join(cured))
    elif cured:
        out.append("cured by " + ", ".join(cured) + " (no failure in any run)")
    else:
        out.append("no set cures it")
    if fails:
        out.append("still fails with " + ", ".join(part(s) for s in fails))
    if unclear:
        out.append("no failure but not every run judged with " + ", ".join(
            f"{s} ({cells[s]['text']})" for s in unclear))
    if na:
        out.append("not possible with this library: " + ", ".join(na))
    if any(c["status"] == "pending" for c in cells.values()):
        out.append("some cells not run yet (--resume)")
    return f"{label}: " + "; ".join(out) + "."


def mitigation_matrix(state: dict) -> dict:
    """compare.json of `tlsharness mitigations` -> the matrix (matrix.json)."""
    sets = [set_label(m) for m in state["mitigation_sets"]]
    by = {(c["scenario"], set_label(c["mitigations"])): c["runs"] for c in state["cells"]}
    rows = []
    for r in state["rows"]:
        base = f" + its own {','.join(r['base'])}" if r.get("base") else ""
        row = {"scenario": r["name"], "family": r["family"], "base_mitigations": r.get("base", []),
               "label": f"{r['family'] or '(no family)'} ({r['name']}{base})",
               "cells": {s: matrix_cell(by.get((r["scenario"], s), [])) for s in sets}}
        row["summary"] = family_line(row, sets)
        rows.append(row)
    return {"tool": "tlsharness mitigations", "lib": state["libs"][0], "repeat": state["repeat"],
            "duration": state.get("duration"), "sets": sets, "rows": rows,
            "created": state.get("created"), "finished": state.get("finished"),
            "command": state.get("command")}


def matrix_markdown(m: dict, folder: str = "") -> str:
    sets = m["sets"]
    dur = f"{m['duration']:g} s each" if m.get("duration") else "the scenarios' durations"
    lines = [f"# Failure families × mitigations: {m['lib']}", "",
             f"{m['repeat']} run{'s' if m['repeat'] != 1 else ''} per cell, {dur}. Cell: failed runs / judged runs "
             "(most common failure verdict); n/a: the library cannot do this mitigation.", "",
             "| family (scenario) | " + " | ".join(sets) + " |",
             "|---|" + "---|" * len(sets)]
    for r in m["rows"]:
        lines.append(f"| {r['label']} | " + " | ".join(r["cells"][s]["text"] for s in sets) + " |")
    lines += ["", "## In plain words", ""]
    lines += [f"- {r['summary']}" for r in m["rows"]]
    na = {s: c["unsupported"] for r in m["rows"] for s, c in r["cells"].items() if c["status"] == "n/a"}
    if na:
        lines += ["", "## n/a", ""]
        lines += [f"- {s}: {why}" for s, why in na.items()]
    if folder:
        lines += ["", f"Runs and compare.json: `{folder}`; per-cell details: `tlsharness report {folder}`."]
    return "\n".join(lines) + "\n"
