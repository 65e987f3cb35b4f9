#define _GNU_SOURCE
/* Shared-memory arena allocator.
 *
 * Layout of the MAP_SHARED mapping:
 *   [struct tlsh_arena | heap: blocks carved by a bump pointer ... | unused]
 * Everything the allocator needs (lock, free lists, statistics, events ring,
 * per-process table) lives in struct tlsh_arena at the start of the mapping,
 * so every process forked after tlsh_arena_create() shares it.
 *
 * Block = 16-byte header + payload.  The payload capacity is given by a size
 * class: 16-byte steps up to 1 KiB (64 classes), then 4 classes per power of
 * two (waste bounded to 25%).  Freed blocks go to the list of their class;
 * the "next" link lives in the payload, the header stays intact (magic FREED
 * + pid of the freeing process) so that a second free is detected.
 * All list pointers are stored as offsets from the arena base. */
#include "tlsh_arena.h"
#include "relax.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define ARENA_MAGIC 0x544c5348415245ULL   /* "TLSHARE" */
#define BLK_LIVE 0xA11C0B1Cu
#define BLK_FREED 0xF4EEB10Cu
#define HDR_SIZE 16
#define MIN_ARENA (1u << 20)

#define SMALL_MAX 1024                  /* 16-byte steps up to here */
#define SMALL_CLASSES (SMALL_MAX / 16)  /* 64 */
#define SUB_BITS 2                      /* 4 classes per power of two */
#define N_CLASSES (SMALL_CLASSES + (64 - 10) * (1 << SUB_BITS))

#define REQ_BITS 48
#define REQ_MASK ((1ULL << REQ_BITS) - 1)
#define MAX_REQ (REQ_MASK - 4096)

struct blk_hdr {
    uint32_t magic;
    int32_t pid;   /* LIVE: allocating pid; FREED: freeing pid */
    uint64_t info; /* class << 48 | requested size */
};
_Static_assert(sizeof(struct blk_hdr) == HDR_SIZE, "header is 16 bytes");

struct tlsh_arena {
    uint64_t magic;
    uint64_t size;          /* bytes mapped */
    uint64_t heap_start;    /* offset of the first block */
    uint64_t top;           /* offset of the bump pointer */
    volatile int32_t lock;  /* test-and-set spinlock */
    int32_t skew;           /* 0, or 8: every block 8 bytes past a 16-byte boundary */
    uint64_t ev_next;       /* total events recorded; ring index = ev_next % MAX */
    struct tlsh_arena_stats st;
    uint64_t free_head[N_CLASSES]; /* offset of first free block's header, 0 = empty */
    struct tlsh_arena_event events[TLSH_ARENA_MAX_EVENTS];
    struct tlsh_arena_proc procs[TLSH_ARENA_MAX_PROCS];
};

tlsh_arena *tlsh_hook_arena = NULL;

/* ---- process-local state (reset in the child on fork) ------------------- */

static int proc_slot = -1;
static pid_t cached_pid = 0;

static void atfork_child(void)
{
    proc_slot = -1;
    cached_pid = 0;
}

__attribute__((constructor)) static void arena_init_once(void)
{
    pthread_atfork(NULL, NULL, atfork_child);
}

static inline pid_t my_pid(void)
{
    pid_t p = cached_pid;
    if (__builtin_expect(p == 0, 0))
        cached_pid = p = getpid();
    return p;
}

/* ---- spinlock (OpenSIPS FAST_LOCK with ADAPTIVE_WAIT) -------------------- */

static inline void arena_lock(struct tlsh_arena *a)
{
    int i = 1024;
    while (__atomic_exchange_n(&a->lock, 1, __ATOMIC_ACQUIRE)) {
        do {
            if (i > 0) {
                i--;
                cpu_relax();
            } else {
                sched_yield();
            }
        } while (__atomic_load_n(&a->lock, __ATOMIC_RELAXED));
    }
}

static inline void arena_unlock(struct tlsh_arena *a)
{
    __atomic_store_n(&a->lock, 0, __ATOMIC_RELEASE);
}

/* ---- size classes -------------------------------------------------------- */

static inline unsigned size_class(uint64_t n)
{
    if (n <= SMALL_MAX)
        return n == 0 ? 0 : (unsigned)((n + 15) / 16 - 1);
    uint64_t m = n - 1;                         /* m in [2^k, 2^(k+1)) */
    unsigned k = 63 - (unsigned)__builtin_clzll(m); /* k >= 10 */
    unsigned sub = (unsigned)((m >> (k - SUB_BITS)) & ((1u << SUB_BITS) - 1));
    return SMALL_CLASSES + (k - 10) * (1u << SUB_BITS) + sub;
}

static inline uint64_t class_cap(unsigned c)
{
    if (c < SMALL_CLASSES)
        return (uint64_t)(c + 1) * 16;
    unsigned k = 10 + (c - SMALL_CLASSES) / (1u << SUB_BITS);
    unsigned sub = (c - SMALL_CLASSES) % (1u << SUB_BITS);
    return (1ULL << k) + (uint64_t)(sub + 1) * (1ULL << (k - SUB_BITS));
}

#define INFO(cls, req) (((uint64_t)(cls) << REQ_BITS) | ((uint64_t)(req) & REQ_MASK))
#define INFO_CLASS(i) ((unsigned)((i) >> REQ_BITS))
#define INFO_REQ(i) ((i) & REQ_MASK)

static inline char *abase(const struct tlsh_arena *a) { return (char *)a; }

/* ---- events -------------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int inside(const struct tlsh_arena *a, const void *p)
{
    uintptr_t b = (uintptr_t)a, q = (uintptr_t)p;
    return q >= b && q - b < a->size;
}

/* Called with the lock held. */
static void record_event(struct tlsh_arena *a, int kind, const void *p, uint64_t raw, int prev_pid)
{
    struct tlsh_arena_event *e = &a->events[a->ev_next % TLSH_ARENA_MAX_EVENTS];
    e->kind = kind;
    e->pid = (int32_t)getpid();
    if (p && inside(a, p)) {
        e->inside = 1;
        e->offset = (uint64_t)((uintptr_t)p - (uintptr_t)a);
    } else {
        e->inside = 0;
        e->offset = p ? (uint64_t)(uintptr_t)p : raw;
    }
    e->prev_pid = prev_pid;
    e->time_ns = now_ns();
    a->ev_next++;
    a->st.n_events = a->ev_next;
}

/* ---- create / destroy ---------------------------------------------------- */

tlsh_arena *tlsh_arena_create(size_t size)
{
    if (size < MIN_ARENA) {
        errno = EINVAL;
        return NULL;
    }
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0)
        pg = 4096;
    if (size > SIZE_MAX - (size_t)pg) {
        errno = ENOMEM;
        return NULL;
    }
    size = (size + (size_t)pg - 1) & ~((size_t)pg - 1);
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    struct tlsh_arena *a = m; /* fresh anonymous mapping: already zeroed */
    a->magic = ARENA_MAGIC;
    a->size = size;
    a->heap_start = (sizeof(*a) + 63) & ~(uint64_t)63;
    a->top = a->heap_start;
    a->lock = 0;
    a->st.size = size;
    return a;
}

void tlsh_arena_destroy(tlsh_arena *a)
{
    if (!a)
        return;
    if (tlsh_hook_arena == a)
        tlsh_hook_arena = NULL;
    munmap(a, a->size);
}

/* ---- allocator core ------------------------------------------------------ */

static inline void count_proc(struct tlsh_arena *a, int is_alloc)
{
    int s = proc_slot;
    if (s >= 0) {
        if (is_alloc)
            a->procs[s].allocs++;
        else
            a->procs[s].frees++;
    }
}

static void *alloc_locked(struct tlsh_arena *a, size_t n)
{
    unsigned c = size_class(n);
    uint64_t cap = class_cap(c);
    char *b = abase(a);
    struct blk_hdr *h;
    uint64_t off = a->free_head[c];
    if (off) {
        h = (struct blk_hdr *)(b + off);
        a->free_head[c] = *(uint64_t *)(h + 1);
    } else {
        uint64_t need = HDR_SIZE + cap;
        if (need > a->size - a->top)
            return NULL;
        h = (struct blk_hdr *)(b + a->top);
        a->top += need;
    }
    h->magic = BLK_LIVE;
    h->pid = my_pid();
    h->info = INFO(c, n);
    a->st.in_use += HDR_SIZE + cap;
    if (a->st.in_use > a->st.peak)
        a->st.peak = a->st.in_use;
    a->st.requested += n;
    a->st.n_alloc++;
    count_proc(a, 1);
    return h + 1;
}

static void *alloc(struct tlsh_arena *a, size_t n)
{
    void *p = NULL;
    arena_lock(a);
    if (n <= MAX_REQ && n < a->size)
        p = alloc_locked(a, n + (size_t)a->skew);
    if (!p) {
        a->st.n_fail++;
        record_event(a, TLSH_EV_OUT_OF_MEMORY, NULL, n, 0);
    }
    arena_unlock(a);
    return p ? (char *)p + a->skew : NULL;
}

/* Classify p (lock held).  Returns the header, with *state = BLK_LIVE,
 * BLK_FREED, or 0 for a pointer that is not a block of this arena. */
static struct blk_hdr *lookup(struct tlsh_arena *a, const void *p, uint32_t *state)
{
    *state = 0;
    if (!inside(a, p))
        return NULL;
    p = (const char *)p - a->skew;
    uint64_t off = (uint64_t)((uintptr_t)p - (uintptr_t)a);
    if (off % TLSH_ARENA_ALIGN || off < a->heap_start + HDR_SIZE || off >= a->top)
        return NULL;
    struct blk_hdr *h = (struct blk_hdr *)p - 1;
    if (h->magic != BLK_LIVE && h->magic != BLK_FREED)
        return NULL;
    unsigned c = INFO_CLASS(h->info);
    if (c >= N_CLASSES || class_cap(c) > a->top - off)
        return NULL;
    *state = h->magic;
    return h;
}

static void free_locked(struct tlsh_arena *a, struct blk_hdr *h)
{
    unsigned c = INFO_CLASS(h->info);
    uint64_t cap = class_cap(c);
    h->magic = BLK_FREED;
    h->pid = my_pid();
    a->st.in_use -= HDR_SIZE + cap;
    a->st.requested -= INFO_REQ(h->info);
    a->st.n_free++;
    count_proc(a, 0);
    *(uint64_t *)(h + 1) = a->free_head[c];
    a->free_head[c] = (uint64_t)((char *)h - abase(a));
}

/* ---- public API ---------------------------------------------------------- */

void *tlsh_arena_malloc(tlsh_arena *a, size_t n)
{
    return alloc(a, n);
}

void *tlsh_arena_calloc(tlsh_arena *a, size_t nmemb, size_t n)
{
    size_t total;
    if (__builtin_mul_overflow(nmemb, n, &total)) {
        arena_lock(a);
        a->st.n_fail++;
        record_event(a, TLSH_EV_OUT_OF_MEMORY, NULL, SIZE_MAX, 0);
        arena_unlock(a);
        return NULL;
    }
    void *p = alloc(a, total);
    if (p)
        memset(p, 0, total);
    return p;
}

void tlsh_arena_free(tlsh_arena *a, void *p)
{
    if (!p)
        return;
    uint32_t state;
    arena_lock(a);
    struct blk_hdr *h = lookup(a, p, &state);
    if (state == BLK_LIVE) {
        free_locked(a, h);
    } else if (state == BLK_FREED) {
        a->st.n_double_free++;
        record_event(a, TLSH_EV_DOUBLE_FREE, p, 0, h->pid);
    } else {
        a->st.n_wild_free++;
        record_event(a, TLSH_EV_WILD_FREE, p, 0, 0);
    }
    arena_unlock(a);
}

void *tlsh_arena_realloc(tlsh_arena *a, void *p, size_t n)
{
    if (!p)
        return alloc(a, n);
    if (n == 0) {
        tlsh_arena_free(a, p);
        return NULL;
    }
    uint32_t state;
    size_t old_req;
    arena_lock(a);
    struct blk_hdr *h = lookup(a, p, &state);
    if (state != BLK_LIVE) {
        record_event(a, TLSH_EV_BAD_REALLOC, p, 0, state == BLK_FREED ? h->pid : 0);
        arena_unlock(a);
        return NULL;
    }
    unsigned c = INFO_CLASS(h->info);
    old_req = INFO_REQ(h->info) - (size_t)a->skew;
    if (n + (size_t)a->skew <= class_cap(c)) {
        a->st.requested = a->st.requested - old_req + n;
        h->info = INFO(c, n + (size_t)a->skew);
        arena_unlock(a);
        return p;
    }
    arena_unlock(a);
    void *q = alloc(a, n);
    if (!q)
        return NULL;
    memcpy(q, p, old_req < n ? old_req : n);
    tlsh_arena_free(a, p);
    return q;
}

int tlsh_arena_contains(const tlsh_arena *a, const void *p)
{
    return a && p && inside(a, p);
}

uintptr_t tlsh_arena_base(const tlsh_arena *a) { return (uintptr_t)a; }

size_t tlsh_arena_size(const tlsh_arena *a) { return a ? (size_t)a->size : 0; }

void tlsh_arena_set_proc_slot(tlsh_arena *a, int slot)
{
    cached_pid = getpid();
    if (slot < 0 || slot >= TLSH_ARENA_MAX_PROCS) {
        proc_slot = -1;
        return;
    }
    arena_lock(a);
    a->procs[slot].pid = (int32_t)cached_pid;
    a->procs[slot].allocs = 0;
    a->procs[slot].frees = 0;
    arena_unlock(a);
    proc_slot = slot;
}

void tlsh_arena_get_stats(const tlsh_arena *ca, struct tlsh_arena_stats *out)
{
    struct tlsh_arena *a = (struct tlsh_arena *)ca;
    arena_lock(a);
    *out = a->st;
    arena_unlock(a);
}

int tlsh_arena_get_procs(const tlsh_arena *ca, struct tlsh_arena_proc *out, int max)
{
    struct tlsh_arena *a = (struct tlsh_arena *)ca;
    int n = 0;
    arena_lock(a);
    for (int i = 0; i < TLSH_ARENA_MAX_PROCS && n < max; i++)
        if (a->procs[i].pid != 0)
            out[n++] = a->procs[i];
    arena_unlock(a);
    return n;
}

int tlsh_arena_get_events(const tlsh_arena *ca, struct tlsh_arena_event *out, int max)
{
    struct tlsh_arena *a = (struct tlsh_arena *)ca;
    if (max <= 0)
        return 0;
    arena_lock(a);
    uint64_t total = a->ev_next;
    uint64_t avail = total < TLSH_ARENA_MAX_EVENTS ? total : TLSH_ARENA_MAX_EVENTS;
    uint64_t n = avail < (uint64_t)max ? avail : (uint64_t)max;
    for (uint64_t i = 0; i < n; i++)
        out[i] = a->events[(total - n + i) % TLSH_ARENA_MAX_EVENTS];
    arena_unlock(a);
    return (int)n;
}

/* ---- CRYPTO_set_mem_functions hooks -------------------------------------- */

void *tlsh_hook_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    tlsh_arena *a = tlsh_hook_arena;
    return a ? tlsh_arena_malloc(a, n) : NULL;
}

void *tlsh_hook_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    tlsh_arena *a = tlsh_hook_arena;
    return a ? tlsh_arena_realloc(a, p, n) : NULL;
}

void tlsh_hook_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    tlsh_arena *a = tlsh_hook_arena;
    if (a)
        tlsh_arena_free(a, p);
}

size_t tlsh_arena_usable_size(tlsh_arena *a, const void *p)
{
    if (!p)
        return 0;
    uint32_t state;
    size_t n = 0;
    arena_lock(a);
    struct blk_hdr *h = lookup(a, p, &state);
    if (state == BLK_LIVE)
        n = (size_t)INFO_REQ(h->info) - (size_t)a->skew;
    arena_unlock(a);
    return n;
}

int tlsh_arena_set_align(tlsh_arena *a, int align)
{
    if (align != 8 && align != 16)
        return -1;
    int r = 0;
    arena_lock(a);
    if (a->st.n_alloc)
        r = -1;                 /* blocks exist: their offsets would no longer be found */
    else
        a->skew = align == 8 ? 8 : 0;
    arena_unlock(a);
    return r;
}
