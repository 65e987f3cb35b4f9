"""Real OpenSIPS builds under `tlsharness target opensips`, N runs a cell,
one run at a time, each with an independent /proc sampler beside it
(bench/futex_truth.py): verdicts and rates, the truth's count of runs with a
process-private futex wait on shared memory held >= 1 s, and any pass the
truth contradicts, plus replies/s, new connections/s, p99 and server CPU.

    python bench/opensips_matrix.py --set healthy --runs 10 [--hog]
    python bench/opensips_matrix.py --set nooverride --runs 20
    python bench/opensips_matrix.py --set compare --runs 5
    python bench/opensips_matrix.py --cell "name=--opensips B --load churn" --runs 3

Builds are looked up in the cache (TLSH_CACHE); a cell whose build is absent
is listed as not run.  --json FILE keeps every run's figures.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from futex_truth import Truth  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.verdicts import V  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LOADS = {"churn": "--load churn --conns 50 --clients 2 --tls 1.3",
         "persistent": "--load persistent --window 1 --conns 50 --clients 2 --tls 1.3",
         "rekey": "--load persistent --window 1 --conns 50 --clients 2 --tls 1.3"}


def builds() -> dict:
    cache = Path(os.environ.get("TLSH_CACHE") or Path.home() / ".cache" / "tlsharness")
    out = {}
    for j in cache.glob("servers/*/build.json"):
        info = json.loads(j.read_text())
        out[info["name"]] = info
    return out


def sets(name: str, duration: float) -> list[tuple[str, str]]:
    b = builds()

    def pick(version, lib, override=True):
        return next((n for n, i in sorted(b.items()) if i["version"].startswith(version)
                     and i["tls_lib"] == lib and bool(i["override"]) == override), None)
    cells = []
    d = f"--workers 4 --duration {duration:g}"
    if name == "healthy":
        for lib in ("openssl", "wolfssl"):
            for load in ("churn", "persistent"):
                n = pick("3.6", lib)
                cells.append((f"3.6 {lib} {load}", n and f"--opensips {n} {d} {LOADS[load]}"))
    elif name == "nooverride":
        n = pick("3.6", "openssl", False)
        cells.append(("3.6 openssl no-override churn", n and f"--opensips {n} {d} {LOADS['churn']}"))
    elif name == "compare":
        for version, lib, over in (("3.6", "openssl", True), ("3.6", "openssl", False),
                                   ("3.6", "wolfssl", True), ("3.6", "wolfssl", False),
                                   ("4.0", "openssl", True), ("4.0", "wolfssl", True)):
            n = pick(version, lib, over)
            for load in ("churn", "persistent", "rekey"):
                extra = " --rekey-every 50" if load == "rekey" else ""
                label = f"{version} {lib}{'' if over else ' no-override'} {load}"
                cells.append((label, n and f"--opensips {n} {d} {LOADS[load]}{extra}"))
    return cells


def one(args: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "harness", "target", "opensips", "--json", "-q",
           "--out", str(out), *shlex.split(args)]
    with Truth("opensips", within=str(out)) as truth:
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=str(ROOT))
        wall = time.monotonic() - t0
    try:
        o = json.loads(r.stdout)
    except ValueError:
        o = {"verdict": V.ERROR, "reason": (r.stderr.strip().splitlines() or ["?"])[-1]}
    o["truth_longest_private_wait_s"] = round(truth.longest_s, 2)
    o["truth_hung"] = truth.hung(1.0)
    roles = {}
    if o.get("run_dir") and (Path(o["run_dir"]) / "roles.json").exists():
        roles = json.loads((Path(o["run_dir"]) / "roles.json").read_text())
    o["truth_episodes"] = [dict(e, role=roles.get(str(e["pid"]), "?")) for e in truth.episodes]
    o["wall_s"] = round(wall, 1)
    return o


def summary(label: str, runs: list[dict]) -> str:
    verdicts = {}
    for o in runs:
        verdicts[o["verdict"]] = verdicts.get(o["verdict"], 0) + 1
    failed = [o for o in runs if o["verdict"] != V.PASS]
    truth = sum(o["truth_hung"] for o in runs)
    false_pass = sum(o["truth_hung"] and o["verdict"] == V.PASS for o in runs)
    named = sum(o["truth_hung"] and "lost wake-up" in (o.get("families") or []) for o in runs)
    ttf = [o["time_to_failure_ms"] for o in failed if o.get("time_to_failure_ms") is not None]
    ok = [o for o in runs if o["verdict"] == V.PASS] or runs

    def med(key, sub=None):
        vals = [(o.get(key) or {}).get(sub) if sub else o.get(key) for o in ok]
        vals = [v for v in vals if isinstance(v, (int, float))]
        return statistics.median(vals) if vals else None
    fams = sorted({f for o in failed for f in (o.get("families") or [])})
    return (f"| {label} | {len(runs)} | {', '.join(f'{k} {v}' for k, v in sorted(verdicts.items()))} "
            f"| {truth} | {named} | {false_pass} | {'; '.join(fams) or '-'} "
            f"| {statistics.median(ttf) / 1000 if ttf else '-'} | {_f(med('replies_per_s'), 0)} "
            f"| {_f(med('new_conns_per_s'), 0)} | {_f(med('latency_ms', 'p99'), 2)} "
            f"| {_f(med('server_cpu_ms_per_handshake'), 3)} "
            f"| {_f(med('server_cpu_s_per_1k_replies'), 3)} |")


def _f(v, nd):
    return "-" if v is None else f"{v:,.{nd}f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", choices=["healthy", "nooverride", "compare"])
    p.add_argument("--cell", action="append", default=[], help="LABEL=TARGET-ARGS")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--hog", action="store_true", help="a CPU hog on both cores beside the runs")
    p.add_argument("--out", default="/tmp/tlsh-opensips-bench")
    p.add_argument("--json", help="every run's figures to this file")
    a = p.parse_args()
    cells = sets(a.set, a.duration) if a.set else []
    cells += [tuple(c.split("=", 1)) for c in a.cell]
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)] if a.hog else []
    every = {}
    try:
        print("| cell | runs | verdicts | truth: hung | hung named lost wake-up | truth-contradicted passes "
              "| families | median ttf s | replies/s | new conns/s | p99 ms | server CPU ms/handshake "
              "| server CPU s/1k replies |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        todo = [(label, args) for label, args in cells if args]
        for label, args in cells:
            if not args:
                print(f"| {label} | 0 | not run: no such build | | | | | | | | | | |", flush=True)
        # round-robin: run i of every cell before run i+1 of any, so that a change in
        # what else the machine does falls on every cell alike
        for i in range(a.runs):
            for label, args in todo:
                o = one(args, Path(a.out))
                every.setdefault(label, []).append(o)
                print(f"  {label} run {i + 1}/{a.runs}: {o['verdict']} "
                      f"(truth {o['truth_longest_private_wait_s']} s, load "
                      f"{os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        for label, _ in todo:
            print(summary(label, every[label]), flush=True)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    if a.json:
        Path(a.json).write_text(json.dumps(every, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
