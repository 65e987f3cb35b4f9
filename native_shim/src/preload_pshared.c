/* Mitigation "pshared": the servers' fix for the lost wake-up (OpenSIPS
 * ssl_tweaks.h, Kamailio TLS_PTHREAD_MUTEX_SHARED).  Interposes
 * pthread_mutex_init and pthread_rwlock_init so that every lock the TLS
 * library creates is PTHREAD_PROCESS_SHARED.  Only works from the
 * executable or an LD_PRELOAD library, as here. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>

unsigned long tlsh_pshared_forced;

int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a)
{
    static int (*real)(pthread_mutex_t *, const pthread_mutexattr_t *);
    if (!real) real = dlsym(RTLD_NEXT, "pthread_mutex_init");
    pthread_mutexattr_t attr;
    int type = PTHREAD_MUTEX_DEFAULT;
    if (a) pthread_mutexattr_gettype(a, &type);
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, type);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    int r = real(m, &attr);
    pthread_mutexattr_destroy(&attr);
    __atomic_add_fetch(&tlsh_pshared_forced, 1, __ATOMIC_RELAXED);
    return r;
}

int pthread_rwlock_init(pthread_rwlock_t *l, const pthread_rwlockattr_t *a)
{
    static int (*real)(pthread_rwlock_t *, const pthread_rwlockattr_t *);
    if (!real) real = dlsym(RTLD_NEXT, "pthread_rwlock_init");
    pthread_rwlockattr_t attr;
    int kind = PTHREAD_RWLOCK_PREFER_READER_NP;
    if (a) pthread_rwlockattr_getkind_np(a, &kind);
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, kind);
    pthread_rwlockattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    int r = real(l, &attr);
    pthread_rwlockattr_destroy(&attr);
    __atomic_add_fetch(&tlsh_pshared_forced, 1, __ATOMIC_RELAXED);
    return r;
}
