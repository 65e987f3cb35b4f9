/* The worker loop: serve connections handed over by the listener.  Takes the
 * connection lock, attaches its own fd to the TLS session, handshakes or
 * reads SIP requests, answers 200 OK, and hands the connection back. */
#define _GNU_SOURCE
#include "stand_internal.h"
#include "chan.h"
#include "tlsh_sip.h"
#include "tlsh_util.h"
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define OUTBUF 65536

struct wstate {
    struct tlsh_stand *st;
    int slot;
    struct tlsh_slot *me;
    const struct tlsh_tls_ops *ops;
    void *ctx;
    int ep, chan;
    int *fd;              /* this process's fd of each connection, -1 none */
    int *pinned;          /* 1 when the fd is in this worker's epoll */
    int64_t fault_at_ns;  /* 0: no fault armed */
    int leaking;          /* fault leak: armed */
    int glock_held;       /* this worker holds the global TLS lock */
    int want_write;       /* --reply-by other: replies left in the connection for another worker */
    char out[OUTBUF];
    size_t outlen;
};

enum { SERVE_KEEP = 0, SERVE_CLOSED = 1, SERVE_HS_DONE = 2 };

static void take(struct wstate *W, tlsh_lock *l, int lock_id)
{
    W->me->lock_waiting = lock_id;
    tlsh_set_activity(W->me, TLSH_ACT_LOCK_WAIT, tlsh_now_ns());
    tlsh_lock_get(l);
    W->me->lock_waiting = -1;
    W->me->lock_held = lock_id;
    tlsh_set_activity(W->me, TLSH_ACT_ATTACH, tlsh_now_ns());
}

/* The connection's lock (with split locks: its read lock). */
static void lock_conn(struct wstate *W, struct tlsh_conn *c, int id)
{
    take(W, &c->lock, id);
}

static void unlock_global(struct wstate *W, int conn_id)
{
    if (!W->glock_held) return;
    W->glock_held = 0;
    W->me->lock_held = conn_id;
    tlsh_lock_release(W->st->glock);
}

static void unlock_conn(struct wstate *W, struct tlsh_conn *c, int id)
{
    unlock_global(W, id);
    W->me->lock_held = -1;
    tlsh_lock_release(&c->lock);
}

/* The global TLS lock (OpenSIPS 3.2 tls_global_lock): taken inside the
 * connection lock around the library's accept/read/write (not around
 * SSL_new, SSL_set_fd, SSL_free, which OpenSIPS calls outside it). */
static void lock_global(struct wstate *W)
{
    if (!W->st->glock || W->glock_held) return;
    W->me->lock_waiting = TLSH_LOCK_ID_GLOBAL;
    tlsh_set_activity(W->me, TLSH_ACT_LOCK_WAIT, tlsh_now_ns());
    tlsh_lock_get(W->st->glock);
    W->glock_held = 1;
    W->me->lock_waiting = -1;
    W->me->lock_held = TLSH_LOCK_ID_GLOBAL;
    tlsh_set_activity(W->me, TLSH_ACT_ATTACH, tlsh_now_ns());
}

/* Split locks (OpenSIPS tls_wolfssl): writes and the reply buffer under the
 * connection's write lock, so that a reader and a writer can be in one
 * session at once.  Lock order: read lock, write lock, global lock; the
 * global lock is let go while the write lock is awaited. */
static void lock_write(struct wstate *W, struct tlsh_conn *c, int id)
{
    if (!W->st->cfg.split_locks) return;
    int global = W->glock_held;
    unlock_global(W, id);
    take(W, &c->wlock, TLSH_LOCK_ID_WRITE + id);
    if (global) lock_global(W);
}

static void unlock_write(struct wstate *W, struct tlsh_conn *c, int id, int reader)
{
    if (!W->st->cfg.split_locks) return;
    W->me->lock_held = reader ? id : -1;
    tlsh_lock_release(&c->wlock);
}

/* The session writers use, attached to this process's fd: the write
 * duplicate once there is one, else the connection's session (which a reader
 * has attached already: attached != 0).  NULL when the fd cannot be set. */
static void *write_side(struct tlsh_conn *c, const struct tlsh_tls_ops *ops, int fd, int attached)
{
    void *s = c->wsess ? c->wsess : c->sess;
    if (s == c->sess && attached) return s;
    return ops->set_fd(s, fd) == 0 ? s : NULL;
}

static void maybe_fault(struct wstate *W)
{
    if (!W->fault_at_ns || tlsh_now_ns() < W->fault_at_ns)
        return;
    int kind = W->st->cfg.fault_kind;
    W->fault_at_ns = 0;
    if (kind == TLSH_FAULT_LEAK) { W->leaking = 1; return; }
    tlsh_set_activity(W->me, TLSH_ACT_FAULT, tlsh_now_ns());
    switch (kind) {
    case TLSH_FAULT_BLOCK:
        for (;;) pause();
    case TLSH_FAULT_SPIN:
        for (volatile unsigned long i = 0;; i++) ;
    case TLSH_FAULT_DIE:
        kill(getpid(), SIGKILL);
        for (;;) pause();
    case TLSH_FAULT_STOP:
        raise(SIGSTOP);
        break;
    case TLSH_FAULT_CRASH:
        {
            volatile int *volatile bad = NULL;
            *bad = 1;           /* a real invalid access, not raise() */
        }
        break;
    }
}

/* Write buf[0..len) through the session; 0 or -1. */
static int write_all(struct wstate *W, void *sess, int fd, const char *buf, size_t len)
{
    size_t off = 0;
    int64_t deadline = 0;
    if (!len) return 0;
    tlsh_set_activity(W->me, TLSH_ACT_WRITE, tlsh_now_ns());
    while (off < len) {
        int n = W->ops->write(sess, buf + off, (int)(len - off));
        if (n > 0) { off += (size_t)n; continue; }
        if (n != TLSH_IO_WANT_WRITE && n != TLSH_IO_WANT_READ) return -1;
        int64_t now = tlsh_now_ns();
        if (!deadline) deadline = now + 2000000000LL;
        if (now > deadline) return -1;
        struct pollfd p = { fd, n == TLSH_IO_WANT_WRITE ? POLLOUT : POLLIN, 0 };
        poll(&p, 1, 50);
    }
    return 0;
}

/* Write everything in W->out; 0 or -1.  The caller holds the write lock. */
static int flush_out(struct wstate *W, void *sess, int fd)
{
    int r = sess ? write_all(W, sess, fd, W->out, W->outlen) : (W->outlen ? -1 : 0);
    W->outlen = 0;
    return r;
}

/* flush_out by a reader: takes the write lock (split locks) and writes
 * through the write side. */
static int reader_flush(struct wstate *W, struct tlsh_conn *c, int id, int fd)
{
    if (!W->outlen) return 0;
    lock_write(W, c, id);
    int r = flush_out(W, write_side(c, W->ops, fd, 1), fd);
    unlock_write(W, c, id, 1);
    return r;
}

/* --reply-by other: leave the replies in the connection (shared memory) for
 * another worker to write; write them here only if they do not fit. */
static int leave_out(struct wstate *W, struct tlsh_conn *c, int id, int fd)
{
    if (!W->outlen) return 0;
    int r = 0;
    lock_write(W, c, id);
    if (c->outlen + W->outlen > sizeof(c->outbuf)) {
        void *ws = write_side(c, W->ops, fd, 1);
        r = ws ? write_all(W, ws, fd, c->outbuf, c->outlen) : -1;
        c->outlen = 0;
        if (r == 0) r = flush_out(W, ws, fd);
    } else {
        memcpy(c->outbuf + c->outlen, W->out, W->outlen);
        c->outlen += (uint32_t)W->outlen;
        W->want_write = 1;
    }
    W->outlen = 0;
    unlock_write(W, c, id, 1);
    return r;
}

/* Answer every complete request in the connection buffer.
 * 0 ok, -1 malformed input or write error. */
static int process_requests(struct wstate *W, struct tlsh_conn *c, int id, int fd)
{
    size_t off = 0, mlen;
    int r;
    while ((r = tlsh_sip_frame(c->inbuf + off, c->inlen - off, &mlen)) == 1) {
        if (W->outlen + 2048 > OUTBUF && reader_flush(W, c, id, fd) != 0)
            return -1;
        int n = tlsh_sip_reply(c->inbuf + off, mlen, W->out + W->outlen, OUTBUF - W->outlen);
        if (n < 0) { W->me->malformed++; return -1; }
        W->outlen += (size_t)n;
        off += mlen;
        W->me->requests++;
        c->served++;
    }
    if (r < 0) { W->me->malformed++; return -1; }
    if (off) {
        memmove(c->inbuf, c->inbuf + off, c->inlen - off);
        c->inlen -= (uint32_t)off;
        W->me->last_progress_ns = tlsh_now_ns();
    }
    return 0;
}

/* A new session from the current context: the one given at fork, or the
 * latest reloaded one (taken under the context lock: the session holds its
 * own reference to the context afterwards). */
static void *new_session(struct wstate *W)
{
    struct tlsh_stand *st = W->st;
    if (!*st->ctx_cur)
        return W->ops->sess_new(W->ctx);
    tlsh_lock_get(st->ctx_lock);
    void *s = W->ops->sess_new(*st->ctx_cur ? *st->ctx_cur : W->ctx);
    tlsh_lock_release(st->ctx_lock);
    return s;
}

static volatile sig_atomic_t term_requested;
static void on_term(int sig) { (void)sig; term_requested = 1; }

/* attach: the fd arrived with a dispatch (a new fd of this process) */
static int serve(struct wstate *W, int id, int hs_only, int batch_once, int attach)
{
    struct tlsh_stand *st = W->st;
    struct tlsh_conn *c = &st->conns[id];
    int fd = W->fd[id], ret = SERVE_KEEP;
    W->me->conn = id;
    lock_conn(W, c, id);
    if (c->last_worker >= 0 && c->last_worker != W->slot)
        W->me->handoffs++;
    c->last_worker = W->slot;
    if (c->state == TLSH_CONN_NEW) {
        tlsh_set_activity(W->me, TLSH_ACT_HANDSHAKE, tlsh_now_ns());
        c->sess = new_session(W);
        if (!c->sess) { W->me->errors++; goto closed; }
        c->state = TLSH_CONN_HANDSHAKE;
    }
    if (c->state == TLSH_CONN_CLOSED || !c->sess)
        goto closed;
    if (attach && W->ops->set_fd(c->sess, fd) != 0) { W->me->errors++; goto close_sess; }
    lock_global(W);      /* accept, read, write: under the global lock */
    maybe_fault(W);      /* injected faults strike holding every lock */
    if (c->state == TLSH_CONN_HANDSHAKE) {
        tlsh_set_activity(W->me, TLSH_ACT_HANDSHAKE, tlsh_now_ns());
        int r = W->ops->handshake(c->sess);
        if (r == TLSH_IO_WANT_READ || r == TLSH_IO_WANT_WRITE)
            goto out;
        if (r != TLSH_IO_OK) { W->me->errors++; goto close_sess; }
        c->state = TLSH_CONN_ESTABLISHED;
        W->me->handshakes++;
        if (st->cfg.write_dup && st->write_dup) {
            lock_write(W, c, id);
            c->wsess = st->write_dup(c->sess);
            unlock_write(W, c, id, 1);
            if (!c->wsess) { W->me->errors++; goto close_sess; }
            __atomic_add_fetch(&st->status->write_dups, 1, __ATOMIC_RELAXED);
        }
        if (W->leaking && st->arena) {
            char *p = tlsh_arena_malloc(st->arena, 32768);   /* never freed: the leak */
            if (p) memset(p, 0x4c, 32768);
        }
        W->me->last_progress_ns = tlsh_now_ns();
        if (hs_only) { ret = SERVE_HS_DONE; goto out; }
    }
    for (;;) {
        tlsh_set_activity(W->me, TLSH_ACT_READ, tlsh_now_ns());
        int n = W->ops->read(c->sess, c->inbuf + c->inlen, TLSH_CONN_BUF - (int)c->inlen);
        if (n > 0) {
            c->inlen += (uint32_t)n;
            uint64_t before = W->me->requests;
            if (process_requests(W, c, id, fd) != 0) goto close_sess;
            if (batch_once && W->me->requests != before) break;
            continue;
        }
        if (n == TLSH_IO_WANT_READ || n == TLSH_IO_WANT_WRITE) break;
        if (n != TLSH_IO_CLOSED) W->me->errors++;
        reader_flush(W, c, id, fd);
        goto close_sess;
    }
    if ((st->cfg.reply_other ? leave_out(W, c, id, fd) : reader_flush(W, c, id, fd)) != 0) {
        W->me->errors++;
        goto close_sess;
    }
    {
        size_t ml;
        c->ready = W->ops->pending(c->sess) > 0
                   || tlsh_sip_frame(c->inbuf, c->inlen, &ml) != 0;
    }
    goto out;
close_sess:
    W->outlen = 0;
    lock_write(W, c, id);        /* no writer in the session while it goes */
    tlsh_set_activity(W->me, TLSH_ACT_CLOSE, tlsh_now_ns());
    lock_global(W);              /* SSL_shutdown under it, SSL_free outside (as OpenSIPS) */
    W->ops->shutdown(c->sess);
    unlock_global(W, id);
    if (c->wsess) W->ops->free(c->wsess);
    W->ops->free(c->sess);
    W->ops->clear_errors();
    c->sess = c->wsess = NULL;
    c->outlen = 0;
    unlock_write(W, c, id, 1);
closed:
    c->state = TLSH_CONN_CLOSED;
    W->me->closed++;
    ret = SERVE_CLOSED;
out:
    unlock_conn(W, c, id);
    W->me->conn = -1;
    return ret;
}

static void finish(struct wstate *W, int id, int r, int pin)
{
    struct tlsh_msg m = { 0, id, W->st->conns[id].gen, 0 };
    /* the TLS work is over: handing the connection back to the listener may
     * block on a full channel, and that wait is not the library's */
    tlsh_set_activity(W->me, TLSH_ACT_IDLE, tlsh_now_ns());
    if (r == SERVE_KEEP && pin) {
        if (!W->pinned[id]) {
            struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)id };
            epoll_ctl(W->ep, EPOLL_CTL_ADD, W->fd[id], &ev);
            W->pinned[id] = 1;
        }
        return;
    }
    if (W->pinned[id]) {
        epoll_ctl(W->ep, EPOLL_CTL_DEL, W->fd[id], NULL);
        W->pinned[id] = 0;
    }
    close(W->fd[id]);
    W->fd[id] = -1;
    m.type = r == SERVE_CLOSED ? TLSH_MSG_CLOSED : r == SERVE_HS_DONE ? TLSH_MSG_HS_DONE
                                                                      : TLSH_MSG_RELEASE;
    if (tlsh_send_msg(W->chan, &m, -1) != 0 && errno != EAGAIN)
        _exit(0);           /* listener gone: the stand is ending */
    if (W->want_write) {
        W->want_write = 0;
        if (r != SERVE_CLOSED) {
            struct tlsh_msg w = { TLSH_MSG_WRITE, id, W->st->conns[id].gen, 0 };
            tlsh_send_msg(W->chan, &w, -1);
        }
    }
}

/* A write job: another worker read the requests, this one writes the
 * replies (connection lock, own fd attached, global lock, SSL_write). */
static void write_job(struct wstate *W, int id, int gen, int fd)
{
    struct tlsh_conn *c = &W->st->conns[id];
    int split = W->st->cfg.split_locks;
    W->me->conn = id;
    if (split) {                 /* the write lock only: a reader may be in the session */
        lock_write(W, c, id);
        int32_t reader = __atomic_load_n(&c->lock.holder_pid, __ATOMIC_RELAXED);
        if (reader && reader != W->me->pid)
            __atomic_add_fetch(&W->st->status->rw_overlaps, 1, __ATOMIC_RELAXED);
    } else
        lock_conn(W, c, id);
    if (c->gen == gen && c->state == TLSH_CONN_ESTABLISHED && c->sess && c->outlen) {
        if (c->last_worker >= 0 && c->last_worker != W->slot)
            W->me->handoffs++;
        c->last_worker = W->slot;
        void *ws = write_side(c, W->ops, fd, 0);
        if (ws) {
            lock_global(W);
            maybe_fault(W);
            if (write_all(W, ws, fd, c->outbuf, c->outlen) != 0)
                W->me->errors++;
            else
                W->me->last_progress_ns = tlsh_now_ns();
        } else {
            W->me->errors++;
        }
        c->outlen = 0;
    }
    if (split) {
        unlock_global(W, id);
        unlock_write(W, c, id, 0);
    } else {
        unlock_conn(W, c, id);
    }
    W->me->conn = -1;
    close(fd);
    struct tlsh_msg m = { TLSH_MSG_WRITTEN, id, gen, 0 };
    tlsh_send_msg(W->chan, &m, -1);
}

void tlsh_worker_main(struct tlsh_stand *st, int slot, const struct tlsh_tls_ops *ops, void *ctx)
{
    struct wstate *W = calloc(1, sizeof(*W));
    int n = st->cfg.max_conns;
    W->st = st; W->slot = slot; W->me = &st->status->slots[slot];
    W->ops = ops; W->ctx = ctx;
    W->chan = st->chan_w[slot];
    W->fd = malloc(sizeof(int) * n);
    W->pinned = calloc(n, sizeof(int));
    for (int i = 0; i < n; i++) W->fd[i] = -1;
    if (st->cfg.fault_kind != TLSH_FAULT_NONE && st->cfg.fault_slot == slot)
        W->fault_at_ns = tlsh_now_ns() + (int64_t)st->cfg.fault_after_ms * 1000000LL;
    if (st->cfg.check_random && ops->random) {
        /* random bytes right after fork: two workers drawing the same block means
         * they share generator state (a corruption verdict) */
        unsigned char b[32];
        tlsh_set_activity(W->me, TLSH_ACT_RANDOM, tlsh_now_ns());
        int r = ops->random(ctx, b, (int)sizeof(b));
        memcpy(W->me->rand, b, sizeof(b));
        W->me->rand_state = r == 0 ? 1 : -1;
    }
    if (st->cfg.exit_on_term) {
        /* shutdown as the servers do it: leave through exit(), so that the
         * library's atexit handlers run in every worker */
        struct sigaction sa = { .sa_handler = on_term };
        sigaction(SIGTERM, &sa, NULL);
    }
    W->ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = UINT64_MAX };
    epoll_ctl(W->ep, EPOLL_CTL_ADD, W->chan, &ev);
    int per_conn = st->cfg.handoff == TLSH_HANDOFF_PER_CONN;
    int per_msg = st->cfg.handoff == TLSH_HANDOFF_PER_MSG;
    struct epoll_event evs[64];
    for (;;) {
        tlsh_set_activity(W->me, TLSH_ACT_IDLE, tlsh_now_ns());
        if (term_requested) {
            tlsh_set_activity(W->me, TLSH_ACT_EXITED, tlsh_now_ns());
            exit(0);
        }
        int k = epoll_wait(W->ep, evs, 64, 100);
        for (int i = 0; i < k; i++) {
            if (evs[i].data.u64 == UINT64_MAX) {
                struct tlsh_msg m;
                int fd, r;
                while ((r = tlsh_recv_msg(W->chan, &m, &fd)) == 1) {
                    if (fd < 0 || m.conn < 0 || m.conn >= n) { if (fd >= 0) close(fd); continue; }
                    if (m.type == TLSH_MSG_WRITEJOB) { write_job(W, m.conn, m.gen, fd); continue; }
                    W->me->dispatches++;
                    W->fd[m.conn] = fd;
                    int hs_only = per_conn && !m.pin;
                    int res = serve(W, m.conn, hs_only, per_msg, 1);
                    finish(W, m.conn, res, m.pin);
                }
                if (r < 0) _exit(0);            /* listener gone */
            } else {
                int id = (int)evs[i].data.u64;
                if (W->fd[id] < 0) continue;
                finish(W, id, serve(W, id, 0, 0, 0), 1);
            }
        }
    }
}
