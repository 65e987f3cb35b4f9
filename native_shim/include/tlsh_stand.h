/* The stand: listener ("TCP main") and workers of an OpenSIPS-style
 * multi-process TLS server, with connections handed between processes.
 * This is what the supervisor (Python) sees; the stand's own state lives in
 * src/stand_internal.h. */
#ifndef TLSH_STAND_H
#define TLSH_STAND_H
#include <stddef.h>
#include "tlsh_arena.h"
#include "tlsh_status.h"
#include "tlsh_tls.h"

/* cffi:begin */
enum tlsh_memory { TLSH_MEM_SHARED = 0, TLSH_MEM_PRIVATE = 1 };
enum tlsh_handoff { TLSH_HANDOFF_PINNED = 0, TLSH_HANDOFF_PER_CONN = 1, TLSH_HANDOFF_PER_MSG = 2 };

/* Faults injected by the stand itself, independent of any TLS library
 * (used to test the watchdog). */
enum tlsh_fault_kind {
    TLSH_FAULT_NONE = 0,
    TLSH_FAULT_BLOCK = 1,     /* take the connection lock, then block forever */
    TLSH_FAULT_SPIN = 2,      /* take the connection lock, then spin forever */
    TLSH_FAULT_DIE = 3,       /* take the connection lock, then die (SIGKILL itself) */
    TLSH_FAULT_STOP = 4,      /* take the connection lock, then SIGSTOP itself */
    TLSH_FAULT_CRASH = 5,     /* SIGSEGV while serving */
    TLSH_FAULT_LEAK = 6,      /* from then on, 32 KiB of arena never freed per handshake */
};

struct tlsh_stand_cfg {
    int nworkers;
    int memory;          /* tlsh_memory */
    int handoff;         /* tlsh_handoff */
    int lock_flavor;     /* tlsh_lock_flavor */
    int max_conns;
    int port;            /* 0: ephemeral */
    int fault_kind;      /* tlsh_fault_kind */
    int fault_slot;      /* worker slot (1..nworkers) */
    int fault_after_ms;  /* after the stand became ready */
    char crash_dir[200]; /* where a crashing worker writes its own stack ("" = nowhere) */
    int global_lock;     /* one lock around all TLS work of a connection (OpenSIPS 3.2) */
    int check_random;    /* each worker draws 32 random bytes after fork and publishes them */
    int exit_on_term;    /* SIGTERM: leave through exit(), running atexit handlers (shutdown) */
    int reply_other;     /* replies written by another worker than the reader (per-message) */
    int split_locks;     /* a read lock and a write lock per connection (OpenSIPS tls_wolfssl) */
    int write_dup;       /* after the handshake the writers use the library's write duplicate */
    int io_model;        /* 0 processes (listener + workers), 1 threads (io_threads.c) */
    int io_threads;      /* threads: TLS I/O threads of the one I/O process */
    int session_concurrent; /* threads: a reader and a writer thread in one session at once */
};

struct tlsh_stand;

struct tlsh_stand *tlsh_stand_new(const struct tlsh_stand_cfg *cfg, struct tlsh_status *status,
                                  tlsh_arena *arena, char *err, size_t errlen);
int tlsh_stand_spawn_listener(struct tlsh_stand *st);
int tlsh_stand_spawn_worker(struct tlsh_stand *st, int slot, const struct tlsh_tls_ops *ops,
                            void *ctx);
/* cfg.write_dup: the library's write duplicate (its optional table's
 * write_dup), given before the workers are spawned. */
void tlsh_stand_set_write_dup(struct tlsh_stand *st, void *(*write_dup)(void *sess));
/* The stand's own process, from its first call into a library: on a fatal
 * signal write its stack to <dir>/crash--1-<pid>.txt (a crash in set-up). */
void tlsh_stand_crash_handler(const char *dir);
/* Supervisor: drop the fds that belong to listener and workers. */
void tlsh_stand_parent_close(struct tlsh_stand *st);
/* Supervisor: copy arena statistics and events into the status segment. */
void tlsh_stand_publish_arena(struct tlsh_stand *st);
/* Reload (Kamailio tls.reload): make ctx the context of new sessions; returns
 * the previous one (for the caller to free), under the context lock. */
void *tlsh_stand_swap_ctx(struct tlsh_stand *st, void *ctx, void (*free_old)(void *));
/* The probe: serve nconns real handshakes + one SIP exchange each. */
int tlsh_probe_serve(const struct tlsh_tls_ops *ops, void *ctx, int lfd, int nconns,
                     int timeout_ms, char *err, size_t errlen);
/* --io-model threads (io_threads.c): the one I/O process (slot 0 its
 * accepting main thread, slots nworkers+1.. its TLS threads, their tids as
 * the slots' pids) and the SIP workers (slots 1..nworkers, no TLS). */
int tlsh_stand_spawn_io(struct tlsh_stand *st, const struct tlsh_tls_ops *ops, void *ctx);
int tlsh_stand_spawn_sip(struct tlsh_stand *st, int slot);
/* cffi:end */

#endif
