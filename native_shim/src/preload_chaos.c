/* Contention amplifier (chaos mode, in the spirit of rr's chaos scheduling):
 * after acquiring a pthread lock that lives in the shared arena, sleep
 * DELAY_US with probability P, so that rare cross-process races become
 * quick, and a fix can be shown to hold under pressure.
 * TLSH_CHAOS="P:DELAY_US"; the arena range is set by the stand before fork
 * through tlsh_chaos_arena().
 *
 * A server tlsharness did not build (`target ... --chaos`) sets no range:
 * with TLSH_CHAOS_SHARED=1 a lock counts when it lies in any shared mapping
 * of the process ('s' in /proc/self/maps: the server's shared memory, made
 * before fork).  The maps are read with raw open/read into a static buffer
 * (no malloc, no stdio locks inside a lock wrapper), once per process and
 * again at most every 100 ms when an address is in none of the ranges known. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
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

#define MAX_SHARED 32
static struct { uintptr_t lo, hi; } shared[MAX_SHARED];
static int nshared, foreign, maps_busy;
static pid_t maps_pid;
static int64_t maps_ns;
static char maps_buf[1 << 16];

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static uintptr_t hex(const char **p)
{
    uintptr_t v = 0;
    for (;; (*p)++) {
        char c = **p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return v;
        v = v * 16 + (uintptr_t)d;
    }
}

/* "lo-hi perms ..." lines; the ranges whose permissions end in 's' */
static void read_shared_maps(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    size_t len = 0;
    ssize_t r;
    while (len < sizeof maps_buf - 1 && (r = read(fd, maps_buf + len, sizeof maps_buf - 1 - len)) > 0)
        len += (size_t)r;
    close(fd);
    maps_buf[len] = 0;
    nshared = 0;
    for (const char *p = maps_buf; *p && nshared < MAX_SHARED;) {
        uintptr_t a = hex(&p);
        if (*p++ != '-') break;
        uintptr_t b = hex(&p);
        if (*p == ' ' && p[1] && p[2] && p[3] && p[4] == 's') {
            shared[nshared].lo = a;
            shared[nshared].hi = b;
            nshared++;
        }
        while (*p && *p != '\n') p++;
        if (*p) p++;
    }
}

static int in_shared(uintptr_t a)
{
    pid_t me = getpid();
    for (int pass = 0; pass < 2; pass++) {
        if (maps_pid == me)
            for (int i = 0; i < nshared; i++)
                if (a >= shared[i].lo && a < shared[i].hi) return 1;
        int64_t t = now_ns();
        if (pass || (maps_pid == me && t - maps_ns < 100000000)) return 0;
        if (__atomic_exchange_n(&maps_busy, 1, __ATOMIC_ACQUIRE)) return 0;  /* another thread */
        read_shared_maps();
        maps_pid = me;
        maps_ns = t;
        __atomic_store_n(&maps_busy, 0, __ATOMIC_RELEASE);
    }
    return 0;
}

__attribute__((constructor)) static void chaos_from_env(void)
{
    const char *f = getenv("TLSH_CHAOS_SHARED");
    if (f && *f == '1') {
        foreign = 1;
        tlsh_chaos_arena(0, 0);
    }
}

static void maybe_delay(const void *lock)
{
    uintptr_t a = (uintptr_t)lock;
    if (!threshold || (foreign ? !in_shared(a) : (a < lo || a >= hi)))
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
