/* Mitigation "prefork-thread" (Kamailio tls_threads_mode=1): initialise the
 * library and create the contexts in a throwaway thread, so that no
 * thread-local state of the main thread (error queue, per-thread DRBGs) is
 * created before fork and inherited by every worker as the same object. */
#define _GNU_SOURCE
#include "tlsh_lib.h"
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct prefork_job {
    const char *cert, *key, *ciphers;
    int flags, tls, tickets, nctx, ok;
    void **ctxs;
    char *err;
    size_t errlen;
};

static void *prefork_main(void *p)
{
    struct prefork_job *j = p;
    if (tlsh_lib_init(j->flags) != 0) {
        snprintf(j->err, j->errlen, "library initialisation failed");
        return NULL;
    }
    for (int i = 0; i < j->nctx; i++) {
        j->ctxs[i] = tlsh_lib_ctx_new(j->cert, j->key, j->tls, j->ciphers, j->tickets, j->err, j->errlen);
        if (!j->ctxs[i]) return NULL;
    }
    j->ok = 1;
    return NULL;
}

int tlsh_prefork_thread_init(int init_flags, const char *cert, const char *key, int tls,
                             const char *ciphers, int tickets, int nctx, void **ctxs, char *err,
                             size_t errlen)
{
    struct prefork_job j = { cert, key, ciphers, init_flags, tls, tickets, nctx, 0, ctxs, err, errlen };
    pthread_t t;
    err[0] = 0;
    if (pthread_create(&t, NULL, prefork_main, &j) != 0) {
        snprintf(err, errlen, "pthread_create failed");
        return -1;
    }
    pthread_join(t, NULL);     /* the thread's thread-local state ends with it */
    return j.ok ? 0 : -1;
}
