/* OpenSSL adapter: allocator hooks to the arena, server contexts, and the
 * tlsh_tls_ops used by the worker loop. */
#define _GNU_SOURCE
#include "tlsh_lib.h"
#include "openssl_server.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/* Point libcrypto's allocator at the arena.  Must be the first libcrypto
 * call of the process: refused (-1) when OpenSSL has already allocated
 * (Python's ssl or hashlib imported first, for instance). */
#if TLSH_MEM_FILE_LINE
static int o_hook(tlsh_arena *a)
{
    tlsh_hook_arena = a;
    return CRYPTO_set_mem_functions(tlsh_hook_malloc, tlsh_hook_realloc, tlsh_hook_free) ? 0 : -1;
}
#elif TLSH_MEM_LINK_TIME        /* BoringSSL: no setter, weak symbols bound at load time */
/* libcrypto calls OPENSSL_memory_alloc/free/get_size when the process
 * defines them.  Its references are weak and bound when libcrypto is
 * loaded; this extension is what loads it, so the definitions here are in
 * scope then.  Blocks made before the hook (libcrypto's load-time state)
 * are private; every block carries its size and where it lives.  BoringSSL
 * leaves zeroing freed memory to these functions. */
#include <openssl/mem.h>
#include <stdint.h>
#include <stdlib.h>

struct lt_hdr { uint64_t size; uint64_t in_arena; };    /* 16 bytes: alignment kept */
#define LT_HDR 16

__attribute__((visibility("default"))) void *OPENSSL_memory_alloc(size_t n)
{
    tlsh_arena *a = tlsh_hook_arena;
    struct lt_hdr *h = a ? tlsh_arena_malloc(a, n + LT_HDR) : malloc(n + LT_HDR);
    if (!h) return NULL;
    h->size = n;
    h->in_arena = a != NULL;
    return (char *)h + LT_HDR;
}

__attribute__((visibility("default"))) void OPENSSL_memory_free(void *p)
{
    struct lt_hdr *h = (struct lt_hdr *)((char *)p - LT_HDR);
    size_t n = (size_t)h->size;
    int in_arena = h->in_arena;
    explicit_bzero(h, n + LT_HDR);
    if (!in_arena)
        free(h);
    else if (tlsh_hook_arena)       /* after the arena is gone its blocks are gone with it */
        tlsh_arena_free(tlsh_hook_arena, h);
}

__attribute__((visibility("default"))) size_t OPENSSL_memory_get_size(void *p)
{
    return (size_t)((struct lt_hdr *)((char *)p - LT_HDR))->size;
}

/* Accepted only when libcrypto really calls the functions above: a block
 * asked of it must land in the arena. */
static int o_hook(tlsh_arena *a)
{
    tlsh_hook_arena = a;
    void *p = OPENSSL_malloc(64);
    int ok = p && tlsh_arena_contains(a, p);
    OPENSSL_free(p);
    if (!ok) tlsh_hook_arena = NULL;
    return ok ? 0 : -1;
}
#elif TLSH_MEM_PLAIN            /* LibreSSL: the same hook without file and line */
static void *p_malloc(size_t n) { return tlsh_hook_malloc(n, NULL, 0); }
static void *p_realloc(void *p, size_t n) { return tlsh_hook_realloc(p, n, NULL, 0); }
static void p_free(void *p) { tlsh_hook_free(p, NULL, 0); }
static int o_hook(tlsh_arena *a)
{
    tlsh_hook_arena = a;
    return CRYPTO_set_mem_functions(p_malloc, p_realloc, p_free) ? 0 : -1;
}
#endif

int tlsh_lib_init(int flags)
{
    /* Without TLSH_INIT_NO_ATEXIT OpenSSL registers its cleanup with atexit(),
     * as it does in the servers that crashed at shutdown: every process that
     * leaves through exit() then frees the same shared objects (OpenSIPS
     * #1121, #1304).  Workers normally leave with _exit().  OpenSSL 4.0
     * registers none (TLSH_HAVE_ATEXIT_CLEANUP unset) and still defines the
     * option, as a no-op. */
    uint64_t o = OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS;
#ifdef OPENSSL_INIT_NO_ATEXIT
    if (flags & TLSH_INIT_NO_ATEXIT)
        o |= OPENSSL_INIT_NO_ATEXIT;
#else
    if (flags & TLSH_INIT_NO_ATEXIT)
        return -1;              /* no such option in this library: the mitigation cannot be had */
#endif
    return OPENSSL_init_ssl(o, NULL) == 1 ? 0 : -1;
}

void tlsh_lib_ctx_free(void *ctx) { SSL_CTX_free((SSL_CTX *)ctx); }

const char *tlsh_lib_version(void) { return OpenSSL_version(OPENSSL_VERSION); }

static void errstr(char *err, size_t n, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[200] = "";
    if (e) ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(err, n, "%s%s%s", what, e ? ": " : "", buf);
    ERR_clear_error();
}

void *tlsh_lib_ctx_new(const char *cert, const char *key, int tls_version,
                           const char *ciphers, int tickets, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) { errstr(err, errlen, "SSL_CTX_new"); return NULL; }
    int v = tls_version == 12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    SSL_CTX_set_min_proto_version(ctx, v);
    SSL_CTX_set_max_proto_version(ctx, v);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (!tickets) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
#ifdef SSL_OP_ALLOW_CLIENT_RENEGOTIATION
    /* 3.0 refuses client renegotiation by default; the servers modelled ran
     * on 1.1.x, which allowed it (--rekey-every with TLS 1.2) */
    SSL_CTX_set_options(ctx, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
#endif
    if (ciphers && *ciphers && tls_version == 12 && !SSL_CTX_set_cipher_list(ctx, ciphers)) {
        errstr(err, errlen, "cipher list");
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        errstr(err, errlen, "certificate");
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1
        || SSL_CTX_check_private_key(ctx) != 1) {
        errstr(err, errlen, "private key");
        SSL_CTX_free(ctx);
        return NULL;
    }
    static const unsigned char sid[] = "tlsharness";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    return ctx;
}

static void *o_new(void *ctx)
{
    SSL *ssl = SSL_new((SSL_CTX *)ctx);
    if (ssl) SSL_set_accept_state(ssl);
    return ssl;
}

/* Attach this process's fd as the servers do when a process takes the
 * connection over (OpenSIPS tls_update_fd): SSL_set_fd, i.e. a new socket
 * BIO allocated, and the old one freed, in whatever memory the library's
 * allocator points at. */
static int o_set_fd(void *s, int fd)
{
    return SSL_set_fd((SSL *)s, fd) == 1 ? 0 : -1;
}

static int map_err(SSL *ssl, int r)
{
    switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ: return TLSH_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE: return TLSH_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: return TLSH_IO_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) { ERR_clear_error(); return TLSH_IO_CLOSED; }
        return TLSH_IO_ERROR;
    default: return TLSH_IO_ERROR;
    }
}

static int o_handshake(void *s)
{
    int r = SSL_do_handshake((SSL *)s);
    return r == 1 ? TLSH_IO_OK : map_err(s, r);
}

static int o_read(void *s, void *buf, int len)
{
    int r = SSL_read((SSL *)s, buf, len);
    return r > 0 ? r : map_err(s, r);
}

static int o_write(void *s, const void *buf, int len)
{
    int r = SSL_write((SSL *)s, buf, len);
    return r > 0 ? r : map_err(s, r);
}

static int o_pending(void *s) { return SSL_pending((SSL *)s); }

static void o_shutdown(void *s)
{
    SSL_set_quiet_shutdown((SSL *)s, 1);
    SSL_shutdown((SSL *)s);
}

static void o_free(void *s) { SSL_free((SSL *)s); }
static void o_clear(void) { ERR_clear_error(); }

static void o_last_error(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    buf[0] = 0;
    if (e) ERR_error_string_n(e, buf, len);
}

#include <openssl/rand.h>
static int o_random(void *ctx, unsigned char *b, int n) { (void)ctx; return RAND_bytes(b, n) == 1 ? 0 : -1; }

static const struct tlsh_tls_ops OPS = {
    "openssl", o_new, o_set_fd, o_handshake, o_read, o_write, o_pending,
    o_shutdown, o_free, o_clear, o_last_error, o_random,
};

const struct tlsh_tls_ops *tlsh_lib_ops(void) { return &OPS; }

void tlsh_lib_caps(struct tlsh_lib_caps *c)
{
    memset(c, 0, sizeof(*c));
#if TLSH_MEM_FILE_LINE || TLSH_MEM_PLAIN || TLSH_MEM_LINK_TIME
    c->alloc_hook = 1;          /* CRYPTO_set_mem_functions, or BoringSSL's link-time symbols */
#endif
    c->lock_hook = 0;           /* none since 1.1.0: CRYPTO_set_locking_callback is a no-op macro */
#ifdef TLS1_3_VERSION
    c->tls13 = 1;
#endif
    snprintf(c->flags, sizeof(c->flags), "OPENSSL_VERSION_NUMBER=0x%lx%s%s%s%s%s",
             (unsigned long)OPENSSL_VERSION_NUMBER,
#if TLSH_RAND_SEED_INT
             "",
#else
             " RAND_METHOD(void seed)",
#endif
#if TLSH_MEM_FILE_LINE
             "",
#elif TLSH_MEM_PLAIN
             " CRYPTO_set_mem_functions(no file/line)",
#elif TLSH_MEM_LINK_TIME
             " OPENSSL_memory_alloc(link time)",
#else
             " no CRYPTO_set_mem_functions",
#endif
#if TLSH_HAVE_RAND_METHOD
             "",
#else
             " no RAND_METHOD wrapper",
#endif
#if TLSH_HAVE_THREAD_STOP
             "",
#else
             " no OPENSSL_thread_stop",
#endif
#if TLSH_HAVE_ATEXIT_CLEANUP
             "");
#else
             " no OPENSSL_atexit (no atexit cleanup)");    /* 4.0: exit() frees nothing of it */
#endif
}

/* No lock counting: OpenSSL has had no lock hook since 1.1.0. */
static const struct tlsh_lib_optional OPTIONAL = {
#if TLSH_MEM_FILE_LINE || TLSH_MEM_PLAIN || TLSH_MEM_LINK_TIME
    .hook = o_hook,
#endif
    .parent_use = tlsh_ossl_parent_use,
    .warm_methods = tlsh_ossl_warm_methods,
#if TLSH_HAVE_THREAD_STOP
    .atfork_stop = tlsh_ossl_atfork_stop,
#endif
#if TLSH_HAVE_RAND_METHOD
    .rand_wrap = tlsh_ossl_rand_wrap,
    .rand_calls = tlsh_ossl_rand_calls,
    .rand_reentries = tlsh_ossl_rand_reentries,
#endif
};

const struct tlsh_lib_optional *tlsh_lib_optional(void) { return &OPTIONAL; }
