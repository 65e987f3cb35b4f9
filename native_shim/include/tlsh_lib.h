/* The entry points of one TLS library adapter (tls_<lib>.c).  Every TLS
 * extension exports exactly these names: one contract for all libraries.
 * One convention throughout: 0 on success, negative on failure.  What only
 * some libraries (or builds) can do is in the optional table, NULL where
 * this one cannot: the caller asks the table, no adapter carries stubs. */
#ifndef TLSH_LIB_H
#define TLSH_LIB_H
#include <stddef.h>
#include "tlsh_arena.h"
#include "tlsh_tls.h"

/* cffi:begin */
struct tlsh_lib_caps {
    int alloc_hook;        /* 1: the library has a settable allocator */
    int lock_hook;         /* 1: the library has a settable lock implementation */
    int tls13;             /* 1: TLS 1.3 available in this build */
    int write_dup;         /* 1: wolfSSL_write_dup available */
    char flags[200];       /* build flags that matter, as text */
};

/* How set_lock_counting counts: through the library's lock hook, or by
 * wrapping lock functions it exports as pointers. */
enum tlsh_lock_counting { TLSH_LOCKS_UNCOUNTED = 0, TLSH_LOCKS_BY_HOOK = 1,
                          TLSH_LOCKS_BY_WRAPPING = 2 };

struct tlsh_lib_optional {
    /* Point the library's allocator at the arena; negative: refused (the
     * library has allocated already).  Must be the first call into it. */
    int (*hook)(tlsh_arena *a);
    /* The library used on the calling thread as a server's other modules
     * use it before fork (random bytes, a digest, errors on the queue). */
    int (*parent_use)(void);
    /* Mitigation atfork-stop: pthread_atfork(prepare = the library's
     * per-thread cleanup). */
    int (*atfork_stop)(void);
    /* The RAND method wrapped in a shared-memory lock: mode 1 non-recursive
     * (OpenSIPS #1953), 2 re-entrant per process (locked RAND method);
     * then its calls, and those made while the process held the lock. */
    int (*rand_wrap)(int mode);
    unsigned long (*rand_calls)(void);
    unsigned long (*rand_reentries)(void);
    /* Probe: count the library's lock calls (before init), then read them. */
    int (*set_lock_counting)(int on);
    unsigned long (*lock_calls)(void);
    int lock_counting_by;  /* tlsh_lock_counting */
    /* wolfSSL_write_dup: after the handshake, a session for writing only;
     * the original then only reads.  NULL: failed. */
    void *(*write_dup)(void *sess);
    /* Mitigation warm-methods: every digest and cipher method table the TLS
     * code may use set up in the parent, before fork (where a library fills
     * them on first use, in each process's own memory). */
    int (*warm_methods)(void);
};

enum { TLSH_INIT_NO_ATEXIT = 1 };   /* mitigation no-atexit: no cleanup handler at exit */

const struct tlsh_lib_optional *tlsh_lib_optional(void);
int tlsh_lib_init(int flags);
void tlsh_lib_ctx_free(void *ctx);
const char *tlsh_lib_version(void);
/* NULL on failure, err saying why; a message that begins "cipher list" means
 * the build offers none of the ciphers asked for (the run is unsupported). */
void *tlsh_lib_ctx_new(const char *cert, const char *key, int tls_version,
                       const char *ciphers, int tickets, char *err, size_t errlen);
const struct tlsh_tls_ops *tlsh_lib_ops(void);
void tlsh_lib_caps(struct tlsh_lib_caps *out);
/* Mitigation "prefork-thread": init + contexts in a throwaway thread.
 * Returns 0 when done, -1 on failure (err says why). */
int tlsh_prefork_thread_init(int init_flags, const char *cert, const char *key, int tls,
                             const char *ciphers, int tickets, int nctx, void **ctxs, char *err,
                             size_t errlen);
/* cffi:end */
#endif
