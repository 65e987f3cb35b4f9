/* Shared-memory arena: one MAP_SHARED region created before fork, with an
 * allocator that any process of the stand may call.  Every block carries a
 * header (magic, owner pid, size) so that a double free or a wild free is
 * detected and recorded as an event instead of corrupting the arena. */
#ifndef TLSH_ARENA_H
#define TLSH_ARENA_H
#include <stddef.h>
#include <stdint.h>

/* cffi:begin */
#define TLSH_ARENA_ALIGN 16
#define TLSH_ARENA_MAX_PROCS 256   /* per-process statistics slots */
#define TLSH_ARENA_MAX_EVENTS 64   /* evidence ring */

enum tlsh_arena_event_kind {
    TLSH_EV_NONE = 0,
    TLSH_EV_DOUBLE_FREE = 1,    /* block already free */
    TLSH_EV_WILD_FREE = 2,      /* pointer not a block of this arena */
    TLSH_EV_OUT_OF_MEMORY = 3,  /* allocation failed */
    TLSH_EV_BAD_REALLOC = 4,    /* realloc of a pointer that is not a live block */
};

struct tlsh_arena_event {
    int32_t kind;
    int32_t pid;          /* process that made the bad call */
    uint64_t offset;      /* pointer minus arena base (or raw pointer if outside) */
    int32_t prev_pid;     /* for a double free: the process that freed it first */
    int32_t inside;       /* 1 if the pointer lies inside the arena */
    int64_t time_ns;      /* CLOCK_MONOTONIC */
};

struct tlsh_arena_proc {
    int32_t pid;
    int32_t pad;
    uint64_t allocs;
    uint64_t frees;
};

struct tlsh_arena_stats {
    uint64_t size;          /* total bytes mapped */
    uint64_t in_use;        /* bytes in live blocks (block capacity, headers included) */
    uint64_t peak;          /* high-water mark of in_use */
    uint64_t requested;     /* bytes requested by live blocks */
    uint64_t n_alloc;
    uint64_t n_free;
    uint64_t n_fail;        /* allocations that returned NULL */
    uint64_t n_double_free;
    uint64_t n_wild_free;
    uint64_t n_events;      /* total events ever recorded (ring keeps the last 64) */
};

typedef struct tlsh_arena tlsh_arena;

/* Create a MAP_SHARED|MAP_ANONYMOUS arena of `size` bytes (rounded up to
 * pages).  Returns NULL on failure (errno set). */
tlsh_arena *tlsh_arena_create(size_t size);
void tlsh_arena_destroy(tlsh_arena *a);

void *tlsh_arena_malloc(tlsh_arena *a, size_t n);
void *tlsh_arena_calloc(tlsh_arena *a, size_t nmemb, size_t n);
void *tlsh_arena_realloc(tlsh_arena *a, void *p, size_t n);
void tlsh_arena_free(tlsh_arena *a, void *p);

/* Alignment of the blocks handed out: 16 (the default, as malloc's), or 8
 * (every block 8 bytes past a 16-byte boundary, as some servers' shared
 * allocators give: OpenSIPS #3814).  Before the first allocation; 0 / -1. */
int tlsh_arena_set_align(tlsh_arena *a, int align);

/* Bytes usable in a live block (its requested size), 0 if p is not one. */
size_t tlsh_arena_usable_size(tlsh_arena *a, const void *p);

/* 1 if p points into the arena's mapping. */
int tlsh_arena_contains(const tlsh_arena *a, const void *p);
uintptr_t tlsh_arena_base(const tlsh_arena *a);
size_t tlsh_arena_size(const tlsh_arena *a);

/* Per-process statistics: call once in each process after fork (slot <
 * TLSH_ARENA_MAX_PROCS); records getpid() in that slot. */
void tlsh_arena_set_proc_slot(tlsh_arena *a, int slot);

void tlsh_arena_get_stats(const tlsh_arena *a, struct tlsh_arena_stats *out);
int tlsh_arena_get_procs(const tlsh_arena *a, struct tlsh_arena_proc *out, int max);
/* Copies up to `max` most recent events, oldest first; returns the count. */
int tlsh_arena_get_events(const tlsh_arena *a, struct tlsh_arena_event *out, int max);
/* cffi:end */

/* The arena installed as the process-wide target of the TLS library hooks. */
extern tlsh_arena *tlsh_hook_arena;
void *tlsh_hook_malloc(size_t n, const char *file, int line);
void *tlsh_hook_realloc(void *p, size_t n, const char *file, int line);
void tlsh_hook_free(void *p, const char *file, int line);

#endif
