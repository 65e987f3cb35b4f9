"""Detection latency of the watchdog: injected stall onset → verdict.

    python bench/detection.py [--stalls 20] [--hz 20]

Alternates a worker that blocks and one that spins (each holding its
connection lock) at a random moment; the onset is when the worker entered
the fault (published by itself), the detection the sample that decided.
"""
import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stalls", type=int, default=20)
    ap.add_argument("--hz", type=float, default=20)
    a = ap.parse_args()
    rnd = random.Random(7)
    lat, kinds = [], {}
    print(f"# {a.stalls} injected stalls, watchdog at {a.hz:g} Hz, 4 workers, private memory")
    with tempfile.TemporaryDirectory() as out:
        for i in range(a.stalls):
            kind = ("block", "spin")[i % 2]
            fault = f"{kind}:{rnd.randint(1, 4)}:{rnd.randint(300, 1500)}"
            r = subprocess.run([sys.executable, "-m", "harness", "run", "--json", "-q", "--out", out,
                                "--memory", "private", "--handoff", "pinned", "--duration", "5",
                                "--linger", "0.3", "--sample-hz", str(a.hz), "--fault", fault],
                               capture_output=True, text=True, cwd=str(ROOT), timeout=120)
            o = json.loads(r.stdout)
            d = o["detect_latency_ms"]
            print(f"{i + 1:3} {fault:14} {o['verdict']:9} detected {d} ms after onset", flush=True)
            if d is not None:
                lat.append(d)
                kinds.setdefault(kind, []).append(d)
    lat.sort()
    p95 = lat[min(len(lat) - 1, int(round(0.95 * len(lat))) - 1)]
    print(f"detection latency over {len(lat)} stalls: median {statistics.median(lat):.0f} ms, "
          f"p95 {p95:.0f} ms, max {max(lat):.0f} ms")
    for k, v in kinds.items():
        print(f"  {k}: median {statistics.median(v):.0f} ms, max {max(v):.0f} ms")


if __name__ == "__main__":
    main()
