"""The pytest plugin and the bisect exit codes, used as a CI user would."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from support import ROOT

pytestmark = pytest.mark.stress

WRONG = '''
def test_wrong_expectation(tlsharness):
    # deliberately wrong: this configuration fails (lost wake-up)
    tlsharness.must_pass(lib="openssl", memory="shared", handoff="per-message", load="churn",
                         duration=6)

def test_unknown_library_fails(tlsharness):
    tlsharness.must_pass(lib="opensll", duration=1)     # a typo: red, never a green skip
'''


def pytest_run(tmp_path, source, *args):
    (tmp_path / "test_user.py").write_text(source)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_user.py"), *args],
                          capture_output=True, text=True, timeout=180, cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_wrong_expectation_fails_with_verdict_families_and_artifacts(tmp_path):
    junit = tmp_path / "junit.xml"
    r = pytest_run(tmp_path, WRONG, f"--junitxml={junit}", "--tls-results", str(tmp_path / "res"), "-rs")
    assert r.returncode == 1, r.stdout[-2000:]
    out = r.stdout
    assert "2 failed" in out
    assert "expected pass" in out and "families:" in out and "artifacts:" in out
    assert str(tmp_path / "res") in out                      # the artifact path is shown
    assert "unknown TLS library 'opensll'" in out
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert props["tls_run1_verdict"] in {"degraded", "deadlock", "mixed", "crash", "corruption"}
    assert props["tls_run1_artifacts"].startswith(str(tmp_path / "res"))


def test_tls_lib_option_deselects(tmp_path):
    r = pytest_run(tmp_path, WRONG, "--tls-lib", "wolfssl", "-rs")
    assert r.returncode == 0 and "2 skipped" in r.stdout and "not selected" in r.stdout


def test_git_bisect_run_finds_the_commit_that_dropped_the_fix(tmp_path):
    """Four commits of a 'server config'; the fix is removed in the third.
    git bisect run with tlsharness run --bisect names that commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True,
                                    check=True, env=dict(os.environ, GIT_AUTHOR_NAME="t",
                                    GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                                    GIT_COMMITTER_EMAIL="t@t")).stdout.strip()
    git("init", "-q")
    shas = []
    for i, mit in enumerate(["pshared,prefork-thread", "pshared,prefork-thread", "", ""]):
        (repo / "mitigations").write_text(mit + "\n")
        (repo / "changelog").write_text(f"change {i}\n")
        git("add", "mitigations", "changelog")
        git("commit", "-qm", f"change {i}")
        shas.append(git("rev-parse", "HEAD"))
    script = repo / "check.sh"
    script.write_text(f"""#!/bin/sh
m=$(cat mitigations)
cd {ROOT} && exec {sys.executable} -m harness run --bisect -q --out {tmp_path / 'res'} --duration 5 \\
  --memory shared --handoff per-message --load churn ${{m:+--mitigate $m}}
""")
    script.chmod(0o755)
    git("bisect", "start", shas[-1], shas[0])
    r = subprocess.run(["git", "-C", str(repo), "bisect", "run", str(script)], capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert f"{shas[2]} is the first bad commit" in r.stdout, r.stdout[-1500:] + r.stderr[-500:]


def test_git_bisect_run_skips_a_commit_whose_stand_cannot_start(tmp_path):
    """A commit on which the stand cannot be set up (here its 'environment'
    hides the openssl command the certificates need) exits 125: git skips it
    instead of blaming it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True,
                                    check=True, env=env).stdout.strip()
    git("init", "-q")
    shas = []
    for i, (mit, path) in enumerate([("pshared,prefork-thread", "$PATH"),
                                     ("pshared,prefork-thread", "/nonexistent"), ("", "$PATH")]):
        (repo / "mitigations").write_text(mit + "\n")
        (repo / "path").write_text(path + "\n")
        git("add", "mitigations", "path")
        git("commit", "-qm", f"change {i}")
        shas.append(git("rev-parse", "HEAD"))
    script = repo / "check.sh"
    script.write_text(f"""#!/bin/sh
m=$(cat mitigations); p=$(eval echo $(cat path))
cd {ROOT} && PATH="$p" exec {sys.executable} -m harness run --bisect -q --out {tmp_path / 'res'} \\
  --duration 4 --memory shared --handoff per-message --load churn ${{m:+--mitigate $m}}
""")
    script.chmod(0o755)
    git("bisect", "start", shas[-1], shas[0])
    r = subprocess.run(["git", "-C", str(repo), "bisect", "run", str(script)], capture_output=True,
                       text=True, timeout=300, env=dict(env, PYTHONPATH=str(ROOT)))
    out = r.stdout + r.stderr
    assert "first bad commit could be any of" in out and shas[1] in out and shas[2] in out, out[-1500:]
    log = git("bisect", "log")
    assert f"git bisect skip {shas[1]}" in log, log
