/* Contention amplifier (chaos mode, in the spirit of rr's chaos scheduling):
 * after acquiring a pthread lock that lives in the shared arena, sleep
 * DELAY_US with probability P, so that rare cross-process races become
 * quick, and a fix can be shown to hold under pressure.
 * TLSH_CHAOS="P:DELAY_US"; the arena range is set by the stand before fork
 * through tlsh_chaos_arena(). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static uintptr_t lo, hi;
static uint32_t threshold;        /* P scaled to 2^32 */
static long delay_ns;
static __thread uint64_t rng;
static __thread pid_t rng_pid;
unsigned long tlsh_chaos_delays;

void tlsh_chaos_arena(uintptr_t base, size_t size)
{
    const char *e = getenv("TLSH_CHAOS");
    double p = 0;
    long us = 0;
    if (e) {
        p = strtod(e, (char **)&e);
        if (*e == ':') us = strtol(e + 1, NULL, 10);
    }
    threshold = p <= 0 ? 0 : p >= 1 ? UINT32_MAX : (uint32_t)(p * 4294967296.0);
    delay_ns = us * 1000;
    lo = base;
    hi = base + size;
}

static void maybe_delay(const void *lock)
{
    uintptr_t a = (uintptr_t)lock;
    if (!threshold || a < lo || a >= hi)
        return;
    pid_t me = getpid();
    if (rng_pid != me) { rng = (uint64_t)me * 0x9e3779b97f4a7c15ULL | 1; rng_pid = me; }
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    if ((uint32_t)rng < threshold) {
        struct timespec ts = { delay_ns / 1000000000L, delay_ns % 1000000000L };
        __atomic_add_fetch(&tlsh_chaos_delays, 1, __ATOMIC_RELAXED);
        nanosleep(&ts, NULL);
    }
}

#define WRAP(name, type)                                                   \
    int name(type *l)                                                      \
    {                                                                      \
        static int (*real)(type *);                                        \
        if (!real) real = dlsym(RTLD_NEXT, #name);                         \
        int r = real(l);                                                   \
        if (r == 0) maybe_delay(l);                                        \
        return r;                                                          \
    }

WRAP(pthread_mutex_lock, pthread_mutex_t)
WRAP(pthread_rwlock_wrlock, pthread_rwlock_t)
WRAP(pthread_rwlock_rdlock, pthread_rwlock_t)
