"""wolfSSL adapter."""
SOURCES = ["tls_wolfssl.c"]
HEADERS = []     # the contract: tls.py
