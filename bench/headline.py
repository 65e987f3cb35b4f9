"""The headline signature on demand (issue 5, must show 4): N runs of the
headline-spinners scenario; a run counts when its verdict is livelock or
mixed and every spinning worker used at least 90% of a CPU, with no SIP
processing (replies in the last half second before the verdict: none).

    python bench/headline.py --runs 10
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.verdicts import V

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--scenario", default="headline-spinners")
    ap.add_argument("--min-cpu", type=float, default=0.9)
    a, extra = ap.parse_known_args()
    out_dir = tempfile.mkdtemp(prefix="tlsh-headline-")
    hits, ttf = 0, []
    for i in range(a.runs):
        r = subprocess.run([sys.executable, "-m", "harness", "run", a.scenario, "--json", "-q",
                            "--out", out_dir, *extra], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
        try:
            o = json.loads(r.stdout)
        except json.JSONDecodeError:
            print(f"run {i + 1}: no outcome ({r.stderr.strip()[-200:]})")
            continue
        v = json.loads((Path(o["run_dir"]) / "verdict.json").read_text())
        cpus = [p.get("cpu") or 0 for p in v.get("spinning", [])]
        ok = o["verdict"] in (V.LIVELOCK, V.MIXED) and cpus and min(cpus) >= a.min_cpu
        hits += bool(ok)
        if ok and o.get("time_to_failure_ms") is not None:
            ttf.append(o["time_to_failure_ms"])
        print(f"run {i + 1}: {o['verdict']:10} spinners cpu {[round(c, 2) for c in cpus]} "
              f"blocked {len(v.get('blocked', []))} families {o.get('families')} "
              f"ttf {o.get('time_to_failure_ms')} ms -> {'yes' if ok else 'no'}", flush=True)
    print(f"headline signature in {hits}/{a.runs} runs (livelock/mixed, every spinner >= "
          f"{a.min_cpu:.0%} CPU)" + (f"; time to failure median {statistics.median(ttf):.0f} ms"
                                      if ttf else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
