"""OpenSSL adapter (libssl/libcrypto 1.1.1 or 3.x, or a compatible fork)."""
SOURCES = ["tls_openssl.c", "openssl_server.c"]
HEADERS = []     # the contract: tls.py
