/*
 * refserver -- a reference multi-process SIP-over-TLS server, modelled on
 * OpenSIPS 2.4-3.6 with OpenSSL 3.0, for the tlsharness tests.
 *
 * Written from scratch for the tests (see tests/refserver/README.md):
 *   - one shared arena (mmap MAP_SHARED before fork) with its own allocator,
 *     installed in OpenSSL with CRYPTO_set_mem_functions(), so every OpenSSL
 *     object (SSL_CTX, SSL, locks, thread-local state) lives in shared memory;
 *   - attendant + TCP main + timer + N workers;
 *   - per-message handoff: TCP main passes a connection's fd (SCM_RIGHTS) to
 *     the next worker for every readable event; the SSL object stays in the
 *     arena and is used by whichever worker gets the connection.
 *
 * Build:
 *   cc -O2 -g -Wall -Wextra -rdynamic -o build/refserver \
 *      tests/refserver/refserver.c -lssl -lcrypto -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_CONNS    8192
#define CONN_BUF     4096
#define MAX_WORKERS  64
#define MAX_FAULTS   16
#define IO_WAIT_MS   2000
#define SPIN_COUNT   1024

/* ------------------------------------------------------------------ */
/* options                                                             */

static struct {
    int port;
    int workers;
    long arena_mb;
    int tls;            /* 0 = 1.2..1.3, 12, 13 */
    int global_lock;
    int fix_pshared;
    int fix_thread_init;
    const char *cert, *key;
} opt = { 5061, 4, 256, 0, 0, 0, 0, NULL, NULL };

enum { FAULT_LOST_WAKEUP = 1, FAULT_SPIN = 2 };
static struct fault { int kind, worker; long after_ms; } faults[MAX_FAULTS];
static int nfaults;

static void msg(const char *fmt, ...)
{
    char b[512];
    va_list ap;
    int n = snprintf(b, sizeof b, "refserver: ");
    va_start(ap, fmt);
    n += vsnprintf(b + n, sizeof b - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof b - 2)
        n = (int)sizeof b - 2;
    b[n++] = '\n';
    ssize_t w = write(2, b, (size_t)n);
    (void)w;
}

static void usage_error(const char *fmt, ...)
{
    char b[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    fprintf(stderr, "refserver: %s (usage: refserver --cert FILE --key FILE [--port N] "
            "[--workers N] [--arena-mb N] [--tls 12|13] [--global-lock] "
            "[--fix pshared,thread-init] [--fault lost-wakeup|spin:WORKER:AFTER_MS])\n", b);
    exit(2);
}

static long parse_long(const char *s, const char *what, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        usage_error("bad %s '%s' (expected %ld..%ld)", what, s, lo, hi);
    return v;
}

static void parse_fix(const char *s)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "pshared"))
            opt.fix_pshared = 1;
        else if (!strcmp(t, "thread-init"))
            opt.fix_thread_init = 1;
        else if (strcmp(t, "none"))
            usage_error("unknown fix '%s' (known: pshared, thread-init, none)", t);
    }
}

static void parse_fault(const char *s)
{
    char buf[128], *w, *a;
    if (nfaults == MAX_FAULTS)
        usage_error("too many --fault options");
    snprintf(buf, sizeof buf, "%s", s);
    if (!(w = strchr(buf, ':')) || !(a = strchr(w + 1, ':')))
        usage_error("bad --fault '%s' (expected KIND:WORKER:AFTER_MS)", s);
    *w++ = 0;
    *a++ = 0;
    struct fault *f = &faults[nfaults++];
    if (!strcmp(buf, "lost-wakeup"))
        f->kind = FAULT_LOST_WAKEUP;
    else if (!strcmp(buf, "spin"))
        f->kind = FAULT_SPIN;
    else
        usage_error("unknown fault kind '%s' (known: lost-wakeup, spin)", buf);
    f->worker = (int)parse_long(w, "fault worker", 0, MAX_WORKERS - 1);
    f->after_ms = parse_long(a, "fault AFTER_MS", 0, 86400000L);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            printf("usage: refserver --cert FILE --key FILE [--port N] [--workers N] [--arena-mb N]\n"
                   "                 [--tls 12|13] [--global-lock] [--fix pshared,thread-init]\n"
                   "                 [--fault lost-wakeup|spin:WORKER:AFTER_MS]...\n");
            exit(0);
        }
        if (!strcmp(o, "--global-lock")) {
            opt.global_lock = 1;
            continue;
        }
        static const char *const valued[] = { "--port", "--workers", "--arena-mb", "--tls", "--cert",
                                              "--key", "--fix", "--fault", NULL };
        int known = 0;
        for (int k = 0; valued[k]; k++)
            known |= !strcmp(o, valued[k]);
        if (!known)
            usage_error("unknown option '%s'", o);
        if (i + 1 >= argc)
            usage_error("%s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "--port"))
            opt.port = (int)parse_long(v, "port", 1, 65535);
        else if (!strcmp(o, "--workers"))
            opt.workers = (int)parse_long(v, "worker count", 1, MAX_WORKERS);
        else if (!strcmp(o, "--arena-mb"))
            opt.arena_mb = parse_long(v, "arena size", 64, 65536);
        else if (!strcmp(o, "--tls")) {
            opt.tls = (int)parse_long(v, "TLS version", 12, 13);
        } else if (!strcmp(o, "--cert"))
            opt.cert = v;
        else if (!strcmp(o, "--key"))
            opt.key = v;
        else if (!strcmp(o, "--fix"))
            parse_fix(v);
        else if (!strcmp(o, "--fault"))
            parse_fault(v);
        else
            usage_error("unknown option '%s'", o);
    }
    if (!opt.cert || !opt.key)
        usage_error("--cert and --key are required");
    for (int i = 0; i < nfaults; i++)
        if (faults[i].worker >= opt.workers)
            usage_error("fault worker %d out of range (0..%d)", faults[i].worker, opt.workers - 1);
}

/* ------------------------------------------------------------------ */
/* locks: OpenSIPS-style fastlock (test-and-set, 1024 spins, then yield) */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void fl_lock(volatile int *l)
{
    int spins = SPIN_COUNT;
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) {
        if (spins > 0) {
            spins--;
            cpu_relax();
        } else {
            sched_yield();
        }
    }
}

static void fl_unlock(volatile int *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------------ */
/* shared arena                                                        */

#define HDR_SIZE    16
#define MIN_SHIFT   5           /* 32-byte blocks */
#define MAX_CLASSES 48
#define MAGIC_USED  0x52534d55u /* "UMSR" */
#define MAGIC_FREE  0x52534d46u

struct blk {                    /* 16 bytes before every returned pointer */
    uint32_t magic;
    uint32_t cls;               /* block size = 1 << cls */
    uint64_t req;               /* requested size (informative) */
};

struct conn {
    int state;                  /* CONN_FREE / CONN_USED */
    volatile int lock;          /* application lock */
    int hs_done;
    int len;                    /* bytes in buf */
    SSL *ssl;
    char buf[CONN_BUF];
};
enum { CONN_FREE = 0, CONN_USED = 1 };

struct arena {
    volatile int alloc_lock;
    volatile int global_lock;   /* --global-lock */
    volatile int futex_word;    /* always 0: the lost-wakeup fault waits on it */
    int max_shift;              /* largest class: 1 << max_shift (<= arena / 8) */
    char *heap, *bump, *end;
    void *free_head[MAX_CLASSES];
    uint64_t in_use, oom;
    struct conn conns[MAX_CONNS];
};

static struct arena *A;

static void arena_create(void)
{
    size_t size = (size_t)opt.arena_mb << 20;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        msg("mmap of a %ld MiB arena failed: %s", opt.arena_mb, strerror(errno));
        exit(1);
    }
    A = p;
    size_t off = (sizeof *A + 4095) & ~(size_t)4095;
    A->heap = A->bump = (char *)p + off;
    A->end = (char *)p + size;
    int s = MIN_SHIFT;
    while (((size_t)1 << (s + 1)) <= size / 8)
        s++;
    A->max_shift = s;
}

static int class_for(size_t need)
{
    if (need <= ((size_t)1 << MIN_SHIFT))
        return MIN_SHIFT;
    return 64 - __builtin_clzl(need - 1);
}

static void *arena_malloc(size_t num, const char *file, int line)
{
    (void)file;
    (void)line;
    if (num > ((size_t)1 << A->max_shift) - HDR_SIZE)
        return NULL;
    int c = class_for(num + HDR_SIZE);
    size_t bs = (size_t)1 << c;
    struct blk *b;
    fl_lock(&A->alloc_lock);
    if (A->free_head[c]) {
        b = A->free_head[c];
        A->free_head[c] = *(void **)(b + 1);
    } else if ((size_t)(A->end - A->bump) >= bs) {
        b = (struct blk *)A->bump;
        A->bump += bs;
    } else {
        A->oom++;
        fl_unlock(&A->alloc_lock);
        return NULL;
    }
    b->magic = MAGIC_USED;
    b->cls = (uint32_t)c;
    b->req = num;
    A->in_use += bs;
    fl_unlock(&A->alloc_lock);
    return b + 1;
}

static struct blk *arena_block(void *p, const char *what, const char *file, int line)
{
    struct blk *b = (struct blk *)p - 1;
    if ((char *)b < A->heap || (char *)p >= A->bump || ((uintptr_t)p & 15)) {
        msg("%s: pointer %p is not from the arena (%s:%d)", what, p, file ? file : "?", line);
        return NULL;
    }
    if (b->magic == MAGIC_FREE) {
        msg("%s: freeing already freed pointer %p (%s:%d)", what, p, file ? file : "?", line);
        return NULL;
    }
    if (b->magic != MAGIC_USED || b->cls < MIN_SHIFT || (int)b->cls > A->max_shift) {
        msg("%s: corrupted block header at %p (%s:%d)", what, p, file ? file : "?", line);
        return NULL;
    }
    return b;
}

static void arena_free(void *p, const char *file, int line)
{
    if (!p)
        return;
    struct blk *b = arena_block(p, "free", file, line);
    if (!b)
        return;
    fl_lock(&A->alloc_lock);
    if (b->magic != MAGIC_USED) {       /* lost a race with another free */
        fl_unlock(&A->alloc_lock);
        msg("free: freeing already freed pointer %p (%s:%d)", p, file ? file : "?", line);
        return;
    }
    b->magic = MAGIC_FREE;
    *(void **)(b + 1) = A->free_head[b->cls];
    A->free_head[b->cls] = b;
    A->in_use -= (uint64_t)1 << b->cls;
    fl_unlock(&A->alloc_lock);
}

static void *arena_realloc(void *p, size_t num, const char *file, int line)
{
    if (!p)
        return arena_malloc(num, file, line);
    if (num == 0) {
        arena_free(p, file, line);
        return NULL;
    }
    struct blk *b = arena_block(p, "realloc", file, line);
    if (!b)
        return NULL;
    size_t cap = ((size_t)1 << b->cls) - HDR_SIZE;
    if (num <= cap) {
        b->req = num;
        return p;
    }
    void *q = arena_malloc(num, file, line);
    if (!q)
        return NULL;
    memcpy(q, p, cap);
    arena_free(p, file, line);
    return q;
}

/* ------------------------------------------------------------------ */
/* --fix pshared: libcrypto's pthread_*_init resolve to these          */

typedef int (*mutex_init_fn)(pthread_mutex_t *, const pthread_mutexattr_t *);
typedef int (*rwlock_init_fn)(pthread_rwlock_t *, const pthread_rwlockattr_t *);
static mutex_init_fn real_mutex_init;
static rwlock_init_fn real_rwlock_init;

static void resolve_real(void)
{
    if (!real_mutex_init)
        real_mutex_init = (mutex_init_fn)dlsym(RTLD_NEXT, "pthread_mutex_init");
    if (!real_rwlock_init)
        real_rwlock_init = (rwlock_init_fn)dlsym(RTLD_NEXT, "pthread_rwlock_init");
    if (!real_mutex_init || !real_rwlock_init) {
        msg("dlsym(RTLD_NEXT) of pthread_mutex_init/pthread_rwlock_init failed");
        _exit(1);
    }
}

int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a)
{
    resolve_real();
    if (!opt.fix_pshared)
        return real_mutex_init(m, a);
    pthread_mutexattr_t attr;
    if (a)
        memcpy(&attr, a, sizeof attr);  /* keeps the caller's type (e.g. recursive) */
    else
        pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    int r = real_mutex_init(m, &attr);
    if (!a)
        pthread_mutexattr_destroy(&attr);
    return r;
}

int pthread_rwlock_init(pthread_rwlock_t *l, const pthread_rwlockattr_t *a)
{
    resolve_real();
    if (!opt.fix_pshared)
        return real_rwlock_init(l, a);
    pthread_rwlockattr_t attr;
    if (a)
        memcpy(&attr, a, sizeof attr);  /* keeps the caller's kind */
    else
        pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    int r = real_rwlock_init(l, &attr);
    if (!a)
        pthread_rwlockattr_destroy(&attr);
    return r;
}

/* ------------------------------------------------------------------ */
/* TLS init                                                            */

static SSL_CTX *ctx;

static SSL_CTX *tls_init(void)
{
    if (!OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS |
                          OPENSSL_INIT_NO_ATEXIT, NULL)) {
        msg("OPENSSL_init_ssl failed");
        return NULL;
    }
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (!c)
        goto err;
    int lo = opt.tls == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    int hi = opt.tls == 12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    if (!SSL_CTX_set_min_proto_version(c, lo) || !SSL_CTX_set_max_proto_version(c, hi))
        goto err;
    if (SSL_CTX_use_certificate_chain_file(c, opt.cert) != 1) {
        msg("cannot load certificate %s", opt.cert);
        goto err;
    }
    if (SSL_CTX_use_PrivateKey_file(c, opt.key, SSL_FILETYPE_PEM) != 1) {
        msg("cannot load private key %s", opt.key);
        goto err;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
        msg("certificate and private key do not match");
        goto err;
    }
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
    return c;
err:
    ERR_print_errors_fp(stderr);
    SSL_CTX_free(c);
    return NULL;
}

static void *tls_init_thread(void *arg)
{
    *(SSL_CTX **)arg = tls_init();
    return NULL;
}

/* ------------------------------------------------------------------ */
/* SIP                                                                 */

struct span { size_t s, e; };   /* a header line m[s..e), without the final CRLF */

static int name_is(const char *m, size_t s, size_t n, const char *full, const char *compact)
{
    return (n == strlen(full) && !strncasecmp(m + s, full, n)) ||
           (compact && n == 1 && (m[s] | 0x20) == compact[0]);
}

static int has_tag(const char *p, size_t n)
{
    for (size_t i = 0; i + 5 <= n; i++)
        if (p[i] == ';' && !strncasecmp(p + i + 1, "tag=", 4))
            return 1;
    return 0;
}

/*
 * Length of the complete message at m[0..n): 0 if incomplete, -1 if
 * malformed.  *hend = offset just past the last header's CRLF.
 */
static long sip_complete(const char *m, size_t n, size_t *hend)
{
    const char *end = memmem(m, n, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t he = (size_t)(end - m) + 2, pos;
    const char *eol = memmem(m, he, "\r\n", 2);
    long clen = 0;
    for (pos = (size_t)(eol - m) + 2; pos < he;) {
        size_t e = (size_t)((const char *)memmem(m + pos, he - pos, "\r\n", 2) - m);
        const char *colon = memchr(m + pos, ':', e - pos);
        if (colon && m[pos] != ' ' && m[pos] != '\t') {
            size_t nl = (size_t)(colon - m) - pos;
            while (nl && (m[pos + nl - 1] == ' ' || m[pos + nl - 1] == '\t'))
                nl--;
            if (name_is(m, pos, nl, "content-length", "l")) {
                const char *v = colon + 1, *ve = m + e;
                while (v < ve && (*v == ' ' || *v == '\t'))
                    v++;
                clen = 0;
                if (v == ve)
                    return -1;
                for (; v < ve && *v >= '0' && *v <= '9'; v++)
                    if ((clen = clen * 10 + (*v - '0')) > CONN_BUF)
                        return -1;
                while (v < ve && (*v == ' ' || *v == '\t'))
                    v++;
                if (v != ve)
                    return -1;
            }
        }
        pos = e + 2;
    }
    *hend = he;
    if (he + 2 + (size_t)clen > n)
        return 0;
    return (long)(he + 2 + (size_t)clen);
}

/* Append the reply to m[0..hend) at out; returns bytes written (0: not a request). */
static size_t sip_reply(const char *m, size_t hend, char *out)
{
    const char *eol = memmem(m, hend, "\r\n", 2);
    size_t rl = (size_t)(eol - m);
    if (rl >= 4 && !strncmp(m, "SIP/", 4))
        return 0;                       /* a response: ignore */
    const char *sp = memchr(m, ' ', rl);
    size_t ml = sp ? (size_t)(sp - m) : rl;
    int ok = (ml == 7 && !memcmp(m, "OPTIONS", 7)) || (ml == 8 && !memcmp(m, "REGISTER", 8));

    struct span via[32], from = {0, 0}, to = {0, 0}, callid = {0, 0}, cseq = {0, 0}, *cur = NULL;
    int nvia = 0;
    for (size_t pos = rl + 2; pos < hend;) {
        size_t e = (size_t)((const char *)memmem(m + pos, hend - pos, "\r\n", 2) - m);
        if (m[pos] == ' ' || m[pos] == '\t') {  /* folded continuation line */
            if (cur)
                cur->e = e;
        } else {
            const char *colon = memchr(m + pos, ':', e - pos);
            size_t nl = colon ? (size_t)(colon - m) - pos : 0;
            while (nl && (m[pos + nl - 1] == ' ' || m[pos + nl - 1] == '\t'))
                nl--;
            struct span *t = NULL;
            if (!colon)
                t = NULL;
            else if (name_is(m, pos, nl, "via", "v"))
                t = nvia < 32 ? &via[nvia++] : NULL;
            else if (name_is(m, pos, nl, "from", "f"))
                t = from.e ? NULL : &from;
            else if (name_is(m, pos, nl, "to", "t"))
                t = to.e ? NULL : &to;
            else if (name_is(m, pos, nl, "call-id", "i"))
                t = callid.e ? NULL : &callid;
            else if (name_is(m, pos, nl, "cseq", NULL))
                t = cseq.e ? NULL : &cseq;
            if (t) {
                t->s = pos;
                t->e = e;
            }
            cur = t;
        }
        pos = e + 2;
    }

    char *o = out;
#define PUT(p, n) do { memcpy(o, (p), (n)); o += (n); } while (0)
#define PUTS(s) PUT((s), strlen(s))
#define PUTSPAN(sp_) do { if ((sp_).e) { PUT(m + (sp_).s, (sp_).e - (sp_).s); PUTS("\r\n"); } } while (0)
    PUTS(ok ? "SIP/2.0 200 OK\r\n" : "SIP/2.0 404 Not here\r\n");
    for (int i = 0; i < nvia; i++)
        PUTSPAN(via[i]);
    PUTSPAN(from);
    if (to.e) {
        PUT(m + to.s, to.e - to.s);
        if (!has_tag(m + to.s, to.e - to.s))
            PUTS(";tag=ref1");
        PUTS("\r\n");
    }
    PUTSPAN(callid);
    PUTSPAN(cseq);
    PUTS("Content-Length: 0\r\n\r\n");
#undef PUT
#undef PUTS
#undef PUTSPAN
    return (size_t)(o - out);
}

/* ------------------------------------------------------------------ */
/* worker                                                              */

enum { OP_RELEASED = 1, OP_CLOSED = 2 };
struct job { int idx; };
struct answer { int op, idx; };

static int worker_no = -1;
static struct fault *my_fault;
static struct timespec first_job;
static int have_first_job;

#define G_LOCK()   do { if (opt.global_lock) fl_lock(&A->global_lock); } while (0)
#define G_UNLOCK() do { if (opt.global_lock) fl_unlock(&A->global_lock); } while (0)

static long ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000L + (t.tv_nsec - t0->tv_nsec) / 1000000L;
}

static void maybe_fault(void)
{
    if (!my_fault || ms_since(&first_job) < my_fault->after_ms)
        return;
    if (my_fault->kind == FAULT_LOST_WAKEUP) {
        G_LOCK();
        for (;;)
            syscall(SYS_futex, &A->futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    }
    volatile unsigned long x = 1;
    for (;;)
        x = x * 6364136223846793005UL + 1442695040888963407UL;
}

static int wait_io(int fd, short ev)
{
    struct pollfd p = { fd, ev, 0 };
    int r;
    do
        r = poll(&p, 1, IO_WAIT_MS);
    while (r < 0 && errno == EINTR);
    return r > 0;
}

/* SSL_write of all of buf; 0 on failure */
static int tls_write_all(SSL *ssl, int fd, const char *buf, size_t len)
{
    while (len) {
        G_LOCK();
        ERR_clear_error();
        int r = SSL_write(ssl, buf, (int)len);
        int e = SSL_get_error(ssl, r);
        G_UNLOCK();
        if (r > 0) {
            buf += r;
            len -= (size_t)r;
        } else if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            if (!wait_io(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT))
                return 0;
        } else {
            return 0;
        }
    }
    return 1;
}

/* Answer every complete request in c->buf; 0 = close the connection. */
static int handle_messages(struct conn *c, int fd)
{
    char out[4 * CONN_BUF];
    size_t olen = 0, off = 0;
    for (;;) {
        while (off + 2 <= (size_t)c->len && c->buf[off] == '\r' && c->buf[off + 1] == '\n')
            off += 2;                   /* CRLF keepalives between messages */
        size_t hend;
        long ml = sip_complete(c->buf + off, (size_t)c->len - off, &hend);
        if (ml < 0)
            return 0;
        if (ml == 0)
            break;
        if (olen + hend + 64 > sizeof out) {
            if (!tls_write_all(c->ssl, fd, out, olen))
                return 0;
            olen = 0;
        }
        olen += sip_reply(c->buf + off, hend, out + olen);
        off += (size_t)ml;
    }
    if (off) {
        memmove(c->buf, c->buf + off, (size_t)c->len - off);
        c->len -= (int)off;
    }
    if (olen && !tls_write_all(c->ssl, fd, out, olen))
        return 0;
    return 1;
}

/* Serve one job on a locked connection; 0 = close it. */
static int serve_conn(struct conn *c, int fd)
{
    if (!c->ssl && !(c->ssl = SSL_new(ctx)))
        return 0;
    if (!SSL_set_fd(c->ssl, fd))
        return 0;
    while (!c->hs_done) {
        G_LOCK();
        ERR_clear_error();
        int r = SSL_accept(c->ssl);
        int e = SSL_get_error(c->ssl, r);
        G_UNLOCK();
        if (r == 1)
            c->hs_done = 1;
        else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (!wait_io(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT))
                return 0;
        } else
            return 0;
    }
    for (;;) {
        if (c->len >= CONN_BUF)
            return 0;                   /* a message larger than the buffer */
        G_LOCK();
        ERR_clear_error();
        int r = SSL_read(c->ssl, c->buf + c->len, CONN_BUF - c->len);
        int e = SSL_get_error(c->ssl, r);
        G_UNLOCK();
        if (r > 0) {
            c->len += r;
            if (!handle_messages(c, fd))
                return 0;
        } else if (e == SSL_ERROR_WANT_READ) {
            if (!SSL_has_pending(c->ssl))
                return 1;               /* drained: hand the connection back */
            if (!wait_io(fd, POLLIN))
                return 1;               /* rest of a record still on its way */
        } else if (e == SSL_ERROR_WANT_WRITE) {
            if (!wait_io(fd, POLLOUT))
                return 0;
        } else {
            return 0;                   /* EOF, close_notify or error */
        }
    }
}

static int serve(int idx, int fd)
{
    struct conn *c = &A->conns[idx];
    fl_lock(&c->lock);
    maybe_fault();
    int keep = serve_conn(c, fd);
    if (!keep) {
        if (c->ssl)
            SSL_free(c->ssl);
        c->ssl = NULL;
        c->hs_done = 0;
        c->len = 0;
        ERR_clear_error();
    }
    fl_unlock(&c->lock);
    return keep ? OP_RELEASED : OP_CLOSED;
}

static void worker_loop(int sock)
{
    for (;;) {
        struct job j;
        struct iovec iov = { &j, sizeof j };
        union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } cb;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = cb.b, .msg_controllen = sizeof cb.b };
        ssize_t n = recvmsg(sock, &mh, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            msg("worker %d: TCP main is gone (%s)", worker_no, n ? strerror(errno) : "EOF");
            _exit(3);
        }
        struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
        if (n != sizeof j || !ch || ch->cmsg_level != SOL_SOCKET || ch->cmsg_type != SCM_RIGHTS ||
            j.idx < 0 || j.idx >= MAX_CONNS) {
            msg("worker %d: bad job", worker_no);
            continue;
        }
        int fd;
        memcpy(&fd, CMSG_DATA(ch), sizeof fd);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        if (!have_first_job) {
            clock_gettime(CLOCK_MONOTONIC, &first_job);
            have_first_job = 1;
        }
        struct answer a = { serve(j.idx, fd), j.idx };
        close(fd);
        while (send(sock, &a, sizeof a, MSG_NOSIGNAL) < 0) {
            if (errno != EINTR) {
                msg("worker %d: cannot answer TCP main: %s", worker_no, strerror(errno));
                _exit(3);
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* TCP main                                                            */

enum { EV_LISTEN = 1, EV_WORKER = 2, EV_CONN = 3 };
#define EV(type, n) (((uint64_t)(type) << 32) | (uint32_t)(n))

static int ep, lsock, nworkers, rr;
static int wsock[MAX_WORKERS];          /* TCP main's ends */
static int mfd[MAX_CONNS];              /* TCP main's fd of each connection */
static char in_ep[MAX_CONNS];           /* idle: in TCP main's epoll */
static int free_slots[MAX_CONNS], nfree;
static int load[MAX_WORKERS];           /* jobs handed to each worker, not yet answered */

static void conn_close(int idx)
{
    close(mfd[idx]);
    mfd[idx] = -1;
    A->conns[idx].state = CONN_FREE;
    free_slots[nfree++] = idx;
}

static void dispatch(int idx);

static void conn_idle(int idx)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = EV(EV_CONN, idx) };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, mfd[idx], &ev) == 0)
        in_ep[idx] = 1;
    else {
        msg("TCP main: epoll_ctl ADD: %s", strerror(errno));
        dispatch(idx);
    }
}

static void worker_answers(int w)
{
    struct answer a;
    for (;;) {
        ssize_t n = recv(wsock[w], &a, sizeof a, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return;
        if (n == 0) {                   /* the worker is gone; the attendant acts */
            epoll_ctl(ep, EPOLL_CTL_DEL, wsock[w], NULL);
            return;
        }
        if (n != sizeof a || a.idx < 0 || a.idx >= MAX_CONNS || mfd[a.idx] < 0)
            continue;
        if (load[w] > 0)
            load[w]--;
        if (a.op == OP_RELEASED)
            conn_idle(a.idx);
        else
            conn_close(a.idx);
    }
}

/* To the least busy worker (fewest jobs not yet answered), as OpenSIPS's
 * TCP main does: a worker stuck for good keeps its count, so it is skipped. */
static void dispatch(int idx)
{
    int w = rr;
    for (int k = 0; k < nworkers; k++) {
        int c = (rr + k) % nworkers;
        if (load[c] < load[w])
            w = c;
    }
    rr = (rr + 1) % nworkers;
    load[w]++;
    struct job j = { idx };
    struct iovec iov = { &j, sizeof j };
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } cb;
    memset(&cb, 0, sizeof cb);
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = cb.b, .msg_controllen = sizeof cb.b };
    struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
    ch->cmsg_level = SOL_SOCKET;
    ch->cmsg_type = SCM_RIGHTS;
    ch->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(ch), &mfd[idx], sizeof(int));
    for (;;) {
        if (sendmsg(wsock[w], &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
            return;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            msg("TCP main: sendmsg to worker %d: %s", w, strerror(errno));
            conn_close(idx);            /* its SSL (if any) is lost with it */
            return;
        }
        /* the worker's queue is full: wait for room, reading answers meanwhile
           (so that a worker blocked on answering us cannot deadlock us) */
        struct pollfd p[MAX_WORKERS + 1];
        p[0] = (struct pollfd){ wsock[w], POLLOUT, 0 };
        for (int i = 0; i < nworkers; i++)
            p[i + 1] = (struct pollfd){ wsock[i], POLLIN, 0 };
        if (poll(p, (nfds_t)nworkers + 1, -1) < 0 && errno != EINTR)
            return;
        for (int i = 0; i < nworkers; i++)
            if (p[i + 1].revents)
                worker_answers(i);
    }
}

static void accept_all(void)
{
    for (;;) {
        int fd = accept4(lsock, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return;
        }
        if (!nfree) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int idx = free_slots[--nfree];
        struct conn *c = &A->conns[idx];
        c->state = CONN_USED;
        c->hs_done = 0;
        c->len = 0;
        c->ssl = NULL;
        mfd[idx] = fd;
        dispatch(idx);
    }
}

static void tcp_main(void)
{
    for (int i = MAX_CONNS - 1; i >= 0; i--) {
        mfd[i] = -1;
        free_slots[nfree++] = i;
    }
    if ((ep = epoll_create1(0)) < 0) {
        msg("TCP main: epoll_create1: %s", strerror(errno));
        _exit(3);
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV(EV_LISTEN, 0) };
    epoll_ctl(ep, EPOLL_CTL_ADD, lsock, &ev);
    for (int w = 0; w < nworkers; w++) {
        ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = EV(EV_WORKER, w) };
        epoll_ctl(ep, EPOLL_CTL_ADD, wsock[w], &ev);
    }
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            msg("TCP main: epoll_wait: %s", strerror(errno));
            _exit(3);
        }
        for (int i = 0; i < n; i++) {
            int type = (int)(evs[i].data.u64 >> 32), x = (int)(uint32_t)evs[i].data.u64;
            if (type == EV_LISTEN)
                accept_all();
            else if (type == EV_WORKER)
                worker_answers(x);
            else if (type == EV_CONN && mfd[x] >= 0 && in_ep[x]) {
                epoll_ctl(ep, EPOLL_CTL_DEL, mfd[x], NULL);
                in_ep[x] = 0;
                dispatch(x);
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* processes                                                           */

static pid_t attendant, kids[MAX_WORKERS + 2];
static const char *kid_role[MAX_WORKERS + 2];
static int nkids;

static void child_setup(void)
{
    sigset_t none;
    sigemptyset(&none);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != attendant)
        _exit(0);
}

static void kill_all_and_exit(int code)
{
    for (int i = nkids - 1; i >= 0; i--)  /* workers first, TCP main last */
        if (kids[i] > 0)
            kill(kids[i], SIGKILL);
    for (int i = 0; i < nkids; i++)
        if (kids[i] > 0)
            while (waitpid(kids[i], NULL, 0) < 0 && errno == EINTR)
                ;
    _exit(code);
}

static void attendant_loop(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig < 0)
            continue;
        if (sig == SIGTERM || sig == SIGINT)
            kill_all_and_exit(0);
        /* SIGCHLD: a shutdown signal that is already pending wins */
        sigset_t pend;
        sigpending(&pend);
        if (sigismember(&pend, SIGTERM) || sigismember(&pend, SIGINT))
            kill_all_and_exit(0);
        int died = 0, st;
        pid_t p;
        while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
            const char *role = "?";
            for (int i = 0; i < nkids; i++)
                if (kids[i] == p) {
                    kids[i] = 0;
                    role = kid_role[i];
                }
            if (WIFSIGNALED(st))
                msg("child process %d exited by a signal %d", (int)p, WTERMSIG(st));
            else
                msg("child process %d exited with status %d", (int)p, WEXITSTATUS(st));
            msg("process %d (%s) is gone; stopping all processes", (int)p, role);
            died = 1;
        }
        if (died)
            kill_all_and_exit(1);
    }
}

static void timer_loop(void)
{
    struct timespec t = { 0, 100 * 1000000L };
    for (;;)
        nanosleep(&t, NULL);
}

int main(int argc, char **argv)
{
    static char roles[MAX_WORKERS][24];
    int sp[MAX_WORKERS][2];

    parse_args(argc, argv);
    resolve_real();
    signal(SIGPIPE, SIG_IGN);
    arena_create();

    if (!CRYPTO_set_mem_functions(arena_malloc, arena_realloc, arena_free)) {
        msg("CRYPTO_set_mem_functions failed (OpenSSL allocated memory already)");
        return 1;
    }
    if (opt.fix_thread_init) {
        pthread_t t;
        int e = pthread_create(&t, NULL, tls_init_thread, &ctx);
        if (e) {
            msg("pthread_create: %s", strerror(e));
            return 1;
        }
        pthread_join(t, NULL);
    } else {
        ctx = tls_init();
    }
    if (!ctx)
        return 1;

    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    lsock = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (lsock < 0 || setsockopt(lsock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(lsock, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lsock, 1024) < 0) {
        msg("cannot listen on 127.0.0.1:%d: %s", opt.port, strerror(errno));
        return 1;
    }
    nworkers = opt.workers;
    for (int w = 0; w < nworkers; w++) {
        if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp[w]) < 0) {
            msg("socketpair: %s", strerror(errno));
            return 1;
        }
        wsock[w] = sp[w][0];
    }

    attendant = getpid();
    fprintf(stderr, "refserver: ready on 127.0.0.1:%d (%d workers, pid %d)\n",
            opt.port, nworkers, (int)attendant);
    fflush(stderr);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);

    for (int k = -2; k < nworkers; k++) {   /* -2 TCP main, -1 timer, 0.. workers */
        pid_t p = fork();
        if (p < 0) {
            msg("fork: %s", strerror(errno));
            kill_all_and_exit(1);
        }
        if (p == 0) {
            child_setup();
            if (k == -2) {
                for (int w = 0; w < nworkers; w++)
                    close(sp[w][1]);
                tcp_main();
            } else if (k == -1) {
                close(lsock);
                for (int w = 0; w < nworkers; w++) {
                    close(sp[w][0]);
                    close(sp[w][1]);
                }
                timer_loop();
            } else {
                close(lsock);
                for (int w = 0; w < nworkers; w++) {
                    close(sp[w][0]);
                    if (w != k)
                        close(sp[w][1]);
                }
                worker_no = k;
                for (int i = 0; i < nfaults; i++)
                    if (faults[i].worker == k)
                        my_fault = &faults[i];
                worker_loop(sp[k][1]);
            }
            _exit(3);
        }
        kids[nkids] = p;
        if (k == -2)
            kid_role[nkids] = "TCP main";
        else if (k == -1)
            kid_role[nkids] = "timer";
        else {
            snprintf(roles[k], sizeof roles[k], "worker %d", k);
            kid_role[nkids] = roles[k];
        }
        nkids++;
    }
    close(lsock);
    for (int w = 0; w < nworkers; w++) {
        close(sp[w][0]);
        close(sp[w][1]);
    }
    attendant_loop();
    return 0;
}
