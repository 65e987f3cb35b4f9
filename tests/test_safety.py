"""The safety table per build and server model (harness/analysis/safety.py),
on synthetic history rows: each rule reached, never "safe" from too few runs,
the diff between two builds, and the CLI."""
import json

import pytest

from harness.analysis import history, safety
from support import tlsharness

SHARED = {"memory": "shared", "handoff": "per-message", "io_model": "processes"}
PRIVATE = {"memory": "private", "handoff": "per-message"}          # no io_model: processes
THREADS = {"memory": "private", "io_model": "threads"}


def row(verdict, lib="openssl", model=SHARED, mits=(), fams=(), scenario="handoff-per-message",
        version="3.0", kind="mitigations", **extra):
    params = dict(model, mitigations=list(mits), fault={"kind": "none"}) | extra
    return {"kind": kind, "lib": lib, "lib_version": version, "scenario": scenario,
            "params": json.dumps(params), "mitigations": json.dumps(list(mits)),
            "verdict": verdict, "families": json.dumps(list(fams)), "recorded_at": "2026-12-03T10:00:00"}


def fails(n, fams=("lost wake-up",), **kw):
    return [row("deadlock", fams=fams, **kw) for _ in range(n)]


def passes(n, **kw):
    return [row("pass", **kw) for _ in range(n)]


def shared_cell(rows, lib="openssl"):
    t = safety.table(rows)
    return next(b for b in t["builds"] if b["lib"] == lib)["cells"]["shared hand-off"]


def test_unsafe_names_family_rate_and_interval():
    c = shared_cell(fails(2) + passes(1) + passes(1, mits=["pshared"]))   # the fix has 1 run only
    assert c["status"] == safety.UNSAFE
    assert c["text"] == "unsafe: lost wake-up (2/3, 95% 21%–94%)"
    assert c["ci95"] == [0.208, 0.939]


def test_safe_with_the_smallest_fix_measured_enough():
    both = ["prefork-thread", "pshared"]
    c = shared_cell(fails(3) + passes(3, mits=both) + passes(3, mits=["pshared"])
                    + passes(2, mits=["prefork-thread"]) + fails(1, mits=["global-lock"]))
    assert c["status"] == safety.FIXED and c["fixes"] == ["pshared"] and c["fix_runs"] == 3
    assert c["text"].startswith("safe with fixes pshared (0/3); without: lost wake-up (3/3")
    c = shared_cell(fails(3, fams=["lost wake-up", "DRBG lock"]) + passes(3, mits=["pshared"])
                    + passes(4, mits=["prefork-thread"]))     # two fixes of one size: both named
    assert c["fixes"] == ["prefork-thread"] and c["alternatives"] == [["pshared"]]
    assert c["text"] == ("safe with fixes prefork-thread (0/4) or pshared (0/3); without: "
                         "lost wake-up, DRBG lock (3/3, 95% 44%–100%)")


def test_a_fix_must_cover_every_scenario_that_failed():
    rows = (fails(3) + fails(3, scenario="handoff-per-connection")
            + passes(3, mits=["pshared"]))                      # never run per connection
    assert shared_cell(rows)["status"] == safety.UNSAFE
    rows += passes(3, mits=["pshared"], scenario="handoff-per-connection")
    assert shared_cell(rows)["fixes"] == ["pshared"]


def test_safe_needs_enough_judged_runs_without_mitigations():
    assert shared_cell(passes(3))["status"] == safety.SAFE
    for few in (passes(2), passes(2) + [row("inconclusive"), row("overload")]):
        c = shared_cell(few)
        assert c["status"] == safety.INCONCLUSIVE and "fewer than 3" in c["text"]
    c = shared_cell(passes(6) + fails(1, mits=["prefork-thread"]))   # the bare runs were lucky
    assert c["status"] == safety.INCONCLUSIVE and "with prefork-thread failed: lost wake-up" in c["text"]
    c = shared_cell(passes(5, mits=["pshared"]))                # fixed runs only: no bare answer
    assert c["status"] == safety.INCONCLUSIVE and "only runs with mitigations" in c["text"]
    c = shared_cell([row("error"), row("inconclusive")])
    assert c["status"] == safety.INCONCLUSIVE and "1 error" in c["text"]


def test_unsupported_and_not_measured_are_their_own_answers():
    r = dict(row("unsupported", lib="mbedtls"), reason="mbedtls: no allocator hook")
    t = safety.table([r] + passes(3, lib="mbedtls", model=PRIVATE))
    cells = t["builds"][0]["cells"]
    assert cells["shared hand-off"]["text"] == "unsupported: mbedtls: no allocator hook"
    assert cells["private"]["status"] == safety.SAFE
    t = safety.table(passes(3, model=PRIVATE))
    assert t["builds"][0]["cells"]["shared hand-off"]["status"] == safety.NOT_MEASURED
    assert "threads" not in t["models"]                          # no threaded run: no column


def test_models_come_from_params_and_injected_faults_are_left_out():
    rows = (passes(3, model=THREADS) + fails(3, model=PRIVATE, kind="shrink")
            + fails(1, model=dict(THREADS, session_sharing="concurrent"))
            + fails(3, fault={"kind": "die"}) + fails(3, rand_lock="plain")
            + [row("deadlock", lib="target:opensips")])
    t = safety.table(rows)
    assert t["models"] == ["shared hand-off", "private", "threads", "threads, shared session"]
    cells = t["builds"][0]["cells"]
    assert cells["threads"]["status"] == safety.SAFE
    assert cells["threads, shared session"]["status"] == safety.UNSAFE
    assert cells["shared hand-off"]["status"] == cells["private"]["status"] == safety.NOT_MEASURED
    assert t["left_out"] == 10


def test_only_the_latest_version_of_a_build_counts():
    old = [dict(r, recorded_at="2026-01-01") for r in fails(3, version="3.0.1")]
    t = safety.table(old + passes(3, version="3.0.2"))
    assert t["builds"][0]["version"] == "3.0.2"
    assert t["builds"][0]["cells"]["shared hand-off"]["status"] == safety.SAFE


def test_probe_facts_annotate_a_build_without_shared_runs():
    probe = [{"lib": "libressl", "alloc_hook_accepted": False, "session_in_arena": False},
             {"lib": "gnutls", "error": "probe timed out"}]
    t = safety.table(passes(3, lib="libressl", model=PRIVATE), probe)
    c = t["builds"][0]["cells"]["shared hand-off"]
    assert c["status"] == safety.NOT_MEASURED
    assert "allocator hook refused" in c["text"] and [b["lib"] for b in t["builds"]] == ["libressl"]


def test_diff_shows_only_changed_cells():
    rows = (fails(3) + passes(3, model=PRIVATE)
            + fails(1, lib="openssl@4.0") + passes(2, lib="openssl@4.0")
            + passes(3, lib="openssl@4.0", mits=["pshared", "prefork-thread"])
            + passes(3, lib="openssl@4.0", model=PRIVATE))
    t = safety.table(rows)
    d = safety.diff(t, "openssl", "openssl@4.0")
    assert [x["model"] for x in d] == ["shared hand-off"]
    assert d[0]["a"]["status"] == safety.UNSAFE and d[0]["b"]["status"] == safety.FIXED
    assert "3/3 → 1/3 (intervals overlap: not a measured change)" in safety.diff_markdown(
        t, "openssl", "openssl@4.0")
    t = safety.table(fails(10) + passes(10, lib="openssl@4.0"))
    assert safety.rate_change(*(b["cells"]["shared hand-off"] for b in t["builds"])) == \
        "10/10 → 0/10 (distinct at 95%)"
    assert "no cell changed" in safety.diff_markdown(t, "openssl", "openssl")
    with pytest.raises(KeyError):
        safety.diff(t, "openssl", "wolfssl")


def _record(tmp_path, rows):
    con = history.connect(history.db_path(tmp_path))
    with con:
        for i, r in enumerate(rows):
            r = dict(r, run_id=f"r{i}")
            con.execute(f"INSERT INTO runs ({', '.join(r)}) VALUES ({', '.join('?' for _ in r)})",
                        list(r.values()))
    con.close()


def test_cli_table_diff_and_bad_input(tmp_path):
    _record(tmp_path, fails(3) + passes(3, lib="wolfssl"))
    md = tmp_path / "safety.md"
    r = tlsharness("history", "--out", str(tmp_path), "--safety", "--markdown", str(md),
                   "--diff", "openssl", "wolfssl")
    assert r.returncode == 0, r.stderr
    assert "| openssl | 3.0 | unsafe: lost wake-up (3/3, 95% 44%–100%) | not measured |" in r.stdout
    assert "## openssl → wolfssl: cells that changed" in md.read_text()
    j = json.loads(tlsharness("history", "--out", str(tmp_path), "--safety", "--json").stdout)
    assert [b["lib"] for b in j["builds"]] == ["openssl", "wolfssl"]
    for args, words in [(["--diff", "openssl", "boringssl"], "no recorded run of boringssl"),
                        (["--safety", "--probe", str(md)], "not JSON"),
                        (["--safety", "--probe", str(tmp_path / "none.json")], "No such file")]:
        bad = tlsharness("history", "--out", str(tmp_path), *args)
        assert bad.returncode == 2 and bad.stdout == ""
        assert bad.stderr.count("\n") == 1 and words in bad.stderr, bad.stderr


def test_a_comparison_report_carries_the_table_of_its_builds(tmp_path):
    from harness.analysis import report
    _record(tmp_path, fails(3) + passes(3, lib="wolfssl"))
    d = tmp_path / "cmp"
    d.mkdir()
    run = {"verdict": "pass", "replies_per_s": 10.0, "replies": 40}
    (d / "compare.json").write_text(json.dumps({
        "libs": ["openssl"], "scenarios": ["handoff-per-message"], "repeat": 1,
        "cells": [{"lib": "openssl", "scenario": "handoff-per-message", "mitigations": [],
                   "runs": [run]}]}))
    _, md = report.compare_report(d)
    text = md.read_text()
    assert "## Safety table (run history)" in text and "| openssl | 3.0 | unsafe: lost wake-up" in text
    assert "| wolfssl |" not in text                            # not a build of this comparison
