/* The stand's own state, shared by its files (stand.c sets it up before
 * fork, listener.c and worker.c run on it) and by nobody else: adapters
 * and Python see include/tlsh_stand.h only. */
#ifndef TLSH_STAND_INTERNAL_H
#define TLSH_STAND_INTERNAL_H
#include <stdint.h>
#include "tlsh_lock.h"
#include "tlsh_stand.h"

#define TLSH_CONN_BUF 16384

enum tlsh_conn_state { TLSH_CONN_FREE = 0, TLSH_CONN_NEW = 1, TLSH_CONN_HANDSHAKE = 2,
                       TLSH_CONN_ESTABLISHED = 3, TLSH_CONN_CLOSED = 4 };

struct tlsh_conn {
    tlsh_lock lock;       /* the connection's lock; with split_locks its read lock */
    tlsh_lock wlock;      /* split_locks: the write lock (writes and outbuf) */
    int32_t state;
    int32_t gen;
    int32_t owner;        /* private memory: the only worker allowed to touch sess */
    int32_t last_worker;  /* slot of the last worker that served it, -1 none */
    int32_t ready;        /* data already buffered: dispatch again without polling */
    uint32_t inlen;
    void *sess;
    void *wsess;          /* write_dup: the write side, used by writers only */
    uint64_t served;
    uint32_t outlen;      /* replies waiting for another worker to write them (--reply-by other) */
    uint32_t pad;
    char inbuf[TLSH_CONN_BUF];
    char outbuf[TLSH_CONN_BUF];
};

struct tlsh_stand {
    struct tlsh_stand_cfg cfg;
    struct tlsh_status *status;
    tlsh_arena *arena;
    struct tlsh_conn *conns;        /* MAP_SHARED */
    tlsh_lock *glock;               /* MAP_SHARED, NULL unless cfg.global_lock */
    tlsh_lock *ctx_lock;            /* MAP_SHARED: guards ctx_cur */
    void *volatile *ctx_cur;        /* MAP_SHARED: context of new sessions after a reload, NULL = own */
    void *(*write_dup)(void *sess); /* cfg.write_dup: the library's */
    size_t conns_bytes;
    int listen_fd;
    int chan_l[TLSH_MAX_SLOTS];     /* listener end of worker channel (index = slot) */
    int chan_w[TLSH_MAX_SLOTS];     /* worker end */
    int *ioch_io, *ioch_w;          /* threads: I/O thread t <-> SIP worker w channel, both
                                       ends, at index t * nworkers + (w - 1) */
};

/* The child processes' loops (called by stand.c after fork; never return). */
void tlsh_listener_main(struct tlsh_stand *st);
/* --io-model threads (io_threads.c): the channels, made before fork; 0 or -1. */
int tlsh_io_prepare(struct tlsh_stand *st, char *err, size_t errlen);
void tlsh_io_close_all(struct tlsh_stand *st);
void tlsh_io_main(struct tlsh_stand *st, const struct tlsh_tls_ops *ops, void *ctx);
void tlsh_sip_main(struct tlsh_stand *st, int slot);
void tlsh_worker_main(struct tlsh_stand *st, int slot, const struct tlsh_tls_ops *ops, void *ctx);

/* In a child: on SIGSEGV/SIGBUS/SIGILL/SIGFPE/SIGABRT write this process's
 * stack to <crash_dir>/crash-<slot>-<pid>.txt, then die of the signal. */
void tlsh_install_crash_handler(const char *dir, int slot);
void tlsh_crash_prepare(void);   /* parent, before fork */

#endif
