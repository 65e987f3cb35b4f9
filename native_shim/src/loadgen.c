/* Load generator: K TLS client connections multiplexed with epoll in one
 * thread, sending SIP OPTIONS requests (tlsh_sip_request) and matching the
 * 200 replies by (Call-ID, CSeq).  With cfg->transport == TLSH_LG_TCP the
 * same load goes over plain TCP instead (to set a server's TLS path beside
 * its TCP path): no SSL object at all, read(2)/write(2) on the non-blocking
 * socket, the requests' Via saying SIP/2.0/TCP, and everything else
 * (framing, matching, window, churn, timeouts, counters, bad replies) the
 * same code.  All memory is private (malloc); counters
 * live in the caller's struct tlsh_lg_counters (usually a shared mapping read
 * by the controller), updated in place with plain stores.
 *
 * Matching: tlsh_sip_request(conn, seq) writes "Call-ID: <conn>-<seq>@tlsharness"
 * and "CSeq: <seq> OPTIONS"; the start-up self-check refuses to run when that
 * format changes.  seq increases per connection number and is NOT reset on
 * reconnect, so Call-IDs stay unique for the whole run.
 *
 * Per connection a ring of 2*window slots holds the outstanding requests in
 * send order (at most `window` live; a reply out of order leaves a hole that
 * is popped once it reaches the head).
 *
 * Timeouts: a request older than timeout_s counts timed_out once and is
 * dropped from the window; its seq goes to a small per-connection "graveyard"
 * so that a late reply for it is ignored (counted neither answered nor bad).
 * A reply matching an outstanding request but with a status other than 200
 * counts bad and releases that request.  Requests lost with a connection
 * (error, peer close) are simply dropped, not counted.
 *
 * Bad replies are counted by kind (enum tlsh_bad_kind in tlsh_status.h) and
 * the first TLSH_LG_BAD_SAMPLES of this process are kept whole in the
 * counters (struct tlsh_lg_bad: why, the window then, the first bytes).  To
 * tell a duplicate from an unknown reply, each connection number keeps a ring
 * of its last 2*window+8 settled seqs with when they were settled (kept over
 * reconnects: seqs are never reused); a good reply costs one entry there.
 *
 * Churn N: a connection sends at most N requests; once they are all settled
 * (answered, bad or timed out) it is shut down (one close_notify, no wait)
 * and a new connection is opened at once, resuming the previous session when
 * cfg->resume is set.  The session is taken after the first reply has been
 * read (TLS 1.3 tickets arrive after the handshake).
 *
 * Plain TCP: a connection is ready for requests when its connect completes;
 * that is counted in `handshakes` (and `opened`, `ready`) as the TLS handshake
 * is, so that handshakes still means "connections that could carry requests"
 * whatever the transport (resumed, rejected and rekeys stay 0).
 *
 * Abuse (the load generator's own doing: counted in their counters, never as
 * bad replies or conn_errors; the other connections are checked as always):
 *  - abort_every N: every Nth connection that becomes ready for requests is
 *    reset once its first requests are written (SSL_write/write(2) took them
 *    all): SO_LINGER {1, 0}, close(2), so an RST and no close_notify, before
 *    any reply is read.  `aborted` counts them, `abandoned` their requests
 *    then in flight (never settled: sent - answered - bad - timed_out -
 *    abandoned is what is still outstanding).  The slot reconnects at the
 *    next scan.
 *  - rst_handshake_every N: every Nth TLS handshake begun (not counting the
 *    reject_every ones) is reset with an RST once the server has answered its
 *    ClientHello (its flight is readable, never read: that SSL reads from an
 *    empty memory BIO), so the server is in the middle of the handshake
 *    (`rst_handshakes`).
 *  - garbage_hello_every N: every Nth TCP connect writes, instead of a
 *    ClientHello, a TLS handshake record header (16 03 01, length L) with L
 *    random bytes and then 128 to 511 more random bytes, and closes
 *    (`garbage_hellos`).  Counted first: such a connection begins no handshake.
 *  - no_close_notify: churn closes the socket without SSL_shutdown
 *    (`plain_closes`).
 * With plain TCP only abort_every applies (the others need TLS).
 *
 * SIGPIPE is set to SIG_IGN in this process (OpenSSL and the TCP path write
 * with write(2)). */
#define _GNU_SOURCE
#include "tlsh_loadgen.h"
#include "tlsh_sip.h"
#include "tlsh_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

enum { ST_IDLE = 0, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN };
/* how a connection is closed */
enum { CL_FAIL = 0, CL_NOTIFY, CL_PLAIN, CL_RST };
/* what this connection is to do wrong on purpose */
enum { AB_NONE = 0, AB_ABORT, AB_RST };

#define WBUF_CAP 16384
#define RBUF_INIT 16384
#define RBUF_MAX (2 * TLSH_SIP_MAX_MSG + 16384)
#define REQ_RESERVE 1024        /* room needed to build one more request */
#define MAX_EVENTS 256
#define SCAN_NS 10000000LL      /* timeout / reconnect scan period */
/* tlsh_sip_request's Via starts with this; over plain TCP its "TLS" becomes
 * "TCP" in place (same length; the self-check refuses another format) */
#define VIA_HEAD "OPTIONS sip:tlsh@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/"
#define VIA_PROTO_OFF (sizeof VIA_HEAD - 1)

struct slot {
    uint64_t seq;               /* 0: hole (settled out of order) */
    int64_t sent_ns;
};

struct done_seq {
    uint64_t seq;
    int64_t ns;                 /* when its reply was read */
};

/* What was read of a reply, as far as it could be parsed. */
struct parsed {
    int status;
    const char *cid;
    size_t cidlen;
    unsigned long cseq, cconn, cseqid;
    int have_cid;               /* cconn and cseqid were parsed from the Call-ID */
};

struct lgconn {
    int fd;
    int state;
    uint32_t gen;               /* epoll generation: stale events are ignored */
    uint32_t evmask;
    SSL *ssl;
    SSL *spare;                 /* this slot's previous SSL object, cleared for the next connection */
    unsigned connno;
    int64_t since_ns;           /* CONNECTING/HANDSHAKE start; IDLE: reconnect time */
    int64_t connect_ns;         /* when this connection's connect() began */
    uint64_t next_seq;
    struct slot *ring;
    uint32_t rcap, rhead, rcount, live;
    uint64_t *grave;            /* seqs dropped by timeout (late replies ignored) */
    uint32_t gcap, ghead;
    struct done_seq *done;      /* the last settled seqs: a second reply is a duplicate */
    uint32_t dcap, dhead;
    uint64_t conn_sent, conn_settled;
    int tokens;                 /* open loop: requests granted, not yet built */
    int sess_taken;
    int rejecting;              /* this attempt uses reject_ctx */
    int opened_once;            /* reached ST_OPEN at least once */
    int abuse;                  /* AB_*: this connection's planned misbehaviour */
    char *rbuf; size_t rlen, rcap_b;
    char *wbuf; size_t wlen;    /* pending SSL_write (must be retried as is) */
};

struct lg {
    const struct tlsh_lg_config *cfg;
    struct tlsh_lg_counters *c;
    SSL_CTX *ctx;
    int ep;
    int family;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct lgconn *conns;
    int n;
    int window;
    int64_t timeout_ns;
    SSL_SESSION *sess;          /* last resumable session (resume mode) */
    uint64_t rnd;
    int nidle;                  /* connections waiting to reconnect */
    SSL_CTX *reject_ctx;        /* verifies the server against no CA: aborts with unknown_ca */
    uint64_t attempts;          /* TLS handshakes started */
    int opening;                /* connections connecting or in their handshake */
    int admit;                  /* admission: at most this many opening at once (0: no cap) */
    int holding;                /* no requests yet: connections are still being opened
                                   (the ramp's handshakes get the server's time), until
                                   all are open or hold_until */
    int64_t hold_until;
    uint64_t want_open;         /* connections of all the clients */
    int64_t load_from;          /* when the holding ended: the connections then start their
                                   requests one after another over LOAD_STAGGER_NS, not
                                   all at once (a burst the size of the ramp) */
    const volatile struct tlsh_lg_counters *all;   /* every client's counters, or own */
    int nall;
    int tcp;                    /* plain TCP (cfg->transport == TLSH_LG_TCP): no SSL objects */
    uint64_t n_connected;       /* TCP connects completed (garbage_hello_every counts these) */
    uint64_t n_plain_hs;        /* handshakes begun, not rejecting (rst_handshake_every) */
    uint64_t n_ready;           /* connections ready for requests (abort_every) */
};

/* Admission (many connections, no --ramp): connections are opened at the rate
 * the server takes them, not all at once.  The cap on connections opening at
 * once grows by one per completed handshake and halves on a failed connect or
 * handshake (additive increase, multiplicative decrease), within these bounds. */
#define ADMIT_FROM_CONNS 256
#define ADMIT_START 32
#define ADMIT_MIN 4
#define ADMIT_MAX 512
#define LOAD_STAGGER_NS 1000000000LL

static void set_error(struct tlsh_lg_counters *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    for (char *p = c->error; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

static uint64_t rnd_next(struct lg *g)
{
    uint64_t x = g->rnd;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return g->rnd = x;
}

/* ---- addresses ------------------------------------------------------ */

static int resolve_loopback(const char *host, struct sockaddr_storage *ss, socklen_t *len,
                            int *family)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (strcmp(host, "localhost") == 0) {
        a4->sin_family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof *a4; *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127) return -1;
        a4->sin_family = AF_INET;
        *len = sizeof *a4; *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr)) return -1;
        a6->sin6_family = AF_INET6;
        *len = sizeof *a6; *family = AF_INET6;
        return 0;
    }
    return -1;
}

/* ---- connection life cycle ------------------------------------------ */

static void ep_set(struct lg *g, struct lgconn *cn, uint32_t mask)
{
    if (cn->evmask == mask) return;
    struct epoll_event ev = { .events = mask };
    ev.data.u64 = ((uint64_t)cn->gen << 32) | (uint32_t)(cn - g->conns);
    if (epoll_ctl(g->ep, EPOLL_CTL_MOD, cn->fd, &ev) == 0)
        cn->evmask = mask;
}

static void drop_window(struct lgconn *cn)
{
    cn->rhead = cn->rcount = cn->live = 0;
    cn->ghead = 0;
    memset(cn->grave, 0, cn->gcap * sizeof *cn->grave);
    cn->rlen = 0;
    cn->wlen = 0;
    cn->tokens = 0;
    cn->conn_sent = cn->conn_settled = 0;
    cn->sess_taken = 0;
}

/* Close the socket (how: CL_*).  CL_NOTIFY: one close_notify (no wait) so
 * the session stays resumable; CL_PLAIN: close(2) only; CL_RST: an RST
 * (SO_LINGER {1, 0}), no close_notify; CL_FAIL: after an error. */
static void conn_close(struct lg *g, struct lgconn *cn, int how)
{
    (void)g;
    if (cn->ssl) {
        if (how == CL_NOTIFY && cn->state == ST_OPEN) {
            ERR_clear_error();
            SSL_shutdown(cn->ssl);
        }
        /* kept for the next connection of this slot: SSL_new costs the client
         * more than SSL_clear (the server side is untouched by this) */
        if (how != CL_FAIL && cn->state == ST_OPEN && !cn->rejecting && !cn->spare)
            cn->spare = cn->ssl;
        else SSL_free(cn->ssl);
        cn->ssl = NULL;
    }
    if (cn->fd >= 0) {
        if (how == CL_RST) {
            struct linger lg0 = { .l_onoff = 1, .l_linger = 0 };
            setsockopt(cn->fd, SOL_SOCKET, SO_LINGER, &lg0, sizeof lg0);
        }
        close(cn->fd);          /* removes it from the epoll set */
        cn->fd = -1;
    }
    cn->evmask = 0;
    cn->gen++;
    drop_window(cn);
    ERR_clear_error();
}

static void conn_fail(struct lg *g, struct lgconn *cn, int64_t now)
{
    g->c->conn_errors++;
    if (cn->state == ST_CONNECTING || cn->state == ST_HANDSHAKE) {
        g->opening--;
        if (g->admit && (g->admit /= 2) < ADMIT_MIN) g->admit = ADMIT_MIN;
    }
    conn_close(g, cn, CL_FAIL);
    cn->state = ST_IDLE;
    cn->since_ns = now + 10000000LL + (int64_t)(rnd_next(g) % 40000000ULL);  /* 10-50 ms */
    g->nidle++;
}

static void start_tls(struct lg *g, struct lgconn *cn, int64_t now);
static void conn_ready(struct lg *g, struct lgconn *cn, int64_t now);

/* The connection ended on purpose (abuse): closed `how`, reconnected at the
 * next scan.  `opening`: it had not become ready (no admission penalty). */
static void conn_abused(struct lg *g, struct lgconn *cn, int how, int opening, int64_t now)
{
    if (opening) g->opening--;
    conn_close(g, cn, how);
    cn->state = ST_IDLE;
    cn->since_ns = now;
    g->nidle++;
}

/* garbage_hello_every: a handshake record header, a random body of its
 * length, a few hundred more random bytes; then close. */
static void send_garbage(struct lg *g, struct lgconn *cn, int64_t now)
{
    unsigned char buf[5 + 511 + 511];
    size_t body = 64 + (size_t)(rnd_next(g) % 448), n = 5 + body + 128 + (size_t)(rnd_next(g) % 384);
    for (size_t i = 5; i < n; i += 8) {
        uint64_t r = rnd_next(g);
        memcpy(buf + i, &r, n - i < 8 ? n - i : 8);
    }
    buf[0] = 0x16; buf[1] = 3; buf[2] = 1;
    buf[3] = (unsigned char)(body >> 8); buf[4] = (unsigned char)body;
    buf[5] = buf[5] == 1 ? 0xfe : buf[5];   /* the body is not a client_hello message */
    ssize_t w;
    do w = write(cn->fd, buf, n); while (w < 0 && errno == EINTR);
    if (w <= 0) { conn_fail(g, cn, now); return; }  /* refused before a byte went out */
    g->c->garbage_hellos++;
    conn_abused(g, cn, CL_PLAIN, 1, now);
}

/* The TCP connect completed: TLS begins its handshake (or writes garbage
 * instead), plain TCP is ready. */
static inline void connected(struct lg *g, struct lgconn *cn, int64_t now)
{
    int every = g->cfg->garbage_hello_every;
    if (g->tcp) conn_ready(g, cn, now);
    else if (every > 0 && ++g->n_connected % (uint64_t)every == 0) send_garbage(g, cn, now);
    else start_tls(g, cn, now);
}

static void do_handshake(struct lg *g, struct lgconn *cn, int64_t now);

/* rst_handshake_every: an event on a handshake that is to be reset.  Its SSL
 * reads from an empty memory BIO (start_tls), so the client never reads the
 * server's answer and cannot complete: once that answer is readable (peeked),
 * the connection is reset.  A server that closes before answering fails the
 * connection as it would any handshake. */
static void rst_event(struct lg *g, struct lgconn *cn, uint32_t ev, int64_t now)
{
    char b;
    ssize_t r = recv(cn->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r > 0) {
        g->c->rst_handshakes++;
        conn_abused(g, cn, CL_RST, 1, now);
    } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        conn_fail(g, cn, now);
    } else if (ev & EPOLLOUT) {
        do_handshake(g, cn, now);       /* the ClientHello is still being written */
    }
}

static void start_connect(struct lg *g, struct lgconn *cn, int64_t now)
{
    g->opening++;
    cn->abuse = AB_NONE;
    cn->state = ST_CONNECTING;
    cn->since_ns = cn->connect_ns = now;
    cn->fd = socket(g->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (cn->fd < 0) { conn_fail(g, cn, now); return; }
    int one = 1;
    setsockopt(cn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    g->c->connects++;
    int r = connect(cn->fd, (struct sockaddr *)&g->addr, g->addrlen);
    if (r != 0 && errno != EINPROGRESS) { conn_fail(g, cn, now); return; }
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN };
    ev.data.u64 = ((uint64_t)cn->gen << 32) | (uint32_t)(cn - g->conns);
    if (epoll_ctl(g->ep, EPOLL_CTL_ADD, cn->fd, &ev) != 0) { conn_fail(g, cn, now); return; }
    cn->evmask = ev.events;
    if (r == 0) connected(g, cn, now);
}

static void fill(struct lg *g, struct lgconn *cn, int64_t now);

/* The connection can carry requests: its TLS handshake completed, or (plain
 * TCP) its connect did; either counts as a handshake. */
static void conn_ready(struct lg *g, struct lgconn *cn, int64_t now)
{
    struct tlsh_lg_counters *c = g->c;
    c->handshakes++;
    if (!c->ready) c->ready_ns = now;
    c->ready = 1;
    g->opening--;
    if (g->admit) {
        /* admission follows the server's pace: one more in flight per quick
         * handshake, a quarter fewer when one took more than a quarter of the
         * timeout (the server is queueing; before anything fails) */
        int64_t took = now - cn->connect_ns;
        if (took > g->timeout_ns / 4)
            g->admit = g->admit * 3 / 4 < ADMIT_MIN ? ADMIT_MIN : g->admit * 3 / 4;
        else if (took < g->timeout_ns / 8 && g->admit < ADMIT_MAX)
            g->admit++;
    }
    cn->state = ST_OPEN;
    int every = g->cfg->abort_every;
    cn->abuse = every > 0 && ++g->n_ready % (uint64_t)every == 0 ? AB_ABORT : AB_NONE;
    if (!cn->opened_once) {
        cn->opened_once = 1;
        c->opened++;
    }
    ep_set(g, cn, EPOLLIN);
    fill(g, cn, now);
}

static void do_handshake(struct lg *g, struct lgconn *cn, int64_t now)
{
    ERR_clear_error();
    int r = SSL_do_handshake(cn->ssl);
    if (r == 1) {
        if (SSL_session_reused(cn->ssl)) g->c->resumed++;
        conn_ready(g, cn, now);
        return;
    }
    int e = SSL_get_error(cn->ssl, r);
    if (e == SSL_ERROR_WANT_READ) ep_set(g, cn, EPOLLIN);
    else if (e == SSL_ERROR_WANT_WRITE) ep_set(g, cn, EPOLLIN | EPOLLOUT);
    else if (cn->rejecting && SSL_get_verify_result(cn->ssl) != X509_V_OK) {
        /* as planned: the server's certificate refused, alert sent */
        g->c->rejected++;
        conn_abused(g, cn, CL_FAIL, 1, now);    /* reconnect at the next scan */
    }
    else conn_fail(g, cn, now);
}

static void start_tls(struct lg *g, struct lgconn *cn, int64_t now)
{
    g->attempts++;
    cn->rejecting = g->reject_ctx && g->attempts % (uint64_t)g->cfg->reject_every == 0;
    if (cn->spare && !cn->rejecting) {
        cn->ssl = cn->spare;
        cn->spare = NULL;
        SSL_set_session(cn->ssl, NULL);  /* a full handshake, unless resume sets one below */
        if (!SSL_clear(cn->ssl)) { SSL_free(cn->ssl); cn->ssl = NULL; }
    }
    int every = g->cfg->rst_handshake_every;
    if (!cn->rejecting && every > 0 && ++g->n_plain_hs % (uint64_t)every == 0)
        cn->abuse = AB_RST;
    if (!cn->ssl) cn->ssl = SSL_new(cn->rejecting ? g->reject_ctx : g->ctx);
    if (!cn->ssl || !SSL_set_fd(cn->ssl, cn->fd)) { conn_fail(g, cn, now); return; }
    if (cn->abuse == AB_RST) {
        /* writes go to the socket, reads come from an empty memory BIO: the
         * ClientHello goes out, the server's answer is never read (a machine
         * busy enough to preempt the client between its write and its read
         * would otherwise let the handshake complete at once) */
        BIO *none = BIO_new(BIO_s_mem());
        if (!none) { conn_fail(g, cn, now); return; }
        BIO_set_mem_eof_return(none, -1);
        SSL_set0_rbio(cn->ssl, none);
    }
    SSL_set_connect_state(cn->ssl);
    if (g->cfg->resume && g->sess)
        SSL_set_session(cn->ssl, g->sess);
    cn->state = ST_HANDSHAKE;
    cn->since_ns = now;
    do_handshake(g, cn, now);
}

/* Reconnect at once (churn). */
static void conn_recycle(struct lg *g, struct lgconn *cn, int64_t now)
{
    if (g->cfg->no_close_notify) g->c->plain_closes++;
    conn_close(g, cn, g->cfg->no_close_notify ? CL_PLAIN : CL_NOTIFY);
    start_connect(g, cn, now);
}

/* ---- window ----------------------------------------------------------- */

static inline struct slot *ring_at(struct lgconn *cn, uint32_t i)
{
    uint32_t k = cn->rhead + i;
    if (k >= cn->rcap) k -= cn->rcap;
    return &cn->ring[k];
}

static inline void ring_pop_holes(struct lgconn *cn)
{
    while (cn->rcount && cn->ring[cn->rhead].seq == 0) {
        if (++cn->rhead == cn->rcap) cn->rhead = 0;
        cn->rcount--;
    }
}

static inline int churn_done(struct lg *g, struct lgconn *cn)
{
    int churn = g->cfg->churn;
    return churn > 0 && cn->conn_sent >= (uint64_t)churn && cn->conn_settled >= cn->conn_sent;
}

/* Room for new requests on this connection. */
static inline int room(struct lg *g, struct lgconn *cn)
{
    if (cn->state != ST_OPEN) return 0;
    if (g->holding) return 0;
    int k = g->window - (int)cn->live;
    int rf = (int)(cn->rcap - cn->rcount);
    if (rf < k) k = rf;
    if (g->cfg->churn > 0) {
        int64_t left = (int64_t)g->cfg->churn - (int64_t)cn->conn_sent;
        if (left < k) k = (int)left;
    }
    return k > 0 ? k : 0;
}

/* flush() over plain TCP: what write(2) did not take moves to the buffer's
 * start and waits for the socket (nothing is rebuilt, nothing sent twice). */
static int flush_tcp(struct lg *g, struct lgconn *cn, int64_t now)
{
    size_t off = 0;
    while (off < cn->wlen) {
        ssize_t r = write(cn->fd, cn->wbuf + off, cn->wlen - off);
        if (r > 0) { off += (size_t)r; continue; }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            memmove(cn->wbuf, cn->wbuf + off, cn->wlen - off);
            cn->wlen -= off;
            g->c->write_waits++;
            ep_set(g, cn, EPOLLIN | EPOLLOUT);
            return 0;
        }
        conn_fail(g, cn, now);
        return -1;
    }
    cn->wlen = 0;
    if (cn->evmask & EPOLLOUT) ep_set(g, cn, EPOLLIN);
    return 1;
}

/* flush() over TLS: one SSL_write of the whole buffer. */
static int flush_tls(struct lg *g, struct lgconn *cn, int64_t now)
{
    ERR_clear_error();
    int r = SSL_write(cn->ssl, cn->wbuf, (int)cn->wlen);
    if (r > 0) {
        cn->wlen = 0;
        if (cn->evmask & EPOLLOUT) ep_set(g, cn, EPOLLIN);
        return 1;
    }
    int e = SSL_get_error(cn->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        /* retried later with the same buffer and length (wbuf, wlen untouched) */
        g->c->write_waits++;
        ep_set(g, cn, e == SSL_ERROR_WANT_WRITE ? (EPOLLIN | EPOLLOUT) : EPOLLIN);
        return 0;
    }
    conn_fail(g, cn, now);
    return -1;
}

/* Flush the pending write.  Returns 1 when nothing is pending any more,
 * 0 when it must wait for the socket, -1 when the connection is gone (a
 * failure, or abort_every: reset now that its requests are written). */
static int flush(struct lg *g, struct lgconn *cn, int64_t now)
{
    if (cn->wlen == 0) return 1;
    int r = g->tcp ? flush_tcp(g, cn, now) : flush_tls(g, cn, now);
    if (r == 1 && cn->abuse == AB_ABORT) {
        g->c->aborted++;
        g->c->abandoned += cn->live;
        conn_abused(g, cn, CL_RST, 0, now);
        return -1;
    }
    return r;
}

/* Build as many requests as allowed into one buffer, then one SSL_write. */
static void fill(struct lg *g, struct lgconn *cn, int64_t now)
{
    int open_loop = g->cfg->rate > 0;
    for (int rounds = 0; rounds < 4; rounds++) {
        if (cn->state != ST_OPEN) return;
        if (cn->wlen) {
            int f = flush(g, cn, now);
            if (f <= 0) return;
        }
        int k = room(g, cn);
        if (open_loop && cn->tokens < k) k = cn->tokens;
        if (k <= 0) return;
        int built = 0;
        while (built < k && WBUF_CAP - cn->wlen >= REQ_RESERVE) {
            uint64_t seq = cn->next_seq;
            int n = tlsh_sip_request(cn->wbuf + cn->wlen, WBUF_CAP - cn->wlen, cn->connno,
                                     (unsigned long)seq);
            if (n <= 0) break;
            if (g->tcp) memcpy(cn->wbuf + cn->wlen + VIA_PROTO_OFF, "TCP", 3);
            cn->wlen += (size_t)n;
            cn->next_seq++;
            uint32_t k2 = cn->rhead + cn->rcount;
            if (k2 >= cn->rcap) k2 -= cn->rcap;
            cn->ring[k2].seq = seq;
            cn->ring[k2].sent_ns = now;
            cn->rcount++;
            cn->live++;
            cn->conn_sent++;
            built++;
        }
        if (!built) return;
        g->c->sent += (uint64_t)built;
        if (g->cfg->rekey_every > 0
                 && cn->conn_sent / (uint64_t)g->cfg->rekey_every
                    != (cn->conn_sent - (uint64_t)built) / (uint64_t)g->cfg->rekey_every) {
            /* TLS 1.3: ask for a key update (both sides rekey); TLS 1.2: start
             * a renegotiation.  Either runs inside the following I/O. */
            int ok = SSL_version(cn->ssl) == TLS1_3_VERSION
                     ? SSL_key_update(cn->ssl, SSL_KEY_UPDATE_REQUESTED)
                     : SSL_renegotiate(cn->ssl);
            if (ok == 1) g->c->rekeys++;
            ERR_clear_error();
        }
        if (open_loop) cn->tokens -= built;
        if (flush(g, cn, now) <= 0) return;
    }
}

/* ---- replies ---------------------------------------------------------- */

/* "<conn>-<seq>@tlsharness" */
static int parse_callid(const char *s, size_t n, unsigned long *conn, unsigned long *seq)
{
    static const char suffix[] = "@tlsharness";
    size_t sl = sizeof suffix - 1, i = 0;
    unsigned long a = 0, b = 0;
    if (n <= sl || memcmp(s + n - sl, suffix, sl) != 0) return -1;
    n -= sl;
    size_t st = i;
    while (i < n && s[i] >= '0' && s[i] <= '9' && i - st < 19) a = a * 10 + (unsigned long)(s[i++] - '0');
    if (i == st || i >= n || s[i] != '-') return -1;
    st = ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9' && i - st < 19) b = b * 10 + (unsigned long)(s[i++] - '0');
    if (i == st || i != n) return -1;
    *conn = a; *seq = b;
    return 0;
}

/* The window of cn now: oldest and newest outstanding seqs (0: none). */
static void window_of(struct lgconn *cn, uint64_t *oldest, uint64_t *newest)
{
    *oldest = *newest = 0;
    for (uint32_t i = 0; i < cn->rcount; i++) {
        uint64_t q = ring_at(cn, i)->seq;
        if (!q) continue;
        if (!*oldest) *oldest = q;
        *newest = q;
    }
}

/* Count a bad reply of `kind`; keep it whole while there is a free slot.  The
 * slot is filled before n_bad_samples counts it, and `bad` is stored last, so
 * the controller never reads a half-written record (even if this process is
 * killed in the middle). */
static void bad_reply(struct lg *g, struct lgconn *cn, int kind, int why, const struct parsed *p,
                      const char *msg, size_t len, int64_t answered_ns, int64_t now)
{
    struct tlsh_lg_counters *c = g->c;
    uint32_t n = c->n_bad_samples;
    if (n < TLSH_LG_BAD_SAMPLES) {
        struct tlsh_lg_bad *b = &c->bad_samples[n];
        memset(b, 0, sizeof *b);
        b->kind = kind;
        b->why = why;
        b->conn = cn->connno;
        b->time_ns = now;
        if (p) {
            b->status = p->status;
            b->cseq = p->cseq;
            size_t cl = p->cidlen < sizeof b->callid - 1 ? p->cidlen : sizeof b->callid - 1;
            if (p->cid) memcpy(b->callid, p->cid, cl);
            if (p->have_cid) { b->cid_conn = p->cconn; b->cid_seq = p->cseqid; }
        }
        window_of(cn, &b->oldest, &b->newest);
        b->next_seq = cn->next_seq;
        b->live = cn->live;
        b->msg_len = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
        b->nbytes = len < sizeof b->bytes ? (uint32_t)len : (uint32_t)sizeof b->bytes;
        memcpy(b->bytes, msg, b->nbytes);
        b->answered_ns = answered_ns;
        __atomic_store_n(&c->n_bad_samples, n + 1, __ATOMIC_RELEASE);
    }
    c->bad_kind[kind]++;
    __atomic_store_n(&c->bad, c->bad + 1, __ATOMIC_RELEASE);
}

static inline void settled(struct lgconn *cn, uint64_t seq, int64_t now)
{
    cn->done[cn->dhead].seq = seq;
    cn->done[cn->dhead].ns = now;
    if (++cn->dhead == cn->dcap) cn->dhead = 0;
}

/* A reply matching no outstanding request: late (after its timeout: ignored),
 * a duplicate of a settled one, or unknown. */
static void stray_reply(struct lg *g, struct lgconn *cn, const struct parsed *p,
                        const char *msg, size_t len, int64_t now)
{
    for (uint32_t i = 0; i < cn->gcap; i++)
        if (cn->grave[i] == p->cseq) {          /* late: ignored */
            cn->grave[i] = 0;
            settled(cn, p->cseq, now);
            return;
        }
    for (uint32_t i = 0; i < cn->dcap; i++)
        if (cn->done[i].seq == p->cseq) {
            bad_reply(g, cn, TLSH_BAD_DUPLICATE, TLSH_WHY_NONE, p, msg, len, cn->done[i].ns, now);
            return;
        }
    bad_reply(g, cn, TLSH_BAD_UNKNOWN, TLSH_WHY_NONE, p, msg, len, 0, now);
}

static void on_reply(struct lg *g, struct lgconn *cn, const char *msg, size_t len, int64_t now)
{
    struct tlsh_lg_counters *c = g->c;
    struct parsed p = { 0 };
    if (tlsh_sip_parse_reply(msg, len, &p.status, &p.cid, &p.cidlen, &p.cseq) != 0) {
        bad_reply(g, cn, TLSH_BAD_UNPARSEABLE, TLSH_WHY_PARSE, NULL, msg, len, 0, now);
        return;
    }
    if (parse_callid(p.cid, p.cidlen, &p.cconn, &p.cseqid) != 0) {
        bad_reply(g, cn, TLSH_BAD_UNPARSEABLE, TLSH_WHY_CALLID, &p, msg, len, 0, now);
        return;
    }
    p.have_cid = 1;
    if (p.cconn != cn->connno) {
        bad_reply(g, cn, TLSH_BAD_WRONG_CONN, TLSH_WHY_NONE, &p, msg, len, 0, now);
        return;
    }
    if (p.cseqid != p.cseq || p.cseq == 0) {
        bad_reply(g, cn, TLSH_BAD_UNPARSEABLE, TLSH_WHY_CSEQ, &p, msg, len, 0, now);
        return;
    }
    uint64_t cseq = p.cseq;
    for (uint32_t i = 0; i < cn->rcount; i++) {
        struct slot *s = ring_at(cn, i);
        if (s->seq != cseq) continue;
        s->seq = 0;
        cn->live--;
        cn->conn_settled++;
        settled(cn, cseq, now);
        if (p.status == 200) {
            c->answered++;
            c->last_answer_ns = now;
            int64_t d = now - s->sent_ns;
            c->lat_hist[tlsh_lat_bucket(d > 0 ? (uint64_t)d / 1000 : 0)]++;
        } else {
            bad_reply(g, cn, TLSH_BAD_STATUS, TLSH_WHY_NONE, &p, msg, len, 0, now);
        }
        ring_pop_holes(cn);
        return;
    }
    stray_reply(g, cn, &p, msg, len, now);
}

static void take_session(struct lg *g, struct lgconn *cn)
{
    SSL_SESSION *s = SSL_get1_session(cn->ssl);
    if (!s) return;
    if (!SSL_SESSION_is_resumable(s)) { SSL_SESSION_free(s); return; }
    if (g->sess) SSL_SESSION_free(g->sess);
    g->sess = s;
    cn->sess_taken = 1;
}

/* Read until WANT_READ, frame and settle replies.  Returns -1 when the
 * connection failed. */
static int do_read(struct lg *g, struct lgconn *cn, int64_t now)
{
    int got = 0;
    for (;;) {
        if (cn->rlen == cn->rcap_b) {
            if (cn->rcap_b >= RBUF_MAX) {
                bad_reply(g, cn, TLSH_BAD_UNPARSEABLE, TLSH_WHY_OVERSIZE, NULL, cn->rbuf,
                          cn->rlen, 0, now);
                conn_fail(g, cn, now);
                return -1;
            }
            size_t nc = cn->rcap_b * 2 > RBUF_MAX ? RBUF_MAX : cn->rcap_b * 2;
            char *nb = realloc(cn->rbuf, nc);
            if (!nb) { conn_fail(g, cn, now); return -1; }
            cn->rbuf = nb; cn->rcap_b = nc;
        }
        size_t space = cn->rcap_b - cn->rlen;
        int r;
        if (g->tcp) {
            r = (int)read(cn->fd, cn->rbuf + cn->rlen, space);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (r < 0 && errno == EINTR) continue;
                conn_fail(g, cn, now);  /* peer close or socket error */
                return -1;
            }
        } else {
            ERR_clear_error();
            r = SSL_read(cn->ssl, cn->rbuf + cn->rlen, (int)space);
            if (r <= 0) {
                int e = SSL_get_error(cn->ssl, r);
                if (e == SSL_ERROR_WANT_READ) break;
                if (e == SSL_ERROR_WANT_WRITE) { ep_set(g, cn, EPOLLIN | EPOLLOUT); break; }
                conn_fail(g, cn, now);  /* peer close, TLS or socket error */
                return -1;
            }
        }
        cn->rlen += (size_t)r;
        size_t off = 0;
        while (off < cn->rlen) {
            while (off < cn->rlen && (cn->rbuf[off] == '\r' || cn->rbuf[off] == '\n'))
                off++;                  /* CRLF keep-alives */
            if (off == cn->rlen) break;
            size_t ml = 0;
            int f = tlsh_sip_frame(cn->rbuf + off, cn->rlen - off, &ml);
            if (f == 0) break;
            if (f < 0 || ml == 0) {
                bad_reply(g, cn, TLSH_BAD_UNPARSEABLE, TLSH_WHY_FRAMING, NULL, cn->rbuf + off,
                          cn->rlen - off, 0, now);
                conn_fail(g, cn, now);
                return -1;
            }
            on_reply(g, cn, cn->rbuf + off, ml, now);
            off += ml;
            got = 1;
        }
        if (off) {
            memmove(cn->rbuf, cn->rbuf + off, cn->rlen - off);
            cn->rlen -= off;
        }
        /* TCP: a short read emptied the socket; epoll is level-triggered, so
         * no read(2) just to learn EAGAIN */
        if (g->tcp && (size_t)r < space) break;
    }
    if (got && g->cfg->resume && g->cfg->churn > 0 && !cn->sess_taken)
        take_session(g, cn);
    return 0;
}

/* ---- periodic work -------------------------------------------------- */

static void expire(struct lg *g, struct lgconn *cn, int64_t now)
{
    int64_t lim = now - g->timeout_ns;
    while (cn->rcount) {
        struct slot *s = &cn->ring[cn->rhead];
        if (s->seq) {
            if (s->sent_ns > lim) break;
            g->c->timed_out++;
            cn->grave[cn->ghead] = s->seq;
            if (++cn->ghead == cn->gcap) cn->ghead = 0;
            cn->live--;
            cn->conn_settled++;
        }
        if (++cn->rhead == cn->rcap) cn->rhead = 0;
        cn->rcount--;
    }
}

/* Connections opened once, over all the run's clients (they share one
 * counters segment): the ramp is over when all of them are. */
static uint64_t opened_all(struct lg *g)
{
    uint64_t n = 0;
    for (int i = 0; i < g->nall; i++) n += g->all[i].opened;
    return n;
}

static void scan(struct lg *g, int64_t now)
{
    int nidle = 0;
    if (g->holding && !(g->holding = now < g->hold_until && opened_all(g) < g->want_open))
        g->load_from = now;
    for (int i = 0; i < g->n; i++) {
        struct lgconn *cn = &g->conns[i];
        switch (cn->state) {
        case ST_IDLE:
            if (now >= cn->since_ns && (!g->admit || g->opening < g->admit)) {
                g->nidle--;
                start_connect(g, cn, now);
            }
            else nidle++;
            break;
        case ST_CONNECTING:
        case ST_HANDSHAKE:
            if (now - cn->since_ns > g->timeout_ns) conn_fail(g, cn, now);
            break;
        case ST_OPEN:
            if (cn->rcount) {
                expire(g, cn, now);
                if (churn_done(g, cn)) conn_recycle(g, cn, now);
                else if (g->cfg->rate <= 0) fill(g, cn, now);
            } else if (!g->holding && g->cfg->rate <= 0
                       && now >= g->load_from + LOAD_STAGGER_NS * i / g->n)
                fill(g, cn, now);               /* the load starts after the ramp */
            break;
        }
    }
    (void)nidle;
}

/* Open loop: hand out whole tokens round-robin to connections with room;
 * tokens nobody can take are dropped. */
static void distribute(struct lg *g, double *bucket, int *rr, int64_t now)
{
    long whole = (long)*bucket;
    if (whole <= 0) return;
    *bucket -= (double)whole;
    int n = g->n, idle_pass = 0;
    while (whole > 0 && idle_pass < n) {
        struct lgconn *cn = &g->conns[*rr];
        if (++*rr == n) *rr = 0;
        if (room(g, cn) > cn->tokens) {
            cn->tokens++;
            whole--;
            idle_pass = 0;
        } else {
            idle_pass++;
        }
    }
    for (int i = 0; i < n; i++)
        if (g->conns[i].tokens > 0 && g->conns[i].wlen == 0)
            fill(g, &g->conns[i], now);
}

/* ---- entry point ---------------------------------------------------- */

static int self_check(struct tlsh_lg_counters *c, unsigned conn)
{
    char buf[2048], want[96];
    int n = tlsh_sip_request(buf, sizeof buf, conn, 1);
    if (n <= 0 || n > REQ_RESERVE - 64) { set_error(c, "loadgen: tlsh_sip_request failed"); return -1; }
    snprintf(want, sizeof want, "\r\nCall-ID: %u-1@tlsharness\r\n", conn);
    if (!memmem(buf, (size_t)n, want, strlen(want)) || !memmem(buf, (size_t)n, "\r\nCSeq: 1 ", 10)) {
        set_error(c, "loadgen: unexpected Call-ID/CSeq format from tlsh_sip_request");
        return -1;
    }
    if ((size_t)n < VIA_PROTO_OFF + 4 || memcmp(buf, VIA_HEAD "TLS ", VIA_PROTO_OFF + 4) != 0) {
        set_error(c, "loadgen: unexpected Via format from tlsh_sip_request");
        return -1;
    }
    return 0;
}

/* The server's certificate is not what a load test checks: accepted without
 * building and checking a chain on every handshake (the client's own cost,
 * not the server's).  The rejecting clients (--reject-every) verify. */
static int accept_chain(X509_STORE_CTX *x, void *arg)
{
    (void)x; (void)arg;
    return 1;
}

static SSL_CTX *make_ctx(const struct tlsh_lg_config *cfg, struct tlsh_lg_counters *c)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) { set_error(c, "loadgen: SSL_CTX_new failed"); return NULL; }
    /* 0: negotiate (1.2 to 1.3, what the server prefers); 12 or 13: pinned */
    int lo = cfg->tls_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    int hi = cfg->tls_version == 12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    if (!SSL_CTX_set_min_proto_version(ctx, lo) || !SSL_CTX_set_max_proto_version(ctx, hi)) {
        set_error(c, "loadgen: cannot set TLS version %d", cfg->tls_version);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, accept_chain, NULL);
    /* TLS 1.3: the cheapest suite first; the server still sees all three
     * offered and picks by its own rules */
    SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                  "TLS_CHACHA20_POLY1305_SHA256");
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);     /* one read(2) for many records */
    if (cfg->tls_version != 13 && cfg->ciphers[0]) {
        char ciphers[sizeof cfg->ciphers + 1];
        memcpy(ciphers, cfg->ciphers, sizeof cfg->ciphers);
        ciphers[sizeof cfg->ciphers] = 0;
        if (!SSL_CTX_set_cipher_list(ctx, ciphers)) {
            set_error(c, "loadgen: bad cipher list '%s'", ciphers);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    return ctx;
}

int tlsh_loadgen_run(const struct tlsh_lg_config *cfg, struct tlsh_lg_counters *c,
                     volatile int *stop)
{
    if (!c) return -1;
    memset(c, 0, sizeof *c);
    c->magic = TLSH_LG_MAGIC;
    c->magic2 = TLSH_LG_MAGIC;
    c->pid = getpid();
    c->updated_ns = tlsh_now_ns();
    if (!cfg) { set_error(c, "loadgen: no configuration"); return -1; }
    c->nconns = cfg->nconns;

    char host[sizeof cfg->host + 1];
    memcpy(host, cfg->host, sizeof cfg->host);
    host[sizeof cfg->host] = 0;

    struct lg G;
    memset(&G, 0, sizeof G);
    struct lg *g = &G;
    g->cfg = cfg;
    g->c = c;
    if (resolve_loopback(host, &g->addr, &g->addrlen, &g->family) != 0) {
        set_error(c, "loadgen: refusing non-loopback host '%s'", host);
        return -1;
    }
    if (cfg->port < 1 || cfg->port > 65535) { set_error(c, "loadgen: port %d out of range", cfg->port); return -1; }
    if (cfg->nconns < 1 || cfg->nconns > 1000000) { set_error(c, "loadgen: nconns %d out of range", cfg->nconns); return -1; }
    if (cfg->window < 1 || cfg->window > 65536) { set_error(c, "loadgen: window %d out of range", cfg->window); return -1; }
    if (cfg->churn < 0) { set_error(c, "loadgen: churn %d < 0", cfg->churn); return -1; }
    if (cfg->tls_version != 0 && cfg->tls_version != 12 && cfg->tls_version != 13) {
        set_error(c, "loadgen: tls_version %d (want 0 = negotiate, 12 or 13)", cfg->tls_version);
        return -1;
    }
    if (!(cfg->rate >= 0) || !isfinite(cfg->rate)) { set_error(c, "loadgen: bad rate"); return -1; }
    if (!(cfg->duration_s > 0) || !isfinite(cfg->duration_s)) { set_error(c, "loadgen: duration_s must be > 0"); return -1; }
    if (!(cfg->timeout_s > 0) || !isfinite(cfg->timeout_s)) { set_error(c, "loadgen: timeout_s must be > 0"); return -1; }
    if (cfg->conn_base < 0) { set_error(c, "loadgen: conn_base < 0"); return -1; }
    if (cfg->transport != TLSH_LG_TLS && cfg->transport != TLSH_LG_TCP) {
        set_error(c, "loadgen: transport %d (want %d = TLS or %d = TCP)", cfg->transport,
                  TLSH_LG_TLS, TLSH_LG_TCP);
        return -1;
    }
    g->tcp = cfg->transport == TLSH_LG_TCP;
    if (g->tcp && (cfg->resume || cfg->reject_every > 0 || cfg->rekey_every > 0
                   || cfg->rst_handshake_every || cfg->garbage_hello_every
                   || cfg->no_close_notify)) {
        set_error(c, "loadgen: transport TCP has no TLS to resume, reject, rekey, break off "
                  "or close without close_notify (resume, reject_every, rekey_every, "
                  "rst_handshake_every, garbage_hello_every and no_close_notify must be 0)");
        return -1;
    }
    if (cfg->abort_every < 0 || cfg->rst_handshake_every < 0 || cfg->garbage_hello_every < 0
            || (cfg->no_close_notify != 0 && cfg->no_close_notify != 1)) {
        set_error(c, "loadgen: abort_every, rst_handshake_every and garbage_hello_every must "
                  "be >= 0, no_close_notify 0 or 1");
        return -1;
    }
    if (self_check(c, (unsigned)cfg->conn_base) != 0) return -1;
    if (g->family == AF_INET6)
        ((struct sockaddr_in6 *)&g->addr)->sin6_port = htons((uint16_t)cfg->port);
    else
        ((struct sockaddr_in *)&g->addr)->sin_port = htons((uint16_t)cfg->port);

    signal(SIGPIPE, SIG_IGN);
    if (!g->tcp) {                      /* plain TCP: no TLS client at all */
        g->ctx = make_ctx(cfg, c);
        if (g->ctx && cfg->reject_every > 0) {
            /* clients that do not trust the server's CA: the handshake fails on
             * their side and the server reads alert unknown_ca (OpenSIPS #2362) */
            g->reject_ctx = make_ctx(cfg, c);
            if (!g->reject_ctx) { SSL_CTX_free(g->ctx); return -1; }
            SSL_CTX_set_verify(g->reject_ctx, SSL_VERIFY_PEER, NULL);
            SSL_CTX_set_cert_verify_callback(g->reject_ctx, NULL, NULL);   /* the real chain check */
        }
        if (!g->ctx) return -1;
    }
    g->ep = epoll_create1(EPOLL_CLOEXEC);
    if (g->ep < 0) { set_error(c, "loadgen: epoll_create1: %s", strerror(errno)); SSL_CTX_free(g->ctx); return -1; }
    g->n = cfg->nconns;
    g->window = cfg->window;
    g->timeout_ns = (int64_t)(cfg->timeout_s * 1e9);
    g->rnd = ((uint64_t)getpid() << 32) ^ (uint64_t)tlsh_now_ns() ^ 0x9e3779b97f4a7c15ULL;
    if (!g->rnd) g->rnd = 1;

    int rc = 0;
    g->conns = calloc((size_t)g->n, sizeof *g->conns);
    if (!g->conns) { set_error(c, "loadgen: out of memory"); rc = -1; goto out; }
    for (int i = 0; i < g->n; i++) {
        struct lgconn *cn = &g->conns[i];
        cn->fd = -1;
        cn->connno = (unsigned)cfg->conn_base + (unsigned)i;
        cn->next_seq = 1;
        cn->rcap = (uint32_t)g->window * 2;
        cn->gcap = (uint32_t)g->window * 2;
        cn->dcap = (uint32_t)g->window * 2 + 8;
        cn->ring = calloc(cn->rcap, sizeof *cn->ring);
        cn->grave = calloc(cn->gcap, sizeof *cn->grave);
        cn->done = calloc(cn->dcap, sizeof *cn->done);
        cn->rbuf = malloc(RBUF_INIT);
        cn->rcap_b = RBUF_INIT;
        cn->wbuf = malloc(WBUF_CAP);
        if (!cn->ring || !cn->grave || !cn->done || !cn->rbuf || !cn->wbuf) {
            set_error(c, "loadgen: out of memory"); rc = -1; goto out;
        }
    }

    int64_t start = tlsh_now_ns();
    c->start_ns = start;                        /* clients start connecting now */
    int64_t deadline = start + (int64_t)(cfg->duration_s * 1e9);
    int64_t next_scan = start + SCAN_NS;
    int64_t last_tok = start;
    double bucket = 0;
    int rr = 0;
    double burst = cfg->rate * 0.02;            /* at most 20 ms worth of tokens */
    if (burst < 1) burst = 1;
    int tick_ms = 50;
    if (cfg->rate > 0) {
        double per = 1000.0 / cfg->rate;
        tick_ms = per < 1 ? 1 : (per > 50 ? 50 : (int)ceil(per));
    }

    g->admit = (cfg->ramp_s <= 0 && g->n > ADMIT_FROM_CONNS) ? ADMIT_START : 0;
    g->holding = g->admit > 0;
    if (cfg->nclients > 1 && cfg->client_index >= 0 && cfg->client_index < cfg->nclients
            && cfg->total_conns >= g->n) {
        g->all = c - cfg->client_index;
        g->nall = cfg->nclients;
        g->want_open = (uint64_t)cfg->total_conns;
    } else {
        g->all = c;
        g->nall = 1;
        g->want_open = (uint64_t)g->n;
    }
    {   /* the load waits for the ramp at most half the run (and 30 s) */
        double hold = cfg->duration_s / 2 < 30 ? cfg->duration_s / 2 : 30;
        g->hold_until = start + (int64_t)(hold * 1e9);
    }
    for (int i = 0; i < g->n; i++) {
        if (g->admit && i >= g->admit) {
            /* admission: the scan opens the rest as handshakes complete */
            struct lgconn *cn = &g->conns[i];
            cn->state = ST_IDLE;
            cn->since_ns = start;
            g->nidle++;
        } else if (cfg->ramp_s > 0 && i > 0) {
            /* connections arrive over the ramp, not all at once (scan starts them) */
            struct lgconn *cn = &g->conns[i];
            cn->state = ST_IDLE;
            cn->since_ns = start + (int64_t)(cfg->ramp_s * 1e9 * i / g->n);
            g->nidle++;
        } else {
            start_connect(g, &g->conns[i], start);
        }
    }

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int64_t now = tlsh_now_ns();
        c->updated_ns = now;
        if (*stop || now >= deadline) break;
        if (now >= next_scan) {
            scan(g, now);
            next_scan = now + SCAN_NS;
        }
        if (cfg->rate > 0) {
            bucket += (double)(now - last_tok) * 1e-9 * cfg->rate;
            last_tok = now;
            if (bucket > burst) bucket = burst;
            distribute(g, &bucket, &rr, now);
        }
        int64_t left_ms = (deadline - now) / 1000000 + 1;
        int tmo = tick_ms;
        if (g->nidle > 0 && tmo > 10) tmo = 10;
        if (left_ms < tmo) tmo = (int)left_ms;
        int ne = epoll_wait(g->ep, evs, MAX_EVENTS, tmo);
        if (ne < 0) {
            if (errno == EINTR) continue;
            set_error(c, "loadgen: epoll_wait: %s", strerror(errno));
            break;
        }
        now = tlsh_now_ns();
        for (int k = 0; k < ne; k++) {
            uint32_t idx = (uint32_t)evs[k].data.u64;
            uint32_t gen = (uint32_t)(evs[k].data.u64 >> 32);
            if (idx >= (uint32_t)g->n) continue;
            struct lgconn *cn = &g->conns[idx];
            if (cn->gen != gen || cn->fd < 0) continue;     /* stale event */
            uint32_t ev = evs[k].events;
            if (cn->state == ST_CONNECTING) {
                if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) continue;
                int err = 0;
                socklen_t el = sizeof err;
                if (getsockopt(cn->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
                    conn_fail(g, cn, now);
                    continue;
                }
                connected(g, cn, now);
                continue;
            }
            if (cn->state == ST_HANDSHAKE) {
                if (cn->abuse == AB_RST) { rst_event(g, cn, ev, now); continue; }
                do_handshake(g, cn, now);
                if (cn->state != ST_OPEN) continue;
            }
            if (cn->state != ST_OPEN) continue;
            if (do_read(g, cn, now) < 0) continue;
            if (churn_done(g, cn)) { conn_recycle(g, cn, now); continue; }
            if (cn->wlen) {
                if (flush(g, cn, now) < 0) continue;
            }
            if (cfg->rate <= 0 || cn->tokens > 0) fill(g, cn, now);
        }
    }

out:
    if (g->conns) {
        for (int i = 0; i < g->n; i++) {
            struct lgconn *cn = &g->conns[i];
            if (cn->ssl || cn->fd >= 0) conn_close(g, cn, CL_NOTIFY);
            if (cn->spare) SSL_free(cn->spare);
            free(cn->ring); free(cn->grave); free(cn->done); free(cn->rbuf); free(cn->wbuf);
        }
        free(g->conns);
    }
    if (g->sess) SSL_SESSION_free(g->sess);
    if (g->ep >= 0) close(g->ep);
    SSL_CTX_free(g->ctx);
    if (g->reject_ctx) SSL_CTX_free(g->reject_ctx);
    c->updated_ns = tlsh_now_ns();
    if (rc == 0) c->done = 1;
    return rc;
}
