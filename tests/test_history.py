"""The run history (results/history.sqlite): recorded by every command, asked by `history`."""
import json
import sqlite3

from harness.analysis import history
from support import tlsharness


def out(verdict, lib="openssl", version="3.0", fams=(), run="r"):
    return {"verdict": verdict, "lib": lib, "lib_version": version, "families": list(fams),
            "run_dir": f"/x/{run}", "time_to_failure_ms": 5 if verdict != "pass" else None,
            "replies_per_s": 100.0, "command": "tlsharness run"}


def test_rates_per_library_version_and_scenario(tmp_path):
    for i, (v, ver) in enumerate([("degraded", "3.0"), ("pass", "3.0"), ("crash", "3.0"),
                                  ("pass", "3.5"), ("inconclusive", "3.5")]):
        assert history.record(tmp_path, out(v, version=ver, fams=["lost wake-up"] if v != "pass" else [],
                                            run=f"r{i}"), scenario="s")
    con = history.connect(history.db_path(tmp_path))
    rows = {r["lib_version"]: r for r in history.rates(con)}
    assert rows["3.0"]["runs"] == 3 and rows["3.0"]["failures"] == 2
    assert rows["3.0"]["families"] == {"lost wake-up": 2}
    assert rows["3.5"]["runs"] == 1 and rows["3.5"]["failures"] == 0   # inconclusive is not judged
    assert history.version(con) == history.SCHEMA_VERSION


def test_same_run_recorded_twice_is_one_row(tmp_path):
    history.record(tmp_path, out("pass", run="same"))
    history.record(tmp_path, out("degraded", run="same"))
    con = sqlite3.connect(history.db_path(tmp_path))
    assert con.execute("SELECT COUNT(*), MAX(verdict) FROM runs").fetchone() == (1, "degraded")


def test_a_newer_or_damaged_history_never_fails_a_run(tmp_path, capsys):
    db = history.db_path(tmp_path)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    con.commit()
    con.close()
    assert history.record(tmp_path, out("pass")) is False
    assert "newer than this tlsharness" in capsys.readouterr().err
    db.write_bytes(b"not a database at all" * 100)
    assert history.record(tmp_path, out("pass")) is False
    assert "not recorded" in capsys.readouterr().err


def test_a_run_is_recorded_and_history_answers(tmp_path):
    r = tlsharness("run", "baseline-private", "--duration", "1.5", "-q", "--out", str(tmp_path),
                   timeout=120)
    assert r.returncode == 0, r.stderr
    h = tlsharness("history", "--out", str(tmp_path), "--json")
    rows = json.loads(h.stdout)
    assert h.returncode == 0 and len(rows) == 1
    assert rows[0]["scenario"] == "baseline-private" and rows[0]["runs"] == 1
    assert rows[0]["failures"] == 0 and rows[0]["lib"] == "openssl"
    bad = tlsharness("history", "--out", str(tmp_path), "--by", "colour")
    assert bad.returncode == 2 and "--by takes" in bad.stderr
    none = tlsharness("history", "--out", str(tmp_path / "nothing"))
    assert none.returncode == 2 and "no run history" in none.stderr
