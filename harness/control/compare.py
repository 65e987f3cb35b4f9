"""`tlsharness compare`: libraries × scenarios × mitigations, N runs each.

The matrix lives in one folder: compare.json (the source of truth: every
run's outcome, appended as soon as it ends), runs/<cell>/<run-id>/ (each a
normal run folder), and the derived report.html / report.md.  Resumable:
`compare --resume DIR` runs only what compare.json does not hold yet.
"""
from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.verdicts import V, exit_code
from harness.analysis import history
from harness.analysis import results
from harness.analysis.stats import cell_stats, kept
from harness.spec import runflags, scenario
from harness.spec.config import ConfigError
from harness.vocab import M


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


def scenario_mitigations(sc) -> list[str]:
    """The mitigations a scenario's own params ask for (`mitigate=`)."""
    v = sc.params.get("mitigate") or []
    return [m for m in (v.split(",") if isinstance(v, str) else v) if m]


def cell_config(cell: Cell, duration: float | None, out_dir: Path, quiet: bool = True,
                add_to_scenario: bool = False):
    """RunConfig of one cell: the scenario's params, the library, the mitigations.
    The cell's mitigations replace the scenario's own `mitigate`, or, with
    add_to_scenario (`tlsharness mitigations`), come on top of them."""
    sc = scenario.load_stand(cell.scenario)
    args = [*runflags.tokens(sc.params), "--lib", cell.lib, "--out", str(out_dir), "-q"]
    mits = list(cell.mitigations)
    if add_to_scenario:
        mits = list(dict.fromkeys([*scenario_mitigations(sc), *mits]))
    if mits:
        args += ["--mitigate", ",".join(mits)]
    if duration:
        args += ["--duration", str(duration)]
    from harness.builds import backends
    caps = backends.info(cell.lib).get("caps") or {}
    tls12 = caps.get("tls13") is False and str(sc.params.get("tls", "1.3")) in ("1.3", "13")
    if tls12:                                # this build has no TLS 1.3: compare at 1.2, labelled
        args += ["--tls", "1.2"]
    try:
        return runflags.config_from_args(runflags.parser().parse_args(args)), args
    except (runflags.FlagError, ConfigError) as e:
        raise CompareError(f"cell {cell.key}: {e}") from None


def folder(path) -> Path:
    """The comparison folder of PATH: the folder, or that of its compare.json."""
    d = Path(path)
    if d.is_file():
        if d.name != "compare.json":
            raise CompareError(f"{d}: a file, not a comparison folder (give the folder or its "
                               "compare.json)")
        d = d.parent
    return d


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
        if o.get("verdict") == V.INTERRUPTED:     # interrupted: not a finished run
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
    if not scenarios:
        raise CompareError("no scenario to compare (--scenarios empty)")
    # each library, scenario (file) and set of mitigations once: two cells
    # with one key would overwrite each other's runs
    libs = list(dict.fromkeys(libs))
    mitigation_sets = list({tuple(sorted(ms)): tuple(ms) for ms in
                            [[ms] if isinstance(ms, str) else ms for ms in mitigation_sets]}.values())
    for m in {m for ms in mitigation_sets for m in ms}:
        if m not in MITIGATIONS:
            raise CompareError(f"unknown mitigation {m!r} (known: {', '.join(MITIGATIONS)})")
    files: dict = {}
    for s in scenarios:
        files.setdefault(scenario.load_stand(s).path, s)    # fail early, naming the file
    scenarios = list(files.values())
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

# mitigations for one library's own trouble: in the default sets only for it
LIB_SPECIFIC = {M.WRITE_DUP: "wolfssl", M.WARM_METHODS: "boringssl"}


def default_sets(known, lib: str = "") -> list[tuple]:
    """none, each single mitigation (those of LIB_SPECIFIC only for their
    library), and the combination the servers ship (pshared,prefork-thread).
    `known` is params.MITIGATIONS, read when called (it grows)."""
    sets = [()] + [(m,) for m in known
                   if m not in LIB_SPECIFIC or lib.startswith(LIB_SPECIFIC[m])]
    if M.PSHARED in known and M.PREFORK_THREAD in known:
        sets.append((M.PSHARED, M.PREFORK_THREAD))
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
    fam = [s for s in cat if s.family and not s.target] if not explicit else list(cat)
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
        if s.target:
            skipped.append((s, f"a scenario for target {s.target} (tlsharness target {s.target} "
                               f"--scenario {s.name})"))
        elif pinned and pinned != lib and not explicit:
            skipped.append((s, f"built for --lib {pinned}"))
        else:
            picked.append(s)
    if not picked:
        raise CompareError(
            "no scenario to run: " + ("no scenario in the catalogue declares a family "
                                      "(family=\"...\" in its Scenario)" if not known and not explicit
                                      else f"every one is built for another library than {lib}"))
    return picked, skipped


