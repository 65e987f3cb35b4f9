"""Scenario files: the catalogue loads, mistakes name file and line, the
command line overrides, expectations are checked."""
import json

import pytest

from support import tlsharness
from harness.spec import scenario


def test_catalogue_loads_without_broken_files():
    rows = scenario.catalogue()
    assert len(rows) >= 8
    assert not [s.name for s in rows if s.summary.startswith("BROKEN")]
    r = tlsharness("scenarios", timeout=30)
    assert r.returncode == 0 and "handoff-per-message" in r.stdout


@pytest.mark.parametrize("body,needle", [
    ("SCENARIO = Scenario(summary='x', params=dict(\n  wrokers=4))\n", ":3: unknown parameter 'wrokers'"),
    ("SCENARIO = Scenario(summary='x', params=dict(\n  workers='four'))\n", ":3: parameter workers='four'"),
    ("SCENARIO = Scenario(summary='x', params=dict(memory=\n  'heap'))\n", "--memory must be one of"),
    ("SCENARIO = Scenario(summary='x'\n", ":2: syntax error"),
    ("x = 1 / 0\n", ":2: ZeroDivisionError"),
    ("X = 1\n", "defines no SCENARIO"),
])
def test_a_broken_scenario_names_file_and_line(tmp_path, body, needle):
    f = tmp_path / "bad.py"
    f.write_text("from harness.spec.scenario import Scenario, fails, passes\n" + body)
    with pytest.raises(scenario.ScenarioError) as e:
        scenario.load(str(f))
    assert str(f) in str(e.value) and needle in str(e.value)
    r = tlsharness("run", str(f), "--out", str(tmp_path), timeout=30)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_unknown_scenario_is_one_line(tmp_path):
    r = tlsharness("run", "no-such-scenario", "--out", str(tmp_path), timeout=30)
    assert r.returncode == 2 and "no scenario 'no-such-scenario'" in r.stderr


@pytest.mark.stress
def test_scenario_runs_with_overrides_and_checks_its_expectation(tmp_path):
    r = tlsharness("run", "worker-killed-holding-lock", "--duration", "3", "--workers", "3",
                   "--json", "-q", "--out", str(tmp_path), timeout=60)
    out = json.loads(r.stdout)
    man = json.loads((tmp_path / out["run_dir"].split("/")[-1] / "manifest.json").read_text())
    assert man["config"]["workers"] == 3 and man["config"]["duration"] == 3.0   # the user's flags
    assert man["config"]["fault"]["kind"] == "die"                               # the scenario's
    assert out["scenario"] == "worker-killed-holding-lock"
    assert out["verdict"] == "crash" and out["expected"]["as_expected"] is True
    assert "worker-killed-holding-lock" in man["command"]
