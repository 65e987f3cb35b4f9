"""Bad input, misuse and damaged data, as a table: each case is one clear
line on stderr, the expected exit code, no traceback, no results folder and
no process left behind.  Run from a scratch directory (the tool works from
anywhere)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

DAMAGED = {"truncated": b'{"verdict": "pa', "binary": b"\xff\xfe\x00", "list": b"[1, 2]"}


def tool(cwd, *args, env=None, timeout=60):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=str(cwd), env=e)


def folders(p: Path) -> list:
    return sorted(x.name for x in p.rglob("*") if x.is_dir()) if p.exists() else []


CASES = [
    # (args, exit code, words in the one line); {out} is a fresh results folder
    (["run", "--out", ""], 2, "--out must name a folder"),
    (["run", "--out", "/etc/hostname"], 2, "exists and is not a folder"),
    (["run", "--out", "/proc/tlsh"], 2, "cannot live under /proc"),
    (["run", "--fault", "block:1:99999999999999", "--out", "{out}"], 2, "--fault AFTER_MS"),
    (["run", "/", "--out", "{out}"], 2, "not a scenario file"),
    (["run", "{binary_py}", "--out", "{out}"], 2, "cannot read it as a Python scenario"),
    (["run", "/nonexistent/x", "--out", "{out}"], 2, "no scenario"),
    (["run", "--tls", "1.4", "--out", "{out}"], 2, "--tls must be 1.2 or 1.3"),
    (["target", "cmd", "--out", "{out}"], 2, "needs a server command after --"),
    (["target", "cmd", "--port", "70000", "--out", "{out}", "--", "sleep", "1"], 2,
     "--port must be between 1 and 65535"),
    (["target", "cmd", "--port", "0", "--out", "{out}", "--", "sleep", "1"], 2, "--port"),
    (["target", "cmd", "--out", "{out}", "--", "sleep", "1"], 2, "needs --port"),
    (["target", "cmd", "--port", "5999", "--out", "{out}", "--", "/nonexistent/server"], 2,
     "server command not found"),
    (["target", "kamailio", "--clients", "0", "--out", "{out}"], 2, "--clients must be"),
    (["target", "kamailio", "--conns", "0", "--out", "{out}"], 2, "--conns must be"),
    (["target", "kamailio", "--duration", "-1", "--out", "{out}"], 2, "--duration must be"),
    (["watch", "--out", "{out}"], 2, "needs at least one --pid"),
    (["watch", "--pid", "999999999", "--out", "{out}"], 2, "no process with pid"),
    (["watch", "--pid", "1", "--port", "70000", "--out", "{out}"], 2, "--port must be"),
    (["compare", "--mitigations", "bogus", "--out", "{out}"], 2, "unknown mitigation 'bogus'"),
    (["compare", "--duration", "-3", "--out", "{out}"], 2, "--duration must be between"),
    (["compare", "--duration", "0", "--out", "{out}"], 2, "--duration must be between"),
    (["compare", "--libs", "opensll", "--out", "{out}"], 2, "unknown library 'opensll'"),
    (["compare", "--resume", "/nonexistent"], 2, "not a comparison folder"),
    (["compare", "--resume", "{damaged_cmp}"], 2, "damaged"),
    (["compare", "--resume", "{wrong_cmp}"], 2, "not the shape of a comparison"),
    (["report", "/nonexistent"], 2, "neither a run nor a comparison folder"),
    (["report", "{damaged_run}"], 2, "outcome.json: damaged"),
    (["report", "{damaged_cmp}"], 2, "compare.json: damaged"),
    (["repro", "no-such-scenario"], 2, "no scenario"),
    (["nosuchcommand"], 2, "invalid choice"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "binary.py").write_bytes(b"\xff\xfe\x00\x01")
    for name, content in (("damaged_cmp", b'{"cells": [1'), ("wrong_cmp", b'{"cells": 3}'),
                          ("damaged_run", b'{"verd')):
        (d / name).mkdir()
        (d / name / ("compare.json" if "cmp" in name else "outcome.json")).write_bytes(content)
    return {"binary_py": str(d / "binary.py"), "damaged_cmp": str(d / "damaged_cmp"),
            "wrong_cmp": str(d / "wrong_cmp"), "damaged_run": str(d / "damaged_run")}


@pytest.mark.parametrize("args,code,words", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_line(tmp_path, files, args, code, words):
    out = tmp_path / "out"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    argv = [a.format(out=out, **files) for a in args]
    r = tool(cwd, *argv)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == code, (r.returncode, r.stderr)
    assert any(words in l for l in lines), r.stderr
    assert len(lines) == 1 or r.stderr.startswith("usage:"), r.stderr
    assert folders(out) == [] and list(cwd.iterdir()) == []     # nothing made


@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_damaged_sibling_never_fails_a_run(tmp_path, kind):
    """A damaged outcome.json, an empty samples.jsonl and a non-UTF-8 file in
    the results folder: a run into it still passes; report names the damage."""
    out = tmp_path / "res"
    (out / "old").mkdir(parents=True)
    (out / "old" / "outcome.json").write_bytes(DAMAGED[kind])
    (out / "old" / "samples.jsonl").write_bytes(b"")
    (out / "junk.bin").write_bytes(b"\xff\xfe")
    r = tool(tmp_path, "run", "baseline-private", "--duration", "2", "-q", "--out", "res",
             timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "damaged outcome.json" in (out / "index.html").read_text()
    rep = tool(tmp_path, "report", str(out / "old"))
    assert rep.returncode == 2 and "outcome.json: damaged" in rep.stderr
    assert len(rep.stderr.strip().splitlines()) == 1


def test_run_from_another_directory_writes_where_asked(tmp_path):
    r = tool(tmp_path, "run", "baseline-private", "--duration", "2", "-q", timeout=120)
    assert r.returncode == 0, r.stderr
    runs = [d for d in (tmp_path / "results").iterdir() if d.is_dir()]
    assert len(runs) == 1 and (runs[0] / "outcome.json").exists()


def test_killed_run_reports_as_did_not_finish(tmp_path):
    d = tmp_path / "r" / "20260101-000000-abcdef"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text('{"command": "tlsharness run", "config": {"lib": "openssl"}}')
    (d / "samples.jsonl").write_bytes(b'{"t": 0.1}\n{"t": 0.2, "lg": {"answ\n')
    r = tool(tmp_path, "report", str(d))
    assert r.returncode == 0, r.stderr
    assert "did not finish" in (d / "report.html").read_text()
    assert "1 damaged line(s) skipped" in r.stderr


def test_ascii_terminal_gets_no_crash(tmp_path):
    r = tool(tmp_path, "run", "baseline-private", "--duration", "1", "--out", "res",
             env={"PYTHONIOENCODING": "ascii"}, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr + r.stdout, r.stderr


def test_bisect_skips_a_commit_whose_stand_cannot_start(tmp_path):
    """--bisect: a stand that cannot be set up (here: no openssl command for
    the certificates) is 125, which git bisect run reads as skip."""
    env = {"PATH": str(tmp_path / "empty")}
    r = tool(tmp_path, "run", "baseline-private", "--duration", "1", "--bisect", "-q",
             "--out", "res", env=env, timeout=120)
    assert r.returncode == 125, (r.returncode, r.stderr)
    assert "openssl command is missing" in r.stderr and "Traceback" not in r.stderr
    r = tool(tmp_path, "run", "baseline-private", "--duration", "1", "-q", "--out", "res",
             env=env, timeout=120)
    assert r.returncode == 4


def test_conns_beyond_the_descriptor_limit_is_one_line(tmp_path):
    """--conns needs a descriptor per connection in the stand's listener: a
    system limit lower than that is named before anything starts."""
    import resource
    r = subprocess.run([sys.executable, "-m", "harness", "run", "--conns", "5000", "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (2048, 2048)))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "allows 2048 (ulimit -Hn)" in r.stderr and "--conns 1792 or fewer" in r.stderr
    assert not (tmp_path / "out").exists()
