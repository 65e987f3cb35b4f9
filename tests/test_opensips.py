"""Real OpenSIPS as a target: the build step's refusals (no build needed),
and runs on builds made from a release tarball.  The builds are found in
the cache named by $TLSH_OPENSIPS_CACHE (CI builds 3.6.8 there, shipped and
without its pshared override); without it those tests skip, saying so."""
import json
import os
import tarfile
from pathlib import Path

import psutil
import pytest

from support import tlsharness

CACHE = os.environ.get("TLSH_OPENSIPS_CACHE")


def builds() -> dict:
    out = {}
    for j in Path(CACHE or "/nonexistent").glob("servers/*/build.json"):
        info = json.loads(j.read_text())
        out[info["name"]] = info
    return out


def need(pred, what):
    hit = next((i for i in builds().values() if pred(i)), None)
    if hit is None:
        pytest.skip(f"no OpenSIPS build {what} (set TLSH_OPENSIPS_CACHE to a cache holding one: "
                    "tlsharness servers build opensips --from-source opensips-3.6.8.tar.gz)")
    return hit


def opensips_procs() -> list[int]:
    return [p.pid for p in psutil.process_iter(["name", "status"])
            if p.info["name"] == "opensips" and p.info["status"] != psutil.STATUS_ZOMBIE]


def target(tmp_path, *args, timeout=180):
    r = tlsharness("target", "opensips", "--json", "-q", "--out", str(tmp_path / "res"), *args,
                   timeout=timeout, env={"TLSH_CACHE": CACHE or str(tmp_path / "cache")})
    assert "Traceback" not in r.stderr, r.stderr
    return r


# ------------------------------------------------------------ the build step, refusing

def _build(tmp_path, *args):
    return tlsharness("servers", "build", "opensips", *args, timeout=60,
                      env={"TLSH_CACHE": str(tmp_path / "cache")})


def test_build_without_a_source_says_what_to_pass(tmp_path):
    r = _build(tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--from-source" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_build_of_a_tarball_that_is_not_opensips_leaves_nothing(tmp_path):
    src = tmp_path / "other"
    src.mkdir()
    (src / "README").write_text("not a server\n")
    tar = tmp_path / "other.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(src, arcname="other-1.0")
    for given, words in ((tar, "no OpenSIPS tree"), (tmp_path / "missing.tar.gz", "no such file"),
                         (tmp_path / "other", "no OpenSIPS tree")):
        r = _build(tmp_path, "--from-source", str(given))
        assert r.returncode != 0 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    left = list((tmp_path / "cache" / "servers").iterdir()) if (tmp_path / "cache" / "servers").exists() else []
    assert left == [], left


@pytest.mark.parametrize("name", ["..", ".", "a/b", "/tmp/x"])
def test_build_names_are_names(tmp_path, name):
    r = _build(tmp_path, "--from-source", str(tmp_path), "--name", name)
    assert r.returncode == 2 and "build name" in r.stderr and "Traceback" not in r.stderr


def test_target_opensips_without_a_build_is_one_line(tmp_path):
    r = tlsharness("target", "opensips", "--out", str(tmp_path / "res"), timeout=30,
                   env={"TLSH_CACHE": str(tmp_path / "empty")})
    assert r.returncode == 2 and "no OpenSIPS build" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "res").exists()


# ------------------------------------------------------------ runs on real builds

@pytest.mark.stress
@pytest.mark.parametrize("load", ["churn", "persistent"])
def test_shipped_3_6_passes_and_names_its_processes(tmp_path, load):
    b = need(lambda i: i["version"].startswith("3.") and i["tls_lib"] == "openssl"
             and i["override"], "3.x with tls_openssl")
    r = target(tmp_path, "--opensips", b["name"], "--workers", "4", "--tls", "1.3",
               "--load", load, "--conns", "50", "--clients", "2", "--duration", "5")
    out = json.loads(r.stdout)
    assert out["verdict"] == "pass", out["reason"]
    assert out["replies"] > 500 and out["bad"] == 0
    assert out["rcv_requests"] >= out["replies"]            # OpenSIPS's own count, over MI
    assert out["server_build"]["pshared_override"]           # read from the binary
    roles = json.loads((Path(out["run_dir"]) / "roles.json").read_text())
    assert sorted(roles.values()).count("TCP receiver") == 4 and "TCP main" in roles.values()
    assert not opensips_procs()


@pytest.mark.stress
def test_without_the_override_the_lost_wake_up_is_named(tmp_path):
    """3.6 without ssl_tweaks.h: OpenSSL's rwlocks in shared memory are
    process-private.  Under churn with the contention amplifier (a 200 us
    sleep after 5% of the locks taken in shared memory) the hang comes within
    seconds; every hung run must name the lost wake-up and a stuck process by
    its OpenSIPS role."""
    b = need(lambda i: i["version"].startswith("3.") and i["tls_lib"] == "openssl"
             and not i["override"], "3.x with tls_openssl, without the override")
    assert not b["pshared_override"]
    hung = 0
    for _ in range(2):
        r = target(tmp_path, "--opensips", b["name"], "--workers", "4", "--tls", "1.3",
                   "--load", "churn", "--conns", "50", "--clients", "2", "--duration", "10",
                   "--chaos", "0.05:200")
        out = json.loads(r.stdout)
        assert out["verdict"] != "pass", "a pass without the override under the amplifier"
        assert not opensips_procs()
        if out["verdict"] in ("deadlock", "degraded", "mixed"):
            hung += 1
            assert "lost wake-up" in out["families"], out
            assert any(p["role"] in ("TCP receiver", "TCP main") for p in out["stuck"]), out["stuck"]
    assert hung >= 1


@pytest.mark.stress
def test_the_amplifier_alone_makes_no_hang_with_the_override(tmp_path):
    b = need(lambda i: i["version"].startswith("3.") and i["tls_lib"] == "openssl"
             and i["override"], "3.x with tls_openssl")
    r = target(tmp_path, "--opensips", b["name"], "--workers", "4", "--tls", "1.3",
               "--load", "churn", "--conns", "50", "--clients", "2", "--duration", "6",
               "--chaos", "0.05:200")
    out = json.loads(r.stdout)
    assert out["verdict"] == "pass", out["reason"]
