"""CPU cost of the controller (sampling /proc of every process, the status
segment and the load counters, judging, logging) while it watches N workers.

    python bench/watchdog_cost.py [--workers 64] [--hz 20] [--duration 20]
    python bench/watchdog_cost.py --workers 16,64,128,254 --plot cost.png   # its growth
    python bench/watchdog_cost.py --workers 64,254 --sources kernel,proc    # futex events on/off

With the kernel source (bpftrace) the figure is the controller's CPU plus its
bpftrace child's; the BPF programs' own time is charged to the processes
that call futex (the stand), not here.

Reads the controller's own utime+stime from /proc between 5 s and the end of
the load, so start-up (imports, certificates) is not counted.
"""
import argparse
import json
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


def tracer_pids(pid: int) -> list[int]:
    """The bpftrace children of the controller (the kernel futex source)."""
    out = []
    for c in open(f"/proc/{pid}/task/{pid}/children").read().split():
        try:
            if open(f"/proc/{c}/comm").read().strip() == "bpftrace":
                out.append(int(c))
        except OSError:
            pass
    return out


def measure(workers: int, hz: float, duration: float, source: str = "") -> float:
    """The controller's CPU share (of one core) while it watches `workers` workers
    (source 'proc': TLSH_NO_BPF=1; 'kernel': the futex events on, counted too)."""
    env = dict(os.environ, **({"TLSH_NO_BPF": "1" if source == "proc" else "0"} if source else {}))
    with tempfile.TemporaryDirectory() as out:
        p = subprocess.Popen([sys.executable, "-m", "harness", "run", "-q", "--json", "--out", out,
                              "--memory", "private", "--handoff", "pinned", "--workers",
                              str(workers), "--conns", str(max(50, workers * 2)),
                              "--duration", str(duration), "--sample-hz", str(hz)],
                             cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env)
        time.sleep(5)
        tr = tracer_pids(p.pid)
        c0, t0 = sum(cpu(x) for x in [p.pid, *tr]), time.monotonic()
        time.sleep(duration - 7)
        c1, t1 = sum(cpu(x) for x in [p.pid, *tr]), time.monotonic()
        text = p.communicate(timeout=duration + 60)[0]
    share = (c1 - c0) / (t1 - t0)
    try:
        o = json.loads(text)
        how = (f"{o['verdict']}, {o['replies_per_s']:,.0f} replies/s, evidence "
               f"{o.get('evidence_source')}")
    except (ValueError, KeyError):
        how = "no outcome"
    print(f"controller{' + bpftrace' if tr else ''} watching {workers} workers (+ listener, stand) at {hz:g} Hz: "
          f"{share * 100:.1f}% of one core ({(c1 - c0) * 1000:.0f} ms CPU in {t1 - t0:.1f} s; "
          f"{how})", flush=True)
    return share


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", default="64", help="a number, or several comma-separated")
    ap.add_argument("--hz", type=float, default=20)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--plot", metavar="PNG", help="draw the cost against the number of workers")
    ap.add_argument("--repeat", type=int, default=3, help="runs per size; the median is kept")
    ap.add_argument("--sources", default="", help="kernel,proc: each size with the kernel "
                    "futex events and with /proc alone, side by side")
    a = ap.parse_args()
    sizes = [int(x) for x in a.workers.split(",") if x]
    if a.sources:
        for n in sizes:
            for src in a.sources.split(","):
                got = sorted(measure(n, a.hz, a.duration, src) for _ in range(a.repeat))
                print(f"  {n} workers, {src}: median {got[len(got) // 2] * 100:.1f}% of one core "
                      f"(runs: {', '.join(f'{g * 100:.1f}%' for g in got)})", flush=True)
        return
    shares = []
    for n in sizes:
        got = sorted(measure(n, a.hz, a.duration) for _ in range(a.repeat))
        shares.append(got[len(got) // 2])
        print(f"  {n} workers: median {shares[-1] * 100:.1f}% of one core "
              f"(runs: {', '.join(f'{g * 100:.1f}%' for g in got)})", flush=True)
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(sizes, [x * 100 for x in shares], marker="o")
        ax.set_xlabel("workers watched")
        ax.set_ylabel("controller CPU, % of one core")
        ax.set_title(f"watchdog cost at {a.hz:g} Hz")
        ax.set_ylim(bottom=0)
        fig.savefig(a.plot, dpi=90, bbox_inches="tight")
        print(f"plot: {a.plot}")


if __name__ == "__main__":
    main()
