"""`tlsharness repro` and `tlsharness mitigations`: the statistics (pure
functions, no stand), the usage errors, and one short real run of each."""
import json

import pytest

from support import tlsharness
from harness.analysis import matrix
from harness.control import compare
from harness.control import repro
from harness.analysis.stats import wilson
from harness.spec.scenario import Scenario
from harness.verdicts import FAILURES


def out(verdict, ttf=None, families=(), seed=1, expected=None):
    code = 0 if verdict == "pass" else 1 if verdict in FAILURES else 3
    return {"verdict": verdict, "exit_code": code, "time_to_failure_ms": ttf,
            "families": list(families), "seed": seed, "run_dir": f"results/r{seed}",
            "command": f"tlsharness run x --seed {seed}", "reason": f"why {seed}",
            **({"expected": expected} if expected is not None else {})}


SERIES = [out("degraded", 400, ["lost wake-up", "DRBG lock"], 11),
          out("pass", None, [], 12),
          out("deadlock", 100, ["lost wake-up"], 13),
          out("inconclusive", None, [], 14),
          out("degraded", 200, ["lost wake-up", "lost wake-up"], 15),
          out("degraded", 300, [], 16)]


# -- statistics --------------------------------------------------------------------

def test_rate_and_wilson_interval_come_from_compare():
    s = repro.summarize(SERIES, lib="openssl", mitigations=["pshared"])
    assert (s["runs"], s["failed"], s["judged"]) == (6, 4, 5)
    assert s["rate"] == pytest.approx(4 / 5)          # over the judged runs only
    assert s["ci95"] == list(wilson(4, 5))
    assert s["mitigations"] == ["pshared"] and s["lib"] == "openssl"
    lo, hi = repro.summarize([out("pass")] * 10)["ci95"]
    assert lo == 0.0 and 0.25 < hi < 0.35            # 0/10: upper bound ~0.28


def test_ttf_median_and_p90_over_failing_runs_only():
    s = repro.summarize(SERIES + [out("pass", 5.0, [], 17)])   # a pass's ttf is not counted
    assert s["ttf_median_ms"] == pytest.approx(250.0)           # 100, 200, 300, 400
    assert s["ttf_p90_ms"] == pytest.approx(370.0)
    s = repro.summarize([out("pass"), out("pass")])
    assert s["ttf_median_ms"] is None and s["ttf_p90_ms"] is None


def test_family_and_verdict_counts():
    s = repro.summarize(SERIES)
    # a family named twice in one run counts once; most common first
    assert s["families"] == {"lost wake-up": 3, "DRBG lock": 1}
    assert list(s["verdicts"].items()) == [("degraded", 3), ("pass", 1), ("deadlock", 1),
                                           ("inconclusive", 1)]


def test_failing_runs_carry_seed_command_and_run_number():
    s = repro.summarize(SERIES)
    assert [f["run"] for f in s["failing"]] == [1, 3, 5, 6]
    f = s["failing"][0]
    assert f == {"run": 1, "seed": 11, "command": "tlsharness run x --seed 11",
                 "run_dir": "results/r11", "verdict": "degraded",
                 "families": ["lost wake-up", "DRBG lock"], "ttf": 400}
    text = "\n".join(repro.summary_lines(s))
    assert "reproduced in 4/5 judged runs (80%, 95% CI" in text
    assert "1 of 6 could not be judged" in text
    assert "median 250 ms, p90 370 ms" in text
    for seed in (11, 13, 15, 16):
        assert f"tlsharness run x --seed {seed}" in text
    assert "--seed 12" not in text


def test_expectation_counts():
    e_ok = {"as_expected": True, "what": "expected a failure"}
    e_no = {"as_expected": False, "what": "expected a failure"}
    s = repro.summarize([out("degraded", 10, expected=e_ok), out("pass", expected=e_no),
                         out("deadlock", 20, expected=e_ok)], scenario="handoff-per-message")
    assert s["expected"] == {"runs": 3, "as_expected": 2, "what": "expected a failure"}
    assert "scenario handoff-per-message: 2/3 runs as expected" in "\n".join(repro.summary_lines(s))
    assert repro.summarize([out("pass")])["expected"] is None


def fake(verdicts):
    calls = []

    def run_one(i):
        calls.append(i)
        v = verdicts[i]
        return {"verdict": "interrupted", "exit_code": 130} if v == "interrupted" else out(v, 10, seed=i)
    return run_one, calls


def test_until_fail_stops_at_the_first_failure():
    run_one, calls = fake(["pass", "pass", "degraded", "pass", "deadlock"])
    seen = []
    outs, interrupted = repro.run_series(run_one, 5, until_fail=True,
                                         on_result=lambda i, o: seen.append(i))
    assert calls == [0, 1, 2] and seen == [0, 1, 2] and not interrupted
    s = repro.summarize(outs, requested=5)
    assert (s["runs"], s["failed"], s["requested"]) == (3, 1, 5)
    assert repro.exit_code(s, min_rate=0.9, until_fail=True) == 1     # any failure is bad
    assert "stopped at the first failure (run 3 of at most 5)" in repro.summary_lines(s, True)[0]


def test_until_fail_without_a_failure_runs_the_bound():
    run_one, calls = fake(["pass"] * 4)
    outs, _ = repro.run_series(run_one, 4, until_fail=True)
    assert calls == [0, 1, 2, 3]
    assert repro.exit_code(repro.summarize(outs), 0.5, until_fail=True) == 0


def test_without_until_fail_every_run_is_done():
    run_one, calls = fake(["degraded", "pass", "deadlock"])
    outs, _ = repro.run_series(run_one, 3)
    assert calls == [0, 1, 2] and len(outs) == 3


def test_interrupted_run_stops_and_is_not_counted():
    run_one, calls = fake(["pass", "interrupted", "pass"])
    outs, interrupted = repro.run_series(run_one, 3)
    assert interrupted and calls == [0, 1] and len(outs) == 1
    assert repro.exit_code(repro.summarize(outs), 0.5, interrupted=True) == 130

    def ctrl_c(i):
        raise KeyboardInterrupt
    assert repro.run_series(ctrl_c, 3) == ([], True)


@pytest.mark.parametrize("verdicts,min_rate,code", [
    (["pass", "pass"], 0.5, 0),                       # good: nothing failed, all judged
    (["degraded", "pass"], 0.5, 1),                   # bad: 50% >= 0.5
    (["degraded", "pass", "pass"], 0.5, 125),         # failed, but below --min-rate
    (["pass", "inconclusive"], 0.5, 125),             # not every run judged
    (["unsupported"], 0.5, 125),
    (["deadlock", "inconclusive"], 0.5, 1),
])
def test_bisect_exit_codes(verdicts, min_rate, code):
    assert repro.exit_code(repro.summarize([out(v) for v in verdicts]), min_rate) == code


def test_strip_repro_flags_for_the_rerun_command():
    opts = ["--repeat", "--runs", "--min-rate", "--until-fail", "--json", "--duration", "--resume",
            "--rate", "--mitigate"]
    args = ["handoff-per-message", "--repeat", "5", "--runs=3", "--until-fail", "--json", "s.json",
            "--duration", "1.5", "--rep", "2", "--min-rate=0.4", "--mitigate", "pshared", "--rate", "9"]
    kept = repro.strip_flags(args, {"--repeat", "--runs", "--min-rate", "--json"}, {"--until-fail"}, opts)
    assert kept == ["handoff-per-message", "--duration", "1.5", "--mitigate", "pshared", "--rate", "9"]


def test_run_line():
    line = repro.run_line(2, 5, out("degraded", 312.4, ["lost wake-up"], 3))
    assert line.startswith("run 2/5: degraded") and "312 ms" in line
    assert "lost wake-up" in line and "results/r3" in line
    assert "why 14" in repro.run_line(4, 5, out("inconclusive", seed=14))   # why it was not judged


# -- the mitigations matrix (pure) -------------------------------------------------

def test_default_sets_read_the_mitigations_given():
    known = {"pshared": "", "prefork-thread": "", "global-lock": "", "write-dup": "", "new-one": ""}
    assert compare.default_sets(known) == [(), ("pshared",), ("prefork-thread",), ("global-lock",),
                                           ("new-one",), ("pshared", "prefork-thread")]


def test_a_library_specific_mitigation_is_a_default_set_for_its_library_only():
    known = {"pshared": "", "write-dup": "", "warm-methods": ""}
    assert compare.default_sets(known, "boringssl") == [(), ("pshared",), ("warm-methods",)]
    assert compare.default_sets(known, "wolfssl@5.7") == [(), ("pshared",), ("write-dup",)]
    assert compare.default_sets(known, "openssl") == [(), ("pshared",)]


def test_parse_sets():
    known = {"pshared": "", "prefork-thread": ""}
    assert compare.parse_sets("none; pshared;pshared,prefork-thread;prefork-thread,pshared", known) == \
        [(), ("pshared",), ("pshared", "prefork-thread")]
    with pytest.raises(compare.CompareError, match="unknown mitigation 'bogus'"):
        compare.parse_sets("none;bogus", known)


def test_pick_family_scenarios():
    a = Scenario(summary="a", family="lost wake-up", name="a")
    b = Scenario(summary="b", family="DRBG lock", name="b")
    c = Scenario(summary="c", name="c")
    w = Scenario(summary="w", family="lost wake-up", name="w", params={"lib": "wolfssl"})
    picked, skipped = compare.pick_family_scenarios([a, b, c, w], [], "openssl")
    assert [s.name for s in picked] == ["a", "b"] and [s.name for s, _ in skipped] == ["w"]
    picked, _ = compare.pick_family_scenarios([a, b, c, w], ["Lost Wake-Up"], "openssl")
    assert [s.name for s in picked] == ["a"]
    with pytest.raises(compare.CompareError, match="unknown family 'nope'"):
        compare.pick_family_scenarios([a, b, c], ["nope"], "openssl")
    with pytest.raises(compare.CompareError, match="no scenario"):
        compare.pick_family_scenarios([c], [], "openssl")


def test_matrix_cells_and_plain_language():
    def run(v, fams=()):
        return {"verdict": v, "families": list(fams), "time_to_failure_ms": 5 if v in FAILURES else None,
                "reason": "openssl: no write-dup" if v == "unsupported" else ""}
    state = {"libs": ["openssl"], "repeat": 3, "duration": 1.5,
             "mitigation_sets": [[], ["pshared"], ["pshared", "prefork-thread"], ["write-dup"]],
             "rows": [{"scenario": "s", "name": "s", "family": "lost wake-up", "base": []}],
             "cells": [{"lib": "openssl", "scenario": "s", "mitigations": [], "runs":
                        [run("degraded", ["lost wake-up"]), run("deadlock"), run("degraded")]},
                       {"lib": "openssl", "scenario": "s", "mitigations": ["pshared"], "runs":
                        [run("pass"), run("mixed"), run("inconclusive")]},
                       {"lib": "openssl", "scenario": "s", "mitigations": ["pshared", "prefork-thread"],
                        "runs": [run("pass")] * 3},
                       {"lib": "openssl", "scenario": "s", "mitigations": ["write-dup"],
                        "runs": [run("unsupported")] * 3}]}
    m = matrix.mitigation_matrix(state)
    cells = m["rows"][0]["cells"]
    assert cells["none"]["text"] == "failed 3/3 (degraded)"
    assert cells["pshared"]["text"] == "failed 1/3 (mixed) [1 inconclusive]"
    assert cells["pshared,prefork-thread"]["text"] == "failed 0/3"
    assert cells["write-dup"]["text"] == "n/a" and cells["write-dup"]["unsupported"]
    line = m["rows"][0]["summary"]
    assert "cured by pshared,prefork-thread" in line
    assert "still fails with none (3/3, degraded), pshared (1/3, mixed)" in line
    assert "not possible with this library: write-dup" in line
    md = matrix.matrix_markdown(m)
    assert "| lost wake-up (s) | failed 3/3 (degraded) |" in md


# -- usage errors: one line, exit 2, nothing run ---------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["repro", "--repeat", "0"], "--repeat/--runs: must be between 1 and 1000 (got 0)"),
    (["repro", "--runs", "1001"], "--repeat/--runs: must be between 1 and 1000 (got 1001)"),
    (["repro", "--repeat", "x"], "invalid int value"),
    (["repro", "--min-rate", "0"], "--min-rate must be in (0, 1]"),
    (["repro", "no-such-scenario"], "no scenario 'no-such-scenario'"),
    (["repro", "--lib", "nosuchtls"], "unknown --lib 'nosuchtls'"),
    (["repro", "--json", "/nonexistent-dir/s.json"], "--json /nonexistent-dir/s.json: no such directory"),
    (["mitigations"], "mitigations needs --lib"),
    (["mitigations", "--lib", "nosuchtls"], "unknown --lib 'nosuchtls'"),
    (["mitigations", "--lib", "openssl", "--families", "no such family"], "unknown family 'no such family'"),
    (["mitigations", "--lib", "openssl", "--sets", "none;pshared,bogus"], "unknown mitigation 'bogus'"),
    (["mitigations", "--lib", "openssl", "--repeat", "0"], "--repeat: must be between 1 and 1000"),
])
def test_usage_errors_one_line_exit_2(args, needle, tmp_path):
    r = tlsharness(*args, "--out", str(tmp_path), timeout=60)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not list(tmp_path.iterdir())          # nothing started, nothing written


# -- real runs (short) --------------------------------------------------------------------

@pytest.mark.stress
def test_repro_scenario_end_to_end(tmp_path):
    summary = tmp_path / "summary.json"
    r = tlsharness("repro", "baseline-private", "--repeat", "2", "--duration", "1.5",
                   "--out", str(tmp_path / "res"), "--json", str(summary), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "run 1/2: pass" in r.stdout and "run 2/2: pass" in r.stdout
    assert "reproduced in 0/2 judged runs (0%, 95% CI 0%–66%)" in r.stdout
    assert "scenario baseline-private: 2/2 runs as expected" in r.stdout
    s = json.loads(summary.read_text())
    assert {"scenario", "lib", "mitigations", "runs", "failed", "rate", "ci95", "ttf_median_ms",
            "ttf_p90_ms", "families", "verdicts", "failing"} <= set(s)
    assert (s["scenario"], s["runs"], s["failed"], s["verdicts"]) == ("baseline-private", 2, 0, {"pass": 2})
    # each run's re-run command is a `run` of the scenario with its seed, without repro's flags
    cmds = [json.loads((tmp_path / "res" / d / "outcome.json").read_text())["command"]
            for d in sorted(p.name for p in (tmp_path / "res").iterdir() if p.is_dir())]
    assert len(cmds) == 2 and all(c.startswith("tlsharness run baseline-private") for c in cmds)
    assert not any(f in c for c in cmds for f in ("--repeat", "--json"))


@pytest.mark.stress
def test_mitigations_end_to_end(tmp_path):
    sc = tmp_path / "tiny_family.py"
    sc.write_text('from harness.spec.scenario import Scenario, passes\n'
                  'SCENARIO = Scenario(summary="tiny", family="test family",\n'
                  '    params=dict(memory="private", handoff="per-message", workers=2, conns=10),\n'
                  '    expect={"openssl": passes()})\n')
    r = tlsharness("mitigations", "--lib", "openssl", "--scenarios", str(sc), "--families", "test family",
                   "--repeat", "1", "--duration", "1.5", "--sets", "none", "--out", str(tmp_path / "res"),
                   timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| test family (tiny-family) | failed 0/1 |" in r.stdout
    assert "[" in r.stderr and "ETA" in r.stderr                 # progress on stderr
    (d,) = [p for p in (tmp_path / "res").iterdir() if p.is_dir()]
    m = json.loads((d / "matrix.json").read_text())
    assert m["sets"] == ["none"] and m["rows"][0]["family"] == "test family"
    assert m["rows"][0]["cells"]["none"]["runs"] == 1
    assert (d / "matrix.md").read_text().startswith("# Failure families × mitigations: openssl")
