"""Replies/s of the stand with its load generator (baseline configuration).

    python bench/throughput.py [--duration 30] [--windows 1,4,8] [--workers 4] [--conns 50]

Prints one line per configuration: replies/s, latency p50/p99, verdict.
Runs one configuration at a time (never two stress runs at once).
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(args, out):
    r = subprocess.run([sys.executable, "-m", "harness", "run", "--json", "-q", "--out", out, *args],
                       capture_output=True, text=True, cwd=str(ROOT), timeout=600)
    if r.returncode not in (0, 1, 3):
        sys.exit(f"bench: run failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--windows", default="1,4,8")
    ap.add_argument("--clients", default="1")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--memory", default="private")
    ap.add_argument("--handoff", default="pinned")
    ap.add_argument("--load", default="persistent")
    a = ap.parse_args()
    print(f"# {a.memory}/{a.handoff}, {a.workers} workers, {a.conns} connections, TLS 1.3, "
          f"{a.load}, {a.duration:.0f} s each")
    print(f"{'window':>6} {'clients':>7} {'replies/s':>10} {'hs/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'bad':>4} verdict")
    with tempfile.TemporaryDirectory() as out:
        for c in a.clients.split(","):
            for w in a.windows.split(","):
                o = run(["--memory", a.memory, "--handoff", a.handoff, "--workers", str(a.workers),
                         "--conns", str(a.conns), "--duration", str(a.duration), "--window", w,
                         "--clients", c, "--load", a.load], out)
                lat = o["latency_ms"]
                hs = o["handshakes_client"] / o["load_seconds"] if o["load_seconds"] else 0
                print(f"{w:>6} {c:>7} {o['replies_per_s']:>10,.0f} {hs:>8,.0f} "
                      f"{lat['p50'] or 0:>7.2f} {lat['p99'] or 0:>7.2f} {o['bad']:>4} {o['verdict']}",
                      flush=True)


if __name__ == "__main__":
    main()
