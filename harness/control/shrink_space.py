"""What `tlsharness shrink` may change in a failing run's configuration, and
how a configuration reads as a command line and as a scenario file.

A failing run folder gives its origin (`load_origin`): the parameters its
manifest recorded, its verdict and the family to keep.  `drops` are the
options reset to their defaults one at a time; `numbers` the numeric knobs
shrunk toward a floor.  What a run tests never changes: the library, the
memory model and the hand-off, the mitigations (none added, none taken
away), the injected fault, the watchdog's settings, and for a real server
its binary, build and command.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.spec.params import PARAMS
from harness.verdicts import FAILURES, V
from harness.vocab import M


class ShrinkError(ValueError):
    """The input cannot be shrunk (one line)."""


@dataclass
class Origin:
    run_dir: Path
    kind: str                   # "run" (the stand) or "target" (a real server)
    target: str | None          # kamailio | opensips | cmd
    config: dict                # every parameter the manifest recorded (no out, no seed)
    seed: int
    verdict: str
    families: list
    command: str

    @property
    def match(self) -> str:
        """What a candidate's run must show: the run's first family, else its verdict."""
        return self.families[0] if self.families else f"verdict {self.verdict}"

    @property
    def lib(self) -> str:
        return self.config.get("lib") or f"target:{self.target}"

    @property
    def mitigations(self) -> list:
        return list(self.config.get("mitigations") or [])


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ShrinkError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None


def load_origin(folder) -> Origin:
    d = Path(folder)
    if not d.is_dir() or not (d / "manifest.json").is_file() or not (d / "outcome.json").is_file():
        raise ShrinkError(f"{folder}: not a run folder (no manifest.json and outcome.json)")
    man, out = _read(d / "manifest.json"), _read(d / "outcome.json")
    verdict = out.get("verdict")
    if verdict == V.PASS:
        raise ShrinkError("nothing to shrink: the run passed")
    if verdict not in FAILURES:
        raise ShrinkError(f"nothing to shrink: the run's verdict is {verdict} (not a failure: "
                          f"{out.get('reason', 'no reason recorded')})")
    cfg = dict(man.get("config") or {})
    if not cfg:
        raise ShrinkError(f"{d / 'manifest.json'}: records no configuration")
    seed = cfg.pop("seed", None) or 1
    cfg.pop("out", None)
    target = out.get("target") or (man.get("kind") if "target" in str(man.get("tool")) else None)
    return Origin(run_dir=d.absolute(), kind="target" if target else "run", target=target,
                  config=cfg, seed=int(seed), verdict=verdict, families=list(out.get("families") or []),
                  command=out.get("command") or man.get("command") or "")


def key(config: dict) -> str:
    """A configuration's identity in shrink.json."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# -- the stand's knobs ------------------------------------------------------------------
# reset to the default one at a time (never: lib, memory, handoff, mitigations and the
# switches they stand for (global_lock, ctx), fault, watchdog settings, arena size)
RUN_DROPS = ("chaos", "rate", "ramp", "reject_every", "rekey_every", "reload_ms", "resume",
             "parent_use", "check_random", "tickets", "ciphers", "shutdown", "rand_lock",
             "reply_by", "conn_locks", "arena_align", "lock", "load", "tls", "cert", "client")
# (name, floor, integer); duration first: a candidate that passes runs it out in full
RUN_NUMBERS = (("duration", 1.0, False), ("workers", 1, True), ("conns", 1, True),
               ("clients", 1, True), ("window", 1, True), ("churn_every", 1, True),
               ("chaos_delay_us", 1, True), ("chaos_p", 0.01, False))
TARGET_DROPS = ("chaos", "rate", "tls", "load", "tcp_port")
TARGET_NUMBERS = (("duration", 1.0, False), ("workers", 1, True), ("conns", 1, True),
                  ("clients", 1, True), ("window", 1, True), ("churn_every", 1, True),
                  ("shm_mb", 32, True), ("chaos_delay_us", 1, True), ("chaos_p", 0.01, False))


def target_defaults() -> dict:
    from harness.control.target import TargetConfig
    return {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
            for f in dataclasses.fields(TargetConfig)}


def defaults(kind: str) -> dict:
    if kind == "target":
        return target_defaults()
    return {p.name: p.initial() for p in PARAMS}


def drops(origin: Origin) -> tuple:
    return TARGET_DROPS if origin.kind == "target" else RUN_DROPS


def numbers(origin: Origin) -> tuple:
    return TARGET_NUMBERS if origin.kind == "target" else RUN_NUMBERS


def get(config: dict, name: str):
    """A knob's value (the chaos amplifier's two halves are knobs of their own)."""
    if name.startswith("chaos_"):
        if not config.get("chaos"):
            return None
        p, us = str(config["chaos"]).split(":")
        return float(p) if name == "chaos_p" else int(us)
    if name == "churn_every" and config.get("load") != "churn":
        return None                            # no churn: the interval means nothing
    return config.get(name)


def put(config: dict, name: str, value) -> dict:
    c = dict(config)
    if name.startswith("chaos_"):
        p, us = str(c["chaos"]).split(":")
        p, us = (value, us) if name == "chaos_p" else (p, value)
        c["chaos"] = f"{float(p):g}:{int(us)}"
    else:
        c[name] = value
    return c


def valid(origin: Origin, config: dict) -> dict | None:
    """The configuration as a run would take it, or None when it is not a valid one
    (a ramp longer than the duration, say)."""
    if origin.kind == "target":
        from harness.spec.config import ConfigError, check_chaos
        try:
            if config.get("chaos"):
                check_chaos(config["chaos"])
        except ConfigError:
            return None
        return config
    from harness.spec.config import ConfigError, RunConfig
    known = {f.name for f in dataclasses.fields(RunConfig)}
    try:
        cfg = RunConfig(**{k: v for k, v in config.items() if k in known})
        cfg.seed = origin.seed
        cfg.validate()
    except (ConfigError, TypeError):
        return None
    d = dataclasses.asdict(cfg)
    d.pop("seed", None)
    d.pop("out", None)
    return d


# -- as a command line and a scenario ----------------------------------------------------
def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _text(name: str, v) -> str:
    if name == "tls":
        return f"{v // 10}.{v % 10}"
    if name == "fault":
        parts = [v.get("kind", "none"), v.get("slot"), v.get("after_ms")]
        while parts and parts[-1] is None:
            parts.pop()
        return ":".join(str(p if p is not None else 1) for p in parts)
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return _num(v)


ALWAYS = ("lib", "workers", "conns", "duration")     # said even at their defaults: a report reads them


def run_flags(config: dict) -> list[str]:
    """The `tlsharness run` flags of the non-default values (no --out, no --seed)."""
    out = []
    for p in PARAMS:
        if p.flag is None or p.name in ("out", "seed") or p.name not in config:
            continue
        v = config[p.name]
        if p.name not in ALWAYS and v == p.initial() or (p.name == "global_lock" and M.GLOBAL_LOCK in config.get("mitigations", [])):
            continue
        if p.name == "ctx" and M.PER_WORKER_CTX in config.get("mitigations", []):
            continue
        if p.type is bool:
            if p.negate and not v:
                out.append(p.negate)
            elif v and not p.negate:
                out.append(p.option)
            continue
        out += [p.option, _text(p.name, v)]
    return out


TARGET_FLAGS = ("workers", "conns", "clients", "window", "load", "churn_every", "rate", "tls",
                "duration", "ready_timeout", "shm_mb", "kamailio_bin", "kamailio_modules",
                "tls_threads_mode", "tcp_main_threads", "tcp_threads", "tcp_port", "chaos", "port")


def target_flags(config: dict) -> list[str]:
    dflt = target_defaults()
    out = []
    for name in TARGET_FLAGS:
        v = config.get(name, dflt.get(name))
        if (v == dflt.get(name) and name not in ALWAYS) or v in (None, "") or (name == "port" and config.get("kind") != "cmd"):
            continue
        text = {0: "auto", 12: "1.2", 13: "1.3"}.get(v, str(v)) if name == "tls" else _num(v)
        out += ["--" + name.replace("_", "-"), text]
    if config.get("opensips"):
        out += ["--opensips", str(config["opensips"].get("name", "auto"))]
    if config.get("cores"):
        out.append("--cores")
    return out


def command(origin: Origin, config: dict) -> list[str]:
    """The command line that runs `config`, as argv (without "tlsharness")."""
    if origin.kind == "target":
        argv = ["target", config.get("kind") or origin.target, *target_flags(config)]
        return argv + (["--", *map(str, config["command"])] if config.get("kind") == "cmd" else [])
    return ["run", *run_flags(config)]


def command_text(origin: Origin, config: dict) -> str:
    return shlex.join(["tlsharness", *command(origin, config)])


def diff(origin: Origin, a: dict, b: dict) -> str:
    """What changed from a to b, briefly ("workers 8→2, chaos dropped")."""
    parts = []
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name) and name != "mitigations":
            va, vb = a.get(name), b.get(name)
            parts.append(f"{name} {_show(va)}→{_show(vb)}")
    return ", ".join(parts) or "no change"


def _show(v) -> str:
    return "''" if v == "" else _text("", v) if not isinstance(v, dict) else _text("fault", v)


def scenario_text(origin: Origin, config: dict, note: str) -> str:
    """A scenario file (scenarios/*.py) for the stand configuration `config`."""
    params = {}
    for p in PARAMS:
        if p.flag is None or p.name in ("out", "seed") or p.name not in config:
            continue
        v = config[p.name]
        mits = config.get("mitigations") or []
        if v == p.initial() or (p.name == "global_lock" and M.GLOBAL_LOCK in mits) or \
                (p.name == "ctx" and M.PER_WORKER_CTX in mits):
            continue
        if p.type is bool:
            params[p.dest] = True
        elif p.parse is not None or isinstance(v, (list, dict)):
            params[p.dest] = _text(p.name, v)
        else:
            params[p.dest] = v
    body = ", ".join(f"{k}={v!r}" for k, v in params.items())
    lib = config.get("lib", "openssl")
    mit = ",".join(sorted(config.get("mitigations") or []))
    fam = origin.families[0] if origin.families else ""
    expect = f"fails(families=[{fam!r}])" if fam else f"fails(verdicts=[{origin.verdict!r}])"
    return (f'"""{note}"""\n'
            "from harness.spec.scenario import Scenario, fails\n\n"
            "SCENARIO = Scenario(\n"
            f"    summary={('shrunk: ' + (fam or origin.verdict))!r},\n"
            + (f"    family={fam!r},\n" if fam else "")
            + f"    params=dict({body}),\n"
            f"    expect={{{(lib + ('+' + mit if mit else ''))!r}: {expect}}},\n"
            ")\n")

