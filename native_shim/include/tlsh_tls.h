/* The adapter contract: what the worker loop needs from a TLS library.
 * Each library's extension provides one `struct tlsh_tls_ops` (tls_<lib>.c);
 * the worker and listener code are compiled unchanged into every extension. */
#ifndef TLSH_TLS_H
#define TLSH_TLS_H
#include <stddef.h>

/* cffi:begin */
enum tlsh_io {
    TLSH_IO_OK = 0,
    TLSH_IO_WANT_READ = -1,
    TLSH_IO_WANT_WRITE = -2,
    TLSH_IO_CLOSED = -3,     /* orderly close by the peer */
    TLSH_IO_ERROR = -4,
};

struct tlsh_tls_ops {
    const char *name;
    void *(*sess_new)(void *ctx);                 /* server session, NULL on error */
    int (*set_fd)(void *sess, int fd);            /* attach this process's fd: 0 / -1 */
    int (*handshake)(void *sess);                 /* TLSH_IO_* */
    int (*read)(void *sess, void *buf, int len);  /* > 0 bytes, or TLSH_IO_* */
    int (*write)(void *sess, const void *buf, int len);
    int (*pending)(void *sess);                   /* decrypted bytes buffered */
    void (*shutdown)(void *sess);                 /* quiet close notify */
    void (*free)(void *sess);
    void (*clear_errors)(void);                   /* the library's per-thread error state */
    /* last error of this process as text (for evidence), "" if none */
    void (*last_error)(char *buf, size_t len);
    /* n random bytes from the library's generator (its DRBG); 0 ok, -1 error */
    int (*random)(void *ctx, unsigned char *buf, int n);
};
/* cffi:end */

#endif
