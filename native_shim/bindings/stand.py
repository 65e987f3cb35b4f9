"""The stand: listener and worker loop, library-independent (needs an adapter)."""

SOURCES = ["stand.c", "chan.c", "listener.c", "worker.c", "crash.c", "probe.c", "io_threads.c"]

HEADERS = ["tlsh_tls.h", "tlsh_stand.h"]
