"""CPU cost of the controller (sampling /proc of every process, the status
segment and the load counters, judging, logging) while it watches N workers.

    python bench/watchdog_cost.py [--workers 64] [--hz 20] [--duration 20]

Reads the controller's own utime+stime from /proc between 5 s and the end of
the load, so start-up (imports, certificates) is not counted.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TCK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read()
    rest = f[f.rfind(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / TCK


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--hz", type=float, default=20)
    ap.add_argument("--duration", type=float, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as out:
        p = subprocess.Popen([sys.executable, "-m", "harness", "run", "-q", "--out", out,
                              "--memory", "private", "--handoff", "pinned", "--workers",
                              str(a.workers), "--conns", str(max(50, a.workers * 2)),
                              "--duration", str(a.duration), "--sample-hz", str(a.hz)],
                             cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(5)
        c0, t0 = cpu(p.pid), time.monotonic()
        time.sleep(a.duration - 7)
        c1, t1 = cpu(p.pid), time.monotonic()
        p.communicate(timeout=a.duration + 60)
    share = (c1 - c0) / (t1 - t0)
    print(f"controller watching {a.workers} workers (+ listener, stand) at {a.hz:g} Hz: "
          f"{share * 100:.1f}% of one core ({(c1 - c0) * 1000:.0f} ms CPU in {t1 - t0:.1f} s)")


if __name__ == "__main__":
    main()
