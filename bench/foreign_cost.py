"""What watching a foreign server costs: ForeignSampler + ForeignWatchdog on
N processes at 20 Hz, CPU seconds per wall second of the watching process.

    python bench/foreign_cost.py [--seconds 10] [--sizes 16,64,254]

Two trees per size: 'idle' (every process asleep: one read per process and
sample) and 'busy' (every process wakes every 10 ms and writes: all reads,
every sample).  Target: 64 processes at 20 Hz <= 5% of one core.
"""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from harness.watchdog.foreign import ForeignSampler, ForeignWatchdog  # noqa: E402
from harness.watchdog import Thresholds  # noqa: E402

TREE = ROOT / "tests" / "helpers" / "proctree.py"


def measure(roles: list[str], seconds: float, hz: float = 20.0) -> tuple[float, int]:
    p = subprocess.Popen([sys.executable, str(TREE), *roles], stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        p.stdout.readline()
        time.sleep(0.5)
        s, wd = ForeignSampler([p.pid]), ForeignWatchdog(Thresholds(), progress_source=False)
        period = 1 / hz
        t0, c0, n = time.monotonic(), time.process_time(), 0
        while time.monotonic() - t0 < seconds:
            now = time.monotonic()
            wd.observe(s.sample())
            n += 1
            time.sleep(max(0.0, period - (time.monotonic() - now)))
        cpu = (time.process_time() - c0) / (time.monotonic() - t0)
        return cpu, len(s.tracks)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--sizes", default="16,64,254")
    a = ap.parse_args()
    print(f"{'processes':>9} {'tree':>5} {'CPU % of one core':>18}")
    for n in (int(x) for x in a.sizes.split(",")):
        for kind, roles in (("idle", ["idle"] * (n - 1)), ("busy", ["io"] * (n - 1))):
            cpu, seen = measure(roles, a.seconds)
            print(f"{seen:>9} {kind:>5} {cpu * 100:>17.1f}%", flush=True)


if __name__ == "__main__":
    main()
