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

from harness import results, runflags, scenario
from harness.config import ConfigError


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


FAIL = {"livelock", "deadlock", "mixed", "degraded", "crash", "corruption"}


def cell_stats(runs: list[dict]) -> dict:
    n = len(runs)
    verdicts: dict[str, int] = {}
    for o in runs:
        verdicts[o["verdict"]] = verdicts.get(o["verdict"], 0) + 1
    judged = [o for o in runs if o["verdict"] not in ("unsupported",)]
    k = sum(1 for o in judged if o["verdict"] in FAIL)
    lo, hi = wilson(k, len(judged))
    ttf = [o["time_to_failure_ms"] for o in runs if o.get("time_to_failure_ms") is not None]
    healthy = [o for o in runs if o["verdict"] == "pass"]
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
        "unsupported": next((o["reason"] for o in runs if o["verdict"] == "unsupported"), None),
    }


def cell_config(cell: Cell, duration: float | None, out_dir: Path, quiet: bool = True):
    """RunConfig of one cell: the scenario's params, the library, the mitigations."""
    sc = scenario.load(cell.scenario)
    args = [*runflags.tokens(sc.params), "--lib", cell.lib, "--out", str(out_dir), "-q"]
    if cell.mitigations:
        args += ["--mitigate", ",".join(cell.mitigations)]
    if duration:
        args += ["--duration", str(duration)]
    from harness import backends
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
        return json.loads((d / "compare.json").read_text())
    except (OSError, ValueError):
        raise CompareError(f"{d}: no compare.json (not a comparison folder)") from None


def run_matrix(d: Path, state: dict, progress=None) -> dict:
    """Run every missing run of the matrix; compare.json is rewritten after each."""
    from harness.controller import HarnessError, Run
    from harness.progress import Progress
    cells = [Cell(c["lib"], c["scenario"], tuple(c["mitigations"])) for c in state["cells"]]
    repeat = state["repeat"]
    todo = [(i, c) for i, c in enumerate(cells) for _ in range(repeat - len(state["cells"][i]["runs"]))]
    total, done, t_start = len(todo), 0, time.monotonic()
    for i, cell in todo:
        out_dir = d / "runs" / cell.slug
        cfg, args = cell_config(cell, state.get("duration"), out_dir)
        try:
            o = Run(cfg, ["run", *args], Progress(quiet=True)).execute()
        except HarnessError as e:
            o = {"verdict": "unsupported" if "unsupported" in str(e).lower() else "error",
                 "reason": str(e), "replies": 0, "replies_per_s": 0, "exit_code": 4}
        if o.get("exit_code") == 130:             # interrupted: not a finished run
            raise KeyboardInterrupt
        if cfg.tls == 12 and "tls" not in scenario.load(cell.scenario).params:
            o["reason"] = (o.get("reason") or "") + " [TLS 1.2: no TLS 1.3 in this build]"
        keep = {k: o.get(k) for k in ("verdict", "reason", "run_dir", "time_to_failure_ms",
                                      "replies", "replies_per_s", "latency_ms", "handshakes_client",
                                      "load_seconds", "arena", "arena_bytes_per_conn", "stand_cpu_s",
                                      "families", "bad", "lib_version", "memory", "exit_code")}
        state["cells"][i]["runs"].append(keep)
        results.write_json(d / "compare.json", state)
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
