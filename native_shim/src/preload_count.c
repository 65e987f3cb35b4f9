/* LD_PRELOAD counter for the probe: how many thread-local keys, mutexes and
 * rwlocks a library creates.  Counts every call in the process; the probe
 * reads deltas around the library's own calls. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>

struct tlsh_count { unsigned long key_create, mutex_init, rwlock_init, pshared_requests; };
struct tlsh_count tlsh_count;

struct tlsh_count *tlsh_count_get(void) { return &tlsh_count; }

int pthread_key_create(pthread_key_t *k, void (*d)(void *))
{
    static int (*real)(pthread_key_t *, void (*)(void *));
    if (!real) real = dlsym(RTLD_NEXT, "pthread_key_create");
    __atomic_add_fetch(&tlsh_count.key_create, 1, __ATOMIC_RELAXED);
    return real(k, d);
}

int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a)
{
    static int (*real)(pthread_mutex_t *, const pthread_mutexattr_t *);
    if (!real) real = dlsym(RTLD_NEXT, "pthread_mutex_init");
    __atomic_add_fetch(&tlsh_count.mutex_init, 1, __ATOMIC_RELAXED);
    int ps = 0;
    if (a && pthread_mutexattr_getpshared(a, &ps) == 0 && ps == PTHREAD_PROCESS_SHARED)
        __atomic_add_fetch(&tlsh_count.pshared_requests, 1, __ATOMIC_RELAXED);
    return real(m, a);
}

int pthread_rwlock_init(pthread_rwlock_t *l, const pthread_rwlockattr_t *a)
{
    static int (*real)(pthread_rwlock_t *, const pthread_rwlockattr_t *);
    if (!real) real = dlsym(RTLD_NEXT, "pthread_rwlock_init");
    __atomic_add_fetch(&tlsh_count.rwlock_init, 1, __ATOMIC_RELAXED);
    return real(l, a);
}
