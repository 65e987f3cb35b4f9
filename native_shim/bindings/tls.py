"""The adapter entry points every TLS extension exports under the same names
(each extension is its own RTLD_LOCAL module, so the names never clash):
this is the whole contract the stand and the probe rely on."""

SOURCES = ["prefork.c"]

INCLUDES = """
#include "tlsh_lib.h"
"""

TYPES = """
enum { TLSH_INIT_NO_ATEXIT = 1 };
struct tlsh_lib_caps {
    int alloc_hook;        /* 1: the library has a settable allocator */
    int lock_hook;         /* 1: the library has a settable lock implementation */
    int tls13;             /* 1: TLS 1.3 available in this build */
    int write_dup;         /* 1: wolfSSL_write_dup available */
    char flags[200];       /* build flags that matter, as text */
};
"""

FUNCTIONS = """
int tlsh_lib_hook(tlsh_arena *a);
int tlsh_lib_init(int flags);
void tlsh_lib_ctx_free(void *ctx);
int tlsh_lib_parent_use(void);
int tlsh_lib_atfork_stop(void);
int tlsh_lib_rand_wrap(int mode);
unsigned long tlsh_lib_rand_reentries(void);
unsigned long tlsh_lib_rand_calls(void);
const char *tlsh_lib_version(void);
void *tlsh_lib_ctx_new(const char *cert, const char *key, int tls_version,
                       const char *ciphers, int tickets, char *err, size_t errlen);
const struct tlsh_tls_ops *tlsh_lib_ops(void);
void tlsh_lib_caps(struct tlsh_lib_caps *out);
int tlsh_lib_set_lock_counting(int on);
unsigned long tlsh_lib_lock_calls(void);
int tlsh_prefork_thread_init(int init_flags, const char *cert, const char *key, int tls,
                             const char *ciphers, int tickets, int nctx, void **ctxs, char *err,
                             size_t errlen);
"""

CUSTOMIZATIONS = ""
