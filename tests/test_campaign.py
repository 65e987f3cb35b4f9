"""Campaigns: planned as data, run here (sharded) or on Dask workers, resumed, merged."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import tlsharness

pytestmark = pytest.mark.stress


def plan(tmp_path, *extra):
    r = tlsharness("campaign", "plan", "--libs", "openssl", "--scenarios", "baseline-private",
                   "--duration", "1.5", "--out", str(tmp_path), *extra)
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.split()[1].rstrip(":"))


def test_plan_is_stable_shards_run_resume_and_merge_into_the_compare_report(tmp_path):
    d = plan(tmp_path / "a", "--repeat", "2")
    again = plan(tmp_path / "b", "--repeat", "2")
    ids = [s["id"] for s in json.loads((d / "campaign.json").read_text())["specs"]]
    assert ids == [s["id"] for s in json.loads((again / "campaign.json").read_text())["specs"]]
    shard = tmp_path / "other" / d.name
    shutil.copytree(d, shard)                           # the same plan on another machine
    assert tlsharness("campaign", "run", str(d), "--shard", "0/2", "-q").returncode == 0
    r = tlsharness("campaign", "run", str(d), "--shard", "0/2", "-q")
    assert r.returncode == 0 and "0 runs to do" in r.stderr          # nothing run twice
    assert tlsharness("campaign", "run", str(shard), "--shard", "1/2", "-q").returncode == 0
    m = tlsharness("campaign", "merge", str(d), str(shard))
    assert m.returncode == 0, m.stderr
    state = json.loads((d / "compare.json").read_text())
    assert [len(c["runs"]) for c in state["cells"]] == [2]
    assert all(r["verdict"] == "pass" for r in state["cells"][0]["runs"])
    assert "2 of 2 runs" in m.stdout and (d / "report.html").exists()
    assert "| openssl | baseline-private | none | 2 |" in (d / "report.md").read_text()


def test_github_matrix_and_bad_input(tmp_path):
    r = tlsharness("campaign", "plan", "--emit", "github-matrix", "--shards", "3")
    assert json.loads(r.stdout) == {"include": [{"shard": "0/3"}, {"shard": "1/3"},
                                                {"shard": "2/3"}]}
    for args, words in ((["run", str(tmp_path)], "no campaign.json"),
                        (["run"], "needs the campaign folder"),
                        (["plan", "--libs", "nosuch", "--out", str(tmp_path)], "unknown library"),
                        (["plan", "--mitigations", "bogus", "--out", str(tmp_path)],
                         "unknown mitigation")):
        r = tlsharness("campaign", *args)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    d = plan(tmp_path / "s")
    r = tlsharness("campaign", "run", str(d), "--shard", "2/2")
    assert r.returncode == 2 and "0 <= I < N" in r.stderr


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dask:
    """A scheduler and workers on 127.0.0.1, each in its own process group."""

    def __init__(self, tmp_path, allowed_failures=3):
        pytest.importorskip("distributed")
        self.port, self.tmp, self.procs = _port(), tmp_path, []
        exe = Path(sys.executable).parent / "dask"
        self.exe = str(exe) if exe.exists() else "dask"
        env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=str(allowed_failures))
        self.procs.append(self._start([self.exe, "scheduler", "--host", "127.0.0.1", "--port",
                                       str(self.port), "--no-dashboard"], env))
        time.sleep(2)

    def _start(self, argv, env=None):
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, env=env)

    def worker(self):
        p = self._start([self.exe, "worker", f"tcp://127.0.0.1:{self.port}", "--nthreads", "1",
                         "--resources", "stand=1", "--no-dashboard", "--host", "127.0.0.1"])
        self.procs.append(p)
        time.sleep(3)
        return p

    def close(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)


def test_dask_workers_run_the_campaign_and_a_lost_worker_is_no_verdict(tmp_path):
    dask = Dask(tmp_path, allowed_failures=0)
    try:
        w = dask.worker()
        d = plan(tmp_path, "--repeat", "1", "--duration", "12")
        addr = f"tcp://127.0.0.1:{dask.port}"
        run = subprocess.Popen([sys.executable, "-m", "harness", "campaign", "run", str(d),
                                "--scheduler", addr], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30                 # the run started on the worker: kill it
        while time.monotonic() < deadline and not _has_run_child(w.pid):
            time.sleep(0.3)
        assert _has_run_child(w.pid), "the task never started"
        os.killpg(w.pid, signal.SIGKILL)
        out, err = run.communicate(timeout=60)
        assert run.returncode == 3 and "1 left" in out, (out, err)
        lost = list((d / "runs").glob("*/lost-*.json"))
        assert len(lost) == 1 and json.loads(lost[0].read_text())["verdict"] == "lost"
        dask.worker()                                     # a new machine: the run is done there
        r = subprocess.run([sys.executable, "-m", "harness", "campaign", "run", str(d),
                            "--scheduler", addr, "-q"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "1 done, 0 left" in r.stdout, (r.stdout, r.stderr)
        res = json.loads(next((d / "runs").glob("*/result.json")).read_text())
        assert res["verdict"] == "pass" and Path(res["run_dir"]).is_dir()
    finally:
        dask.close()


def _has_run_child(pgid: int) -> bool:
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[2]) == pgid and b"harness\x00run" in (p / "cmdline").read_bytes():
                    return True
            except (OSError, IndexError, ValueError):
                pass
    return False
