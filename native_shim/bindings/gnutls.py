"""GnuTLS adapter."""
SOURCES = ["tls_gnutls.c"]
INCLUDES = ""
TYPES = ""
FUNCTIONS = ""
CUSTOMIZATIONS = ""
