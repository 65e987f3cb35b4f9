"""`tlsharness compare`: libraries × scenarios × mitigations, N runs each.

The matrix lives in one folder: compare.json (the source of truth: every
run's outcome, appended as soon as it ends), runs/<cell>/<run-id>/ (each a
normal run folder), and the derived report.html / report.md.  Resumable:
`compare --resume DIR` runs only what compare.json does not hold yet.
"""
from __future__ import annotations

import json
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.verdicts import FAILURES, V, exit_code
from harness.analysis import history
from harness.control import results
from harness.spec import runflags, scenario
from harness.spec.config import ConfigError


class CompareError(ValueError):
    pass


@dataclass(frozen=True)
class Cell:
    lib: str
    scenario: str
    mitigations: tuple = ()

    @property
    def key(self) -> str:
        return f"{self.lib} | {self.scenario} | {','.join(self.mitigations) or 'none'}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9.@]+", "_", self.key).strip("_")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def quantile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    i = q * (len(xs) - 1)
    lo, hi = math.floor(i), math.ceil(i)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


def cell_stats(runs: list[dict]) -> dict:
    n = len(runs)
    verdicts: dict[str, int] = {}
    for o in runs:
        verdicts[o["verdict"]] = verdicts.get(o["verdict"], 0) + 1
    judged = [o for o in runs if o["verdict"] not in (V.UNSUPPORTED,)]
    k = sum(1 for o in judged if o["verdict"] in FAILURES)
    lo, hi = wilson(k, len(judged))
    ttf = [o["time_to_failure_ms"] for o in runs if o.get("time_to_failure_ms") is not None]
    healthy = [o for o in runs if o["verdict"] == V.PASS]
    rps = [o["replies_per_s"] for o in healthy]
    hs = [o["handshakes_client"] / o["load_seconds"] for o in healthy if o.get("load_seconds")]
    p50 = [o["latency_ms"]["p50"] for o in healthy if (o.get("latency_ms") or {}).get("p50") is not None]
    p99 = [o["latency_ms"]["p99"] for o in healthy if (o.get("latency_ms") or {}).get("p99") is not None]
    per_conn = [o["arena_bytes_per_conn"] for o in runs if o.get("arena_bytes_per_conn")]
    peaks = [o["arena"]["peak"] for o in runs if (o.get("arena") or {}).get("peak")]
    cpu_k = [o["stand_cpu_s"] / (o["replies"] / 1000) for o in healthy
             if o.get("stand_cpu_s") and o.get("replies")]
    return {
        "runs": n, "verdicts": verdicts, "failures": k, "judged": len(judged),
        "rate": k / len(judged) if judged else None, "rate_ci95": [lo, hi],
        "ttf_ms_median": quantile(ttf, 0.5), "ttf_ms_p90": quantile(ttf, 0.9),
        "replies_per_s": statistics.mean(rps) if rps else None,
        "replies_per_s_sd": statistics.stdev(rps) if len(rps) > 1 else 0.0 if rps else None,
        "handshakes_per_s": statistics.mean(hs) if hs else None,
        "latency_ms_p50": statistics.median(p50) if p50 else None,
        "latency_ms_p99": statistics.median(p99) if p99 else None,
        "arena_bytes_per_conn": statistics.median(per_conn) if per_conn else None,
        "arena_peak": max(peaks) if peaks else None,
        "cpu_s_per_1k_replies": statistics.median(cpu_k) if cpu_k else None,
        "unsupported": next((o["reason"] for o in runs if o["verdict"] == V.UNSUPPORTED), None),
    }


def scenario_mitigations(sc) -> list[str]:
    """The mitigations a scenario's own params ask for (`mitigate=`)."""
    v = sc.params.get("mitigate") or []
    return [m for m in (v.split(",") if isinstance(v, str) else v) if m]


def cell_config(cell: Cell, duration: float | None, out_dir: Path, quiet: bool = True,
                add_to_scenario: bool = False):
    """RunConfig of one cell: the scenario's params, the library, the mitigations.
    The cell's mitigations replace the scenario's own `mitigate`, or, with
    add_to_scenario (`tlsharness mitigations`), come on top of them."""
    sc = scenario.load(cell.scenario)
    args = [*runflags.tokens(sc.params), "--lib", cell.lib, "--out", str(out_dir), "-q"]
    mits = list(cell.mitigations)
    if add_to_scenario:
        mits = list(dict.fromkeys([*scenario_mitigations(sc), *mits]))
    if mits:
        args += ["--mitigate", ",".join(mits)]
    if duration:
        args += ["--duration", str(duration)]
    from harness.stand import backends
    caps = backends.info(cell.lib).get("caps") or {}
    tls12 = caps.get("tls13") is False and str(sc.params.get("tls", "1.3")) in ("1.3", "13")
    if tls12:                                # this build has no TLS 1.3: compare at 1.2, labelled
        args += ["--tls", "1.2"]
    try:
        return runflags.config_from_args(runflags.parser().parse_args(args)), args
    except (runflags.FlagError, ConfigError) as e:
        raise CompareError(f"cell {cell.key}: {e}") from None


def load_state(d: Path) -> dict:
    try:
        state = json.loads((d / "compare.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CompareError(f"{d}: no compare.json (not a comparison folder)") from None
    except (OSError, ValueError) as e:
        raise CompareError(f"{d / 'compare.json'}: damaged ({type(e).__name__})") from None
    ok = (isinstance(state, dict) and isinstance(state.get("repeat"), int)
          and isinstance(state.get("cells"), list)
          and all(isinstance(c, dict) and isinstance(c.get("lib"), str)
                  and isinstance(c.get("scenario"), str) and isinstance(c.get("mitigations"), list)
                  and isinstance(c.get("runs"), list) for c in state["cells"]))
    if not ok:
        raise CompareError(f"{d / 'compare.json'}: not the shape of a comparison "
                           "(repeat, cells with lib, scenario, mitigations, runs)")
    return state


KEPT = ("verdict", "reason", "run_dir", "time_to_failure_ms", "replies", "replies_per_s",
        "latency_ms", "handshakes_client", "load_seconds", "arena", "arena_bytes_per_conn",
        "stand_cpu_s", "families", "bad", "lib_version", "memory", "exit_code")


def kept(o: dict) -> dict:
    """What a comparison keeps of one run's outcome (compare.json, campaign merge)."""
    return {k: o.get(k) for k in KEPT}


def run_params(cfg) -> dict:
    """A run's parameters for the history (its configuration, as given)."""
    import dataclasses
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "seed")}


def run_matrix(d: Path, state: dict, progress=None) -> dict:
    """Run every missing run of the matrix; compare.json is rewritten after each."""
    from harness.control.controller import HarnessError, Run
    from harness.control.progress import Progress
    cells = [Cell(c["lib"], c["scenario"], tuple(c["mitigations"])) for c in state["cells"]]
    repeat = state["repeat"]
    todo = [(i, c) for i, c in enumerate(cells) for _ in range(repeat - len(state["cells"][i]["runs"]))]
    total, done, t_start = len(todo), 0, time.monotonic()
    for i, cell in todo:
        out_dir = d / "runs" / cell.slug
        cfg, args = cell_config(cell, state.get("duration"), out_dir,
                                add_to_scenario=state.get("mitigate_mode") == "add")
        try:
            o = Run(cfg, ["run", *args], Progress(quiet=True)).execute()
        except HarnessError as e:                 # (Unsupported is a verdict of execute())
            o = {"verdict": V.ERROR, "reason": str(e), "replies": 0, "replies_per_s": 0,
                 "exit_code": exit_code(V.ERROR)}
        if o.get("exit_code") == 130:             # interrupted: not a finished run
            raise KeyboardInterrupt
        if cfg.tls == 12 and "tls" not in scenario.load(cell.scenario).params:
            o["reason"] = (o.get("reason") or "") + " [TLS 1.2: no TLS 1.3 in this build]"
        state["cells"][i]["runs"].append(kept(o))
        results.write_json(d / "compare.json", state)
        if o.get("run_dir"):
            history.record(d.parent, dict(o, lib=cell.lib, mitigations=list(cell.mitigations)),
                           state.get("tool", "compare").split()[-1], scenario=cell.scenario,
                           params=run_params(cfg), campaign=d.name)
        done += 1
        if progress:
            el = time.monotonic() - t_start
            eta = el / done * (total - done)
            progress(done, total, cell, o["verdict"], eta)
    for c in state["cells"]:
        c["stats"] = cell_stats(c["runs"])
    state["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results.write_json(d / "compare.json", state)
    return state


def new_state(libs, scenarios, mitigation_sets, repeat, duration) -> dict:
    """The comparison's plan; every argument checked before a folder exists."""
    from harness.spec.params import MITIGATIONS
    if duration is not None and not 0.5 <= duration <= 3600:
        raise CompareError(f"--duration must be between 0.5 and 3600 (got {duration:g})")
    if not libs:
        raise CompareError("no library to compare (none built, or --libs empty)")
    for m in {m for ms in mitigation_sets for m in ms}:
        if m not in MITIGATIONS:
            raise CompareError(f"unknown mitigation {m!r} (known: {', '.join(MITIGATIONS)})")
    for s in scenarios:
        scenario.load(s)                      # fail early, naming the file
    cells = [{"lib": l, "scenario": s, "mitigations": list(m), "runs": []}
             for s in scenarios for l in libs for m in mitigation_sets]
    return {"tool": "tlsharness compare", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "repeat": repeat, "duration": duration, "libs": libs, "scenarios": scenarios,
            "mitigation_sets": [list(m) for m in mitigation_sets], "cells": cells,
            "machine": results.machine(), "git_revision": results.git_revision(),
            "command": "tlsharness " + " ".join(sys.argv[1:])}


def bar(done: int, total: int, width: int = 28) -> str:
    f = int(width * done / total) if total else width
    return "[" + "#" * f + "-" * (width - f) + f"] {done}/{total}"


# -- `tlsharness mitigations`: failure families × mitigation sets, one library ----------

def set_label(mits) -> str:
    return ",".join(mits) or "none"


def default_sets(known) -> list[tuple]:
    """none, each single mitigation (but write-dup, wolfSSL-only), and the
    combination the servers ship (pshared,prefork-thread).  `known` is
    params.MITIGATIONS, read when called (it grows)."""
    sets = [()] + [(m,) for m in known if m != "write-dup"]
    if "pshared" in known and "prefork-thread" in known:
        sets.append(("pshared", "prefork-thread"))
    return sets


def parse_sets(text: str, known) -> list[tuple]:
    """'none;pshared;pshared,prefork-thread' -> [(), ('pshared',), ('pshared', 'prefork-thread')]."""
    sets: list[tuple] = []
    for part in text.split(";"):
        ms = tuple(dict.fromkeys(m.strip() for m in part.split(",") if m.strip() not in ("", "none")))
        for m in ms:
            if m not in known:
                raise CompareError(f"unknown mitigation {m!r} (known: {', '.join(known)})")
        if sorted(ms) not in [sorted(s) for s in sets]:
            sets.append(ms)
    return sets


def pick_family_scenarios(cat: list, wanted: list[str], lib: str, explicit: bool = False):
    """The scenarios that declare a family, those named in `wanted` (a family
    or a scenario name, any case) only.  A catalogue scenario whose params pin
    another library is skipped.  Returns (picked, [(scenario, why skipped)])."""
    fam = [s for s in cat if s.family] if not explicit else list(cat)
    known = sorted({s.family for s in fam if s.family})
    want = {w.strip().lower() for w in wanted if w.strip()}
    for w in (w.strip() for w in wanted if w.strip()):
        if not any(w.lower() in (s.family.lower(), s.name.lower()) for s in fam):
            raise CompareError(f"unknown family {w!r} (known: "
                               + (", ".join(known) or "none: no scenario declares a family") + ")")
    if want:
        fam = [s for s in fam if s.family.lower() in want or s.name.lower() in want]
    picked, skipped = [], []
    for s in fam:
        pinned = s.params.get("lib")
        if pinned and pinned != lib and not explicit:
            skipped.append((s, f"built for --lib {pinned}"))
        else:
            picked.append(s)
    if not picked:
        raise CompareError(
            "no scenario to run: " + ("no scenario in the catalogue declares a family "
                                      "(family=\"...\" in its Scenario)" if not known and not explicit
                                      else f"every one is built for another library than {lib}"))
    return picked, skipped


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
