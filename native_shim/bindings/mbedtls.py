"""mbed TLS adapter (2.x; 3.x with its own API differences handled in C)."""
SOURCES = ["tls_mbedtls.c"]
HEADERS = []     # the contract: tls.py
