"""Persistent-connection throughput into Kamailio over TLS: tlsharness's load
generator vs SIPp (Debian's sip-tester has no TLS) behind stunnel, in one run,
against the same server configuration.

    python bench/kamailio_vs_sipp.py [--duration 10] [--workers 1]

Needs: apt-get install kamailio kamailio-tls-modules sip-tester stunnel4
"""
import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from harness.control.target import kamailio_config  # noqa: E402

OPTIONS_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="options">
  <send><![CDATA[
OPTIONS sip:tlsh@127.0.0.1 SIP/2.0
Via: SIP/2.0/TCP [local_ip]:[local_port];branch=[branch]
Max-Forwards: 70
From: <sip:sipp@127.0.0.1>;tag=[call_number]
To: <sip:tlsh@127.0.0.1>
Call-ID: [call_id]
CSeq: 1 OPTIONS
Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--sipp-calls", type=int, default=200, help="SIPp concurrent calls (-l)")
    a = ap.parse_args()
    for tool in ("kamailio", "sipp", "stunnel4"):
        if not shutil.which(tool):
            sys.exit(f"{tool} missing: apt-get install kamailio kamailio-tls-modules sip-tester stunnel4")
    print(f"# Kamailio, {a.workers} TLS worker(s), persistent connections, {a.duration:g} s each")
    ours = ours_rate(a)
    print(f"tlsharness loadgen : {ours['replies_per_s']:>9,.0f} OPTIONS/s  ({ours['verdict']}, "
          f"{ours['bad']} bad)")
    sipp_rate = sipp_rate_via_stunnel(a)
    print(f"SIPp via stunnel   : {sipp_rate:>9,.0f} OPTIONS/s")
    if sipp_rate:
        print(f"ratio loadgen/SIPp : {ours['replies_per_s'] / sipp_rate:.2f}")


def ours_rate(a) -> dict:
    """tlsharness's load generator (the target command drives and watches Kamailio)."""
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([sys.executable, "-m", "harness", "target", "kamailio", "--workers",
                            str(a.workers), "--load", "persistent", "--conns", "8", "--window", "8",
                            "--duration", str(a.duration), "--json", "-q", "--out", out],
                           capture_output=True, text=True, cwd=str(ROOT), timeout=a.duration + 120)
        return json.loads(r.stdout)


def sipp_rate_via_stunnel(a) -> float:
    """SIPp over plain TCP into stunnel (client mode) into Kamailio's TLS port: OPTIONS/s."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        kport, sport = free_port(), free_port()
        cmd = kamailio_config(d, kport, a.workers, False)
        procs = []
        try:
            procs.append(subprocess.Popen(cmd, stdout=open(d / "k.log", "w"), stderr=subprocess.STDOUT,
                                          start_new_session=True))
            if not wait_port(kport):
                sys.exit("kamailio did not start")
            (d / "stunnel.conf").write_text(f"foreground = yes\npid =\n[sip]\nclient = yes\n"
                                            f"accept = 127.0.0.1:{sport}\nconnect = 127.0.0.1:{kport}\n")
            procs.append(subprocess.Popen(["stunnel4", str(d / "stunnel.conf")], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
            if not wait_port(sport):
                sys.exit("stunnel did not start")
            (d / "options.xml").write_text(OPTIONS_XML)
            t = time.monotonic()
            sipp = subprocess.Popen(["sipp", "-sf", str(d / "options.xml"), "-t", "t1", f"127.0.0.1:{sport}",
                                     "-i", "127.0.0.1", "-p", str(free_port()), "-r", "1000000", "-rp", "1000",
                                     "-l", str(a.sipp_calls), "-timeout", f"{int(a.duration)}s",
                                     "-trace_stat", "-stf", str(d / "stat.csv"), "-fd", "1", "-nostdin"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            procs.append(sipp)
            try:
                sipp.wait(a.duration + 15)
            except subprocess.TimeoutExpired:
                pass
            rows = list(csv.reader(open(d / "stat.csv"), delimiter=";")) if (d / "stat.csv").exists() else []
            sipp_rate = 0.0
            if len(rows) >= 2:
                hdr, last = rows[0], rows[-1]
                ok = int(last[hdr.index("SuccessfulCall(C)")])
                elapsed = time.monotonic() - t
                sipp_rate = ok / max(min(elapsed, a.duration), 1e-3)
            return sipp_rate
        finally:
            from harness.control.children import wait_group_gone
            for p in procs:                    # ours only, by process group
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
                wait_group_gone(p.pid, 5.0)


if __name__ == "__main__":
    main()
