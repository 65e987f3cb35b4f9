"""wolfSSL adapter."""
SOURCES = ["tls_wolfssl.c"]
INCLUDES = ""
TYPES = ""
FUNCTIONS = ""
CUSTOMIZATIONS = ""
