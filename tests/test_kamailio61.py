"""Kamailio 6.1 as a target: the build step's refusals (no build needed), the
generated config's tcp_main_threads (only when asked, only for a Kamailio
that knows it), and a short run on a 6.1 build with it on.  The builds are
found in the cache named by $TLSH_KAMAILIO_CACHE (the tests run with a
cache of their own; `tlsharness servers build kamailio --from-source
kamailio-6.1.4.tar.gz` makes one); without a 6.1 build the run skips,
saying so."""
import json
import os
import shutil
import tarfile
from pathlib import Path

import psutil
import pytest

from harness.control.kamailio import (TargetError, kamailio_config, knows_tcp_main_threads)
from support import tlsharness


def fake_kamailio(tmp_path: Path, version: str) -> tuple[str, str]:
    """A program that says it is Kamailio VERSION, and a module folder with tls.so."""
    d = tmp_path / f"k{version}"
    (d / "modules").mkdir(parents=True, exist_ok=True)
    (d / "modules" / "tls.so").write_bytes(b"")
    exe = d / "kamailio"
    exe.write_text(f"#!/bin/sh\necho 'version: kamailio {version} (x86_64/linux) '\n")
    exe.chmod(0o755)
    return str(exe), str(d / "modules")


def config_of(tmp_path, version, **kw) -> str:
    exe, mods = fake_kamailio(tmp_path, version)
    run = tmp_path / f"run{version}-{len(kw)}"
    run.mkdir()
    kamailio_config(run, 5060, 2, False, exe, mods, **kw)
    return (run / "kamailio.cfg").read_text()


def test_threads_setting_only_when_asked(tmp_path):
    assert "tcp_main_threads" not in config_of(tmp_path, "6.1.4")
    lines = config_of(tmp_path, "6.1.4", tcp_main_threads=1).splitlines()
    assert "tcp_main_threads=1" in lines
    assert lines.index("tcp_main_threads=1") < next(i for i, l in enumerate(lines)
                                                    if l.startswith("listen="))
    assert "tcp_main_threads=0" in config_of(tmp_path, "6.2.0", tcp_main_threads=0).splitlines()


@pytest.mark.parametrize("version", ["6.0.1", "5.6.3"])
def test_threads_setting_refused_for_a_version_without_it(tmp_path, version):
    with pytest.raises(TargetError, match=rf"Kamailio {version} has no tcp_main_threads"):
        config_of(tmp_path, version, tcp_main_threads=1)
    assert not list(tmp_path.glob("run*/kamailio.cfg"))


def test_threads_setting_is_on_or_off(tmp_path):
    with pytest.raises(TargetError, match="0 \\(off\\) or 1 \\(on\\)"):
        config_of(tmp_path, "6.1.4", tcp_main_threads=4)


def test_versions_that_know_it():
    assert [knows_tcp_main_threads(v) for v in ("6.1.0", "6.1.4", "7.0.0", "6.0.9", "5.8.4",
                                                 None, "")] == [True] * 3 + [False] * 4


@pytest.mark.skipif(not shutil.which("kamailio"), reason="kamailio not installed")
def test_cli_refuses_threads_on_debian_5_6_in_one_line(tmp_path):
    r = tlsharness("target", "kamailio", "--tcp-main-threads", "1", "--duration", "1",
                   "--out", str(tmp_path), timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "has no tcp_main_threads" in r.stderr
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------ the build step, refusing

def _build(tmp_path, *args):
    return tlsharness("servers", "build", "kamailio", *args, timeout=60,
                      env={"TLSH_CACHE": str(tmp_path / "cache")})


def _left(tmp_path) -> list:
    """Whatever a build left in the cache, hidden work folders included."""
    d = tmp_path / "cache" / "servers"
    return list(d.iterdir()) if d.is_dir() else []


def test_build_without_a_source_says_what_to_pass(tmp_path):
    r = _build(tmp_path)
    assert r.returncode == 2 and "--from-source" in r.stderr and r.stderr.count("\n") == 1


def test_build_of_a_tarball_that_is_not_kamailio_leaves_nothing(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "README").write_text("not kamailio\n")
    tgz = tmp_path / "x.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(tmp_path / "x", arcname="x")
    r = _build(tmp_path, "--from-source", str(tgz))
    assert r.returncode == 3 and "no Kamailio tree" in r.stderr and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr and not _left(tmp_path)
    r = _build(tmp_path, "--from-source", str(tmp_path / "x"))          # a tree, not Kamailio's
    assert r.returncode == 3 and "no Kamailio tree" in r.stderr and not _left(tmp_path)
    r = _build(tmp_path, "--from-source", str(tmp_path / "missing.tar.gz"))
    assert r.returncode == 3 and "no such file" in r.stderr and not _left(tmp_path)


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", ""])
def test_build_names_are_names(tmp_path, name):
    r = _build(tmp_path, "--from-source", str(tmp_path), "--name", name)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and not _left(tmp_path)


def test_unknown_build_name_lists_what_there_is(tmp_path):
    r = tlsharness("target", "kamailio", "--kamailio-build", "nope", "--out", str(tmp_path),
                   timeout=60, env={"TLSH_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 2 and "no such build" in r.stderr and r.stderr.count("\n") == 1


# ------------------------------------------------------------ a 6.1 build, running

def build_61() -> dict | None:
    root = Path(os.environ.get("TLSH_KAMAILIO_CACHE") or "/nonexistent")
    for j in sorted(root.glob("servers/*/build.json")):
        info = json.loads(j.read_text())
        if info.get("server") == "kamailio" and knows_tcp_main_threads(info.get("kamailio_version")) \
                and Path(info["binary"]).is_file():
            return info | {"cache": str(root)}
    return None


def kamailio_procs(binary: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["exe", "status"])
            if p.info["exe"] == binary and p.info["status"] != psutil.STATUS_ZOMBIE]


@pytest.mark.stress
def test_61_with_tcp_main_threads_passes_a_short_healthy_run(tmp_path):
    b = build_61()
    if b is None:
        pytest.skip("no Kamailio 6.1 build (set TLSH_KAMAILIO_CACHE to a cache holding one: "
                    "tlsharness servers build kamailio --from-source kamailio-6.1.4.tar.gz)")
    r = tlsharness("target", "kamailio", "--kamailio-build", b["name"], "--tcp-main-threads", "1",
                   "--workers", "1", "--duration", "4", "--json", "-q", "--out", str(tmp_path),
                   timeout=180, env={"TLSH_CACHE": b["cache"]})
    assert "Traceback" not in r.stderr, r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == "pass", out["reason"]
    assert out["replies"] > 100 and out["bad"] == 0
    run = Path(out["run_dir"])
    assert "tcp_main_threads=1" in (run / "kamailio.cfg").read_text().splitlines()
    logs = " ".join(p.read_text(errors="replace") for p in run.glob("*.log"))
    assert "tcp main processing threads prepared" in logs       # the server took it
    assert not kamailio_procs(b["binary"])
