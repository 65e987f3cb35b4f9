"""Healthy throughput of every built library, private memory, same load,
side by side in one run.

    python bench/libs_throughput.py [--duration 10] [--handoff pinned]

TLS 1.3 where the build has it (mbed TLS 2.28: 1.2, shown in the table).
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from harness.builds import backends  # noqa: E402  (no TLS library is loaded by this)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--handoff", default="pinned")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--load", default="persistent")
    a = ap.parse_args()
    libs = [n for n, (ok, _) in backends.availability().items() if ok]
    print(f"# private memory, {a.handoff}, {a.workers} workers, {a.conns} connections, "
          f"{a.load}, window 4, {a.duration:g} s each")
    print(f"{'library':16} {'version':28} {'tls':>4} {'replies/s':>10} {'hs/s':>8} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'bad':>4} verdict")
    with tempfile.TemporaryDirectory() as out:
        for lib in libs:
            tls = "1.2" if lib.startswith("mbedtls") else "1.3"
            r = subprocess.run([sys.executable, "-m", "harness", "run", "--json", "-q", "--out", out,
                                "--lib", lib, "--memory", "private", "--handoff", a.handoff,
                                "--workers", str(a.workers), "--conns", str(a.conns), "--tls", tls,
                                "--load", a.load, "--churn-every", "1", "--duration", str(a.duration)],
                               capture_output=True, text=True, cwd=str(ROOT), timeout=a.duration + 120)
            o = json.loads(r.stdout)
            hs = o["handshakes_client"] / o["load_seconds"] if o["load_seconds"] else 0
            lat = o.get("latency_ms") or {}
            print(f"{lib:16} {(o.get('lib_version') or '')[:28]:28} {tls:>4} {o['replies_per_s']:>10,.0f} "
                  f"{hs:>8,.0f} {lat.get('p50') or 0:>7.2f} {lat.get('p99') or 0:>7.2f} "
                  f"{o['bad']:>4} {o['verdict']}", flush=True)


if __name__ == "__main__":
    main()
