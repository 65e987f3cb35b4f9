"""A TLS 1.2 cipher list in OpenSSL's names, as scenarios and --ciphers give
it, in the words of a library that has other names (GnuTLS priority
strings).  OpenSSL, its forks and wolfSSL take OpenSSL's names as they are;
mbed TLS's adapter ignores the list.

    ECDHE-ECDSA-AES128-SHA256  ->  NONE:+VERS-TLS1.2:+ECDHE-ECDSA:+AES-128-CBC:+SHA256:...

A priority string allows every combination of its elements: one suite is
that suite exactly; a list of several may allow combinations it did not name.
A name that cannot be read is an error naming it, never a silent default.
"""
from __future__ import annotations

import re

# OpenSSL's suite names: [KX-[AUTH-]]CIPHER[-MODE]-MAC
_SUITE = re.compile(r"^(?:(ECDHE|DHE)-(ECDSA|RSA)-)?(AES128|AES256|CHACHA20)(-GCM)?"
                    r"-(SHA|SHA256|SHA384|POLY1305)$")
_MAC = {"SHA": "SHA1", "SHA256": "SHA256", "SHA384": "SHA384"}
# already GnuTLS's words: a priority string is passed on as it is
_GNUTLS_WORDS = re.compile(r"^(NORMAL|SECURE128|SECURE192|SECURE256|PERFORMANCE|NONE|PFS|"
                           r"LEGACY|@)|[+!%]")


class CipherError(ValueError):
    pass


def _gnutls_parts(name: str) -> tuple[str, str, str]:
    m = _SUITE.match(name)
    if not m:
        raise CipherError(f"cipher {name!r}: no GnuTLS equivalent known (give a GnuTLS "
                          "priority string instead)")
    kx, auth, cipher, gcm, mac = m.groups()
    kx = f"{kx}-{auth}" if kx else "RSA"
    if cipher == "CHACHA20":
        if mac != "POLY1305":
            raise CipherError(f"cipher {name!r}: ChaCha20 comes only with Poly1305")
        return kx, "CHACHA20-POLY1305", "AEAD"
    if mac == "POLY1305":
        raise CipherError(f"cipher {name!r}: Poly1305 comes only with ChaCha20")
    bits = cipher[3:]
    if gcm:
        return kx, f"AES-{bits}-GCM", "AEAD"
    return kx, f"AES-{bits}-CBC", _MAC[mac]


def gnutls_priority(openssl_list: str) -> str:
    """The GnuTLS priority elements for an OpenSSL cipher list (without the
    protocol version, which the adapter adds); '' stays '' (the default)."""
    text = openssl_list.strip()
    if not text or _GNUTLS_WORDS.search(text):
        return text
    kxs, ciphers, macs = [], [], []
    for name in (n for n in re.split(r"[:, ]+", text) if n):
        for item, into in zip(_gnutls_parts(name), (kxs, ciphers, macs)):
            if item not in into:
                into.append(item)
    return ":".join(["NONE", *(f"+{k}" for k in kxs), *(f"+{c}" for c in ciphers),
                     *(f"+{m}" for m in macs), "+COMP-NULL", "+SIGN-ALL", "+GROUP-ALL"])


def for_kind(kind: str, openssl_list: str) -> str:
    """The list in the words of a library of `kind`."""
    return gnutls_priority(openssl_list) if kind == "gnutls" else openssl_list
