"""Bad input gets one clear line and a non-zero exit, never a traceback."""
import pytest

from support import tlsharness


@pytest.mark.parametrize("args,needle", [
    (["run", "--workers", "0"], "--workers must be between 1 and 254"),
    (["run", "--memory", "heap"], "--memory must be one of shared, private"),
    (["run", "--handoff", "sometimes"], "--handoff must be one of"),
    (["run", "--lock", "mutex"], "--lock must be one of spin, futex, robust"),
    (["run", "--tls", "1.1"], "--tls must be 1.2 or 1.3"),
    (["run", "--lib", "nosuchtls"], "unknown --lib 'nosuchtls'"),
    (["run", "--duration", "-1"], "--duration must be between"),
    (["run", "--fault", "explode"], "--fault kind must be one of"),
    (["run", "--fault", "block:x"], "--fault takes KIND[:WORKER[:AFTER_MS]]"),
    (["run", "--fault", "block:9"], "--fault worker must be 1..4"),
    (["run", "--workers", "four"], "invalid int value"),
    (["nosuchcommand"], "invalid choice"),
])
def test_bad_flags_one_line_exit_2(args, needle, tmp_path):
    r = tlsharness(*args, "--out", str(tmp_path), timeout=30) if args[0] == "run" else \
        tlsharness(*args, timeout=30)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.iterdir())        # nothing started, nothing written


def test_unwritable_results_dir_is_one_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = tlsharness("run", "--duration", "1", "--out", str(f / "sub"), timeout=30)
    assert r.returncode == 2 and "--out" in r.stderr        # a usage error that names --out
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_libs_lists_every_library_with_its_state():
    r = tlsharness("libs", timeout=30)
    assert r.returncode == 0
    rows = {l.split()[0]: l for l in r.stdout.splitlines()}
    assert set(rows) >= {"openssl", "wolfssl", "mbedtls", "gnutls"}
    assert "built" in rows["openssl"]


def test_every_option_has_a_help_line(monkeypatch):
    import argparse
    from harness import cli
    seen = {}

    def grab(self, args=None, namespace=None):
        seen["p"] = self
        raise SystemExit(0)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", grab)
    try:
        cli.main(["libs"])
    except SystemExit:
        pass
    sub = next(a for a in seen["p"]._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {x.option_strings[0] if x.option_strings else x.dest}"
               for name, sp in sub.choices.items() for x in sp._actions if x.help is None]
    assert not missing
