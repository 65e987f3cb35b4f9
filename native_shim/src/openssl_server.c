/* What servers do with OpenSSL around the TLS sessions themselves, modelled
 * so that their failures and their fixes can be measured:
 *   - the library used by the main process before fork (other modules:
 *     libcurl, a TLS redis client), leaving per-thread state behind
 *     (OpenSIPS #3388, Kamailio #3695);
 *   - pthread_atfork(prepare = OPENSSL_thread_stop) (OpenSIPS PR #3841);
 *   - the RAND method wrapped in the server's own shared-memory lock, either
 *     non-recursive (OpenSIPS #1953) or re-entrant per process (the fix). */
#define _GNU_SOURCE
#define OPENSSL_SUPPRESS_DEPRECATED    /* the servers use RAND_set_rand_method: so do we */
#include "openssl_server.h"
#include "tlsh_lock.h"
#include "tlsh_status.h"
#include "tlsh_util.h"
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

int tlsh_ossl_parent_use(void)
{
    /* random bytes and a digest, as any client library does */
    unsigned char b[32], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (RAND_bytes(b, sizeof b) != 1) return -1;
    if (EVP_Digest(b, sizeof b, md, &mdlen, EVP_sha256(), NULL) != 1) return -1;
    /* a failed parse inside a mark, popped, and one left on the queue: the
     * thread's error state now exists (in whatever memory the allocator
     * points at) */
    static const char junk[] = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
#if TLSH_HAVE_ERR_MARK
    ERR_set_mark();
#endif
    BIO *m = BIO_new_mem_buf(junk, -1);
    X509 *x = m ? PEM_read_bio_X509(m, NULL, NULL, NULL) : NULL;
    X509_free(x);
#if TLSH_HAVE_ERR_MARK
    ERR_pop_to_mark();
#endif
    x = m && BIO_reset(m) >= 0 ? PEM_read_bio_X509(m, NULL, NULL, NULL) : NULL;
    X509_free(x);
    BIO_free(m);
    return 0;
}

#if TLSH_HAVE_THREAD_STOP
static void stop_thread_state(void) { OPENSSL_thread_stop(); }

int tlsh_ossl_atfork_stop(void)
{
    return pthread_atfork(stop_thread_state, NULL, NULL) == 0 ? 0 : -1;
}
#endif

/* ---- warm-methods ---------------------------------------------------------
 * BoringSSL fills its method tables (EVP_sha1(), EVP_aes_128_gcm(), the TLS
 * AEADs) on first call, with CRYPTO_once, into static storage: memory of
 * each process, not of the arena.  A session set up by one worker points at
 * that storage; a worker that never made the call itself finds it empty and
 * calls a NULL function.  Servers avoid it by using every method once before
 * fork; so does this.  Elsewhere the tables are constant data and the calls
 * cost nothing. */
#ifdef OPENSSL_IS_BORINGSSL
#include <openssl/aead.h>
#endif

int tlsh_ossl_warm_methods(void)
{
    const void *m[] = {
        EVP_md5(), EVP_sha1(), EVP_sha224(), EVP_sha256(), EVP_sha384(), EVP_sha512(),
        EVP_aes_128_cbc(), EVP_aes_256_cbc(), EVP_aes_128_gcm(), EVP_aes_256_gcm(),
#ifdef OPENSSL_IS_BORINGSSL
        EVP_md5_sha1(), EVP_aead_aes_128_gcm(), EVP_aead_aes_256_gcm(),
        EVP_aead_aes_128_gcm_tls12(), EVP_aead_aes_256_gcm_tls12(),
        EVP_aead_aes_128_gcm_tls13(), EVP_aead_aes_256_gcm_tls13(),
        EVP_aead_chacha20_poly1305(),
#endif
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        if (!m[i]) return -1;
    return 0;
}

#if TLSH_HAVE_RAND_METHOD
/* ---- RAND method under the server's lock ------------------------------ */
struct rand_lock {
    tlsh_lock lock;          /* spin, in shared memory: serialises every process */
    int32_t depth;
    int32_t reentrant;
    uint64_t reentries;      /* calls that came back into the method while it was held */
    uint64_t calls;
};

static struct rand_lock *RL;
static const RAND_METHOD *inner;

/* Published like the connection locks, so that the watchdog sees who waits
 * for it and who holds it. */
static void rl_get(int32_t *saved_held, int32_t *saved_act)
{
    struct tlsh_slot *me = tlsh_self_slot;
    int32_t pid = (int32_t)getpid();
    __atomic_add_fetch(&RL->calls, 1, __ATOMIC_RELAXED);
    if (RL->lock.holder_pid == pid && RL->depth > 0) {
        __atomic_add_fetch(&RL->reentries, 1, __ATOMIC_RELAXED);
        if (RL->reentrant) {       /* ours already: go on */
            RL->depth++;
            *saved_held = -2;
            return;
        }
    }
    if (me) {
        *saved_held = me->lock_held;
        *saved_act = me->activity;
        me->lock_waiting = TLSH_LOCK_ID_RAND;
        tlsh_set_activity(me, TLSH_ACT_LOCK_WAIT, tlsh_now_ns());
    }
    tlsh_lock_get(&RL->lock);
    RL->depth = 1;
    if (me) {
        me->lock_waiting = -1;
        me->lock_held = TLSH_LOCK_ID_RAND;
        tlsh_set_activity(me, *saved_act, tlsh_now_ns());
    }
}

static void rl_release(int32_t saved_held)
{
    if (saved_held == -2) { RL->depth--; return; }
    RL->depth = 0;
    tlsh_lock_release(&RL->lock);
    if (tlsh_self_slot) tlsh_self_slot->lock_held = saved_held;
}

#define WRAP(call) do { int32_t h = -1, a = 0; rl_get(&h, &a); call; rl_release(h); } while (0)

#if TLSH_RAND_SEED_INT
static int w_seed(const void *buf, int num) { int r = 0; WRAP(r = inner->seed ? inner->seed(buf, num) : 1); return r; }
static int w_add(const void *buf, int num, double e) { int r = 0; WRAP(r = inner->add ? inner->add(buf, num, e) : 1); return r; }
#else   /* OpenSSL 1.0's signatures, kept by LibreSSL and BoringSSL */
static void w_seed(const void *buf, int num) { WRAP(if (inner->seed) inner->seed(buf, num)); }
static void w_add(const void *buf, int num, double e) { WRAP(if (inner->add) inner->add(buf, num, e)); }
#endif
static int w_bytes(unsigned char *buf, int num) { int r = 0; WRAP(r = inner->bytes(buf, num)); return r; }
static void w_cleanup(void) { if (inner->cleanup) WRAP(inner->cleanup()); }
static int w_pseudo(unsigned char *buf, int num) { int r = 0; WRAP(r = inner->pseudorand ? inner->pseudorand(buf, num) : inner->bytes(buf, num)); return r; }
static int w_status(void) { int r = 0; WRAP(r = inner->status ? inner->status() : 1); return r; }

static RAND_METHOD WRAPPED = { w_seed, w_bytes, w_cleanup, w_add, w_pseudo, w_status };

/* mode 1: non-recursive lock (OpenSIPS #1953); 2: re-entrant per process
 * (locked RAND method).  The lock lives in memory shared by the workers. */
int tlsh_ossl_rand_wrap(int mode)
{
    if (mode != 1 && mode != 2) return -1;
    RL = tlsh_shared_map(sizeof(*RL));
    if (!RL) return -1;
    if (tlsh_lock_init(&RL->lock, TLSH_LOCK_SPIN, TLSH_LOCK_ID_RAND) != 0) return -1;
    RL->reentrant = mode == 2;
    inner = RAND_OpenSSL();      /* what OpenSIPS wraps: the library's default method */
    if (!inner || !inner->bytes) return -1;
    return RAND_set_rand_method(&WRAPPED) == 1 ? 0 : -1;
}

unsigned long tlsh_ossl_rand_reentries(void) { return RL ? (unsigned long)RL->reentries : 0; }
unsigned long tlsh_ossl_rand_calls(void) { return RL ? (unsigned long)RL->calls : 0; }
#endif
