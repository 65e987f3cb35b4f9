"""Healthy runs must never be called a hang.

    python bench/false_positives.py [--runs 20] [--duration 30] [--hog]

Full load on a sound configuration (private memory); with --hog, one busy
loop per CPU at the same priority keeps both cores busy for the whole run.
Every verdict must be pass or overload.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from harness.verdicts import V

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--hog", action="store_true")
    ap.add_argument("--handoff", default="per-message")
    ap.add_argument("--mix", action="store_true", help="cycle through healthy configurations: "
                    "persistent, churn (one request per connection), RSA churn, shared memory "
                    "with pshared,prefork-thread")
    a = ap.parse_args()
    configs = [["--memory", "private"]]
    if a.mix:
        configs += [["--memory", "private", "--load", "churn", "--churn-every", "1"],
                    ["--memory", "private", "--cert", "rsa", "--load", "churn", "--churn-every", "5"],
                    ["--mitigate", "pshared,prefork-thread"]]
    verdicts = Counter()
    bad = []
    print(f"# {a.runs} healthy runs of {a.duration:g} s, {a.handoff}"
          + (", CPU hog on every core" if a.hog else ""))
    hogs = []
    try:
        if a.hog:
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    for _ in range(os.cpu_count() or 1)]
        with tempfile.TemporaryDirectory() as out:
            for i in range(a.runs):
                conf = configs[i % len(configs)]
                r = subprocess.run([sys.executable, "-m", "harness", "run", "--json", "-q",
                                    "--out", out, "--handoff", a.handoff,
                                    "--duration", str(a.duration), *conf],
                                   capture_output=True, text=True, cwd=str(ROOT),
                                   timeout=a.duration + 120)
                o = json.loads(r.stdout)
                verdicts[o["verdict"]] += 1
                if o["verdict"] not in (V.PASS, V.OVERLOAD):
                    bad.append(o)
                print(f"{i + 1:3} {' '.join(conf):55} {o['verdict']:9} "
                      f"{o['replies_per_s']:>9,.0f} replies/s {o['reason'][:60]}", flush=True)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    print(f"verdicts: {dict(verdicts)}; false hangs: {len(bad)}")
    for o in bad:
        print(f"  FALSE POSITIVE: {o['verdict']}: {o['reason']} ({o['run_dir']})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
