/* The listener ("TCP main" in OpenSIPS): accepts connections, watches the
 * sockets of idle connections and dispatches them to workers over
 * SCM_RIGHTS.  It never touches a TLS session. */
#define _GNU_SOURCE
#include "stand_internal.h"
#include "chan.h"
#include "tlsh_util.h"
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { EV_LISTEN = 1, EV_CHAN = 2, EV_CONN = 3 };
#define EV(kind, idx) (((uint64_t)(kind) << 32) | (uint32_t)(idx))

struct lstate {
    struct tlsh_stand *st;
    struct tlsh_slot *me;
    int ep;
    int *fd;          /* listener's fd of each connection, -1 when free */
    int *armed;       /* 1 once the fd was added to epoll */
    int *freelist, nfree;
    int *pending, npending;   /* connections whose dispatch must be retried */
    int dead[TLSH_MAX_SLOTS];
    int busy[TLSH_MAX_SLOTS]; /* connections handed to a worker and not yet returned */
    int rr;
};

static void arm(struct lstate *L, int id)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = EV(EV_CONN, id) };
    epoll_ctl(L->ep, L->armed[id] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, L->fd[id], &ev);
    L->armed[id] = 1;
}

/* The least busy live worker, scanning round-robin from a moving start so
 * that equally busy workers take turns (OpenSIPS's TCP main also picks the
 * least loaded child).  A worker stuck for good keeps its busy count and
 * stops receiving work: the others carry on (the "degraded" outcome). */
static int next_live_worker(struct lstate *L, int exclude)
{
    int n = L->st->cfg.nworkers, best = -1;
    int start = L->rr++;
    for (int k = 0; k < n; k++) {
        int s = 1 + ((start + k) % n);
        if (L->dead[s] || (s == exclude && n > 1))
            continue;
        if (best < 0 || L->busy[s] < L->busy[best])
            best = s;
    }
    return best;
}

static void close_conn(struct lstate *L, int id);

/* Dispatch connection id to a worker; pin: the worker keeps it. */
static void dispatch(struct lstate *L, int id, int pin, int exclude)
{
    struct tlsh_stand *st = L->st;
    struct tlsh_conn *c = &st->conns[id];
    struct tlsh_msg m = { TLSH_MSG_DISPATCH, id, c->gen, pin };
    c->ready = 0;
    if (st->cfg.memory == TLSH_MEM_PRIVATE && (c->owner < 0 || L->dead[c->owner])) {
        close_conn(L, id);      /* its session lives in a dead worker's heap */
        return;
    }
    int tries = st->cfg.memory == TLSH_MEM_PRIVATE ? 1 : st->cfg.nworkers;
    for (int t = 0; t < tries; t++) {
        int s = st->cfg.memory == TLSH_MEM_PRIVATE ? c->owner : next_live_worker(L, exclude);
        if (s < 0 || L->dead[s])
            break;
        if (tlsh_send_msg(st->chan_l[s], &m, L->fd[id]) == 0) {
            L->busy[s]++;
            st->status->dispatched++;
            L->me->dispatches++;
            if (c->last_worker >= 0 && c->last_worker != s)
                st->status->cross_handoffs++;
            L->me->last_progress_ns = tlsh_now_ns();
            return;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
            L->dead[s] = 1;     /* the worker's end is gone */
    }
    L->pending[L->npending++] = id | (pin << 30);
}

static void close_conn(struct lstate *L, int id)
{
    struct tlsh_conn *c = &L->st->conns[id];
    if (L->fd[id] < 0) return;
    epoll_ctl(L->ep, EPOLL_CTL_DEL, L->fd[id], NULL);
    close(L->fd[id]);
    L->fd[id] = -1;
    L->armed[id] = 0;
    c->state = TLSH_CONN_FREE;
    c->gen++;
    L->freelist[L->nfree++] = id;
    L->st->status->conns_closed++;
    L->st->status->conns_open--;
}

/* Hand the connection's pending replies to another worker than the reader
 * (as when a SIP reply or a forwarded request leaves through a connection
 * that another process read from).  The connection stays where it is. */
static void write_job(struct lstate *L, int id, int gen, int reader)
{
    struct tlsh_stand *st = L->st;
    struct tlsh_msg m = { TLSH_MSG_WRITEJOB, id, gen, 0 };
    int s = next_live_worker(L, reader);
    if (s < 0 || L->dead[s])
        return;
    if (tlsh_send_msg(st->chan_l[s], &m, L->fd[id]) == 0)
        L->busy[s]++;
}

static void on_accept(struct lstate *L)
{
    struct tlsh_stand *st = L->st;
    for (;;) {
        int fd = accept4(st->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (L->nfree == 0) {    /* table full: refuse */
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int id = L->freelist[--L->nfree];
        struct tlsh_conn *c = &st->conns[id];
        c->state = TLSH_CONN_NEW;
        c->sess = NULL;
        c->inlen = 0;
        c->ready = 0;
        c->served = 0;
        c->last_worker = -1;
        c->owner = (st->cfg.memory == TLSH_MEM_PRIVATE) ? next_live_worker(L, -1) : -1;
        L->fd[id] = fd;
        st->status->accepted++;
        st->status->conns_open++;
        arm(L, id);
    }
}

static void on_chan(struct lstate *L, int s)
{
    struct tlsh_stand *st = L->st;
    struct tlsh_msg m;
    int fd, r;
    while ((r = tlsh_recv_msg(st->chan_l[s], &m, &fd)) == 1) {
        if (fd >= 0) close(fd);
        if (m.type != TLSH_MSG_WRITE && L->busy[s] > 0)
            L->busy[s]--;                 /* a dispatch or a write job came back */
        if (m.conn < 0 || m.conn >= st->cfg.max_conns || L->fd[m.conn] < 0)
            continue;
        struct tlsh_conn *c = &st->conns[m.conn];
        switch (m.type) {
        case TLSH_MSG_WRITE:       /* the reader asks another worker to write the replies */
            write_job(L, m.conn, m.gen, s);
            break;
        case TLSH_MSG_RELEASE:
            if (c->ready) dispatch(L, m.conn, 0, -1);
            else arm(L, m.conn);
            break;
        case TLSH_MSG_HS_DONE:     /* per-connection handoff: I/O goes to another worker */
            dispatch(L, m.conn, 1, s);
            break;
        case TLSH_MSG_CLOSED:
            close_conn(L, m.conn);
            break;
        }
    }
    if (r < 0) {
        L->dead[s] = 1;
        epoll_ctl(L->ep, EPOLL_CTL_DEL, st->chan_l[s], NULL);
    }
}

void tlsh_listener_main(struct tlsh_stand *st)
{
    struct lstate L = { .st = st, .me = &st->status->slots[0] };
    int n = st->cfg.max_conns;
    L.fd = malloc(sizeof(int) * n);
    L.armed = calloc(n, sizeof(int));
    L.freelist = malloc(sizeof(int) * n);
    L.pending = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) {
        L.fd[i] = -1;
        L.freelist[L.nfree++] = n - 1 - i;
    }
    L.ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV(EV_LISTEN, 0) };
    epoll_ctl(L.ep, EPOLL_CTL_ADD, st->listen_fd, &ev);
    for (int s = 1; s <= st->cfg.nworkers; s++) {
        ev.data.u64 = EV(EV_CHAN, s);
        epoll_ctl(L.ep, EPOLL_CTL_ADD, st->chan_l[s], &ev);
    }
    int pin_first = st->cfg.handoff == TLSH_HANDOFF_PINNED;
    st->status->ready = 1;
    struct epoll_event evs[256];
    for (;;) {
        tlsh_set_activity(L.me, TLSH_ACT_IDLE, tlsh_now_ns());
        int k = epoll_wait(L.ep, evs, 256, L.npending ? 2 : 500);
        tlsh_set_activity(L.me, TLSH_ACT_ACCEPT, tlsh_now_ns());
        for (int i = 0; i < k; i++) {
            uint32_t kind = (uint32_t)(evs[i].data.u64 >> 32), idx = (uint32_t)evs[i].data.u64;
            if (kind == EV_LISTEN)
                on_accept(&L);
            else if (kind == EV_CHAN)
                on_chan(&L, (int)idx);
            else if (kind == EV_CONN && L.fd[idx] >= 0)
                dispatch(&L, (int)idx, pin_first, -1);
        }
        if (L.npending) {          /* retry dispatches that found every channel full */
            int np = L.npending;
            L.npending = 0;
            for (int i = 0; i < np; i++) {
                int id = L.pending[i] & ((1 << 30) - 1), pin = L.pending[i] >> 30;
                if (L.fd[id] >= 0) dispatch(&L, id, pin, -1);
            }
        }
    }
}
