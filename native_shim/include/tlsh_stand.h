/* The stand: listener ("TCP main") and workers of an OpenSIPS-style
 * multi-process TLS server, with connections handed between processes. */
#ifndef TLSH_STAND_H
#define TLSH_STAND_H
#include <stdint.h>
#include "tlsh_arena.h"
#include "tlsh_lock.h"
#include "tlsh_status.h"
#include "tlsh_tls.h"

enum tlsh_memory { TLSH_MEM_SHARED = 0, TLSH_MEM_PRIVATE = 1 };
enum tlsh_handoff { TLSH_HANDOFF_PINNED = 0, TLSH_HANDOFF_PER_CONN = 1, TLSH_HANDOFF_PER_MSG = 2 };

/* Faults injected by the stand itself, independent of any TLS library
 * (used to test the watchdog). */
enum tlsh_fault_kind {
    TLSH_FAULT_NONE = 0,
    TLSH_FAULT_BLOCK = 1,     /* take the connection lock, then block forever */
    TLSH_FAULT_SPIN = 2,      /* take the connection lock, then spin forever */
    TLSH_FAULT_DIE = 3,       /* take the connection lock, then die (SIGKILL itself) */
    TLSH_FAULT_STOP = 4,      /* take the connection lock, then SIGSTOP itself */
    TLSH_FAULT_CRASH = 5,     /* SIGSEGV while serving */
    TLSH_FAULT_LEAK = 6,      /* from then on, 32 KiB of arena never freed per handshake */
};

#define TLSH_CONN_BUF 16384
#define TLSH_LOCK_ID_GLOBAL 1000000   /* lock ids >= this are global locks */
#define TLSH_LOCK_ID_RAND 1000001     /* the server's lock around the RAND method */
#define TLSH_LOCK_ID_CTX 1000002      /* the lock around the current SSL_CTX (reload) */

struct tlsh_stand_cfg {
    int nworkers;
    int memory;          /* tlsh_memory */
    int handoff;         /* tlsh_handoff */
    int lock_flavor;     /* tlsh_lock_flavor */
    int max_conns;
    int port;            /* 0: ephemeral */
    int fault_kind;      /* tlsh_fault_kind */
    int fault_slot;      /* worker slot (1..nworkers) */
    int fault_after_ms;  /* after the stand became ready */
    char crash_dir[200]; /* where a crashing worker writes its own stack ("" = nowhere) */
    int global_lock;     /* one lock around all TLS work of a connection (OpenSIPS 3.2) */
    int check_random;    /* each worker draws 32 random bytes after fork and publishes them */
    int exit_on_term;    /* SIGTERM: leave through exit(), running atexit handlers (shutdown) */
    int reply_other;     /* replies written by another worker than the reader (per-message) */
};

enum tlsh_conn_state { TLSH_CONN_FREE = 0, TLSH_CONN_NEW = 1, TLSH_CONN_HANDSHAKE = 2,
                       TLSH_CONN_ESTABLISHED = 3, TLSH_CONN_CLOSED = 4 };

struct tlsh_conn {
    tlsh_lock lock;
    int32_t state;
    int32_t gen;
    int32_t owner;        /* private memory: the only worker allowed to touch sess */
    int32_t last_worker;  /* slot of the last worker that served it, -1 none */
    int32_t ready;        /* data already buffered: dispatch again without polling */
    uint32_t inlen;
    void *sess;
    uint64_t served;
    uint32_t outlen;      /* replies waiting for another worker to write them (--reply-by other) */
    uint32_t pad;
    char inbuf[TLSH_CONN_BUF];
    char outbuf[TLSH_CONN_BUF];
};

struct tlsh_stand;

struct tlsh_stand *tlsh_stand_new(const struct tlsh_stand_cfg *cfg, struct tlsh_status *status,
                                  tlsh_arena *arena, char *err, size_t errlen);
int tlsh_stand_spawn_listener(struct tlsh_stand *st);
int tlsh_stand_spawn_worker(struct tlsh_stand *st, int slot, const struct tlsh_tls_ops *ops,
                            void *ctx);
/* Supervisor: drop the fds that belong to listener and workers. */
void tlsh_stand_parent_close(struct tlsh_stand *st);
/* Supervisor: copy arena statistics and events into the status segment. */
void tlsh_stand_publish_arena(struct tlsh_stand *st);
void tlsh_slot_init(struct tlsh_status *s, int slot, int role);
/* This process's status slot (NULL outside listener and workers). */
extern struct tlsh_slot *tlsh_self_slot;
/* Reload (Kamailio tls.reload): make ctx the context of new sessions; returns
 * the previous one (for the caller to free), under the context lock. */
void *tlsh_stand_swap_ctx(struct tlsh_stand *st, void *ctx, void (*free_old)(void *));
/* The probe: serve nconns real handshakes + one SIP exchange each. */
int tlsh_probe_serve(const struct tlsh_tls_ops *ops, void *ctx, int lfd, int nconns,
                     int timeout_ms, char *err, size_t errlen);
/* In a child: on SIGSEGV/SIGBUS/SIGILL/SIGFPE/SIGABRT write this process's
 * stack to <crash_dir>/crash-<slot>-<pid>.txt, then die of the signal. */
void tlsh_install_crash_handler(const char *dir, int slot);
void tlsh_crash_prepare(void);   /* parent, before fork */

/* internal, shared by listener.c and worker.c */
struct tlsh_stand {
    struct tlsh_stand_cfg cfg;
    struct tlsh_status *status;
    tlsh_arena *arena;
    struct tlsh_conn *conns;        /* MAP_SHARED */
    tlsh_lock *glock;               /* MAP_SHARED, NULL unless cfg.global_lock */
    tlsh_lock *ctx_lock;            /* MAP_SHARED: guards ctx_cur */
    void *volatile *ctx_cur;        /* MAP_SHARED: context of new sessions after a reload, NULL = own */
    size_t conns_bytes;
    int listen_fd;
    int chan_l[TLSH_MAX_SLOTS];     /* listener end of worker channel (index = slot) */
    int chan_w[TLSH_MAX_SLOTS];     /* worker end */
};

enum tlsh_msg_type { TLSH_MSG_DISPATCH = 1, TLSH_MSG_RELEASE = 2, TLSH_MSG_HS_DONE = 3,
                     TLSH_MSG_CLOSED = 4,
                     TLSH_MSG_WRITE = 5,      /* worker -> listener: replies pending, another writes */
                     TLSH_MSG_WRITEJOB = 6,   /* listener -> worker: write conn's pending replies */
                     TLSH_MSG_WRITTEN = 7 };  /* worker -> listener: write job done */
struct tlsh_msg { int32_t type; int32_t conn; int32_t gen; int32_t pin; };

int tlsh_send_msg(int chan, const struct tlsh_msg *m, int fd);   /* fd -1: none */
int tlsh_recv_msg(int chan, struct tlsh_msg *m, int *fd);        /* 1 got, 0 none, -1 closed */
void tlsh_listener_main(struct tlsh_stand *st);
void tlsh_worker_main(struct tlsh_stand *st, int slot, const struct tlsh_tls_ops *ops, void *ctx);

static inline void tlsh_set_activity(struct tlsh_slot *s, int act, int64_t now)
{
    s->activity = act;
    s->activity_since_ns = now;
}

#endif
