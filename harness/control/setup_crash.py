"""A stand that dies of a signal while it sets up (the library's
initialisation, its contexts, the arena's first blocks) is a verdict on the
library, not a harness error: `crash`, with the stand's own crash record as
evidence and the families named from it (an aligned vector access on a
misaligned arena: OpenSIPS #3814)."""
from __future__ import annotations

import signal

from harness.analysis import results
from harness.control import measures
from harness.verdicts import V
from harness.watchdog import families, stacks
from harness.watchdog.verdict import Verdict


class StandCrashed(Exception):
    def __init__(self, sig: int):
        super().__init__(sig)
        self.sig = sig


def signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def verdict_of(run, sig: int) -> Verdict:
    crashed = stacks.crash_stacks(run.dir / "stacks")
    pid = run.stand.pid
    v = Verdict(V.CRASH, reason=f"the stand died of {signame(sig)} during set-up, before any "
                                f"worker ran")
    v.crashed = [{"pid": pid, "slot": -1, "role": "stand", "exit_signal": sig,
                  "activity": "setup"}]
    v.evidence += stacks.fault_evidence(crashed, int(run.cfg.arena_align))
    for c in crashed:
        v.evidence.append(f"crash record {c['file']}: {c['header']}")
    if not crashed:
        v.evidence.append("no crash record: the signal came before the stand's handler was in "
                          "place, or the handler could not write")
    v.stacks = stacks.summary(crashed)
    log = (run.dir / "stand.log").read_text(errors="replace").splitlines() \
        if (run.dir / "stand.log").exists() else []
    try:
        v.families = families.name(v.to_dict(), crashed, [], log)
    except families.CatalogueError as e:
        v.evidence.append(f"signature catalogue: {e}")
    return v


def outcome_of(run, sig: int) -> dict:
    v = verdict_of(run, sig)
    results.write_json(run.dir / "verdict.json", v.to_dict())
    # at once: 0 ms, before any load (failure_phase says so)
    return run.early_outcome(v.verdict, v.reason, memory=run.cfg.memory,
                             mitigations=run.cfg.mitigations, time_to_failure_ms=0,
                             failure_phase="set-up", families=[f["family"] for f in v.families],
                             evidence=v.evidence, stand_log=measures.tail(run.dir / "stand.log"))
