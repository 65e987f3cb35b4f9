"""GnuTLS adapter."""
SOURCES = ["tls_gnutls.c"]
HEADERS = []     # the contract: tls.py
