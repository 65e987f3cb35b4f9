/* wolfSSL adapter, used as the servers use it (OpenSIPS tls_wolfssl):
 * allocator pointed at the arena with wolfSSL_SetAllocators, application
 * locking only (no lock hook in this build), optional write_dup. */
#define _GNU_SOURCE
#include "tlsh_lib.h"
#include <stdio.h>
#include <string.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/version.h>
#include <wolfssl/wolfcrypt/memory.h>

static void *w_malloc(size_t n) { return tlsh_hook_malloc(n, NULL, 0); }
static void w_free(void *p) { tlsh_hook_free(p, NULL, 0); }
static void *w_realloc(void *p, size_t n) { return tlsh_hook_realloc(p, n, NULL, 0); }

static int w_hook(tlsh_arena *a)
{
    tlsh_hook_arena = a;
    return wolfSSL_SetAllocators(w_malloc, w_free, w_realloc) == 0 ? 0 : -1;
}

int tlsh_lib_init(int flags) { (void)flags; return wolfSSL_Init() == WOLFSSL_SUCCESS ? 0 : -1; }
void tlsh_lib_ctx_free(void *ctx) { wolfSSL_CTX_free((WOLFSSL_CTX *)ctx); }

const char *tlsh_lib_version(void)
{
    static char v[64];
    snprintf(v, sizeof(v), "wolfSSL %s", wolfSSL_lib_version());
    return v;
}

void *tlsh_lib_ctx_new(const char *cert, const char *key, int tls_version,
                       const char *ciphers, int tickets, char *err, size_t errlen)
{
    WOLFSSL_METHOD *m = tls_version == 12 ? wolfTLSv1_2_server_method() : wolfTLSv1_3_server_method();
    WOLFSSL_CTX *ctx = m ? wolfSSL_CTX_new(m) : NULL;
    if (!ctx) { snprintf(err, errlen, "wolfSSL_CTX_new failed"); return NULL; }
    if (ciphers && *ciphers && wolfSSL_CTX_set_cipher_list(ctx, ciphers) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "cipher list %s refused", ciphers);
        wolfSSL_CTX_free(ctx);
        return NULL;
    }
    if (wolfSSL_CTX_use_certificate_chain_file(ctx, cert) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "certificate %s refused", cert);
        wolfSSL_CTX_free(ctx);
        return NULL;
    }
    if (wolfSSL_CTX_use_PrivateKey_file(ctx, key, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "private key %s refused", key);
        wolfSSL_CTX_free(ctx);
        return NULL;
    }
#ifdef HAVE_SESSION_TICKET
    if (!tickets) {
#if LIBWOLFSSL_VERSION_HEX >= 0x05000000
        wolfSSL_CTX_NoTicketTLSv12(ctx);
#endif
#ifdef WOLFSSL_TLS13
        wolfSSL_CTX_no_ticket_TLSv13(ctx);
#endif
    }
#endif
    (void)tickets;
    return ctx;
}

static void *w_new(void *ctx) { return wolfSSL_new((WOLFSSL_CTX *)ctx); }
static int w_set_fd(void *s, int fd) { return wolfSSL_set_fd((WOLFSSL *)s, fd) == WOLFSSL_SUCCESS ? 0 : -1; }

static int map_err(WOLFSSL *s, int r)
{
    switch (wolfSSL_get_error(s, r)) {
    case WOLFSSL_ERROR_WANT_READ: return TLSH_IO_WANT_READ;
    case WOLFSSL_ERROR_WANT_WRITE: return TLSH_IO_WANT_WRITE;
    case WOLFSSL_ERROR_ZERO_RETURN: return TLSH_IO_CLOSED;
    case SOCKET_PEER_CLOSED_E: return TLSH_IO_CLOSED;
    case WOLFSSL_ERROR_SYSCALL: return TLSH_IO_CLOSED;
    default: return TLSH_IO_ERROR;
    }
}

static int w_handshake(void *s)
{
    int r = wolfSSL_accept((WOLFSSL *)s);
    return r == WOLFSSL_SUCCESS ? TLSH_IO_OK : map_err(s, r);
}

static int w_read(void *s, void *buf, int len)
{
    int r = wolfSSL_read((WOLFSSL *)s, buf, len);
    return r > 0 ? r : map_err(s, r);
}

static int w_write(void *s, const void *buf, int len)
{
    int r = wolfSSL_write((WOLFSSL *)s, buf, len);
    return r > 0 ? r : map_err(s, r);
}

static int w_pending(void *s) { return wolfSSL_pending((WOLFSSL *)s); }
static void w_shutdown(void *s) { wolfSSL_set_quiet_shutdown((WOLFSSL *)s, 1); wolfSSL_shutdown((WOLFSSL *)s); }
static void w_free_sess(void *s) { wolfSSL_free((WOLFSSL *)s); }
static void w_clear(void) { wolfSSL_ERR_clear_error(); }

static void w_last_error(char *buf, size_t len)
{
    unsigned long e = wolfSSL_ERR_peek_last_error();
    buf[0] = 0;
    if (e) wolfSSL_ERR_error_string_n(e, buf, len);
}

static int w_random(void *ctx, unsigned char *b, int n)
{
    (void)ctx;
    return wolfSSL_RAND_bytes(b, n) == WOLFSSL_SUCCESS ? 0 : -1;
}

static const struct tlsh_tls_ops OPS = {
    "wolfssl", w_new, w_set_fd, w_handshake, w_read, w_write, w_pending,
    w_shutdown, w_free_sess, w_clear, w_last_error, w_random,
};

const struct tlsh_tls_ops *tlsh_lib_ops(void) { return &OPS; }

void tlsh_lib_caps(struct tlsh_lib_caps *c)
{
    memset(c, 0, sizeof(*c));
    c->alloc_hook = 1;      /* wolfSSL_SetAllocators */
#ifdef WOLFSSL_USER_MUTEX
    c->lock_hook = 1;
#endif
#ifdef WOLFSSL_TLS13
    c->tls13 = 1;
#endif
#ifdef HAVE_WRITE_DUP
    c->write_dup = 1;
#endif
    snprintf(c->flags, sizeof(c->flags), "HAVE_THREAD_LS=%d WOLFSSL_USER_MUTEX=%d HAVE_WRITE_DUP=%d",
#ifdef HAVE_THREAD_LS
             1,
#else
             0,
#endif
#ifdef WOLFSSL_USER_MUTEX
             1,
#else
             0,
#endif
             c->write_dup);
}

static int w_parent_use(void)
{
    unsigned char b[32];
    return wolfSSL_RAND_bytes(b, sizeof b) == WOLFSSL_SUCCESS ? 0 : -1;
}

#ifdef HAVE_WRITE_DUP
static void *w_write_dup(void *s) { return wolfSSL_write_dup((WOLFSSL *)s); }
#endif

/* No per-thread state to stop, no replaceable RAND method (OpenSSL only),
 * no lock hook to count through in this build. */
static const struct tlsh_lib_optional OPTIONAL = {
    .hook = w_hook,
    .parent_use = w_parent_use,
#ifdef HAVE_WRITE_DUP
    .write_dup = w_write_dup,
#endif
};

const struct tlsh_lib_optional *tlsh_lib_optional(void) { return &OPTIONAL; }
