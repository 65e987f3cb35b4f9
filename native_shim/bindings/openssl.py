"""OpenSSL adapter (libssl/libcrypto)."""

SOURCES = ["tls_openssl.c"]

INCLUDES = """
#include <openssl/opensslv.h>
"""

TYPES = """
static const long OPENSSL_VERSION_NUMBER;
"""

FUNCTIONS = """
int tlsh_openssl_hook(tlsh_arena *a);
int tlsh_openssl_init(void);
const char *tlsh_openssl_version(void);
void *tlsh_openssl_ctx_new(const char *cert, const char *key, int tls_version,
                           const char *ciphers, int tickets, char *err, size_t errlen);
const struct tlsh_tls_ops *tlsh_openssl_ops(void);
"""

CUSTOMIZATIONS = """
int tlsh_openssl_hook(tlsh_arena *a);
int tlsh_openssl_init(void);
const char *tlsh_openssl_version(void);
void *tlsh_openssl_ctx_new(const char *cert, const char *key, int tls_version,
                           const char *ciphers, int tickets, char *err, size_t errlen);
const struct tlsh_tls_ops *tlsh_openssl_ops(void);
"""
