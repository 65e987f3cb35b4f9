"""Library-independent pieces: arena, locks, status segment layout and
activity names, SIP, process helpers."""

SOURCES = ["arena.c", "lock.c", "sip.c", "status.c", "util.c"]

HEADERS = ["tlsh_arena.h", "tlsh_lock.h", "tlsh_status.h", "tlsh_sip.h", "tlsh_util.h"]
