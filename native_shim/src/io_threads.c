/* --io-model threads (OpenSIPS 4.0 tcp_threads, Kamailio 6.1 tcp_main_threads):
 * one I/O process owns every TLS connection.  Its main thread accepts and
 * gives each new connection to one of N TLS threads, which does the
 * handshake and every read of it; complete SIP requests go to a SIP worker
 * process over a SOCK_SEQPACKET channel, and the replies come back over a
 * channel to the writer thread: the reader itself, or the next thread with
 * --reply-by other or --session-sharing concurrent.  Exclusive sharing: every
 * library call on a session under the connection's mutex (one thread in it
 * at a time); concurrent: the writer does not take it, so SSL_write may run
 * while the reader is inside SSL_read.  The library allocates from this
 * process's heap (no arena), and this file's state is private to it too. */
#define _GNU_SOURCE
#include "stand_internal.h"
#include "exits.h"
#include "tlsh_sip.h"
#include "tlsh_util.h"
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define IO_PAYLOAD 65536
#define SEND_DEADLINE_NS 2000000000LL

enum { EV_NEW = 1, EV_CHAN = 2, EV_CONN = 3 };
#define EV(kind, idx) (((uint64_t)(kind) << 32) | (uint32_t)(idx))

struct io_hdr { int32_t conn, gen, thread, len; };   /* thread: the one that writes the replies */
struct io_msg { struct io_hdr h; char data[IO_PAYLOAD]; };

struct ioconn {
    pthread_mutex_t io;     /* the library's calls on the session (reader; exclusive writer) */
    pthread_mutex_t life;   /* a writer's hold on the session against its free */
    void *sess;
    int fd, gen, owner, state, worker;
    int in_read;            /* the reader is inside the library (concurrent overlaps counted) */
    uint32_t inlen;
    char inbuf[TLSH_CONN_BUF];
};

struct io;
struct iothread {
    struct io *io;
    int idx, ep, evfd;
    pthread_t th;
    struct tlsh_slot *me;
    pthread_mutex_t qlock;
    int *queue, nq;         /* new connections given to this thread */
    int64_t fault_at_ns;
    struct io_msg msg;
};

struct io {
    struct tlsh_stand *st;
    const struct tlsh_tls_ops *ops;
    void *ctx;
    struct ioconn *conns;
    struct iothread *th;
    int nth, nw;
    pthread_mutex_t flock;
    int *freelist, nfree;
    unsigned rr_t, rr_w;
};

static int chan_index(struct tlsh_stand *st, int t, int w) { return t * st->cfg.nworkers + w - 1; }

int tlsh_io_prepare(struct tlsh_stand *st, char *err, size_t errlen)
{
    int n = st->cfg.io_threads * st->cfg.nworkers;
    st->ioch_io = malloc(sizeof(int) * n);
    st->ioch_w = malloc(sizeof(int) * n);
    if (!st->ioch_io || !st->ioch_w) { snprintf(err, errlen, "out of memory"); return -1; }
    for (int i = 0; i < n; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
            snprintf(err, errlen, "socketpair: %s", strerror(errno));
            return -1;
        }
        int buf = 1 << 20;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
        st->ioch_io[i] = sv[0];
        st->ioch_w[i] = sv[1];
    }
    return 0;
}

static void close_side(struct tlsh_stand *st, int *fds)
{
    for (int i = 0; i < st->cfg.io_threads * st->cfg.nworkers; i++)
        if (fds[i] >= 0) { close(fds[i]); fds[i] = -1; }
}

void tlsh_io_close_all(struct tlsh_stand *st)
{
    close_side(st, st->ioch_io);
    close_side(st, st->ioch_w);
}

/* One message, waiting (bounded) when the channel is full; 0 or -1. */
static int send_bounded(int fd, const void *buf, size_t len)
{
    int64_t deadline = 0;
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)len) return 0;
        if (n < 0 && errno == EINTR) continue;
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)) return -1;
        int64_t now = tlsh_now_ns();
        if (!deadline) deadline = now + SEND_DEADLINE_NS;
        if (now > deadline) return -1;
        struct pollfd p = { fd, POLLOUT, 0 };
        poll(&p, 1, 50);
    }
}

/* ---- the TLS threads ------------------------------------------------- */

static void lock_pub(struct iothread *T, pthread_mutex_t *m, int id)
{
    T->me->lock_waiting = id;
    tlsh_set_activity(T->me, TLSH_ACT_LOCK_WAIT, tlsh_now_ns());
    pthread_mutex_lock(m);
    T->me->lock_waiting = -1;
    T->me->lock_held = id;
}

static void unlock_pub(struct iothread *T, pthread_mutex_t *m)
{
    T->me->lock_held = -1;
    pthread_mutex_unlock(m);
}

static void maybe_fault(struct iothread *T)
{
    if (!T->fault_at_ns || tlsh_now_ns() < T->fault_at_ns) return;
    T->fault_at_ns = 0;
    tlsh_set_activity(T->me, TLSH_ACT_FAULT, tlsh_now_ns());
    if (T->io->st->cfg.fault_kind == TLSH_FAULT_BLOCK)
        for (;;) pause();
    for (volatile unsigned long i = 0;; i++) ;   /* TLSH_FAULT_SPIN */
}

static void close_conn(struct iothread *T, int id)
{
    struct io *io = T->io;
    struct ioconn *c = &io->conns[id];
    tlsh_set_activity(T->me, TLSH_ACT_CLOSE, tlsh_now_ns());
    lock_pub(T, &c->life, id);          /* no writer in the session while it goes */
    pthread_mutex_lock(&c->io);
    epoll_ctl(T->ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->sess) {
        io->ops->shutdown(c->sess);
        io->ops->free(c->sess);
        io->ops->clear_errors();
    }
    c->sess = NULL;
    c->state = TLSH_CONN_FREE;
    c->gen++;
    close(c->fd);
    c->fd = -1;
    c->inlen = 0;
    pthread_mutex_unlock(&c->io);
    unlock_pub(T, &c->life);
    T->me->closed++;
    __atomic_add_fetch(&io->st->status->conns_closed, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&io->st->status->conns_open, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&io->flock);
    io->freelist[io->nfree++] = id;
    pthread_mutex_unlock(&io->flock);
}

/* Complete requests of the connection to a SIP worker, in one message. */
static int forward(struct iothread *T, struct ioconn *c, int id)
{
    struct io *io = T->io;
    struct tlsh_stand *st = io->st;
    size_t off = 0, mlen;
    int r, nreq = 0;
    while ((r = tlsh_sip_frame(c->inbuf + off, c->inlen - off, &mlen)) == 1) {
        memcpy(T->msg.data + off, c->inbuf + off, mlen);
        off += mlen;
        nreq++;
    }
    if (r < 0) { T->me->malformed++; return -1; }
    if (!nreq) return 0;
    int w = st->cfg.handoff == TLSH_HANDOFF_PER_MSG
            ? 1 + (int)(__atomic_fetch_add(&io->rr_w, 1, __ATOMIC_RELAXED) % (unsigned)io->nw)
            : c->worker;
    int other = (st->cfg.reply_other || st->cfg.session_concurrent) && io->nth > 1;
    T->msg.h = (struct io_hdr){ id, c->gen, other ? (T->idx + 1) % io->nth : T->idx, (int)off };
    if (send_bounded(st->ioch_io[chan_index(st, T->idx, w)], &T->msg,
                     sizeof(T->msg.h) + off) != 0) {
        T->me->errors++;
        return -1;
    }
    memmove(c->inbuf, c->inbuf + off, c->inlen - off);
    c->inlen -= (uint32_t)off;
    T->me->requests += (uint64_t)nreq;
    T->me->dispatches++;
    return 0;
}

/* Under c->io: read (and forward) until the library wants more; -1 closes. */
static int do_read(struct iothread *T, struct ioconn *c, int id)
{
    for (;;) {
        tlsh_set_activity(T->me, TLSH_ACT_READ, tlsh_now_ns());
        __atomic_store_n(&c->in_read, 1, __ATOMIC_RELEASE);
        int n = T->io->ops->read(c->sess, c->inbuf + c->inlen, TLSH_CONN_BUF - (int)c->inlen);
        __atomic_store_n(&c->in_read, 0, __ATOMIC_RELEASE);
        if (n > 0) {
            c->inlen += (uint32_t)n;
            if (forward(T, c, id) != 0) return -1;
            continue;
        }
        if (n == TLSH_IO_WANT_READ || n == TLSH_IO_WANT_WRITE) return 0;
        if (n != TLSH_IO_CLOSED) T->me->errors++;
        return -1;
    }
}

static void on_readable(struct iothread *T, int id)
{
    struct ioconn *c = &T->io->conns[id];
    int r = 0;
    lock_pub(T, &c->io, id);
    maybe_fault(T);                      /* injected faults strike holding the session */
    if (c->state == TLSH_CONN_HANDSHAKE) {
        tlsh_set_activity(T->me, TLSH_ACT_HANDSHAKE, tlsh_now_ns());
        int h = T->io->ops->handshake(c->sess);
        if (h == TLSH_IO_OK) {
            c->state = TLSH_CONN_ESTABLISHED;
            T->me->handshakes++;
            T->me->last_progress_ns = tlsh_now_ns();
        } else if (h != TLSH_IO_WANT_READ && h != TLSH_IO_WANT_WRITE) {
            T->me->errors++;
            r = -1;
        }
    }
    if (!r && c->state == TLSH_CONN_ESTABLISHED)
        r = do_read(T, c, id);
    unlock_pub(T, &c->io);
    tlsh_set_activity(T->me, TLSH_ACT_IDLE, tlsh_now_ns());
    if (r < 0) close_conn(T, id);
}

static void take_new(struct iothread *T)
{
    uint64_t v;
    if (read(T->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN) return;
    for (;;) {
        pthread_mutex_lock(&T->qlock);
        int id = T->nq ? T->queue[--T->nq] : -1;
        pthread_mutex_unlock(&T->qlock);
        if (id < 0) return;
        struct ioconn *c = &T->io->conns[id];
        tlsh_set_activity(T->me, TLSH_ACT_HANDSHAKE, tlsh_now_ns());
        c->sess = T->io->ops->sess_new(T->io->ctx);
        if (!c->sess || T->io->ops->set_fd(c->sess, c->fd) != 0) {
            T->me->errors++;
            close_conn(T, id);
            continue;
        }
        c->state = TLSH_CONN_HANDSHAKE;
        T->me->dispatches++;
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV(EV_CONN, id) };
        epoll_ctl(T->ep, EPOLL_CTL_ADD, c->fd, &ev);
        on_readable(T, id);
    }
}

static int write_all(struct iothread *T, struct ioconn *c, const char *buf, size_t len)
{
    size_t off = 0;
    int64_t deadline = 0;
    tlsh_set_activity(T->me, TLSH_ACT_WRITE, tlsh_now_ns());
    while (off < len) {
        int n = T->io->ops->write(c->sess, buf + off, (int)(len - off));
        if (n > 0) { off += (size_t)n; continue; }
        if (n != TLSH_IO_WANT_WRITE && n != TLSH_IO_WANT_READ) return -1;
        int64_t now = tlsh_now_ns();
        if (!deadline) deadline = now + SEND_DEADLINE_NS;
        if (now > deadline) return -1;
        struct pollfd p = { c->fd, n == TLSH_IO_WANT_WRITE ? POLLOUT : POLLIN, 0 };
        poll(&p, 1, 50);
    }
    return 0;
}

/* Replies from a SIP worker: write them through the session. */
static int on_replies(struct iothread *T, int chan)
{
    struct io *io = T->io;
    for (;;) {
        ssize_t n = recv(chan, &T->msg, sizeof(T->msg), MSG_DONTWAIT);
        if (n < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        if (n < (ssize_t)sizeof(T->msg.h)) return -1;
        struct io_hdr h = T->msg.h;
        if (h.conn < 0 || h.conn >= io->st->cfg.max_conns || h.len != n - (ssize_t)sizeof(h))
            continue;
        struct ioconn *c = &io->conns[h.conn];
        int concurrent = io->st->cfg.session_concurrent;
        lock_pub(T, &c->life, h.conn);
        if (c->gen == h.gen && c->state == TLSH_CONN_ESTABLISHED && c->sess) {
            if (!concurrent) pthread_mutex_lock(&c->io);
            else if (__atomic_load_n(&c->in_read, __ATOMIC_ACQUIRE))
                __atomic_add_fetch(&io->st->status->rw_overlaps, 1, __ATOMIC_RELAXED);
            maybe_fault(T);
            if (write_all(T, c, T->msg.data, (size_t)h.len) != 0) {
                T->me->errors++;
                shutdown(c->fd, SHUT_RDWR);     /* its reader sees the end and closes it */
            } else {
                T->me->last_progress_ns = tlsh_now_ns();
            }
            if (!concurrent) pthread_mutex_unlock(&c->io);
            if (c->owner != T->idx) T->me->handoffs++;
        }
        unlock_pub(T, &c->life);
        tlsh_set_activity(T->me, TLSH_ACT_IDLE, tlsh_now_ns());
    }
}

static void slot_for_thread(struct iothread *T)
{
    struct tlsh_slot *w = T->me;
    memset(w, 0, sizeof(*w));
    w->magic = w->magic2 = TLSH_SLOT_MAGIC;
    w->pid = (int32_t)syscall(SYS_gettid);   /* /proc/TID reads this thread */
    w->role = TLSH_ROLE_WORKER;
    w->state = TLSH_SLOT_ALIVE;
    w->lock_waiting = w->lock_held = w->conn = -1;
    tlsh_set_activity(w, TLSH_ACT_IDLE, tlsh_now_ns());
}

static void *thread_main(void *arg)
{
    struct iothread *T = arg;
    struct io *io = T->io;
    slot_for_thread(T);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV(EV_NEW, 0) }, evs[64];
    epoll_ctl(T->ep, EPOLL_CTL_ADD, T->evfd, &ev);
    for (int w = 1; w <= io->nw; w++) {
        ev.data.u64 = EV(EV_CHAN, w);
        epoll_ctl(T->ep, EPOLL_CTL_ADD, io->st->ioch_io[chan_index(io->st, T->idx, w)], &ev);
    }
    for (;;) {
        tlsh_set_activity(T->me, TLSH_ACT_IDLE, tlsh_now_ns());
        int k = epoll_wait(T->ep, evs, 64, 100);
        for (int i = 0; i < k; i++) {
            uint32_t kind = (uint32_t)(evs[i].data.u64 >> 32), idx = (uint32_t)evs[i].data.u64;
            if (kind == EV_NEW)
                take_new(T);
            else if (kind == EV_CHAN) {
                if (on_replies(T, io->st->ioch_io[chan_index(io->st, T->idx, (int)idx)]) < 0)
                    _exit(0);            /* a SIP worker is gone: the stand is ending */
            } else if (io->conns[idx].fd >= 0 && io->conns[idx].owner == T->idx)
                on_readable(T, (int)idx);
        }
    }
    return NULL;
}

/* ---- the I/O process: set-up and the accepting main thread ----------- */

static void on_accept(struct io *io)
{
    struct tlsh_stand *st = io->st;
    for (;;) {
        int fd = accept4(st->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        pthread_mutex_lock(&io->flock);
        int id = io->nfree ? io->freelist[--io->nfree] : -1;
        pthread_mutex_unlock(&io->flock);
        if (id < 0) { close(fd); continue; }     /* table full: refuse */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct ioconn *c = &io->conns[id];
        c->fd = fd;
        c->inlen = 0;
        c->state = TLSH_CONN_NEW;
        c->owner = (int)(io->rr_t++ % (unsigned)io->nth);
        c->worker = 1 + (int)(__atomic_fetch_add(&io->rr_w, 1, __ATOMIC_RELAXED) % (unsigned)io->nw);
        __atomic_add_fetch(&st->status->accepted, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&st->status->conns_open, 1, __ATOMIC_RELAXED);
        st->status->dispatched++;
        struct iothread *T = &io->th[c->owner];
        pthread_mutex_lock(&T->qlock);
        T->queue[T->nq++] = id;
        pthread_mutex_unlock(&T->qlock);
        uint64_t v = 1;
        if (write(T->evfd, &v, sizeof(v)) < 0) { /* the counter is full: it is readable */ }
    }
}

static struct io *io_new(struct tlsh_stand *st, const struct tlsh_tls_ops *ops, void *ctx)
{
    struct io *io = calloc(1, sizeof(*io));
    int n = st->cfg.max_conns;
    io->st = st; io->ops = ops; io->ctx = ctx;
    io->nth = st->cfg.io_threads; io->nw = st->cfg.nworkers;
    io->conns = calloc((size_t)n, sizeof(struct ioconn));
    io->freelist = malloc(sizeof(int) * n);
    io->th = calloc((size_t)io->nth, sizeof(struct iothread));
    if (!io->conns || !io->freelist || !io->th) _exit(TLSH_EXIT_NO_RESOURCES);
    pthread_mutex_init(&io->flock, NULL);
    for (int i = 0; i < n; i++) {
        pthread_mutex_init(&io->conns[i].io, NULL);
        pthread_mutex_init(&io->conns[i].life, NULL);
        io->conns[i].fd = -1;
        io->freelist[io->nfree++] = n - 1 - i;
    }
    return io;
}

void tlsh_io_main(struct tlsh_stand *st, const struct tlsh_tls_ops *ops, void *ctx)
{
    close_side(st, st->ioch_w);
    struct io *io = io_new(st, ops, ctx);
    for (int t = 0; t < io->nth; t++) {
        struct iothread *T = &io->th[t];
        T->io = io;
        T->idx = t;
        T->me = &st->status->slots[st->cfg.nworkers + 1 + t];
        T->ep = epoll_create1(EPOLL_CLOEXEC);
        T->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        T->queue = malloc(sizeof(int) * st->cfg.max_conns);
        pthread_mutex_init(&T->qlock, NULL);
        if (st->cfg.fault_kind != TLSH_FAULT_NONE && st->cfg.fault_slot == t + 1)
            T->fault_at_ns = tlsh_now_ns() + (int64_t)st->cfg.fault_after_ms * 1000000LL;
        if (T->ep < 0 || T->evfd < 0 || !T->queue || pthread_create(&T->th, NULL, thread_main, T))
            _exit(TLSH_EXIT_NO_RESOURCES);
    }
    struct tlsh_slot *me = &st->status->slots[0];
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0 }, evs[8];
    epoll_ctl(ep, EPOLL_CTL_ADD, st->listen_fd, &ev);
    st->status->ready = 1;
    for (;;) {
        tlsh_set_activity(me, TLSH_ACT_IDLE, tlsh_now_ns());
        int k = epoll_wait(ep, evs, 8, 500);
        tlsh_set_activity(me, TLSH_ACT_ACCEPT, tlsh_now_ns());
        if (k > 0) {
            on_accept(io);
            me->last_progress_ns = tlsh_now_ns();
        }
    }
}

/* ---- a SIP worker: requests in, 200 OK out; never a TLS call --------- */

static void sip_answer(struct tlsh_stand *st, int slot, struct io_msg *in, struct io_msg *out)
{
    struct tlsh_slot *me = &st->status->slots[slot];
    size_t off = 0, mlen, olen = 0;
    tlsh_set_activity(me, TLSH_ACT_READ, tlsh_now_ns());
    while (off < (size_t)in->h.len
           && tlsh_sip_frame(in->data + off, (size_t)in->h.len - off, &mlen) == 1) {
        int n = tlsh_sip_reply(in->data + off, mlen, out->data + olen, IO_PAYLOAD - olen);
        if (n < 0) { me->malformed++; break; }
        olen += (size_t)n;
        off += mlen;
        me->requests++;
    }
    if (!olen) return;
    out->h = in->h;
    out->h.len = (int32_t)olen;
    tlsh_set_activity(me, TLSH_ACT_WRITE, tlsh_now_ns());
    if (send_bounded(st->ioch_w[chan_index(st, in->h.thread, slot)], out,
                     sizeof(out->h) + olen) != 0)
        me->errors++;
    else
        me->last_progress_ns = tlsh_now_ns();
}

void tlsh_sip_main(struct tlsh_stand *st, int slot)
{
    int nth = st->cfg.io_threads;
    close_side(st, st->ioch_io);
    struct io_msg *in = malloc(sizeof(*in)), *out = malloc(sizeof(*out));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int t = 0; t < nth; t++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)t };
        epoll_ctl(ep, EPOLL_CTL_ADD, st->ioch_w[chan_index(st, t, slot)], &ev);
    }
    struct tlsh_slot *me = &st->status->slots[slot];
    struct epoll_event evs[16];
    for (;;) {
        tlsh_set_activity(me, TLSH_ACT_IDLE, tlsh_now_ns());
        int k = epoll_wait(ep, evs, 16, 100);
        for (int i = 0; i < k; i++) {
            int chan = st->ioch_w[chan_index(st, (int)evs[i].data.u64, slot)];
            for (;;) {
                ssize_t n = recv(chan, in, sizeof(*in), MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
                if (n <= 0) _exit(0);            /* the I/O process is gone */
                if (n < (ssize_t)sizeof(in->h) || in->h.len != n - (ssize_t)sizeof(in->h)
                    || in->h.thread < 0 || in->h.thread >= nth)
                    continue;
                sip_answer(st, slot, in, out);
            }
        }
    }
}
