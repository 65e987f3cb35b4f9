"""Kamailio #3791 (concurrent TLS handshakes in several TCP workers: SIGABRT
"freeing already freed pointer ... ser_free") on Debian's 5.6.3 and on a
Kamailio 6.x build (`make kamailio6`), with and without tls_threads_mode.

    python bench/kamailio_3791.py [--runs 10] [--duration 20]

Prints per configuration: verdicts, families, median time to failure.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from harness.verdicts import V

ROOT = Path(__file__).resolve().parent.parent
K6 = ROOT / "build" / "kamailio6"


def run(out: Path, extra: list[str], duration: float) -> dict:
    r = subprocess.run([sys.executable, "-m", "harness", "target", "kamailio", "--workers", "4",
                        "--load", "churn", "--duration", str(duration), "--json", "-q",
                        "--out", str(out), *extra], capture_output=True, text=True, timeout=600)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"verdict": V.ERROR, "reason": r.stderr.strip()[-200:], "families": []}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--duration", type=float, default=20.0)
    a = ap.parse_args()
    configs = {"5.6.3 (Debian)": []}
    info = K6 / "build.json"
    if info.exists():
        b = json.loads(info.read_text())
        k6 = ["--kamailio-bin", b["binary"], "--kamailio-modules", b["modules_dir"]]
        configs[f"{b['kamailio_version']} default (tls_threads_mode 2)"] = k6
        configs[f"{b['kamailio_version']} tls_threads_mode=0"] = k6 + ["--tls-threads-mode", "0"]
    else:
        print("no Kamailio 6.x build (make kamailio6): only 5.6.3 is measured")
    tmp = Path(tempfile.mkdtemp(prefix="tlsh-k3791-"))
    for name, extra in configs.items():
        outs = [run(tmp, extra, a.duration) for _ in range(a.runs)]
        v = Counter(o["verdict"] for o in outs)
        fam = Counter(f for o in outs for f in o.get("families", []))
        ttf = [o["time_to_failure_ms"] for o in outs if o.get("time_to_failure_ms") is not None]
        rps = [o.get("replies_per_s", 0) for o in outs]
        print(f"{name:36} runs {len(outs)}: {dict(v)}; families {dict(fam)}; "
              f"ttf median {statistics.median(ttf) / 1000 if ttf else '-'} s; "
              f"replies/s median {statistics.median(rps):.0f}", flush=True)
        for o in outs:
            if o["verdict"] not in (V.PASS, V.CRASH):
                print(f"    {o['verdict']}: {o.get('reason', '')[:160]}")


if __name__ == "__main__":
    main()
