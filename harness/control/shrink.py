"""`tlsharness shrink RUN_FOLDER`: the smallest configuration that still fails.

Delta debugging in the manner of Hypothesis's shrinker and C-Reduce: from
the failing run's configuration, reset options to their defaults one at a
time, then shrink each numeric knob toward its floor (the floor first, then
halving the interval between the largest value that did not fail and the
smallest that did), round after round until a round changes nothing.  A
candidate is kept only when it fails with the original's family in at least
K of N runs (`--rate K/N`), judged run by run as `repro` judges them: it is
decided as soon as K matching failures are in, or once N-K+1 runs did not
match.  The original configuration is measured the same way first.

Resumable: every run of every candidate is written to shrink.json in the
shrink's folder as soon as it ends, and the search is deterministic given
those runs, so starting again with the same folder replays the decisions
from the file and runs only what is missing.  The budgets (`--max-runs`,
`--max-time`) count the whole shrink, every session of it.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from harness.analysis import results
from harness.analysis.stats import quantile, wilson
from harness.control import repro, shrink_space as space
from harness.control.shrink_space import Origin, ShrinkError
from harness.verdicts import EXIT_HARNESS, V

STATE = "shrink.json"
VERSION = 1
MAX_ROUNDS = 4


class BudgetSpent(Exception):
    pass


class NotReproduced(Exception):
    pass


def default_folder(origin: Origin) -> Path:
    return origin.run_dir.parent / f"shrink-{origin.run_dir.name}"


def open_state(origin: Origin, folder: Path, k: int, n: int) -> dict:
    """shrink.json of `folder` (created with the folder when new); ShrinkError when the
    folder holds something else, or the shrink of another run or at another rate."""
    f = folder / STATE
    if f.exists():
        st = space._read(f)
        if st.get("version") != VERSION or "candidates" not in st:
            raise ShrinkError(f"{f}: not a shrink state this tlsharness can continue")
        if st.get("origin_id") != origin.run_dir.name or st.get("origin_key") != space.key(origin.config):
            raise ShrinkError(f"{folder} holds the shrink of another run "
                              f"({st.get('origin_id')}): give another --out")
        if st.get("rate") != [k, n]:
            raise ShrinkError(f"{folder} was shrunk at --rate {st['rate'][0]}/{st['rate'][1]}: "
                              "give the same rate to continue, or another --out")
        return st
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ShrinkError(f"--out {folder}: exists and is not a shrink folder (no {STATE})")
    folder.mkdir(parents=True, exist_ok=True)
    st = {"version": VERSION, "origin": str(origin.run_dir), "origin_id": origin.run_dir.name,
          "origin_key": space.key(origin.config), "kind": origin.kind, "match": origin.match,
          "rate": [k, n], "runs_total": 0, "elapsed_s": 0.0, "candidates": {}, "order": [],
          "result": None}
    results.write_json(f, st)
    return st


def matches(origin: Origin, o: dict) -> bool:
    """A failure of the same family (or, for a run no family named, the same verdict)."""
    if not repro.is_failure(o):
        return False
    if origin.families:
        return origin.families[0] in (o.get("families") or [])
    return o.get("verdict") == origin.verdict


def measured(origin: Origin, runs: list[dict]) -> dict:
    """Rate of same-family failures with its 95% interval, median time to failure."""
    hit = [o for o in runs if matches(origin, o)]
    n, k = len(runs), len(hit)
    lo, hi = wilson(k, n)
    ttf = [o["time_to_failure_ms"] for o in hit if o.get("time_to_failure_ms") is not None]
    s = repro.summarize(runs)
    return {"runs": n, "matched": k, "rate": k / n if n else None, "ci95": [round(lo, 3), round(hi, 3)],
            "ttf_median_ms": quantile(ttf, 0.5), "verdicts": s["verdicts"], "families": s["families"]}


def kept(o: dict, seed: int | None, wall: float) -> dict:
    keys = ("verdict", "families", "time_to_failure_ms", "exit_code", "run_dir", "command")
    d = {k: o.get(k) for k in keys}
    d.update(seed=seed, wall_s=round(wall, 2), reason=str(o.get("reason") or "")[:200])
    return d


class Shrink:
    def __init__(self, origin: Origin, folder: Path, k: int, n: int, max_runs: int,
                 max_time: float, runner, progress=None):
        self.origin, self.folder, self.k, self.n = origin, folder, k, n
        self.max_runs, self.max_time = max_runs, max_time
        self.runner, self.progress = runner, progress or (lambda text: None)
        self.state = open_state(origin, folder, k, n)
        self.dflt = space.defaults(origin.kind)
        self.mark = time.monotonic()
        self.label = ""
        self.current: dict | None = None
        self.ran = 0                            # runs made in this session

    # -- bookkeeping ------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.state["elapsed_s"] + time.monotonic() - self.mark

    def save(self) -> None:
        now = time.monotonic()
        self.state["elapsed_s"] = round(self.state["elapsed_s"] + now - self.mark, 3)
        self.mark = now
        results.write_json(self.folder / STATE, self.state)

    def decision(self, runs: list[dict]) -> bool | None:
        hit = sum(1 for o in runs if matches(self.origin, o))
        if hit >= self.k:
            return True
        if len(runs) - hit > self.n - self.k:
            return False
        return None

    def spent(self) -> str | None:
        if self.state["runs_total"] >= self.max_runs:
            return f"run budget spent ({self.max_runs} runs)"
        if self.elapsed() >= self.max_time:
            return f"time budget spent ({self.max_time:g} s)"
        return None

    def eta(self) -> str:
        walls = [o["wall_s"] for c in self.state["candidates"].values() for o in c["runs"]]
        per = sum(walls) / len(walls) if walls else 0
        left = min(per * (self.max_runs - self.state["runs_total"]), self.max_time - self.elapsed())
        return f"ETA ≤ {fmt_s(max(0.0, left))}"

    # -- one candidate ----------------------------------------------------------------
    def test(self, config: dict, label: str) -> bool:
        """Does `config` fail with the family at the rate?  Its runs come from shrink.json
        first; the missing ones are run (BudgetSpent when the budget is gone)."""
        ck = space.key(config)
        c = self.state["candidates"].get(ck)
        if c is None:
            c = self.state["candidates"][ck] = {"label": label, "config": config, "runs": []}
            self.state["order"].append(ck)
        while (d := self.decision(c["runs"])) is None:
            why = self.spent()
            if why:
                raise BudgetSpent(why)
            i = len(c["runs"])
            seed = self.origin.seed + i
            t = time.monotonic()
            outs, interrupted = repro.run_series(lambda _: self.runner(config, seed), 1)
            if interrupted:
                self.save()
                raise KeyboardInterrupt
            c["runs"].append(kept(outs[0], seed if self.origin.kind == "run" else None,
                                  time.monotonic() - t))
            self.state["runs_total"] += 1
            self.ran += 1
            self.save()
            o = c["runs"][-1]
            hits = sum(1 for r in c["runs"] if matches(self.origin, r))
            self.progress(f"shrink: run {self.state['runs_total']}/{self.max_runs} "
                          f"[{fmt_s(self.elapsed())} of {fmt_s(self.max_time)}, {self.eta()}]  "
                          f"{label}: {o['verdict']} ({hits}/{len(c['runs'])} matched, need "
                          f"{self.k} of {self.n})")
        c["kept"] = d
        return d

    # -- the search -------------------------------------------------------------------
    def try_set(self, cur: dict, name: str, value, label: str) -> dict | None:
        cand = space.valid(self.origin, space.put(cur, name, value))
        if cand is None or cand == cur:
            return None
        return cand if self.test(cand, label) else None

    def drop_pass(self, cur: dict) -> dict:
        for name in space.drops(self.origin):
            if name in cur and cur[name] != self.dflt.get(name):
                cand = self.try_set(cur, name, self.dflt.get(name), f"{name} dropped")
                if cand is not None:
                    cur = self.current = cand
        return cur

    def number_pass(self, cur: dict) -> dict:
        for name, floor, integer in space.numbers(self.origin):
            v = space.get(cur, name)
            if v is None or v <= floor:
                continue
            cand = self.try_set(cur, name, floor, f"{name} {space._num(floor)}")
            if cand is not None:
                cur = self.current = cand
                continue
            lo, hi = floor, v                     # lo did not fail at the rate, hi does
            while True:
                mid = (lo + hi) // 2 if integer else round((lo + hi) / 2 * 2) / 2
                if not lo < mid < hi:
                    break
                cand = self.try_set(cur, name, mid, f"{name} {space._num(mid)}")
                if cand is not None:
                    cur, hi = cand, mid
                    self.current = cur
                else:
                    lo = mid
        return cur

    def search(self) -> dict:
        start = space.valid(self.origin, self.origin.config) or self.origin.config
        if not self.test(start, "original"):
            raise NotReproduced
        cur = self.current = start
        for _ in range(MAX_ROUNDS):
            before = cur
            cur = self.number_pass(self.drop_pass(cur))
            if cur == before:
                break
        return cur

    def run(self) -> dict:
        """The search to its end or its budget; the result (also in shrink.json).
        KeyboardInterrupt propagates after the state is saved."""
        status = "complete"
        try:
            final = self.search()
        except BudgetSpent as e:
            status, final = str(e), self.current
        except NotReproduced:
            status, final = "not reproduced", None
        return self.finish(status, final)

    def finish(self, status: str, final: dict | None) -> dict:
        o = self.origin
        start = space.valid(o, o.config) or o.config
        orig_runs = self.state["candidates"].get(space.key(start), {}).get("runs", [])
        res = {"status": status, "match": o.match, "rate": [self.k, self.n],
               "runs": self.state["runs_total"], "runs_this_session": self.ran,
               "elapsed_s": round(self.elapsed(), 1),
               "original": {"command": space.command_text(o, start), "config": start,
                            **measured(o, orig_runs)},
               "minimal": None, "scenario": None}
        if final is not None:
            runs = self.state["candidates"][space.key(final)]["runs"]
            res["minimal"] = {"command": space.command_text(o, final), "config": final,
                              "changed": space.diff(o, start, final), **measured(o, runs)}
            res["steps"] = [c["label"] for c in self.state["candidates"].values() if c.get("kept")]
            if o.kind == "run":
                note = (f"Shrunk by `tlsharness shrink` from run {o.run_dir.name} "
                        f"({space.command_text(o, start)}): fails with {o.match} in "
                        f"{res['minimal']['matched']}/{res['minimal']['runs']} runs.")
                (self.folder / "scenario.py").write_text(space.scenario_text(o, final, note))
                res["scenario"] = "scenario.py"
        self.state["result"] = res
        self.save()
        return res


def fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else \
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


# -- the runs ------------------------------------------------------------------------
def _known(cls, config: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in config.items() if k in names}


def runner(origin: Origin, folder: Path):
    """run(config, seed) -> outcome: one run of the stand (in this process, as `repro`
    does) or of the real server (harness.control.target), in folder/runs, recorded in the
    history of the original run's results folder too (kind "shrink")."""
    from harness.analysis import history
    root = folder / "runs"

    def stand(config: dict, seed: int) -> dict:
        from harness.control import compare
        from harness.control.controller import HarnessError, Run
        from harness.control.progress import Progress
        from harness.spec.config import RunConfig
        cfg = RunConfig(**_known(RunConfig, config))
        cfg.seed, cfg.out = seed, str(root)
        cfg.validate()
        try:
            out = Run(cfg, space.command(origin, config), Progress(quiet=True)).execute()
        except (HarnessError, OSError) as e:
            out = {"verdict": V.ERROR, "reason": str(e), "exit_code": EXIT_HARNESS}
        if out.get("verdict") != V.INTERRUPTED and out.get("run_dir"):
            history.record(origin.run_dir.parent, out, "shrink", params=compare.run_params(cfg))
        return out

    def target(config: dict, seed) -> dict:
        from harness.control.target import TargetConfig, TargetError, run_target
        tc = TargetConfig(**_known(TargetConfig, config))
        tc.out = str(root)
        try:
            out = run_target(tc)
        except TargetError as e:
            out = {"verdict": V.ERROR, "reason": str(e), "exit_code": EXIT_HARNESS}
        out["command"] = space.command_text(origin, config)
        if out.get("verdict") != V.INTERRUPTED and out.get("run_dir"):
            history.record(origin.run_dir.parent, dict(out, lib=origin.lib), "shrink",
                           params={k: v for k, v in config.items() if k not in ("out", "command")})
        return out
    return target if origin.kind == "target" else stand


def result_lines(res: dict, folder: Path) -> list[str]:
    def rate(m: dict) -> str:
        if not m["runs"]:
            return "not measured"
        lo, hi = m["ci95"]
        ttf = repro.fmt_ms(m["ttf_median_ms"])
        return (f"{res['match']} in {m['matched']}/{m['runs']} runs ({m['rate']:.0%}, 95% CI "
                f"{lo:.0%}–{hi:.0%}), median time to failure {ttf}")
    o, m = res["original"], res["minimal"]
    lines = [f"shrink {res['status']}: {res['runs']} runs ({res['runs_this_session']} in this "
             f"session), {fmt_s(res['elapsed_s'])}; kept when {res['match']} in at least "
             f"{res['rate'][0]} of {res['rate'][1]} runs",
             f"original: {o['command']}", f"  {rate(o)}"]
    if m is None:
        lines.append("nothing to shrink at this rate: the original configuration does not "
                     f"fail with {res['match']} in {res['rate'][0]} of {res['rate'][1]} runs "
                     f"(verdicts: {repro.fmt_counts(o['verdicts'])})")
        return lines
    lines += [f"minimal:  {m['command']}", f"  {rate(m)}", f"  changed: {m['changed']}"]
    if res.get("scenario"):
        lines.append(f"scenario: {folder / res['scenario']}")
    else:
        lines.append("scenario: none (scenario files describe stand runs, not a real server's)")
    lines.append(f"state:    {folder / STATE}")
    return lines


def progress_printer(quiet: bool):
    if quiet:
        return None
    return lambda text: print(text, file=sys.stderr, flush=True)
