"""`tlsharness shrink`: the search on a fake runner (fast, exact), then on
real runs made deterministic with the fault injector: the smaller
configuration still fails with the same family, SIGINT and a restart repeat
no run, bad input is one line."""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.control import shrink, shrink_space as space
from support import ROOT, procs_of, tlsharness, wait_gone


# -- the search alone: a runner that fails with the family iff workers >= 3 ---------------------
def _origin(tmp_path, **cfg):
    config = dict(space.defaults("run"), workers=8, conns=40, duration=4.0, **cfg)
    config.pop("seed"), config.pop("out")
    return space.Origin(run_dir=tmp_path / "20260101-000000-abcdef", kind="run", target=None,
                        config=config, seed=100, verdict="deadlock", families=["lost wake-up"],
                        command="")


def _fake(calls, threshold=3, stop_after=None):
    def run(config, seed):
        if stop_after is not None and len(calls) >= stop_after:
            raise KeyboardInterrupt
        calls.append((space.key(config), seed))
        bad = config["workers"] >= threshold
        return {"verdict": "deadlock" if bad else "pass", "exit_code": 1 if bad else 0,
                "families": ["lost wake-up"] if bad else [], "time_to_failure_ms": 10.0}
    return run


def test_search_finds_the_threshold_and_the_floors(tmp_path):
    calls = []
    job = shrink.Shrink(_origin(tmp_path), tmp_path / "s", 2, 2, 200, 600, _fake(calls))
    res = job.run()
    m = res["minimal"]["config"]
    assert res["status"] == "complete"
    assert (m["workers"], m["conns"], m["duration"], m["window"]) == (3, 1, 1.0, 1)
    assert res["minimal"]["matched"] == 2 and res["original"]["matched"] == 2
    assert len(calls) == len(set(calls)) == res["runs"]
    assert "workers=3" in (tmp_path / "s" / "scenario.py").read_text()


def test_interrupted_search_continues_without_repeating_a_run(tmp_path):
    calls = []
    job = shrink.Shrink(_origin(tmp_path), tmp_path / "s", 2, 2, 200, 600, _fake(calls, stop_after=5))
    with pytest.raises(KeyboardInterrupt):
        job.run()
    assert json.loads((tmp_path / "s" / "shrink.json").read_text())["runs_total"] == 5
    job = shrink.Shrink(_origin(tmp_path), tmp_path / "s", 2, 2, 200, 600, _fake(calls))
    res = job.run()
    assert len(calls) == len(set(calls)) == res["runs"] and res["runs_this_session"] == res["runs"] - 5
    assert res["minimal"]["config"]["workers"] == 3


def test_budget_ends_the_search_with_the_smallest_so_far(tmp_path):
    job = shrink.Shrink(_origin(tmp_path), tmp_path / "s", 2, 2, 6, 600, _fake([]))
    res = job.run()
    assert res["status"].startswith("run budget spent") and res["runs"] == 6
    assert res["minimal"]["config"]["duration"] == 1.0 and res["minimal"]["config"]["workers"] == 8


def test_original_below_the_rate_is_not_shrunk(tmp_path):
    res = shrink.Shrink(_origin(tmp_path, ), tmp_path / "s", 2, 2, 20, 600, _fake([], threshold=99)).run()
    assert res["minimal"] is None and res["runs"] == 1       # one miss decides 2/2


def test_kept_options_and_command_line(tmp_path):
    o = _origin(tmp_path, mitigations=["pshared"], memory="shared", chaos="0.05:500", lib="wolfssl")
    assert "chaos" in space.drops(o) and "mitigations" not in space.drops(o)
    assert "memory" not in space.drops(o) and "lib" not in space.drops(o)
    argv = space.command(o, o.config)
    assert argv[:3] == ["run", "--lib", "wolfssl"] and "--mitigate" in argv and "pshared" in argv
    assert space.put(o.config, "chaos_delay_us", 250)["chaos"] == "0.05:250"


# -- real runs ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    root = tmp_path_factory.mktemp("shrink-results")
    # private memory: the sound baseline, so the injected fault is the only failure
    r = tlsharness("run", "--out", str(root), "-q", "--json", "--memory", "private",
                   "--fault", "block:1", "--workers", "8",
                   "--conns", "40", "--duration", "4", timeout=90)
    out = json.loads(r.stdout)
    assert out["verdict"] in ("degraded", "deadlock") and out["families"][0] == "injected fault"
    return Path(out["run_dir"])


def _history_shrink_runs(root: Path) -> int:
    con = sqlite3.connect(root / "history.sqlite")
    try:
        return con.execute("SELECT COUNT(*) FROM runs WHERE kind = 'shrink'").fetchone()[0]
    finally:
        con.close()


def test_shrink_of_a_failing_run_keeps_the_family(failing, tmp_path):
    t = time.monotonic()
    r = tlsharness("shrink", str(failing), "--rate", "2/2", "--max-runs", "30", "--out",
                   str(tmp_path / "s"), "-q", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    m, o = res["minimal"], res["original"]
    assert m["config"]["workers"] < 8 and m["config"]["conns"] < 40
    assert m["config"]["fault"]["kind"] == "block" and m["config"]["memory"] == "private"
    assert m["matched"] == 2 == m["runs"] and o["matched"] == 2
    st = json.loads((tmp_path / "s" / "shrink.json").read_text())
    fin = st["candidates"][space.key(m["config"])]
    assert all("injected fault" in run["families"] for run in fin["runs"])
    assert res["runs"] <= 30 and time.monotonic() - t < 240
    from harness.spec import scenario
    sc = scenario.load(str(tmp_path / "s" / "scenario.py"))
    assert sc.family == "injected fault" and sc.params["workers"] == m["config"]["workers"]
    assert "--workers" in m["command"] and "/" not in m["command"].replace("block:1", "")
    print(f"shrink: {res['runs']} runs, {res['elapsed_s']} s")


def test_sigint_then_restart_repeats_no_run(failing, tmp_path):
    out = tmp_path / "s"
    args = [sys.executable, "-m", "harness", "shrink", str(failing), "--rate", "2/2",
            "--max-runs", "6", "--out", str(out), "-q"]
    p = subprocess.Popen(args, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            f = out / "shrink.json"
            if f.exists() and json.loads(f.read_text() or "{}").get("runs_total", 0) >= 2:
                break
            time.sleep(0.2)
        os.kill(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 130 and "continues where it stopped" in err and "Traceback" not in err
    assert not wait_gone(procs_of(out))
    first = json.loads((out / "shrink.json").read_text())
    runs1 = [run["run_dir"] for c in first["candidates"].values() for run in c["runs"]]
    r = tlsharness("shrink", str(failing), "--rate", "2/2", "--max-runs", "6", "--out", str(out),
                   "-q", "--json", timeout=200)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    st = json.loads((out / "shrink.json").read_text())
    runs = [(k, run["seed"], run["run_dir"]) for k, c in st["candidates"].items() for run in c["runs"]]
    assert len({(k, s) for k, s, _ in runs}) == len(runs) == res["runs"] == 6
    assert set(runs1) <= {d for _, _, d in runs}
    assert res["runs_this_session"] == 6 - len(runs1)
    assert _history_shrink_runs(failing.parent) >= 6     # every counted run is in the history too


# -- bad input: one line each ---------------------------------------------------------------------
def _one_line_error(r, text):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlsharness: error:") and text in lines[0], r.stderr


def test_bad_input(failing, tmp_path):
    _one_line_error(tlsharness("shrink", str(tmp_path)), "not a run folder")
    passed = tmp_path / "20260101-000000-000000"
    shutil.copytree(failing, passed, ignore=shutil.ignore_patterns("samples.jsonl", "stacks"))
    o = json.loads((passed / "outcome.json").read_text())
    (passed / "outcome.json").write_text(json.dumps(dict(o, verdict="pass", exit_code=0)))
    _one_line_error(tlsharness("shrink", str(passed)), "nothing to shrink: the run passed")
    assert not (tmp_path / f"shrink-{passed.name}").exists()
    _one_line_error(tlsharness("shrink", str(failing), "--max-runs", "0"), "--max-runs")
    _one_line_error(tlsharness("shrink", str(failing), "--max-time", "0"), "--max-time")
    _one_line_error(tlsharness("shrink", str(failing), "--max-time", "-5"), "--max-time")
    _one_line_error(tlsharness("shrink", str(failing), "--rate", "3/2"), "--rate")
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("x")
    _one_line_error(tlsharness("shrink", str(failing), "--out", str(other)), "not a shrink folder")


def test_target_knobs_and_command(tmp_path):
    cfg = dict(space.target_defaults(), kind="kamailio", workers=4, conns=50, shm_mb=256, tls=12)
    cfg.pop("out")
    o = space.Origin(run_dir=tmp_path / "r", kind="target", target="kamailio", config=cfg, seed=1,
                     verdict="crash", families=[], command="")
    assert o.match == "verdict crash"
    names = [n for n, _, _ in space.numbers(o)]
    assert {"workers", "conns", "shm_mb", "churn_every"} <= set(names) and "tls" in space.drops(o)
    argv = space.command(o, cfg)
    assert argv[:2] == ["target", "kamailio"] and argv[argv.index("--workers") + 1] == "4"
    assert argv[argv.index("--tls") + 1] == "1.2" and argv[argv.index("--shm-mb") + 1] == "256"
    assert "--port" not in argv and "--" not in argv
    assert space.valid(o, space.put(cfg, "workers", 1))["workers"] == 1
