/* The entry points of one TLS library adapter (tls_<lib>.c).  Every TLS
 * extension exports exactly these names: one contract for all libraries. */
#ifndef TLSH_LIB_H
#define TLSH_LIB_H
#include <stddef.h>
#include "tlsh_arena.h"
#include "tlsh_tls.h"

struct tlsh_lib_caps {
    int alloc_hook;
    int lock_hook;
    int tls13;
    int write_dup;
    char flags[200];
};

/* Point the library's allocator at the arena: 1 done, 0 refused, -1 the
 * library has no such hook.  Must be the first call into the library. */
int tlsh_lib_hook(tlsh_arena *a);
enum { TLSH_INIT_NO_ATEXIT = 1 };   /* mitigation no-atexit: no cleanup handler at exit */
int tlsh_lib_init(int flags);                  /* 1 ok */
void tlsh_lib_ctx_free(void *ctx);
/* The library used on the calling thread as a server's other modules use it
 * before fork (random bytes, a digest, errors on the queue).  0 ok. */
int tlsh_lib_parent_use(void);
/* Mitigation atfork-stop: pthread_atfork(prepare = the library's per-thread
 * cleanup).  1 installed, 0 failed, -1 the library has no per-thread state
 * to stop. */
int tlsh_lib_atfork_stop(void);
/* The RAND method wrapped in a shared-memory lock: mode 1 non-recursive
 * (OpenSIPS #1953), 2 re-entrant per process (locked RAND method).
 * 1 installed, 0 failed, -1 the library has no replaceable RAND method. */
int tlsh_lib_rand_wrap(int mode);
unsigned long tlsh_lib_rand_reentries(void);
unsigned long tlsh_lib_rand_calls(void);
const char *tlsh_lib_version(void);
void *tlsh_lib_ctx_new(const char *cert, const char *key, int tls_version,
                       const char *ciphers, int tickets, char *err, size_t errlen);
const struct tlsh_tls_ops *tlsh_lib_ops(void);
void tlsh_lib_caps(struct tlsh_lib_caps *out);
/* Lock hook measurement (probe): install counting lock callbacks where the
 * library has a lock hook; returns 1 if installed through the hook, 2 if
 * only by wrapping exported function pointers, -1 if neither is possible. */
int tlsh_lib_set_lock_counting(int on);
unsigned long tlsh_lib_lock_calls(void);
/* Mitigation "prefork-thread": init + contexts in a throwaway thread. */
int tlsh_prefork_thread_init(int init_flags, const char *cert, const char *key, int tls,
                             const char *ciphers, int tickets, int nctx, void **ctxs, char *err,
                             size_t errlen);
#endif
