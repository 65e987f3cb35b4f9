"""Scenario files: short, declarative Python in scenarios/ (one per file).

    from harness.spec.scenario import Scenario, fails, passes

    SCENARIO = Scenario(
        summary="every request may be served by another worker (the OpenSIPS model)",
        params=dict(memory="shared", handoff="per-message", lock="spin", duration=10),
        expect={"openssl": fails(families=["lost wake-up"]),
                "openssl+pshared,prefork-thread": passes(),
                "wolfssl": passes()},
        refs=["OpenSIPS #1755"],
        family="lost wake-up",
    )

`params` are `tlsharness run` flags (underscores for dashes); a flag given on
the command line overrides them.  `expect` keys are a library, optionally
followed by +mitigations.  `family` (optional) names the failure family the
scenario is built to produce; `tlsharness mitigations` runs those scenarios.
A file with a mistake gets an error naming the file, the line and the problem.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.spec import runflags
from harness.spec.config import ConfigError
from harness.verdicts import FAILURES, V

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios"


class ScenarioError(ValueError):
    pass


@dataclass
class Expectation:
    outcome: str                      # "fails" or "passes"
    verdicts: list = field(default_factory=list)
    families: list = field(default_factory=list)

    def check(self, out: dict) -> tuple[bool, str]:
        v = out["verdict"]
        if self.outcome == "passes":
            return v == V.PASS, "expected pass"
        want = set(self.verdicts or FAILURES)
        fams = set(out.get("families") or [])
        ok = v in want and set(self.families) <= fams
        what = f"expected {'/'.join(sorted(want)) if self.verdicts else 'a failure'}" + (
            f" with {', '.join(self.families)}" if self.families else "")
        return ok, what


def fails(verdicts=None, families=None) -> Expectation:
    """A failure is expected: any failure, or one of `verdicts` (V members or
    their names; an unknown name is an error)."""
    try:
        named = [V(v) for v in verdicts or []]
    except ValueError as e:
        raise ScenarioError(f"expect: {e} (verdicts: {', '.join(V)})") from None
    return Expectation("fails", named, list(families or []))


def passes() -> Expectation:
    return Expectation("passes")


@dataclass
class Scenario:
    summary: str
    params: dict = field(default_factory=dict)
    expect: dict = field(default_factory=dict)
    refs: list = field(default_factory=list)
    notes: str = ""
    family: str = ""                  # the failure family it is built to produce ("lost wake-up")
    target: str = ""                  # a real server ("opensips"): params are `target` flags
    name: str = ""
    path: str = ""

    def expectation(self, lib: str, mitigations: list[str]) -> Expectation | None:
        """The expectation for LIB or LIB+MITIGATIONS (in any order), if any."""
        for k, e in self.expect.items():
            klib, _, kmit = k.partition("+")
            if klib == lib and sorted(m for m in kmit.split(",") if m) == sorted(mitigations):
                return e
        return None


def _line_of(source: str, needle: str) -> int:
    for i, line in enumerate(source.splitlines(), 1):
        if needle in line:
            return i
    return 1


def _path_of(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if not p.suffix and os.sep not in name_or_path:     # a name from the catalogue
        p = SCENARIO_DIR / (name_or_path.replace("-", "_") + ".py")
        if not p.exists():
            cands = list(SCENARIO_DIR.rglob(name_or_path.replace("-", "_") + ".py"))
            p = cands[0] if cands else p
    if not p.exists():
        raise ScenarioError(f"no scenario {name_or_path!r} (see: tlsharness scenarios)")
    if not p.is_file():
        raise ScenarioError(f"{p}: not a scenario file (a folder?)")
    return p.absolute()


def _source(p: Path):
    """(source, code) of a scenario file; its syntax checked, nothing run."""
    try:
        source = p.read_text(encoding="utf-8")
        return source, compile(source, str(p), "exec")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ScenarioError(f"{p}: cannot read it as a Python scenario file ({e})") from None
    except SyntaxError as e:
        raise ScenarioError(f"{p}:{e.lineno}: syntax error: {e.msg}") from None


def run_file(p: Path) -> Scenario:
    """Execute a scenario file and check what it defines.  Runs only in the
    child process of harness.spec.scenario_child (load() starts it): the
    file's own exit, interrupt or endless loop never reaches the tool."""
    source, code = _source(p)
    ns: dict = {"__file__": str(p), "__name__": f"tlsh_scenario_{p.stem}"}
    try:
        exec(code, ns)
    except BaseException as e:             # a scenario's own mistake (or exit): name the line
        tb = e.__traceback__
        line = 1
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == str(p):
                line = tb.tb_lineno
            tb = tb.tb_next
        hint = "" if isinstance(e, Exception) else " (a scenario file must only define SCENARIO)"
        raise ScenarioError(f"{p}:{line}: {type(e).__name__}" + (f": {e}" if str(e) else "")
                            + hint) from None
    return _checked(ns.get("SCENARIO"), p, source)


def _checked(sc, p: Path, source: str) -> Scenario:
    if not isinstance(sc, Scenario):
        raise ScenarioError(f"{p}:1: defines no SCENARIO = Scenario(...)")
    if sc.target:
        _check_target(sc, p, source)
        return _named(sc, p)
    known = runflags.dests()
    for k, v in sc.params.items():
        if k not in known:
            raise ScenarioError(f"{p}:{_line_of(source, k)}: unknown parameter {k!r} "
                                f"(a tlsharness run flag, with _ for -)")
        try:
            runflags.config_from_args(runflags.parser().parse_args(runflags.tokens({k: v})))
        except (runflags.FlagError, ConfigError) as e:
            raise ScenarioError(f"{p}:{_line_of(source, k)}: parameter {k}={v!r}: {e}") from None
    if not isinstance(sc.family, str):
        raise ScenarioError(f"{p}:{_line_of(source, 'family=')}: family must be a string "
                            f"(a failure family name, e.g. \"lost wake-up\"), got {type(sc.family).__name__}")
    sc.family = sc.family.strip()
    for k, e in sc.expect.items():
        if not isinstance(e, Expectation):
            raise ScenarioError(f"{p}:{_line_of(source, k)}: expect[{k!r}] must be fails(...) or passes()")
    return _named(sc, p)


def _named(sc, p: Path):
    sc.name = sc.name or p.stem.replace("_", "-")
    sc.path = str(p)
    return sc


# what a target scenario may set: `tlsharness target` flags (with _ for -)
TARGET_KINDS = ("opensips", "kamailio")
TARGET_PARAMS = {"workers", "conns", "clients", "window", "load", "churn_every", "rate", "tls",
                 "duration", "shm_mb", "opensips_version", "tls_lib", "no_pshared_override",
                 "tcp_threads", "tcp_port", "chaos", "reload_every", "rekey_every",
                 "tls_threads_mode", "tcp_main_threads", "ready_timeout", "db_domains",
                 "judge_shutdown", "transport", "abort_every", "rst_handshake_every",
                 "garbage_hello_every", "no_close_notify"}


def _check_target(sc, p: Path, source: str) -> None:
    if sc.target not in TARGET_KINDS:
        raise ScenarioError(f"{p}:{_line_of(source, 'target=')}: target must be one of "
                            f"{', '.join(TARGET_KINDS)} (got {sc.target!r})")
    for k in sc.params:
        if k not in TARGET_PARAMS:
            raise ScenarioError(f"{p}:{_line_of(source, k)}: unknown parameter {k!r} for a "
                                f"target scenario (one of {', '.join(sorted(TARGET_PARAMS))})")
    for k, e in sc.expect.items():
        if not isinstance(e, Expectation):
            raise ScenarioError(f"{p}:{_line_of(source, k)}: expect[{k!r}] must be fails(...) or passes()")


def to_data(sc: Scenario) -> dict:
    import dataclasses
    return dataclasses.asdict(sc)


def from_data(d: dict) -> Scenario:
    expect = {k: Expectation(e["outcome"], [V(v) for v in e["verdicts"]], list(e["families"]))
              for k, e in d.pop("expect").items()}
    return Scenario(**d, expect=expect)


_CACHE: dict = {}


def load_many(paths: list[Path]) -> list:
    """Each file's Scenario, or the ScenarioError that says why not; the
    files run in a child process (harness.spec.sandbox), each with a time
    limit; a file unchanged since it was last loaded is not run again."""
    import copy
    from harness.spec import sandbox
    keys = {}
    for p in paths:
        st = p.stat()
        keys[p] = (str(p), st.st_mtime_ns, st.st_size)
    todo = [str(p) for p in paths if keys[p] not in _CACHE]
    for path, rec in sandbox.load_files(todo).items():
        key = keys[Path(path)]
        _CACHE[key] = ScenarioError(rec["error"]) if "error" in rec else from_data(rec["scenario"])
    return [copy.deepcopy(_CACHE[keys[p]]) for p in paths]


def load(name_or_path: str) -> Scenario:
    p = _path_of(name_or_path)
    _source(p)                                  # a syntax error is named without running anything
    sc = load_many([p])[0]
    if isinstance(sc, ScenarioError):
        raise sc
    return sc


def load_stand(name_or_path: str) -> Scenario:
    """A scenario of the stand (`run`, `repro`, `compare`); a target scenario
    is refused with the command that runs it."""
    sc = load(name_or_path)
    if sc.target:
        raise ScenarioError(f"{sc.name} is a scenario for a real {sc.target}: run it with "
                            f"`tlsharness target {sc.target} --scenario {sc.name}`")
    return sc


def catalogue() -> list[Scenario]:
    files = [p.absolute() for p in sorted(SCENARIO_DIR.rglob("*.py")) if not p.name.startswith("_")]
    out = []
    for p, sc in zip(files, load_many(files)):
        out.append(sc if isinstance(sc, Scenario) else
                   Scenario(summary=f"BROKEN: {sc}", name=p.stem.replace("_", "-"), path=str(p)))
    return out
