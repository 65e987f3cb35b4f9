"""Scenarios name TLS 1.2 ciphers as OpenSSL does; a GnuTLS stand gets the
same suites as a priority string (harness/builds/ciphers.py)."""
import json

import pytest

from support import tlsharness
from harness.builds import backends, ciphers


@pytest.mark.parametrize("name, want", [
    ("ECDHE-ECDSA-AES128-SHA256", "NONE:+ECDHE-ECDSA:+AES-128-CBC:+SHA256"),
    ("ECDHE-RSA-AES256-GCM-SHA384", "NONE:+ECDHE-RSA:+AES-256-GCM:+AEAD"),
    ("AES128-SHA", "NONE:+RSA:+AES-128-CBC:+SHA1"),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", "NONE:+ECDHE-ECDSA:+CHACHA20-POLY1305:+AEAD"),
])
def test_openssl_names_become_priority_elements(name, want):
    got = ciphers.gnutls_priority(name)
    assert got.startswith(want + ":") and got.endswith("+COMP-NULL:+SIGN-ALL:+GROUP-ALL")


def test_a_list_keeps_each_element_once():
    got = ciphers.gnutls_priority("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384")
    assert got.split(":")[:5] == ["NONE", "+ECDHE-ECDSA", "+AES-128-CBC", "+AES-256-CBC", "+SHA256"]


def test_priority_strings_and_the_default_pass_unchanged():
    assert ciphers.gnutls_priority("") == ""
    assert ciphers.gnutls_priority("NORMAL:-CIPHER-ALL:+AES-128-GCM") == "NORMAL:-CIPHER-ALL:+AES-128-GCM"
    assert ciphers.for_kind("openssl", "ECDHE-ECDSA-AES128-SHA256") == "ECDHE-ECDSA-AES128-SHA256"


@pytest.mark.parametrize("bad", ["DES-CBC3-SHA", "ECDHE-ECDSA-AES128-POLY1305", "FOO"])
def test_a_name_without_an_equivalent_is_an_error_naming_it(bad):
    with pytest.raises(ciphers.CipherError, match=bad):
        ciphers.gnutls_priority(bad)


needs_gnutls = pytest.mark.skipif(not backends.availability().get("gnutls", (False,))[0],
                                  reason="gnutls not built")


@needs_gnutls
@pytest.mark.parametrize("cipher, verdict", [("ECDHE-ECDSA-AES128-SHA256", "pass"),
                                             ("DES-CBC3-SHA", "unsupported")])
def test_a_gnutls_stand_takes_openssl_names_or_says_which_it_cannot(tmp_path, cipher, verdict):
    r = tlsharness("run", "--lib", "gnutls", "--memory", "private", "--tls", "1.2",
                   "--ciphers", cipher, "--duration", "1.5", "--json", "-q",
                   "--out", str(tmp_path), timeout=60)
    out = json.loads(r.stdout)
    assert out["verdict"] == verdict, r.stdout + r.stderr
    if verdict == "pass":
        assert out["replies"] > 0
    else:
        assert cipher in out["reason"]
