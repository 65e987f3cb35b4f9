"""Bad input, misuse and damaged data, as a table: each case is one clear
line on stderr, the expected exit code, no traceback, no results folder and
no process left behind.  Run from a scratch directory (the tool works from
anywhere)."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
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
    # build names: refused as names before anything in the cache is touched
    (["libs", "build", ".", "--kind", "openssl", "--from-source", "{prefix}"], 2,
     "'.' and '..' are not names"),
    (["libs", "build", "..", "--kind", "openssl", "--from-source", "{prefix}"], 2,
     "'.' and '..' are not names"),
    (["libs", "build", "a/b", "--from-source", "{prefix}"], 2, "a name, not a path"),
    (["libs", "build", "_x", "--from-source", "{prefix}"], 2, "a letter or digit first"),
    (["libs", "add", "x" * 70, "--prefix", "{prefix}"], 2, "at most 64 characters"),
    (["libs", "add", "openssl", "--prefix", "{prefix}"], 2, "the project's own build 'openssl'"),
    (["libs", "add", "openssl_1_1_1", "--prefix", "{prefix}"], 2,
     "too close to the project's own build 'openssl@1.1.1'"),
    (["libs", "add", "x.y", "--prefix", "{prefix}"], 2, "clashes with your build 'x_y'",
     {"TLSH_CACHE": "{clash_cache}"}),
    (["libs", "add", "mine", "--prefix", "/nonexistent"], 2, "--prefix /nonexistent: not a directory"),
    (["run", "--lib-prefix", "/nonexistent", "--out", "{out}"], 2,
     "--lib-prefix /nonexistent: not a directory"),
    (["libs", "add", "mine", "--prefix", "{prefix}"], 2, "cannot be used: Not a directory",
     {"TLSH_CACHE": "{binary_py}"}),
    (["libs", "add", "mine", "--prefix", "{prefix}"], 2, "(TLSH_CACHE) cannot be used",
     {"TLSH_CACHE": "/proc/x"}),
    # campaign manifests and their flags
    (["campaign", "plan", "--libs", "", "--out", "{out}"], 2, "--libs names nothing"),
    (["campaign", "plan", "--libs", "openssl", "--scenarios", ",,", "--out", "{out}"], 2,
     "--scenarios names nothing"),
    (["campaign", "run", "{campaign}", "--scheduler", "garbage"], 2,
     "--scheduler must be a Dask address tcp://HOST:PORT"),
    (["campaign", "run", "{campaign}", "--scheduler", "http://127.0.0.1:1"], 2,
     "--scheduler must be a Dask address tcp://HOST:PORT"),
    (["campaign", "run", "{evil_rel}"], 2, "run id '../../../../x': a name, not a path"),
    (["campaign", "run", "{evil_abs}/campaign.json"], 2, "a name, not a path"),
    (["campaign", "run", "{evil_dots}"], 2, "'.' and '..' are not names"),
    (["campaign", "run", "{evil_mits}"], 2, "not the shape of a run"),
    (["campaign", "run", "{binary_py}"], 2, "a file, not a campaign folder"),
    (["campaign", "merge", "{damaged_cmp}/compare.json"], 2, "a file, not a campaign folder"),
    (["compare", "--resume", "{damaged_cmp}/compare.json"], 2, "compare.json: damaged"),
    # scenario files run in a child: their own exit, interrupt or endless loop is an error
    (["run", "{exit0_py}", "--out", "{out}"], 2, "ended the process that loads it (exit 0)"),
    (["run", "{sysexit_py}", "--out", "{out}"], 2, "SystemExit: 0"),
    (["run", "{kbint_py}", "--out", "{out}"], 2, "KeyboardInterrupt"),
    (["run", "{loop_py}", "--out", "{out}"], 2, "did not finish loading within 10 s"),
    (["compare", "--libs", "openssl", "--scenarios", "{exit0_py}", "--out", "{out}"], 2,
     "ended the process that loads it"),
    # history, probe and --out
    (["history", "--runs", "99999999999999999999"], 2, "--runs: must be between 1 and"),
    (["history", "--runs", "-1"], 2, "--runs: must be between 1 and"),
    (["history", "--runs", "0"], 2, "--runs: must be between 1 and"),
    (["history", "--since", "2026-13-45"], 2, "must be a date YYYY-MM-DD"),
    (["history", "--plot", "/nonexistent/dir/t.png"], 2, "--plot: /nonexistent/dir/t.png: no folder"),
    (["history", "--plot", "/proc/t.png"], 2, "--plot: /proc/t.png: cannot write there"),
    (["probe", "--markdown", "/nonexistent/dir/t.md"], 2, "--markdown: /nonexistent/dir/t.md"),
    (["probe", "--markdown", "/"], 2, "is a folder, not a file"),
    (["run", "--out", "{out}/" + "n" * 300], 2, "cannot create it (File name too long)"),
    (["run", "--out", "{out}/" + "/".join(["d" * 200] * 25)], 2, "(File name too long)"),
]


SCENARIO_OK = ("from harness.spec.scenario import Scenario\n"
               "SCENARIO = Scenario(summary='x', params=dict(memory='private', duration=1))\n")
BAD_SCENARIOS = {"exit0_py": "import os\nos._exit(0)\n", "sysexit_py": "raise SystemExit(0)\n",
                 "kbint_py": "raise KeyboardInterrupt\n", "loop_py": "while True:\n    pass\n",
                 "print_py": "print('hello from the scenario')\n" + SCENARIO_OK}


def _manifest(src: Path, dest: Path, edit) -> str:
    shutil.copytree(src, dest)
    state = json.loads((dest / "campaign.json").read_text())
    edit(state)
    (dest / "campaign.json").write_text(json.dumps(state))
    return str(dest)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "binary.py").write_bytes(b"\xff\xfe\x00\x01")
    for name, content in (("damaged_cmp", b'{"cells": [1'), ("wrong_cmp", b'{"cells": 3}'),
                          ("damaged_run", b'{"verd')):
        (d / name).mkdir()
        (d / name / ("compare.json" if "cmp" in name else "outcome.json")).write_bytes(content)
    out = {"binary_py": str(d / "binary.py"), "damaged_cmp": str(d / "damaged_cmp"),
           "wrong_cmp": str(d / "wrong_cmp"), "damaged_run": str(d / "damaged_run")}
    for name, text in BAD_SCENARIOS.items():
        (d / (name[:-3] + ".py")).write_text(text)
        out[name] = str(d / (name[:-3] + ".py"))
    prefix = d / "prefix"                      # an install prefix that passes the checks
    for sub in ("include", "lib"):
        (prefix / sub).mkdir(parents=True)
    out["prefix"] = str(prefix)
    clash = d / "clash_cache"
    clash.mkdir()
    (clash / "libs.toml").write_text(f'[[variant]]\nname = "x_y"\nkind = "openssl"\n'
                                     f'prefix = "{prefix}"\n')
    out["clash_cache"] = str(clash)
    r = tool(d, "campaign", "plan", "--libs", "openssl", "--scenarios", "baseline-private",
             "--repeat", "2", "--out", str(d / "camp"))
    assert r.returncode == 0, r.stderr
    camp = next((d / "camp").iterdir())
    out["campaign"] = str(camp)
    ids = {"evil_rel": ["../../../../x", "ok1"], "evil_abs": [str(d / "abs"), "ok2"],
           "evil_dots": ["..", "ok3"]}
    for name, new in ids.items():
        out[name] = _manifest(camp, d / name, lambda s, new=new: [
            sp.update(id=i) for sp, i in zip(s["specs"], new)])
    out["evil_mits"] = _manifest(camp, d / "evil_mits", lambda s: s["specs"][0].update(
        mitigations={"p": 1}))
    return out


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_line(tmp_path, files, case):
    args, code, words = case[:3]
    out = tmp_path / "out"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    argv = [a.format(out=out, **files) for a in args]
    env = {k: v.format(**files) for k, v in (case[3] if len(case) > 3 else {}).items()}
    r = tool(cwd, *argv, env=env)
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


def snapshot(root: Path) -> dict:
    """Every path under ROOT with its kind and content hash: what a refused
    command must leave exactly as it was."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link " + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _scratch_cache(top: Path) -> Path:
    """A user cache with a build, its adapter and its registration."""
    cache = top / "home" / "cache"
    root = cache / "builds" / "keep1" / "root" / "usr"
    for sub in ("include/openssl", "lib"):
        (root / sub).mkdir(parents=True)
    (root / "include" / "openssl" / "ssl.h").write_text("/* kept */\n")
    (cache / "native").mkdir()
    (cache / "native" / "_tlsh_v_keep1.so").write_bytes(b"\x7fELF kept")
    (cache / "native" / "build.json").write_text(json.dumps({"_tlsh_v_keep1": {
        "built": True, "lib": "keep1", "origin": "user prefix", "prefix": str(root),
        "path": str(cache / "native" / "_tlsh_v_keep1.so")}}))
    (cache / "libs.toml").write_text(f'[[variant]]\nname = "keep1"\nkind = "openssl"\n'
                                     f'prefix = "{root}"\n')
    (top / "home" / "sibling.txt").write_text("next to the cache\n")
    return cache


@pytest.mark.parametrize("name", [".", "..", "../..", "builds/..", "/tmp"])
def test_libs_build_of_a_path_deletes_nothing(tmp_path, name):
    """`libs build .` used to delete the cache's builds/ and `..` the whole
    cache: refused in one line, and the cache and its parents unchanged."""
    cache = _scratch_cache(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "README").write_text("not a tree\n")
    before = snapshot(tmp_path)
    r = tool(tmp_path / "src", "libs", "build", name, "--kind", "openssl", "--from-source",
             str(src), env={"TLSH_CACHE": str(cache)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert snapshot(tmp_path) == before


def test_libs_lists_only_builds_that_exist(tmp_path):
    """A registered build whose files are gone is listed as missing, not built."""
    cache = _scratch_cache(tmp_path)
    r = tool(tmp_path, "libs", env={"TLSH_CACHE": str(cache)})
    keep = [l for l in r.stdout.splitlines() if l.startswith("keep1 ")]
    assert keep and keep[0].split()[1] == "built", r.stdout      # prefix and adapter exist
    shutil.rmtree(cache / "builds")
    r = tool(tmp_path, "libs", env={"TLSH_CACHE": str(cache)})
    keep = [l for l in r.stdout.splitlines() if l.startswith("keep1 ")]
    assert keep and keep[0].split()[1] == "missing", r.stdout


def test_campaign_ids_that_are_paths_write_nothing_outside(tmp_path, files):
    """Run ids `../../x`, absolute and `..` in a manifest: refused before
    anything is written; the campaign folder and every parent unchanged."""
    top = tmp_path / "a" / "b"
    for name in ("evil_rel", "evil_abs", "evil_dots"):
        camp = top / name
        shutil.copytree(files[name], camp)
        state = json.loads((camp / "campaign.json").read_text())
        if name == "evil_abs":                 # an absolute id inside this test's own folder
            state["specs"][0]["id"] = str(tmp_path / "abs")
            (camp / "campaign.json").write_text(json.dumps(state))
        before = snapshot(tmp_path)
        r = tool(tmp_path, "campaign", "run", str(camp))
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "run id" in r.stderr, r.stderr
        assert snapshot(tmp_path) == before
        assert not (tmp_path / "abs").exists() and not (tmp_path / "x").exists()


def test_campaign_runs_in_error_are_not_done_nor_counted(tmp_path, files):
    """A spec that ends `error` (an unknown library in a hand-edited
    manifest) is run again by the next `campaign run` and is not in the
    merged failure rate; the manifest FILE is accepted for its folder."""
    camp = Path(_manifest(Path(files["campaign"]), tmp_path / "camp", lambda s: [
        sp.update(lib="nosuchlib") for sp in s["specs"]]))
    r = tool(tmp_path, "campaign", "run", str(camp / "campaign.json"), "-q", timeout=120)
    assert r.returncode == 3 and "0 done, 2 left" in r.stdout, (r.stdout, r.stderr)
    res = [json.loads(p.read_text()) for p in (camp / "runs").glob("*/result.json")]
    assert len(res) == 2 and all(x["verdict"] == "error" for x in res), res
    r = tool(tmp_path, "campaign", "run", str(camp), "-q", timeout=120)
    assert "2 runs to do" in r.stderr, r.stderr                   # tried again
    r = tool(tmp_path, "campaign", "merge", str(camp / "campaign.json"), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "0 of 2 runs (2 ended in error" in r.stdout, r.stdout
    merged = json.loads((camp / "compare.json").read_text())
    assert all(c["runs"] == [] for c in merged["cells"])


def test_campaign_plan_never_gives_two_specs_one_id(tmp_path):
    r = tool(tmp_path, "campaign", "plan", "--libs", "openssl,openssl,", "--scenarios",
             "baseline-private,baseline-private,baseline_private", "--mitigations",
             "none;;none;pshared;pshared", "--repeat", "2", "--out", str(tmp_path / "c"))
    assert r.returncode == 0, r.stderr
    state = json.loads(next((tmp_path / "c").glob("*/campaign.json")).read_text())
    ids = [s["id"] for s in state["specs"]]
    assert len(ids) == len(set(ids)) == 4, ids          # 1 lib x 1 scenario x 2 sets x 2
    assert [c["mitigations"] for c in state["cells"]] == [[], ["pshared"]]


def test_scenario_print_does_not_corrupt_json(tmp_path, files):
    r = tool(tmp_path, "run", files["print_py"], "--json", "-q", "--out", str(tmp_path / "r"),
             timeout=120)
    assert r.returncode in (0, 1, 3), r.stderr
    json.loads(r.stdout)                                   # the outcome, nothing else
    assert "hello from the scenario" in r.stderr and "hello from" not in r.stdout


def test_ciphers_with_tls13_says_they_are_ignored(tmp_path):
    r = tool(tmp_path, "run", "--ciphers", "GARBAGE:!!", "--memory", "private", "--duration",
             "1", "-q", "--out", str(tmp_path / "r"), timeout=120)
    assert "Traceback" not in r.stderr
    assert "ignored with TLS 1.3" in r.stderr and "GARBAGE" in r.stderr, r.stderr


def test_sigterm_of_run_is_143_and_sigint_130(tmp_path):
    """The shell's convention, 128 + the signal, for `run`."""
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        p = subprocess.Popen([sys.executable, "-m", "harness", "run", "--memory", "private",
                              "--duration", "30", "--out", str(tmp_path / "r")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=str(tmp_path), start_new_session=True)
        try:
            time.sleep(4)
            p.send_signal(sig)
            _, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        assert p.returncode == code, (sig, p.returncode, err[-500:])
        assert "Traceback" not in err


def test_history_of_an_empty_file_does_not_write_into_it(tmp_path):
    db = tmp_path / "h.sqlite"
    db.write_bytes(b"")
    r = tool(tmp_path, "history", "--db", str(db))
    assert r.returncode == 0 and "no recorded run" in r.stdout, r.stderr
    assert db.stat().st_size == 0


PLUGIN_CASES = '''
def test_repeat_zero(tlsharness):
    tlsharness.must_pass(lib="openssl", duration=1, repeat=0)

def test_repeat_negative(tlsharness):
    tlsharness.must_pass(lib="openssl", duration=1, repeat=-3)

def test_repeat_text(tlsharness):
    tlsharness.must_pass(lib="openssl", duration=1, repeat="2")

def test_reproduce_zero(tlsharness):
    tlsharness.must_reproduce(lib="openssl", duration=1, repeat=0)
'''


def test_plugin_refuses_repeat_counts_that_run_nothing(tmp_path):
    """Zero, negative or text repeat counts: a failed test saying why in one
    line, never a pass after zero runs, a ZeroDivisionError or a TypeError."""
    (tmp_path / "test_user.py").write_text(PLUGIN_CASES)
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
            str(tmp_path), str(tmp_path / "test_user.py")]
    r = subprocess.run(base, capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert "4 failed" in r.stdout, r.stdout[-3000:]
    assert r.stdout.count("repeat must be a whole number of at least 1") >= 4, r.stdout[-3000:]
    assert "ZeroDivisionError" not in r.stdout and "TypeError" not in r.stdout
    r = subprocess.run(base + ["--tls-repeat", "0"], capture_output=True, text=True,
                       timeout=120, cwd=str(tmp_path))
    assert r.returncode == 4 and "--tls-repeat" in r.stderr, (r.returncode, r.stderr)
    assert "must be a whole number >= 1" in r.stderr
