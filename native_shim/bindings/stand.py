"""The stand: listener and worker loop, library-independent (needs an adapter)."""

SOURCES = ["stand.c", "listener.c", "worker.c", "crash.c", "probe.c"]

INCLUDES = """
#include "tlsh_stand.h"
#include "tlsh_tls.h"
"""

TYPES = """
enum tlsh_memory { TLSH_MEM_SHARED, TLSH_MEM_PRIVATE };
enum tlsh_handoff { TLSH_HANDOFF_PINNED, TLSH_HANDOFF_PER_CONN, TLSH_HANDOFF_PER_MSG };
enum tlsh_fault_kind { TLSH_FAULT_NONE, TLSH_FAULT_BLOCK, TLSH_FAULT_SPIN, TLSH_FAULT_DIE,
    TLSH_FAULT_STOP, TLSH_FAULT_CRASH, TLSH_FAULT_LEAK };
struct tlsh_stand_cfg { int nworkers; int memory; int handoff; int lock_flavor; int max_conns;
    int port; int fault_kind; int fault_slot; int fault_after_ms; char crash_dir[200]; int global_lock;
    int check_random; int exit_on_term; int reply_other; };
struct tlsh_tls_ops {
    const char *name;
    void *(*sess_new)(void *ctx);
    int (*set_fd)(void *sess, int fd);
    int (*handshake)(void *sess);
    int (*read)(void *sess, void *buf, int len);
    int (*write)(void *sess, const void *buf, int len);
    int (*pending)(void *sess);
    void (*shutdown)(void *sess);
    void (*free)(void *sess);
    void (*clear_errors)(void);
    void (*last_error)(char *buf, size_t len);
    int (*random)(void *ctx, unsigned char *buf, int n);
};
struct tlsh_stand;
"""

FUNCTIONS = """
struct tlsh_stand *tlsh_stand_new(const struct tlsh_stand_cfg *cfg, struct tlsh_status *status,
                                  tlsh_arena *arena, char *err, size_t errlen);
int tlsh_stand_spawn_listener(struct tlsh_stand *st);
int tlsh_stand_spawn_worker(struct tlsh_stand *st, int slot, const struct tlsh_tls_ops *ops,
                            void *ctx);
void tlsh_stand_parent_close(struct tlsh_stand *st);
void tlsh_stand_publish_arena(struct tlsh_stand *st);
void *tlsh_stand_swap_ctx(struct tlsh_stand *st, void *ctx, void (*free_old)(void *));
int tlsh_probe_serve(const struct tlsh_tls_ops *ops, void *ctx, int lfd, int nconns,
                     int timeout_ms, char *err, size_t errlen);
"""

CUSTOMIZATIONS = ""
