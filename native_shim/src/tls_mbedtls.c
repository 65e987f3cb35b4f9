/* mbed TLS 2.x and 3.x adapter.  Debian's build has no allocator hook
 * (MBEDTLS_PLATFORM_MEMORY off) and no THREADING_ALT: its optional table
 * has no hook, and the stand refuses shared memory for it unless
 * interposed. */
#define _GNU_SOURCE
#include "tlsh_lib.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#if defined(MBEDTLS_THREADING_C)
#include <mbedtls/threading.h>
#endif

struct mctx {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt crt;
    mbedtls_pk_context key;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
};

struct msess {
    mbedtls_ssl_context ssl;
    mbedtls_net_context net;
};

/* In mbed TLS the application owns the context structures: they come from
 * the library's own allocator, so that with the allocator hook (a build with
 * MBEDTLS_PLATFORM_MEMORY) they live in the arena like everything the
 * library allocates behind them.  Without the hook these are calloc/free. */
#define M_NEW(type) ((type *)mbedtls_calloc(1, sizeof(type)))

/* A settable allocator only with PLATFORM_MEMORY and without compile-time
 * calloc/free macros. */
#if defined(MBEDTLS_PLATFORM_MEMORY) && !defined(MBEDTLS_PLATFORM_CALLOC_MACRO)
#define M_HOOK 1
static void *m_calloc(size_t n, size_t size) { return tlsh_arena_calloc(tlsh_hook_arena, n, size); }
static void m_freefn(void *p) { tlsh_hook_free(p, NULL, 0); }

static int m_hook(tlsh_arena *a)
{
    tlsh_hook_arena = a;
    return mbedtls_platform_set_calloc_free(m_calloc, m_freefn) == 0 ? 0 : -1;
}
#endif

int tlsh_lib_init(int flags) { (void)flags; return 0; }

const char *tlsh_lib_version(void)
{
    static char v[64];
    char s[32];
    mbedtls_version_get_string(s);
    snprintf(v, sizeof(v), "mbed TLS %s", s);
    return v;
}

static void errstr(char *err, size_t n, const char *what, int rc)
{
    char buf[128];
    mbedtls_strerror(rc, buf, sizeof(buf));
    snprintf(err, n, "%s: %s (-0x%04x)", what, buf, (unsigned)-rc);
}

void *tlsh_lib_ctx_new(const char *cert, const char *key, int tls_version,
                       const char *ciphers, int tickets, char *err, size_t errlen)
{
    (void)ciphers; (void)tickets;
    if (tls_version == 13) {
#if !defined(MBEDTLS_SSL_PROTO_TLS1_3) && !defined(MBEDTLS_SSL_PROTO_TLS1_3_EXPERIMENTAL)
        snprintf(err, errlen, "this mbed TLS build has no TLS 1.3 (use --tls 1.2)");
        return NULL;
#endif
    }
    struct mctx *m = M_NEW(struct mctx);
    if (!m) { snprintf(err, errlen, "out of memory"); return NULL; }
    int rc;
    mbedtls_ssl_config_init(&m->conf);
    mbedtls_x509_crt_init(&m->crt);
    mbedtls_pk_init(&m->key);
    mbedtls_entropy_init(&m->entropy);
    mbedtls_ctr_drbg_init(&m->drbg);
    if ((rc = mbedtls_ctr_drbg_seed(&m->drbg, mbedtls_entropy_func, &m->entropy,
                                    (const unsigned char *)"tlsh", 4)) != 0) {
        errstr(err, errlen, "ctr_drbg_seed", rc);
        return NULL;
    }
    if ((rc = mbedtls_x509_crt_parse_file(&m->crt, cert)) != 0) {
        errstr(err, errlen, "certificate", rc);
        return NULL;
    }
#if MBEDTLS_VERSION_MAJOR >= 3
    rc = mbedtls_pk_parse_keyfile(&m->key, key, NULL, mbedtls_ctr_drbg_random, &m->drbg);
#else
    rc = mbedtls_pk_parse_keyfile(&m->key, key, NULL);
#endif
    if (rc != 0) { errstr(err, errlen, "private key", rc); return NULL; }
    if ((rc = mbedtls_ssl_config_defaults(&m->conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
        errstr(err, errlen, "config defaults", rc);
        return NULL;
    }
    mbedtls_ssl_conf_rng(&m->conf, mbedtls_ctr_drbg_random, &m->drbg);
    if ((rc = mbedtls_ssl_conf_own_cert(&m->conf, &m->crt, &m->key)) != 0) {
        errstr(err, errlen, "own cert", rc);
        return NULL;
    }
    if (tls_version == 12) {
#if MBEDTLS_VERSION_MAJOR >= 3
        mbedtls_ssl_conf_min_tls_version(&m->conf, MBEDTLS_SSL_VERSION_TLS1_2);
        mbedtls_ssl_conf_max_tls_version(&m->conf, MBEDTLS_SSL_VERSION_TLS1_2);
#else
        mbedtls_ssl_conf_min_version(&m->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
        mbedtls_ssl_conf_max_version(&m->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#endif
    }
    return m;
}

static void *m_new(void *ctx)
{
    struct mctx *m = ctx;
    struct msess *s = M_NEW(struct msess);
    if (!s) return NULL;
    mbedtls_ssl_init(&s->ssl);
    mbedtls_net_init(&s->net);
    if (mbedtls_ssl_setup(&s->ssl, &m->conf) != 0) {
        mbedtls_ssl_free(&s->ssl);
        mbedtls_free(s);
        return NULL;
    }
    return s;
}

static int m_set_fd(void *p, int fd)
{
    struct msess *s = p;
    s->net.fd = fd;
    mbedtls_ssl_set_bio(&s->ssl, &s->net, mbedtls_net_send, mbedtls_net_recv, NULL);
    return 0;
}

static int map_err(int r)
{
    switch (r) {
    case MBEDTLS_ERR_SSL_WANT_READ: return TLSH_IO_WANT_READ;
    case MBEDTLS_ERR_SSL_WANT_WRITE: return TLSH_IO_WANT_WRITE;
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY: return TLSH_IO_CLOSED;
    case MBEDTLS_ERR_NET_CONN_RESET: return TLSH_IO_CLOSED;
    case 0: return TLSH_IO_CLOSED;
    default: return TLSH_IO_ERROR;
    }
}

static int m_handshake(void *p)
{
    int r = mbedtls_ssl_handshake(&((struct msess *)p)->ssl);
    return r == 0 ? TLSH_IO_OK : map_err(r);
}

static int m_read(void *p, void *buf, int len)
{
    int r = mbedtls_ssl_read(&((struct msess *)p)->ssl, buf, (size_t)len);
    return r > 0 ? r : map_err(r);
}

static int m_write(void *p, const void *buf, int len)
{
    int r = mbedtls_ssl_write(&((struct msess *)p)->ssl, buf, (size_t)len);
    return r > 0 ? r : map_err(r);
}

static int m_pending(void *p) { return (int)mbedtls_ssl_get_bytes_avail(&((struct msess *)p)->ssl); }
static void m_shutdown(void *p) { mbedtls_ssl_close_notify(&((struct msess *)p)->ssl); }

static void m_free(void *p)
{
    struct msess *s = p;
    mbedtls_ssl_free(&s->ssl);
    mbedtls_free(s);
}

static void m_clear(void) {}
static void m_last_error(char *buf, size_t len) { buf[0] = 0; (void)len; }

static int m_random(void *ctx, unsigned char *b, int n)
{
    return mbedtls_ctr_drbg_random(&((struct mctx *)ctx)->drbg, b, (size_t)n) == 0 ? 0 : -1;
}

static const struct tlsh_tls_ops OPS = {
    "mbedtls", m_new, m_set_fd, m_handshake, m_read, m_write, m_pending,
    m_shutdown, m_free, m_clear, m_last_error, m_random,
};

const struct tlsh_tls_ops *tlsh_lib_ops(void) { return &OPS; }

void tlsh_lib_caps(struct tlsh_lib_caps *c)
{
    memset(c, 0, sizeof(*c));
    int pm = 0, ta = 0, tc = 0;
#if defined(MBEDTLS_PLATFORM_MEMORY)
    pm = 1;
#endif
#if defined(M_HOOK)
    c->alloc_hook = 1;
#endif
#if defined(MBEDTLS_THREADING_ALT)
    ta = 1;
    c->lock_hook = 1;
#endif
#if defined(MBEDTLS_THREADING_C)
    tc = 1;
#endif
#if defined(MBEDTLS_SSL_PROTO_TLS1_3) || defined(MBEDTLS_SSL_PROTO_TLS1_3_EXPERIMENTAL)
    c->tls13 = 1;
#endif
    snprintf(c->flags, sizeof(c->flags), "MBEDTLS_PLATFORM_MEMORY=%d MBEDTLS_THREADING_ALT=%d "
             "MBEDTLS_THREADING_C=%d", pm, ta, tc);
}

/* Without THREADING_ALT, mbedtls_mutex_lock/unlock are still exported
 * function pointers: wrapping them counts the lock calls. */
#if defined(MBEDTLS_THREADING_C)
static unsigned long lock_calls;
static int (*orig_lock)(mbedtls_threading_mutex_t *);
static int counting_lock(mbedtls_threading_mutex_t *m)
{
    __atomic_add_fetch(&lock_calls, 1, __ATOMIC_RELAXED);
    return orig_lock(m);
}

static int m_set_lock_counting(int on)
{
    if (on && !orig_lock) {
        orig_lock = mbedtls_mutex_lock;
        mbedtls_mutex_lock = counting_lock;
    } else if (!on && orig_lock) {
        mbedtls_mutex_lock = orig_lock;
        orig_lock = NULL;
    }
    return 0;
}

static unsigned long m_lock_calls(void) { return lock_calls; }
#endif

void tlsh_lib_ctx_free(void *ctx)
{
    struct mctx *m = ctx;
    mbedtls_ssl_config_free(&m->conf);
    mbedtls_x509_crt_free(&m->crt);
    mbedtls_pk_free(&m->key);
    mbedtls_ctr_drbg_free(&m->drbg);
    mbedtls_entropy_free(&m->entropy);
    mbedtls_free(m);
}

static int m_parent_use(void)
{
    /* a generator of the main process's own, as a client module would have */
    mbedtls_entropy_context e;
    mbedtls_ctr_drbg_context d;
    unsigned char b[32];
    mbedtls_entropy_init(&e);
    mbedtls_ctr_drbg_init(&d);
    int rc = mbedtls_ctr_drbg_seed(&d, mbedtls_entropy_func, &e, (const unsigned char *)"parent", 6);
    if (rc == 0) rc = mbedtls_ctr_drbg_random(&d, b, sizeof b);
    mbedtls_ctr_drbg_free(&d);
    mbedtls_entropy_free(&e);
    return rc == 0 ? 0 : -1;
}

/* No per-thread state to stop, no replaceable RAND method (OpenSSL only). */
static const struct tlsh_lib_optional OPTIONAL = {
#if defined(M_HOOK)
    .hook = m_hook,
#endif
    .parent_use = m_parent_use,
#if defined(MBEDTLS_THREADING_C)
    .set_lock_counting = m_set_lock_counting,
    .lock_calls = m_lock_calls,
    .lock_counting_by = TLSH_LOCKS_BY_WRAPPING,
#endif
};

const struct tlsh_lib_optional *tlsh_lib_optional(void) { return &OPTIONAL; }
