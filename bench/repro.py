"""Reproduction rate of one configuration over N runs.

    python bench/repro.py --runs 10 -- --memory shared --handoff per-message --workers 4 --conns 50

Everything after `--` goes to `tlsharness run`.  Prints each run's verdict
and time to failure, then the distribution, the median and p90 time to
failure, and checks that no process or /dev/shm entry was left behind.
"""
import argparse
from harness.verdicts import V
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def leftovers(marker: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def main():
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--duration", type=float, default=10)
    a = ap.parse_args(own)
    shm0 = set(os.listdir("/dev/shm"))
    verdicts, ttf, rates = Counter(), [], []
    print(f"# tlsharness run {' '.join(extra)} --duration {a.duration}  × {a.runs}")
    with tempfile.TemporaryDirectory(prefix="tlsh-repro-") as out:
        for i in range(a.runs):
            r = subprocess.run([sys.executable, "-m", "harness", "run", "--json", "-q", "--out", out,
                                "--duration", str(a.duration), *extra],
                               capture_output=True, text=True, cwd=str(ROOT), timeout=a.duration + 120)
            if r.returncode not in (0, 1, 3):
                sys.exit(f"run {i + 1}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
            o = json.loads(r.stdout)
            verdicts[o["verdict"]] += 1
            if o["time_to_failure_ms"] is not None:
                ttf.append(o["time_to_failure_ms"])
            rates.append(o["replies_per_s"])
            print(f"{i + 1:3} {o['verdict']:11} ttf={o['time_to_failure_ms']!s:>8} ms  "
                  f"{o['replies_per_s']:>9,.0f} replies/s  {o['reason'][:90]}", flush=True)
        left = leftovers(out)
    failed = sum(n for v, n in verdicts.items() if v not in (V.PASS, V.INCONCLUSIVE, V.OVERLOAD, V.STOPPED))
    print(f"failed {failed}/{a.runs}: " + ", ".join(f"{v} {n}" for v, n in verdicts.most_common()))
    if ttf:
        q = statistics.quantiles(ttf, n=10) if len(ttf) > 1 else [ttf[0]] * 9
        print(f"time to failure: median {statistics.median(ttf):.0f} ms, p90 {q[8]:.0f} ms, "
              f"min {min(ttf):.0f}, max {max(ttf):.0f}")
    print(f"replies/s: median {statistics.median(rates):,.0f}")
    shm_left = set(os.listdir("/dev/shm")) - shm0
    print(f"left behind: {len(left)} processes, {len(shm_left)} /dev/shm entries")
    return 1 if left or shm_left else 0


if __name__ == "__main__":
    sys.exit(main())
