"""Verdicts on servers tlsharness did not build, measured run by run.

    python bench/foreign_verdicts.py [--runs 10] [--only NAME,...]

Configurations (each `target cmd` or `target kamailio`, judged from /proc only):
  nofix-persistent, nofix-churn   tests/refserver without a fix: hang expected,
                                  family "lost wake-up", onset -> verdict <= 1 s
  fixed, fixed-hog                pshared + thread-init: pass (with a CPU hog on
                                  every core: pass or overload, never a hang)
  spinners, spinners-hog          a worker blocked holding the global spinlock,
                                  the others in sched_yield: mixed or livelock
  kamailio-1                      Kamailio, one TCP worker: never a hang
  watch-nofix, watch-fixed        the server started by hand, loaded by two
                                  `openssl s_time -new`, judged by `watch --pid`
Prints one table row per configuration: verdicts, families, detection times.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness.verdicts import HANGS, V

ROOT = Path(__file__).resolve().parent.parent
EXE = ROOT / "build" / "refserver"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(tmp: Path) -> list[str]:
    src = ROOT / "tests" / "refserver" / "refserver.c"
    EXE.parent.mkdir(exist_ok=True)
    subprocess.run(["cc", "-O2", "-g", "-Wall", "-rdynamic", "-o", str(EXE), str(src), "-lssl",
                    "-lcrypto", "-ldl", "-lpthread"], check=True)
    sys.path.insert(0, str(ROOT))
    from harness.spec.certs import make_cert
    cert, key = make_cert(tmp, "ec")
    return [str(EXE), "--cert", cert, "--key", key]


def target(out: Path, args: list[str], server: list[str] | None, duration: float) -> dict:
    port = free_port()
    cmd = [sys.executable, "-m", "harness", "target", *args, "--port", str(port), "--duration",
           str(duration), "--json", "-q", "--out", str(out)]
    if server:
        cmd += ["--", *server, "--port", str(port)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd="/")
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"verdict": V.ERROR, "reason": r.stderr.strip()[-200:], "families": []}


def watch(out: Path, server: list[str], seconds: float) -> dict:
    """The server started by hand (not by tlsharness), loaded from elsewhere
    (two `openssl s_time -new` clients: a new TLS connection per request),
    judged by `tlsharness watch --pid PID --port PORT`."""
    port = free_port()
    srv = subprocess.Popen([*server, "--port", str(port)], stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    load = []
    try:
        srv.stderr.readline()                                  # "ready on ..."
        load = [subprocess.Popen(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
                                  "-time", str(int(seconds) + 2)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
                for _ in range(2)]
        r = subprocess.run([sys.executable, "-m", "harness", "watch", "--pid", str(srv.pid),
                            "--port", str(port), "--duration", str(seconds), "--json", "-q",
                            "--out", str(out)], capture_output=True, text=True, timeout=120,
                           cwd="/")
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {"verdict": V.ERROR, "reason": r.stderr.strip()[-200:], "families": []}
    finally:
        for p in [srv, *load]:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


class Hog:
    def __enter__(self):
        self.ps = [subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\n"
                                     "while time.time()-t<900: pass"], start_new_session=True)
                   for _ in range(os.cpu_count() or 1)]
        return self

    def __exit__(self, *a):
        for p in self.ps:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tlsh-fv-"))
    srv = build(tmp)
    fixed = ["--fix", "pshared,thread-init"]
    spin = fixed + ["--global-lock", "--fault", "lost-wakeup:0:500"]
    configs = {
        "nofix-persistent": (["cmd", "--load", "persistent"], srv, 8, False),
        "nofix-churn": (["cmd", "--load", "churn"], srv, 8, False),
        "fixed": (["cmd", "--load", "persistent"], srv + fixed, 6, False),
        "fixed-churn": (["cmd", "--load", "churn"], srv + fixed, 6, False),
        "fixed-hog": (["cmd", "--load", "persistent"], srv + fixed, 6, True),
        "spinners": (["cmd", "--load", "persistent"], srv + spin, 6, False),
        "spinners-hog": (["cmd", "--load", "persistent"], srv + spin, 6, True),
        "kamailio-1": (["kamailio", "--workers", "1"], None, 5, False),
        "watch-nofix": (None, srv, 8, False),
        "watch-fixed": (None, srv + fixed, 8, False),
    }
    only = [x for x in a.only.split(",") if x]
    print(f"{'configuration':18} {'runs':>4}  verdicts / families / onset->verdict ms (median, max) / replies/s")
    for name, (args, server, dur, hog) in configs.items():
        if only and name not in only:
            continue
        outs = []
        for _ in range(a.runs):
            if args is None:
                outs.append(watch(tmp / name, server, dur))
            elif hog:
                with Hog():
                    time.sleep(0.5)
                    outs.append(target(tmp / name, args, server, dur))
            else:
                outs.append(target(tmp / name, args, server, dur))
        verdicts = Counter(o["verdict"] for o in outs)
        fams = Counter(f for o in outs for f in o.get("families", []))
        det = [o["detected_after_onset_ms"] for o in outs if o.get("detected_after_onset_ms") is not None]
        lost = sum(1 for o in outs if o["verdict"] in HANGS and "lost wake-up" in o.get("families", [])
                   and any((p.get("futex") or {}).get("mapping") for p in o.get("stuck", [])))
        stacks = sum(1 for o in outs if any(p.get("top") for p in o.get("stuck", [])))
        rps = [o.get("replies_per_s", 0) for o in outs if o["verdict"] == V.PASS]
        print(f"{name:18} {len(outs):>4}  {dict(verdicts)} / {dict(fams)} / "
              f"{(statistics.median(det), max(det)) if det else '-'} / "
              f"{round(statistics.median(rps)) if rps else '-'}; hang naming lost wake-up with "
              f"its shared mapping: {lost}; with stacks: {stacks}", flush=True)
        for o in outs:
            if o["verdict"] not in HANGS | {"pass"}:
                print(f"    {o['verdict']}: {o.get('reason', '')[:150]}")


if __name__ == "__main__":
    main()
