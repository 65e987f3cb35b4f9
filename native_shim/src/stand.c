/* Stand set-up: connection table, listening socket, dispatch channels,
 * process spawning (each child then runs listener.c's or worker.c's loop),
 * and the supervisor's publication of arena statistics. */
#define _GNU_SOURCE
#include "stand_internal.h"
#include "chan.h"
#include "exits.h"
#include "tlsh_util.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <unistd.h>

/* A stand set-up that failed half-way: free what was made (nchans channel
 * pairs, the listening socket, the shared maps), so that a caller that goes
 * on (a test, a retry) keeps no descriptor or mapping of it. */
static struct tlsh_stand *stand_new_failed(struct tlsh_stand *st, int nchans)
{
    for (int s = 1; s <= nchans; s++) {
        close(st->chan_l[s]);
        close(st->chan_w[s]);
    }
    if (st->listen_fd >= 0) close(st->listen_fd);
    if (st->ctx_lock) tlsh_shared_unmap(st->ctx_lock, sizeof(tlsh_lock) + sizeof(void *));
    if (st->conns) tlsh_shared_unmap(st->conns, st->conns_bytes);
    free(st->ioch_io);                  /* tlsh_io_prepare's, if it got that far */
    free(st->ioch_w);
    free(st);
    return NULL;
}

struct tlsh_stand *tlsh_stand_new(const struct tlsh_stand_cfg *cfg, struct tlsh_status *status,
                                  tlsh_arena *arena, char *err, size_t errlen)
{
    int nio = cfg->io_model ? cfg->io_threads : 0;
    if (cfg->nworkers < 1 || cfg->nworkers + 1 + nio > TLSH_MAX_SLOTS || cfg->max_conns < 1
        || (cfg->io_model && nio < 1)) {
        snprintf(err, errlen, "bad stand configuration (workers 1..%d, max_conns >= 1)",
                 TLSH_MAX_SLOTS - 1);
        return NULL;
    }
    struct tlsh_stand *st = calloc(1, sizeof(*st));
    if (!st) { snprintf(err, errlen, "out of memory"); return NULL; }
    st->listen_fd = -1;                 /* 0 is a descriptor: nothing opened yet */
    st->cfg = *cfg;
    st->status = status;
    st->arena = arena;
    st->conns_bytes = (size_t)cfg->max_conns * sizeof(struct tlsh_conn) + sizeof(tlsh_lock);
    st->conns = tlsh_shared_map(st->conns_bytes);
    if (!st->conns) {
        snprintf(err, errlen, "cannot map connection table: %s", strerror(errno));
        return stand_new_failed(st, 0);
    }
    for (int i = 0; i < cfg->max_conns; i++) {
        int e = tlsh_lock_init(&st->conns[i].lock, cfg->lock_flavor, i);
        if (!e && cfg->split_locks)
            e = tlsh_lock_init(&st->conns[i].wlock, cfg->lock_flavor, TLSH_LOCK_ID_WRITE + i);
        if (e) { snprintf(err, errlen, "lock init: %s", strerror(e)); return stand_new_failed(st, 0); }
        st->conns[i].last_worker = -1;
        st->conns[i].owner = -1;
    }
    if (cfg->global_lock) {
        st->glock = (tlsh_lock *)((char *)st->conns + (size_t)cfg->max_conns * sizeof(struct tlsh_conn));
        int e = tlsh_lock_init(st->glock, cfg->lock_flavor, TLSH_LOCK_ID_GLOBAL);
        if (e) { snprintf(err, errlen, "lock init: %s", strerror(e)); return stand_new_failed(st, 0); }
    }
    st->ctx_lock = tlsh_shared_map(sizeof(tlsh_lock) + sizeof(void *));
    if (!st->ctx_lock || tlsh_lock_init(st->ctx_lock, TLSH_LOCK_SPIN, TLSH_LOCK_ID_CTX) != 0) {
        snprintf(err, errlen, "cannot map the context slot: %s", strerror(errno));
        return stand_new_failed(st, 0);
    }
    st->ctx_cur = (void *volatile *)(st->ctx_lock + 1);
    *st->ctx_cur = NULL;
    st->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(st->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);      /* 127.0.0.1 only */
    socklen_t alen = sizeof(a);
    if (st->listen_fd < 0 || bind(st->listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0
        || listen(st->listen_fd, 1024) != 0
        || getsockname(st->listen_fd, (struct sockaddr *)&a, &alen) != 0) {
        snprintf(err, errlen, "cannot listen on 127.0.0.1:%d: %s", cfg->port, strerror(errno));
        return stand_new_failed(st, 0);
    }
    status->port = ntohs(a.sin_port);
    tlsh_crash_prepare();
    if (cfg->io_model)
        return tlsh_io_prepare(st, err, errlen) == 0 ? st : stand_new_failed(st, 0);
    for (int s = 1; s <= cfg->nworkers; s++) {
        int sv[2];
        if (tlsh_chan_pair(sv) != 0) {
            snprintf(err, errlen, "socketpair: %s", strerror(errno));
            return stand_new_failed(st, s - 1);
        }
        st->chan_l[s] = sv[0];
        st->chan_w[s] = sv[1];
    }
    return st;
}

static void child_common(struct tlsh_stand *st, int parent)
{
    /* Die with the stand: a stuck or killed supervisor never leaves workers. */
    if (tlsh_set_pdeathsig(SIGKILL, parent) != 0)
        _exit(TLSH_EXIT_ORPHANED);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_IGN);     /* the controller decides; a terminal ^C goes to it */
    (void)st;
}

int tlsh_stand_spawn_listener(struct tlsh_stand *st)
{
    int parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    child_common(st, parent);
    prctl(PR_SET_NAME, "tlsh-listener");
    for (int s = 1; s <= st->cfg.nworkers; s++)
        close(st->chan_w[s]);
    tlsh_slot_init(st->status, 0, TLSH_ROLE_LISTENER);
    tlsh_install_crash_handler(st->cfg.crash_dir, 0);
    if (st->arena) tlsh_arena_set_proc_slot(st->arena, 0);
    tlsh_listener_main(st);
    _exit(0);
}

int tlsh_stand_spawn_worker(struct tlsh_stand *st, int slot, const struct tlsh_tls_ops *ops,
                            void *ctx)
{
    int parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    child_common(st, parent);
    char name[16];
    snprintf(name, sizeof(name), "tlsh-worker-%d", slot);
    prctl(PR_SET_NAME, name);
    close(st->listen_fd);
    for (int s = 1; s <= st->cfg.nworkers; s++) {
        close(st->chan_l[s]);
        if (s != slot) close(st->chan_w[s]);
    }
    tlsh_slot_init(st->status, slot, TLSH_ROLE_WORKER);
    tlsh_install_crash_handler(st->cfg.crash_dir, slot);
    if (st->arena) tlsh_arena_set_proc_slot(st->arena, slot);
    tlsh_worker_main(st, slot, ops, ctx);
    _exit(0);
}

/* --io-model threads: the I/O process (every TLS connection, in threads) */
int tlsh_stand_spawn_io(struct tlsh_stand *st, const struct tlsh_tls_ops *ops, void *ctx)
{
    int parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    child_common(st, parent);
    prctl(PR_SET_NAME, "tlsh-io");
    tlsh_slot_init(st->status, 0, TLSH_ROLE_LISTENER);
    tlsh_install_crash_handler(st->cfg.crash_dir, 0);
    tlsh_io_main(st, ops, ctx);
    _exit(0);
}

/* --io-model threads: a SIP worker (decrypted requests in, replies out) */
int tlsh_stand_spawn_sip(struct tlsh_stand *st, int slot)
{
    int parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    child_common(st, parent);
    char name[16];
    snprintf(name, sizeof(name), "tlsh-sip-%d", slot);
    prctl(PR_SET_NAME, name);
    close(st->listen_fd);
    tlsh_slot_init(st->status, slot, TLSH_ROLE_SIP);
    tlsh_install_crash_handler(st->cfg.crash_dir, slot);
    tlsh_sip_main(st, slot);
    _exit(0);
}

void *tlsh_stand_swap_ctx(struct tlsh_stand *st, void *ctx, void (*free_old)(void *))
{
    tlsh_lock_get(st->ctx_lock);
    void *old = *st->ctx_cur;
    *st->ctx_cur = ctx;
    if (old && free_old)
        free_old(old);      /* sessions made from it hold their own reference */
    tlsh_lock_release(st->ctx_lock);
    return old;
}

void tlsh_stand_parent_close(struct tlsh_stand *st)
{
    close(st->listen_fd);
    if (st->cfg.io_model) { tlsh_io_close_all(st); return; }
    for (int s = 1; s <= st->cfg.nworkers; s++) {
        close(st->chan_l[s]);
        close(st->chan_w[s]);
    }
}

void tlsh_stand_publish_arena(struct tlsh_stand *st)
{
    if (!st->arena) return;
    struct tlsh_status *s = st->status;
    tlsh_arena_get_stats(st->arena, &s->arena);
    s->n_arena_events = tlsh_arena_get_events(st->arena, s->arena_events, TLSH_ARENA_MAX_EVENTS);
}

void tlsh_stand_set_write_dup(struct tlsh_stand *st, void *(*write_dup)(void *sess))
{
    st->write_dup = write_dup;
}
