"""New TLS connections per second (one request each), side by side in one run.

    python bench/churn_rate.py [--duration 5] [--libs openssl,wolfssl,...]

For each library's stand (private memory, 4 workers, the baseline's
per-message dispatch and pinned connections) and each load generator client
(`--client system`, the system's OpenSSL 3.0; `--client auto`, the cheapest
built), it prints new connections/s, the CPU the stand and the load generator
used per handshake, and the anchor: two `openssl s_time -new` against the same
kind of stand, and the ratio.  One run at a time: on 2 cores the stand and the
client share the machine, so each number is both sides' cost together.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.verdicts import V

ROOT = Path(__file__).resolve().parent.parent


def run(out, lib, client, handoff, duration):
    args = [sys.executable, "-m", "harness", "run", "--json", "-q", "--out", out, "--lib", lib,
            "--memory", "private", "--handoff", handoff, "--load", "churn", "--churn-every", "1",
            "--conns", "64", "--duration", str(duration), "--client", client]
    if lib.startswith("mbedtls"):
        args += ["--tls", "1.2"]                  # mbed TLS 2.28 has no TLS 1.3
    r = subprocess.run(args, capture_output=True, text=True, cwd=str(ROOT), timeout=duration + 120)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"verdict": V.ERROR, "reason": (r.stderr.strip().splitlines() or ["?"])[-1]}


def s_time_anchor(out, seconds):
    """Two `openssl s_time -new` against an OpenSSL stand that carries almost
    no other load: new connections per wall second, both together."""
    if not shutil.which("openssl"):
        return None
    stand = subprocess.Popen([sys.executable, "-m", "harness", "run", "-q", "--out", out,
                              "--memory", "private", "--rate", "1", "--conns", "1",
                              "--duration", str(seconds + 6)], cwd=str(ROOT),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = None
        for _ in range(200):
            time.sleep(0.05)
            for m in Path(out).glob("*/manifest.json"):
                port = json.loads(m.read_text()).get("port") or port
            if port:
                break
        if not port:
            return None
        clients = [subprocess.Popen(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
                                     "-time", str(seconds)], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
        total = 0.0
        for c in clients:
            text = c.communicate(timeout=seconds + 30)[0]
            m = re.search(r"(\d+) connections in (\d+) real seconds", text)
            if m:
                total += int(m.group(1)) / max(1, int(m.group(2)))
        return total
    finally:
        stand.wait(timeout=seconds + 60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--libs", default="")
    a = ap.parse_args()
    from harness.builds import backends
    avail = backends.availability()
    libs = [x for x in a.libs.split(",") if x] or [n for n, (ok, _) in avail.items() if ok]
    print(f"# new connections/s, one request each, private memory, 4 workers, "
          f"{a.duration:g} s each, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as out:
        anchor = s_time_anchor(tempfile.mkdtemp(dir=out), max(3, int(a.duration)))
        print(f"anchor: two `openssl s_time -new` against an OpenSSL stand: "
              f"{anchor:,.0f} new connections/s" if anchor else "anchor: openssl s_time not available")
        print(f"{'library':16} {'dispatch':12} {'client':14} {'conn/s':>7} {'vs s_time':>9} "
              f"{'stand ms/hs':>11} {'client ms/hs':>12}  verdict")
        for lib in libs:
            for handoff in ("per-message", "pinned"):
                for client in ("system", "auto"):
                    o = run(out, lib, client, handoff, a.duration)
                    if o.get("verdict") in (V.ERROR, V.UNSUPPORTED) or not o.get("load_seconds"):
                        print(f"{lib:16} {handoff:12} {client:14} {o.get('verdict')}: "
                              f"{o.get('reason', '')[:70]}")
                        continue
                    n = o["handshakes_client"]
                    rate = n / o["load_seconds"]
                    stand = o["stand_cpu_s"] * 1000 / n if o.get("stand_cpu_s") else float("nan")
                    lgc = o["loadgen_cpu_s"] * 1000 / n if o.get("loadgen_cpu_s") else float("nan")
                    ratio = f"{rate / anchor:.2f}x" if anchor else "-"
                    print(f"{lib:16} {handoff:12} {o.get('client') or client:14} {rate:7,.0f} "
                          f"{ratio:>9} {stand:11.3f} {lgc:12.3f}  {o['verdict']}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
