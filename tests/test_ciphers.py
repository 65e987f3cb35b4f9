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
def test_a_gnutls_stand_serves_an_openssl_named_cipher(tmp_path):
    r = tlsharness("run", "--lib", "gnutls", "--memory", "private", "--tls", "1.2",
                   "--ciphers", "ECDHE-ECDSA-AES128-SHA256", "--duration", "1.5", "--json", "-q",
                   "--out", str(tmp_path), timeout=60)
    out = json.loads(r.stdout)
    assert out["verdict"] == "pass" and out["replies"] > 0, r.stdout + r.stderr


@needs_gnutls
def test_a_gnutls_stand_says_unsupported_for_a_cipher_it_cannot_name(tmp_path):
    r = tlsharness("run", "--lib", "gnutls", "--memory", "private", "--tls", "1.2",
                   "--ciphers", "DES-CBC3-SHA", "--duration", "1", "--json", "-q",
                   "--out", str(tmp_path), timeout=60)
    out = json.loads(r.stdout)
    assert out["verdict"] == "unsupported", r.stdout + r.stderr
    assert "DES-CBC3-SHA" in json.dumps(out)
