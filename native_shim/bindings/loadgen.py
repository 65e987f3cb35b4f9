"""Load generator: native epoll client loop (tlsh_loadgen_run)."""

SOURCES = ["loadgen.c"]

HEADERS = ["tlsh_loadgen.h"]
