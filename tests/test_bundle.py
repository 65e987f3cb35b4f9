"""`tlsharness bundle`: a failing run and a shrink as bug-report text and an
archive; no path of this machine in the text unless --keep-paths."""
import json
import os
import re
import tarfile
from pathlib import Path

import pytest

from harness.analysis import history
from support import ROOT, tlsharness

SECTIONS = ("## Minimal command", "## How often", "## Versions and build",
            "## Verdict and evidence", "## Stacks of the stuck processes",
            "## Mitigation that cured it")


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle-results")
    r = tlsharness("run", "--out", str(root), "-q", "--json", "--memory", "private", "--fault",
                   "block:1", "--workers", "2", "--conns", "4", "--duration", "2", timeout=90)
    out = json.loads(r.stdout)
    assert out["families"][0] == "injected fault"
    return Path(out["run_dir"])


def _no_paths(text: str, *extra):
    for bad in ("/work", "/root", "/tmp", str(ROOT), os.path.expanduser("~"), *map(str, extra)):
        # a path, not a word that begins like one ("/worker-1-42.txt" is a stack file's name)
        hit = re.search(re.escape(bad) + r"(?![\w.-])", text)
        assert not hit, f"{bad} in the bundle: ...{text[max(0, hit.start() - 60):hit.end() + 60]}..."


def _archive(path: Path) -> dict:
    with tarfile.open(path) as t:
        return {m.name.split("/", 1)[1]: t.extractfile(m).read().decode() for m in t.getmembers()}


def test_bundle_of_a_failing_run(failing, tmp_path):
    r = tlsharness("bundle", str(failing), "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "b" / "bundle.md").read_text()
    for s in SECTIONS:
        assert s in md
    assert "injected fault" in md and "OpenSSL" in md and "pid " in md and "maybe_fault" in md
    assert "tlsharness run --lib openssl" in md or "tlsharness run " in md
    _no_paths(md, failing.parent)
    files = _archive(next((tmp_path / "b").glob("bundle-*.tar.gz")))
    assert {"bundle.md", "run/manifest.json", "run/outcome.json", "run/verdict.json"} <= set(files)
    assert any(n.startswith("run/stacks/worker-1-") for n in files)
    assert "run/key.pem" not in files
    for name, text in files.items():
        _no_paths(text, failing.parent)


def test_keep_paths_keeps_them(failing, tmp_path):
    r = tlsharness("bundle", str(failing), "--out", str(tmp_path / "b"), "--keep-paths")
    assert r.returncode == 0, r.stderr
    assert str(failing.parent) in (tmp_path / "b" / "bundle.md").read_text()


def test_bundle_names_the_mitigation_the_history_measured(failing, tmp_path):
    cfg = json.loads((failing / "manifest.json").read_text())["config"]
    params = {k: v for k, v in cfg.items() if k not in ("out", "seed")}
    for i in range(3):
        history.record(failing.parent, {"run_dir": str(failing.parent / f"cured-{i}"), "verdict": "pass",
                                        "lib": "openssl", "mitigations": ["pshared"]}, "compare",
                       params=dict(params, mitigations=["pshared"]))
    r = tlsharness("bundle", str(failing), "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "b" / "bundle.md").read_text()
    assert "`pshared`: no failure in 3 judged runs" in md


def test_bundle_of_a_shrink(failing, tmp_path):
    s = tmp_path / "s"
    r = tlsharness("shrink", str(failing), "--rate", "1/1", "--max-runs", "3", "--out", str(s), "-q",
                   timeout=120)
    assert r.returncode == 0, r.stderr
    r = tlsharness("bundle", str(s))
    assert r.returncode == 0, r.stderr
    md = (s / "bundle.md").read_text()
    for sec in SECTIONS:
        assert sec in md
    assert "Shrunk from:" in md and "- minimal: injected fault in 1/1 runs" in md
    _no_paths(md, failing.parent, s)
    files = _archive(next(s.glob("bundle-*.tar.gz")))
    assert {"bundle.md", "shrink/shrink.json", "shrink/scenario.py", "run/outcome.json",
            "original/outcome.json"} <= set(files)
    for text in files.values():
        _no_paths(text, failing.parent, s)


def test_bundle_bad_input(tmp_path):
    r = tlsharness("bundle", str(tmp_path / "nothing"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "tlsharness: error:" in r.stderr
    r = tlsharness("bundle", str(tmp_path))
    assert r.returncode == 2 and "neither a run folder" in r.stderr and r.stderr.count("\n") == 1
