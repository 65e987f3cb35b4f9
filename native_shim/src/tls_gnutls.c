/* GnuTLS adapter.  gnutls_global_set_mem_functions is exported but a no-op
 * since 3.3: the hook "succeeds" and is never called (the probe counts it). */
#define _GNU_SOURCE
#include "tlsh_lib.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gnutls/gnutls.h>

struct gctx {
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t prio;
};

static void *g_malloc(size_t n) { return tlsh_hook_malloc(n, NULL, 0); }
static void *g_calloc(size_t n, size_t s) { return tlsh_arena_calloc(tlsh_hook_arena, n, s); }
static void g_free(void *p) { tlsh_hook_free(p, NULL, 0); }
static void *g_realloc(void *p, size_t n) { return tlsh_hook_realloc(p, n, NULL, 0); }
static int g_is_secure(const void *p) { (void)p; return 0; }

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static int g_hook(tlsh_arena *a)
{
    tlsh_hook_arena = a;
    gnutls_global_set_mem_functions(g_malloc, g_malloc, g_is_secure, g_realloc, g_free);
    (void)g_calloc;
    return 0;       /* accepted; whether it is ever called is for the probe to measure */
}
#pragma GCC diagnostic pop

int tlsh_lib_init(int flags) { (void)flags; return gnutls_global_init() == 0 ? 0 : -1; }

const char *tlsh_lib_version(void)
{
    static char v[64];
    snprintf(v, sizeof(v), "GnuTLS %s", gnutls_check_version(NULL));
    return v;
}

void *tlsh_lib_ctx_new(const char *cert, const char *key, int tls_version,
                       const char *ciphers, int tickets, char *err, size_t errlen)
{
    (void)tickets;
    struct gctx *g = calloc(1, sizeof(*g));
    int rc;
    if ((rc = gnutls_certificate_allocate_credentials(&g->cred)) < 0
        || (rc = gnutls_certificate_set_x509_key_file(g->cred, cert, key, GNUTLS_X509_FMT_PEM)) < 0) {
        snprintf(err, errlen, "certificate/key: %s", gnutls_strerror(rc));
        return NULL;
    }
    char prio[256];
    snprintf(prio, sizeof(prio), "%s:-VERS-ALL:+VERS-TLS1.%d",
             ciphers && *ciphers ? ciphers : "NORMAL", tls_version == 12 ? 2 : 3);
    const char *epos;
    if ((rc = gnutls_priority_init(&g->prio, prio, &epos)) < 0) {
        snprintf(err, errlen, "priority %s: %s", prio, gnutls_strerror(rc));
        return NULL;
    }
    return g;
}

static void *g_new(void *ctx)
{
    struct gctx *g = ctx;
    gnutls_session_t s;
    if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK) < 0) return NULL;
    if (gnutls_priority_set(s, g->prio) < 0
        || gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, g->cred) < 0) {
        gnutls_deinit(s);
        return NULL;
    }
    return s;
}

static int g_set_fd(void *s, int fd) { gnutls_transport_set_int((gnutls_session_t)s, fd); return 0; }

static int map_err(gnutls_session_t s, int r)
{
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
        return gnutls_record_get_direction(s) ? TLSH_IO_WANT_WRITE : TLSH_IO_WANT_READ;
    if (r == 0 || r == GNUTLS_E_PREMATURE_TERMINATION || r == GNUTLS_E_PUSH_ERROR
        || r == GNUTLS_E_PULL_ERROR)
        return TLSH_IO_CLOSED;
    return TLSH_IO_ERROR;
}

static int g_handshake(void *s)
{
    int r = gnutls_handshake((gnutls_session_t)s);
    return r == 0 ? TLSH_IO_OK : map_err(s, r);
}

static int g_read(void *s, void *buf, int len)
{
    ssize_t r = gnutls_record_recv((gnutls_session_t)s, buf, (size_t)len);
    return r > 0 ? (int)r : map_err(s, (int)r);
}

static int g_write(void *s, const void *buf, int len)
{
    ssize_t r = gnutls_record_send((gnutls_session_t)s, buf, (size_t)len);
    return r > 0 ? (int)r : map_err(s, (int)r);
}

static int g_pending(void *s) { return (int)gnutls_record_check_pending((gnutls_session_t)s); }
static void g_shutdown(void *s) { gnutls_bye((gnutls_session_t)s, GNUTLS_SHUT_WR); }
static void g_deinit(void *s) { gnutls_deinit((gnutls_session_t)s); }
static void g_clear(void) {}
static void g_last_error(char *buf, size_t len) { buf[0] = 0; (void)len; }

#include <gnutls/crypto.h>
static int g_random(void *ctx, unsigned char *b, int n)
{
    (void)ctx;
    return gnutls_rnd(GNUTLS_RND_NONCE, b, (size_t)n) == 0 ? 0 : -1;
}

static const struct tlsh_tls_ops OPS = {
    "gnutls", g_new, g_set_fd, g_handshake, g_read, g_write, g_pending,
    g_shutdown, g_deinit, g_clear, g_last_error, g_random,
};

const struct tlsh_tls_ops *tlsh_lib_ops(void) { return &OPS; }

void tlsh_lib_caps(struct tlsh_lib_caps *c)
{
    memset(c, 0, sizeof(*c));
    c->alloc_hook = 1;      /* exported (a no-op: see the probe) */
    c->lock_hook = 1;       /* gnutls_global_set_mutex */
    c->tls13 = 1;
    snprintf(c->flags, sizeof(c->flags), "gnutls_global_set_mem_functions deprecated no-op");
}

/* gnutls_global_set_mutex with counting wrappers over pthread mutexes. */
#include <pthread.h>
static unsigned long lock_calls;
static int c_init(void **m)
{
    pthread_mutex_t *p = malloc(sizeof(*p));
    if (!p) return GNUTLS_E_MEMORY_ERROR;
    pthread_mutex_init(p, NULL);
    *m = p;
    return 0;
}
static int c_deinit(void **m) { pthread_mutex_destroy(*m); free(*m); return 0; }
static int c_lock(void **m)
{
    __atomic_add_fetch(&lock_calls, 1, __ATOMIC_RELAXED);
    return pthread_mutex_lock(*m) ? GNUTLS_E_LOCKING_ERROR : 0;
}
static int c_unlock(void **m) { return pthread_mutex_unlock(*m) ? GNUTLS_E_LOCKING_ERROR : 0; }

static int g_set_lock_counting(int on)
{
    /* must precede gnutls_global_init to affect the library's own mutexes */
    if (on) gnutls_global_set_mutex(c_init, c_deinit, c_lock, c_unlock);
    return 0;
}

static unsigned long g_lock_calls(void) { return lock_calls; }

void tlsh_lib_ctx_free(void *ctx)
{
    struct gctx *g = ctx;
    gnutls_priority_deinit(g->prio);
    gnutls_certificate_free_credentials(g->cred);
    free(g);
}

static int g_parent_use(void)
{
    unsigned char b[32];
    return gnutls_rnd(GNUTLS_RND_NONCE, b, sizeof b) == 0 ? 0 : -1;
}

/* No per-thread state to stop, no replaceable RAND method (OpenSSL only). */
static const struct tlsh_lib_optional OPTIONAL = {
    .hook = g_hook,
    .parent_use = g_parent_use,
    .set_lock_counting = g_set_lock_counting,
    .lock_calls = g_lock_calls,
    .lock_counting_by = TLSH_LOCKS_BY_HOOK,
};

const struct tlsh_lib_optional *tlsh_lib_optional(void) { return &OPTIONAL; }
