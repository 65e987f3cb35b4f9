"""Naming failure families from the signature catalogue (a TOML file)."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent / "signatures.toml"


class CatalogueError(ValueError):
    pass


def load(path: Path | None = None) -> list[dict]:
    path = Path(path or DEFAULT)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise CatalogueError(f"{path}: {e}") from None
    sigs = data.get("signature", [])
    for i, s in enumerate(sigs):
        if "family" not in s:
            raise CatalogueError(f"{path}: signature {i + 1} has no family")
        unknown = set(s) - {"family", "explain", "refs", "verdicts", "proc", "frames", "arena", "log"}
        if unknown:
            raise CatalogueError(f"{path}: signature {i + 1} ({s['family']}): unknown keys {sorted(unknown)}")
        if s.get("proc") and s["proc"] not in PREDICATES:
            raise CatalogueError(f"{path}: signature {i + 1}: unknown proc predicate {s['proc']!r}")
        try:
            s["_frames"] = [re.compile(r) for r in s.get("frames", [])]
            s["_log"] = re.compile(s["log"]) if s.get("log") else None
        except re.error as e:
            raise CatalogueError(f"{path}: signature {i + 1}: bad regex: {e}") from None
    return sigs


def _stuck(verdict: dict) -> list[dict]:
    return verdict.get("blocked", []) + verdict.get("spinning", []) + verdict.get("stopped", [])


def _futex_private_in_arena(v):
    """A private futex wait on shared memory: the stand's arena, or (a server
    tlsharness did not build) any shared mapping of the waiting process."""
    return [p for p in _stuck(v) if (p.get("futex") or {}).get("private")
            and (p["futex"].get("in_arena") or p["futex"].get("in_shared_mapping"))]


def _spinning_on_app_lock(v):
    return [p for p in v.get("spinning", []) if p.get("lock_waiting", -1) >= 0]


def _waits_on_own_lock(v):
    return [p for p in _stuck(v) if p.get("lock_waiting", -1) >= 0 and p["lock_waiting"] == p.get("lock_held")]


def _injected_fault(v):
    return [p for p in _stuck(v) + v.get("crashed", []) if p.get("activity") == "fault"]


def _evidence(match):
    """A predicate over the verdict's evidence lines (watchdog findings that
    are not about one process)."""
    return lambda v: [{"pid": 0, "slot": None, "activity": e} for e in v.get("evidence", [])
                      if match(e)]


_identical_random = _evidence(lambda e: "identical random bytes" in e)
_at_shutdown = _evidence(lambda e: e.startswith("shutdown:"))
_arena_growth = _evidence(lambda e: e.startswith("arena growth:"))
_aligned_vector_fault = _evidence(lambda e: e.startswith("aligned vector access:"))
_lost_wake_seen = _evidence(lambda e: e.startswith("wake lost:"))   # kernel futex events


PREDICATES = {"identical_random": _identical_random,
              "arena_growth": _arena_growth,
              "at_shutdown": _at_shutdown,
              "futex_private_in_arena": _futex_private_in_arena,
              "spinning_on_app_lock": _spinning_on_app_lock,
              "waits_on_own_lock": _waits_on_own_lock,
              "injected_fault": _injected_fault,
              "aligned_vector_fault": _aligned_vector_fault,
              "lost_wake_seen": _lost_wake_seen}


def _match_frames(regexes, frames: list[str]) -> list[str] | None:
    """Frames matching each regex in order (innermost first), or None."""
    got, i = [], 0
    for rx in regexes:
        while i < len(frames) and not rx.search(frames[i]):
            i += 1
        if i == len(frames):
            return None
        got.append(frames[i])
        i += 1
    return got


def name(verdict: dict, stacks: list[dict], arena_events: list[dict], log_lines=(),
         catalogue: list[dict] | None = None) -> list[dict]:
    """Families matched by this verdict and its evidence, with the deciding evidence."""
    sigs = catalogue if catalogue is not None else load()
    found: dict[str, dict] = {}
    kinds = {e["kind"] for e in arena_events}
    for s in sigs:
        if s.get("verdicts") and verdict["verdict"] not in s["verdicts"]:
            continue
        evidence = []
        if s.get("proc"):
            hits = PREDICATES[s["proc"]](verdict)
            if not hits:
                continue
            evidence += [_proc_evidence(s["proc"], p) for p in hits]
        if s.get("arena"):
            if not set(s["arena"]) <= kinds:
                continue
            evidence.append("arena events: " + ", ".join(sorted(set(s["arena"]))))
        if s["_frames"]:
            hits = [(st, _match_frames(s["_frames"], st["frames"])) for st in stacks]
            hits = [(st, m) for st, m in hits if m]
            if not hits:
                continue
            evidence += [f"pid {st['pid']} ({st.get('role', 'worker')} {st.get('slot')}): "
                         + " ← ".join(m) for st, m in hits[:4]]
        if s["_log"]:
            lines = [l for l in log_lines if s["_log"].search(l)]
            if not lines:
                continue
            evidence.append(f"log: {lines[0].strip()[:160]}")
        if not (s.get("proc") or s.get("arena") or s["_frames"] or s["_log"]):
            continue                      # a signature must test something
        f = found.setdefault(s["family"], {"family": s["family"], "explain": s.get("explain", ""),
                                           "refs": [], "evidence": []})
        f["refs"] += [r for r in s.get("refs", []) if r not in f["refs"]]
        f["evidence"] += [e for e in evidence if e not in f["evidence"]]
    return list(found.values())


def _proc_evidence(pred: str, p: dict) -> str:
    who = f"pid {p['pid']} (slot {p.get('slot')})"
    if pred == "futex_private_in_arena":
        where = (f"in shared mapping {p['futex']['mapping']}" if p["futex"].get("mapping")
                 else "on arena address")
        return f"{who}: private futex wait op {p['futex']['op']} {where} {p['futex']['addr']}"
    if pred == "spinning_on_app_lock":
        return f"{who}: {p.get('cpu')} CPU waiting for connection lock {p['lock_waiting']}"
    if pred in ("identical_random", "at_shutdown", "arena_growth", "lost_wake_seen"):
        return p["activity"]
    if pred == "waits_on_own_lock":
        return f"{who}: waits for lock {p['lock_waiting']} that it holds"
    return f"{who}: {p.get('activity')}"
