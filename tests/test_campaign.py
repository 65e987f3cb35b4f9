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

from support import ROOT, tlsharness


def plan(tmp_path, *extra):
    r = tlsharness("campaign", "plan", "--libs", "openssl", "--scenarios", "baseline-private",
                   "--duration", "1.5", "--out", str(tmp_path), *extra)
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.split()[1].rstrip(":"))


@pytest.mark.stress
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
        # one task at a time per worker thread (the others wait at the scheduler), so that
        # a worker's death loses only the run it was doing
        env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=str(allowed_failures),
                   DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION="1.0")
        self.procs.append(self._start([self.exe, "scheduler", "--host", "127.0.0.1", "--port",
                                       str(self.port), "--no-dashboard"], env))
        time.sleep(2)

    def _start(self, argv, env=None):
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, env=env)

    def worker(self):
        # no nanny: a killed worker stays dead (and leaves no multiprocessing semaphores)
        p = self._start([self.exe, "worker", f"tcp://127.0.0.1:{self.port}", "--nthreads", "1",
                         "--resources", "stand=1", "--no-dashboard", "--host", "127.0.0.1",
                         "--no-nanny"])
        self.procs.append(p)
        time.sleep(3)
        return p

    def close(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):       # politely first: they clean up
            for p in reversed(self.procs):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            for p in self.procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    pass


@pytest.mark.stress
def test_two_dask_workers_twelve_runs_one_worker_killed_mid_run(tmp_path):
    """A real scheduler and two workers (stand=1 each) on 127.0.0.1; one worker
    is killed in the middle of a run: Dask runs that task again on the other
    worker, the killed attempt is recorded as lost, all 12 results merge, and
    nothing is left behind."""
    shm = set(os.listdir("/dev/shm"))
    dask = Dask(tmp_path)
    try:
        w1 = dask.worker()
        dask.worker()
        d = plan(tmp_path, "--repeat", "12", "--duration", "2")
        addr = f"tcp://127.0.0.1:{dask.port}"
        run = subprocess.Popen([sys.executable, "-m", "harness", "campaign", "run", str(d),
                                "--scheduler", addr], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60                 # a run started on worker 1: kill it
        while time.monotonic() < deadline and not _has_run_child(w1.pid):
            time.sleep(0.2)
        assert _has_run_child(w1.pid), "no task ever started on worker 1"
        os.killpg(w1.pid, signal.SIGKILL)
        out, err = run.communicate(timeout=180)
        assert run.returncode == 0 and "12 done, 0 left" in out, (out, err)
        lost = list((d / "runs").glob("*/lost-*.json"))
        assert len(lost) == 1 and json.loads(lost[0].read_text())["verdict"] == "lost", lost
        m = subprocess.run([sys.executable, "-m", "harness", "campaign", "merge", str(d)],
                           capture_output=True, text=True, timeout=120)
        assert m.returncode == 0 and "12 of 12 runs" in m.stdout, m.stdout + m.stderr
        state = json.loads((d / "compare.json").read_text())
        assert [r["verdict"] for r in state["cells"][0]["runs"]] == ["pass"] * 12
    finally:
        dask.close()
    time.sleep(1)
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, b"tlsh-task-")]
    assert set(os.listdir("/dev/shm")) == shm


@pytest.mark.stress
def test_interrupted_campaign_resumes_without_repeating_a_run(tmp_path):
    d = plan(tmp_path, "--repeat", "4")
    p = subprocess.Popen([sys.executable, "-m", "harness", "campaign", "run", str(d)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((d / "runs").glob("*/result.json"))) < 2:
        time.sleep(0.1)
    done = {f.parent.name: f.stat().st_mtime_ns for f in (d / "runs").glob("*/result.json")}
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "interrupted" in out, (out, err)
    r = tlsharness("campaign", "run", str(d), "-q")
    assert r.returncode == 0 and "0 left" in r.stdout
    after = {f.parent.name: f.stat().st_mtime_ns for f in (d / "runs").glob("*/result.json")}
    ids = [s["id"] for s in json.loads((d / "campaign.json").read_text())["specs"]]
    assert sorted(after) == sorted(ids)
    assert all(after[k] == v for k, v in done.items())      # finished runs were not repeated
    for k in ids:                                            # one run folder per spec
        assert len([x for x in (d / "runs" / k).iterdir() if x.is_dir()]) == 1


def _table(md: str) -> list[list[str]]:
    """The report's rows: library .. failure rate (the measured columns differ run to run);
    the results table only, not the safety table, which sums the whole run history."""
    md = md.split("## Safety table", 1)[0]
    return [line.split("|")[1:7] for line in md.splitlines() if line.startswith("| openssl")]


@pytest.mark.stress
def test_embedded_campaign_and_three_shards_give_the_report_of_compare(tmp_path):
    c = tlsharness("compare", "--libs", "openssl", "--scenarios", "baseline-private",
                   "--repeat", "3", "--duration", "1.5", "--out", str(tmp_path / "cmp"), "-q",
                   timeout=300)
    assert c.returncode == 0, c.stderr
    cmp_md = next((tmp_path / "cmp").glob("*/report.md")).read_text()
    one = plan(tmp_path / "one", "--repeat", "3")
    assert tlsharness("campaign", "run", str(one), "-q", timeout=300).returncode == 0
    assert tlsharness("campaign", "merge", str(one), timeout=120).returncode == 0
    sharded = plan(tmp_path / "sh", "--repeat", "3")
    copies = []
    for i in range(3):                                  # the workflow's shard jobs
        c_i = tmp_path / f"shard{i}" / sharded.name
        shutil.copytree(sharded, c_i)
        r = tlsharness("campaign", "run", str(c_i), "--shard", f"{i}/3", "-q", timeout=300)
        assert r.returncode == 0, r.stderr
        copies.append(c_i)
    m = tlsharness("campaign", "merge", str(copies[0]), str(copies[1]), str(copies[2]),
                   timeout=120)
    assert m.returncode == 0 and "3 of 3 runs" in m.stdout, m.stdout + m.stderr
    want = _table(cmp_md)
    assert want and _table((one / "report.md").read_text()) == want
    assert _table((copies[0] / "report.md").read_text()) == want


def _cmdline_has(p: Path, needle: bytes) -> bool:
    try:
        return needle in (p / "cmdline").read_bytes()
    except OSError:
        return False


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


def test_readme_dask_commands_bind_to_loopback_without_dashboards():
    """Dask runs pickled code unauthenticated: the documented scheduler and
    worker commands listen on 127.0.0.1 only and start no dashboard, and
    those flags are real options of the installed dask."""
    import re
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    cmds = [l.strip() for l in text.splitlines() if re.match(r"\s*dask (scheduler|worker)\b", l)]
    assert {c.split()[1] for c in cmds} == {"scheduler", "worker"}, cmds
    for c in cmds:
        words = c.split()
        assert words[words.index("--host") + 1] == "127.0.0.1", c
        assert "--no-dashboard" in words, c
        assert not re.search(r"(tcp|tls)://(?!127\.0\.0\.1)", c), c
    assert re.search(r"--scheduler tcp://127\.0\.0\.1:\d+", text)
    exe = Path(sys.executable).parent / "dask"
    if not exe.exists():
        pytest.skip("dask is not installed here")
    for what in ("scheduler", "worker"):
        h = subprocess.run([str(exe), what, "--help"], capture_output=True, text=True, timeout=60)
        assert "--no-dashboard" in h.stdout and "--host" in h.stdout, h.stdout[-500:]


def test_each_verb_has_its_own_options(tmp_path):
    """campaign plan | run | merge are subcommands: a verb's help names its own
    options only, and another verb's option is refused in one line."""
    from harness.cli import parser
    verbs = next(a for a in parser()._actions if a.dest == "cmd").choices["campaign"]
    verbs = next(a for a in verbs._actions if a.dest == "action").choices
    opts = {v: {o for a in p._actions for o in a.option_strings} for v, p in verbs.items()}
    assert {"--libs", "--repeat", "--emit", "--out"} <= opts["plan"]
    assert {"--scheduler", "--shard", "--quiet"} <= opts["run"]
    assert not opts["plan"] & {"--scheduler", "--shard"} and not opts["run"] & {"--libs", "--out"}
    assert opts["merge"] == {"-h", "--help"}
    r = tlsharness("campaign", "run", str(tmp_path), "--libs", "openssl")
    assert r.returncode == 2 and r.stderr.strip() == \
        "tlsharness: error: unrecognized arguments: --libs openssl", r.stderr
    r = tlsharness("campaign", "plan", "--help")
    assert r.returncode == 0 and "--libs" in r.stdout and "--scheduler" not in r.stdout
