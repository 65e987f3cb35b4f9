"""`tlsharness target ... --repeat N`: a series of runs of one real-server
configuration, judged and summed up as `tlsharness repro` does (rate with its
95% interval, time to failure, families), each run in its own folder."""
from __future__ import annotations

import json

from harness.control import repro
from harness.verdicts import V


def run_series(cfg, ns, progress, command: str) -> int:
    from harness.control.target import TargetError, run_target
    n = ns.repeat

    sc = _scenario(ns)
    key = build_key(cfg)

    def one(i):
        try:
            out = run_target(cfg, progress)
        except TargetError as e:             # a server that never became ready: not judged
            return {"verdict": V.ERROR, "reason": str(e), "exit_code": 4, "families": []}
        out["command"] = command
        if sc is not None:
            e = sc.expectation(*key)
            out["scenario"] = sc.name
            out["expected"] = None if e is None else dict(zip(("as_expected", "what"), e.check(out)),
                                                         refs=sc.refs)
        return out

    def shown(i, out):
        print(repro.run_line(i + 1, n, out), flush=True)
    try:
        outs, interrupted = repro.run_series(one, n, False, shown)
    except KeyboardInterrupt:
        outs, interrupted = [], True
    label = getattr(ns, "scenario_name", None) or f"target {cfg.kind}"
    s = repro.summarize(outs, scenario=label, lib=key[0], mitigations=key[1], requested=n)
    code = repro.exit_code(s, 0.5, False, interrupted)
    s.update(interrupted=interrupted, exit_code=code,
             replies_per_s=[o.get("replies_per_s") for o in outs],
             bad_kinds=[o.get("bad_kinds") for o in outs])
    if interrupted:
        print(f"interrupted after {len(outs)} of {n} runs", flush=True)
    print("\n".join(repro.summary_lines(s)), flush=True)
    if ns.json:
        print(json.dumps(s, indent=2, default=str))
    return code


def build_key(cfg) -> tuple[str, list[str]]:
    """What a target scenario's `expect` keys name: the TLS library, and
    "no-override" for an OpenSIPS 3.x build without its pshared override
    ("openssl+no-override"); Kamailio: "openssl"."""
    b = cfg.opensips or {}
    if not b:
        return "openssl", []
    return b.get("tls_lib", "openssl"), ([] if b.get("override", True) else ["no-override"])


def _scenario(ns):
    if not getattr(ns, "scenario_name", None):
        return None
    from harness.spec import scenario
    return scenario.load(ns.scenario_name)
