/* LD_PRELOAD counter for the probe: how many thread-local keys, mutexes and
 * rwlocks a library creates, and how many allocations it makes straight from
 * libc, past its own allocator hook (malloc, calloc, realloc called from the
 * code ranges the probe names: the TLS library's text).  Counts every call in
 * the process; the probe reads deltas around the library's own calls. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct tlsh_count { unsigned long key_create, mutex_init, rwlock_init, pshared_requests,
                    direct_allocs; };
struct tlsh_count tlsh_count;

struct tlsh_count *tlsh_count_get(void) { return &tlsh_count; }

#define MAX_RANGES 32
static struct { uintptr_t lo, hi; } ranges[MAX_RANGES];
static int nranges;

/* A code range [lo, hi) whose direct calls to the allocator are counted;
 * -1 when the table is full. */
int tlsh_count_watch(uintptr_t lo, uintptr_t hi)
{
    if (nranges >= MAX_RANGES) return -1;
    ranges[nranges].lo = lo;
    ranges[nranges].hi = hi;
    __atomic_store_n(&nranges, nranges + 1, __ATOMIC_RELEASE);
    return 0;
}

static inline void count_caller(const void *ret)
{
    uintptr_t a = (uintptr_t)ret;
    int n = __atomic_load_n(&nranges, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if (a >= ranges[i].lo && a < ranges[i].hi) {
            __atomic_add_fetch(&tlsh_count.direct_allocs, 1, __ATOMIC_RELAXED);
            return;
        }
}

/* glibc's own entry points: no dlsym (which allocates) on the way in */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

void *malloc(size_t n)
{
    count_caller(__builtin_return_address(0));
    return __libc_malloc(n);
}

void *calloc(size_t k, size_t n)
{
    count_caller(__builtin_return_address(0));
    return __libc_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    count_caller(__builtin_return_address(0));
    return __libc_realloc(p, n);
}

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
