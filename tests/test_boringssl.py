"""BoringSSL (Debian's Android snapshot, `make libs LIBS=boringssl`): its
allocator is replaced at link time, its method tables are filled on first use
in each process's memory, and it has no CBC-SHA256 suites.  Each is measured
here, not assumed."""
import json
from pathlib import Path

import pytest

from support import tlsharness
from harness.builds import backends

AVAIL = backends.availability()
needs_boringssl = pytest.mark.skipif(not AVAIL.get("boringssl", (False,))[0],
                                     reason="boringssl not built (make libs LIBS=boringssl)")


def run(tmp_path, *args, timeout=90):
    r = tlsharness("run", *args, "--json", "-q", "--out", str(tmp_path), timeout=timeout)
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise AssertionError(r.stdout + r.stderr) from None


@needs_boringssl
@pytest.mark.stress
def test_a_worker_calling_an_empty_method_table_is_named(tmp_path):
    out = run(tmp_path, "lazy-method-tables", "--lib", "boringssl", "--duration", "4")
    assert out["verdict"] in ("crash", "mixed"), out["reason"]
    assert "method table not set up in this process" in out["families"], out["families"]
    verdict = json.loads((Path(out["run_dir"]) / "verdict.json").read_text())
    tops = [s["top"] for s in verdict["stacks"] if s["role"] == "crashed"]
    assert any(t[:2] == ["<bad code pointer>", "EVP_DigestUpdate"] for t in tops), tops


@needs_boringssl
@pytest.mark.stress
def test_warm_methods_cures_it(tmp_path):
    out = run(tmp_path, "lazy-method-tables", "--lib", "boringssl", "--mitigate", "warm-methods",
              "--duration", "4")
    assert out["verdict"] == "pass" and out["replies"] > 10000, out["reason"]


@needs_boringssl
def test_a_cipher_the_build_lacks_is_unsupported_not_an_error(tmp_path):
    out = run(tmp_path, "headline-spinners", "--lib", "boringssl", "--duration", "2")
    assert out["verdict"] == "unsupported"
    assert "ECDHE-ECDSA-AES128-SHA256" in out["reason"]


def test_warm_methods_on_a_library_without_method_tables_is_unsupported(tmp_path):
    if not AVAIL.get("wolfssl", (False,))[0]:
        pytest.skip("wolfssl not built")
    out = run(tmp_path, "--lib", "wolfssl", "--memory", "private", "--mitigate", "warm-methods",
              "--duration", "1")
    assert out["verdict"] == "unsupported" and "warm-methods" in out["reason"]
