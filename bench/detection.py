"""Detection latency of the watchdog: injected stall onset → verdict.

    python bench/detection.py [--stalls 20] [--hz 20]
    python bench/detection.py --lost-wake [--stalls 20]   # kernel futex events vs /proc

Alternates a worker that blocks and one that spins (each holding its
connection lock) at a random moment; the onset is when the worker entered
the fault (published by itself), the detection the sample that decided.

--lost-wake: the real bug, not a simulated one (OpenSSL in the shared arena,
per-message handoff: a private rwlock whose wake-ups go nowhere), run in
pairs, one run with the kernel futex events and one with TLSH_NO_BPF=1
(/proc alone), until each side has --stalls runs that ended in the
lost-wake-up family; the onset is when the stuck worker began the activity
it is stuck in.
"""
import argparse
import json
import os
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
    ap.add_argument("--lost-wake", action="store_true",
                    help="the real lost wake-up, kernel futex events vs /proc alone")
    a = ap.parse_args()
    if a.lost_wake:
        return lost_wake(a)
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


def summary(lat: list) -> str:
    lat = sorted(lat)
    if not lat:
        return "no detection"
    p95 = lat[min(len(lat) - 1, int(round(0.95 * len(lat))) - 1)]
    return (f"median {statistics.median(lat):.0f} ms, p95 {p95:.0f} ms, max {max(lat):.0f} ms "
            f"over {len(lat)}")


def lost_wake(a):
    lat = {"kernel": [], "proc": []}
    lines = {"kernel": 0, "proc": 0}
    print(f"# the real lost wake-up, watchdog at {a.hz:g} Hz; load: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as out:
        for i in range(4 * a.stalls):
            if min(len(v) for v in lat.values()) >= a.stalls:
                break
            for side in ("kernel", "proc"):
                env = dict(os.environ, TLSH_NO_BPF="1" if side == "proc" else "0")
                r = subprocess.run([sys.executable, "-m", "harness", "run", "--json", "-q",
                                    "--out", out, "--memory", "shared", "--handoff",
                                    "per-message", "--duration", "8", "--linger", "0.3",
                                    "--sample-hz", str(a.hz)], env=env,
                                   capture_output=True, text=True, cwd=str(ROOT), timeout=120)
                o = json.loads(r.stdout)
                d = o["detect_latency_ms"] if "lost wake-up" in o["families"] else None
                ev = json.loads(Path(o["run_dir"], "verdict.json").read_text())["evidence"]
                line = [e for e in ev if e.startswith("wake lost:")]
                print(f"{i + 1:3} {side:6} ({o['evidence_source']}) {o['verdict']:9} "
                      f"{'detected %s ms after onset' % d if d is not None else 'no lost wake-up'}"
                      f"{'; ' + line[0] if line else ''}", flush=True)
                if d is not None:
                    lat[side].append(d)
                    lines[side] += bool(line)
    for side, v in lat.items():
        print(f"{side:6}: {summary(v)}; the 'wake lost' line in {lines[side]} of {len(v)}")
    print(f"# load at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
