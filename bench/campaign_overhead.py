"""What a campaign costs per run beyond the run itself: the same matrix as
`compare` (in-process runs), as an embedded `campaign run` (a child process
per run), and through a Dask scheduler with one worker on 127.0.0.1.

    python bench/campaign_overhead.py [--runs 6] [--duration 1.5]

Prints wall seconds per run for each and the difference to compare.
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tl(*args):
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                       timeout=900, cwd=str(ROOT))
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}: {r.stderr[-300:]}")
    return time.monotonic() - t, r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--duration", type=float, default=1.5)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tlsh-co-"))
    m = ["--libs", "openssl", "--scenarios", "baseline-private", "--repeat", str(a.runs),
         "--duration", str(a.duration)]
    t_cmp, _ = tl("compare", *m, "--out", str(tmp / "cmp"), "-q")
    _, out = tl("campaign", "plan", *m, "--out", str(tmp / "emb"))
    t_emb, _ = tl("campaign", "run", out.split()[1].rstrip(":"), "-q")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dask = str(Path(sys.executable).parent / "dask")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    time.sleep(2)
    procs.append(subprocess.Popen([dask, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                                   "--resources", "stand=1", "--no-nanny", "--no-dashboard",
                                   "--host", "127.0.0.1"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True))
    time.sleep(3)
    try:
        _, out = tl("campaign", "plan", *m, "--out", str(tmp / "dask"))
        t_dask, _ = tl("campaign", "run", out.split()[1].rstrip(":"), "--scheduler",
                       f"tcp://127.0.0.1:{port}", "-q")
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(10)
    n = a.runs
    print(f"{n} runs of {a.duration:g} s (baseline-private, openssl)")
    print(f"  compare (in-process runs)   {t_cmp / n:6.2f} s per run")
    print(f"  campaign run, embedded      {t_emb / n:6.2f} s per run  ({(t_emb - t_cmp) / n:+.2f} s)")
    print(f"  campaign run, Dask worker   {t_dask / n:6.2f} s per run  ({(t_dask - t_cmp) / n:+.2f} s)")


if __name__ == "__main__":
    main()
