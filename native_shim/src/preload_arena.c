/* --memory interpose: an LD_PRELOAD allocator that puts the WHOLE stand
 * process's heap (interpreter, libc, TLS library) into one MAP_SHARED arena
 * created at the first allocation, before fork.  For libraries without an
 * effective allocator hook (mbed TLS as Debian builds it, GnuTLS): their
 * sessions then live in shared memory anyway.  A forced mode, labelled so
 * in every output.  Size: TLSH_INTERPOSE_MB (default 1024). */
#define _GNU_SOURCE
#include "tlsh_arena.h"
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ALIGNED_MAGIC 0xA119EDB1u

static tlsh_arena *A;

static tlsh_arena *arena(void)
{
    if (__builtin_expect(A != NULL, 1))
        return A;
    const char *e = getenv("TLSH_INTERPOSE_MB");          /* getenv does not allocate */
    size_t mb = e ? strtoul(e, NULL, 10) : 1024;
    A = tlsh_arena_create((mb ? mb : 1024) << 20);
    if (!A) {
        static const char msg[] = "tlsh interpose: cannot map the shared arena\n";
        if (write(2, msg, sizeof(msg) - 1) < 0) { /* nothing */ }
        _exit(127);
    }
    return A;
}

tlsh_arena *tlsh_interpose_arena(void) { return arena(); }

/* Over-aligned blocks: a 16-byte marker just below the returned pointer
 * holds the magic and the real block. */
struct amark { uint32_t magic; uint32_t pad; void *base; };

static void *unalign(void *p)
{
    struct amark *m = (struct amark *)p - 1;
    if (((uintptr_t)p & 15) == 0 && tlsh_arena_contains(A, m) && m->magic == ALIGNED_MAGIC)
        return m->base;
    return p;
}

void *malloc(size_t n) { return tlsh_arena_malloc(arena(), n ? n : 1); }
void *calloc(size_t k, size_t n) { return tlsh_arena_calloc(arena(), k ? k : 1, n ? n : 1); }

void free(void *p)
{
    if (!p) return;
    tlsh_arena_free(arena(), unalign(p));
}

void *realloc(void *p, size_t n)
{
    if (p && unalign(p) != p) {          /* over-aligned block: move it */
        void *q = malloc(n);
        if (q) {
            size_t old = tlsh_arena_usable_size(arena(), unalign(p));
            old -= (size_t)((char *)p - (char *)unalign(p));
            memcpy(q, p, old < n ? old : n);
            free(p);
        }
        return q;
    }
    return tlsh_arena_realloc(arena(), p, n);
}

static void *aligned(size_t align, size_t n)
{
    if (align <= TLSH_ARENA_ALIGN)
        return malloc(n);
    if (align & (align - 1)) { errno = EINVAL; return NULL; }
    char *base = tlsh_arena_malloc(arena(), n + align + sizeof(struct amark));
    if (!base) return NULL;
    uintptr_t p = ((uintptr_t)base + sizeof(struct amark) + align - 1) & ~(uintptr_t)(align - 1);
    struct amark *m = (struct amark *)p - 1;
    m->magic = ALIGNED_MAGIC;
    m->base = base;
    return (void *)p;
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
    void *p = aligned(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

void *memalign(size_t align, size_t n) { return aligned(align, n); }
void *aligned_alloc(size_t align, size_t n) { return aligned(align, n); }
void *valloc(size_t n) { return aligned((size_t)sysconf(_SC_PAGESIZE), n); }
void *pvalloc(size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return aligned(pg, (n + pg - 1) & ~(pg - 1));
}

size_t malloc_usable_size(void *p)
{
    if (!p) return 0;
    void *b = unalign(p);
    size_t n = tlsh_arena_usable_size(arena(), b);
    return n - (size_t)((char *)p - (char *)b);
}
