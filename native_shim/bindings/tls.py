"""The adapter entry points every TLS extension exports under the same names
(each extension is its own RTLD_LOCAL module, so the names never clash):
this is the whole contract the stand and the probe rely on."""

SOURCES = ["prefork.c"]

HEADERS = ["tlsh_lib.h"]
