/* Status segment: the stand's window for the controller and the watchdog.
 * A memfd created by the controller, mapped read-write by the stand and
 * read-only by the controller: readable without ptrace and without any
 * cooperation from a stuck stand.  Every slot is framed by magic values so a
 * stray write (zeroed page, wild memset) is noticed instead of trusted. */
#ifndef TLSH_STATUS_H
#define TLSH_STATUS_H
#include <stdint.h>
#include "tlsh_arena.h"

/* cffi:begin */
#define TLSH_STATUS_MAGIC 0x54534c4853544154ULL  /* header */
#define TLSH_SLOT_MAGIC   0x534c4f54534c4f54ULL  /* each slot, head and tail */
#define TLSH_STATUS_VERSION 1
#define TLSH_MAX_SLOTS 256

/* threads I/O model: the TLS I/O threads are WORKER slots (judged as workers
 * are), the SIP workers that never touch TLS are SIP slots */
enum tlsh_role { TLSH_ROLE_NONE = 0, TLSH_ROLE_WORKER = 1, TLSH_ROLE_LISTENER = 2,
                 TLSH_ROLE_SIP = 3 };

/* The activities, numbered in this order (the slot's `activity` field).
 * This list is their only definition: the enum below and the names that
 * Python reads through tlsh_activity_name() both come from it.  Append
 * only: the numbers are what the status segment holds. */
#define TLSH_ACTIVITIES(X) \
    X(STARTING, "starting") \
    X(IDLE, "idle")             /* waiting for work (epoll / dispatch channel) */ \
    X(ACCEPT, "accept")         /* listener: accepting / dispatching */ \
    X(HANDSHAKE, "handshake") \
    X(READ, "read") \
    X(WRITE, "write") \
    X(LOCK_WAIT, "lock_wait")   /* waiting for the lock in lock_waiting */ \
    X(CLOSE, "close")           /* shutdown / free of a session */ \
    X(FAULT, "fault")           /* inside an injected fault */ \
    X(EXITED, "exited") \
    X(ATTACH, "attach")         /* attaching this process's fd to the session (SSL_set_fd) */ \
    X(RANDOM, "random")         /* drawing random bytes from the library (--check-random) */

#define TLSH_ACT_ENUM(id, name) TLSH_ACT_##id,
enum tlsh_activity { TLSH_ACTIVITIES(TLSH_ACT_ENUM) };

enum tlsh_slot_state { TLSH_SLOT_UNUSED = 0, TLSH_SLOT_ALIVE = 1, TLSH_SLOT_DEAD = 2 };

struct tlsh_slot {
    uint64_t magic;
    int32_t pid;
    int32_t role;
    int32_t state;            /* tlsh_slot_state, written by the supervisor on exit */
    int32_t activity;
    int64_t activity_since_ns;
    int32_t lock_waiting;     /* lock id, -1 none */
    int32_t lock_held;        /* lock id, -1 none (last one taken) */
    int32_t conn;             /* connection being served, -1 none */
    int32_t exit_signal;      /* signal that killed it, 0 if none */
    int32_t exit_code;
    int32_t pad;
    int64_t last_progress_ns; /* last request served or handshake completed */
    uint64_t requests;
    uint64_t handshakes;
    uint64_t errors;          /* TLS errors */
    uint64_t malformed;       /* malformed SIP */
    uint64_t handoffs;        /* connections received that another process had served */
    uint64_t closed;          /* connections closed here */
    uint64_t dispatches;      /* connections received from the listener */
    int64_t exit_ns;
    uint8_t rand[32];         /* random bytes drawn right after fork (--check-random) */
    int32_t rand_state;       /* 0 not drawn, 1 drawn, -1 the library failed */
    int32_t pad2;
    uint64_t magic2;
};

struct tlsh_status {
    uint64_t magic;
    uint32_t version;
    uint32_t nslots;          /* listener + workers */
    int32_t stand_pid;
    int32_t port;             /* TLS listener port on 127.0.0.1 */
    int32_t ready;            /* 1 when the listener accepts */
    int32_t stopping;
    int64_t start_ns;
    uint64_t arena_base;      /* 0 in private-memory mode */
    uint64_t arena_size;
    struct tlsh_arena_stats arena;   /* copied by the stand supervisor */
    int32_t n_arena_events;
    int32_t pad;
    struct tlsh_arena_event arena_events[TLSH_ARENA_MAX_EVENTS];
    uint64_t accepted;        /* listener counters */
    uint64_t dispatched;
    uint64_t cross_handoffs;  /* dispatches to a different process than the previous server */
    uint64_t conns_open;
    uint64_t conns_closed;
    uint64_t rand_calls;      /* calls into the wrapped RAND method (--rand-lock, locked-rand) */
    uint64_t rand_reentries;  /* of which made while this process already held its lock */
    uint64_t rw_overlaps;     /* split locks: writes begun while another process held the
                                 connection's read lock (a reader may be in the session) */
    uint64_t write_dups;      /* sessions split by the library's write_dup (--mitigate write-dup) */
    char lib_version[96];
    char error[256];          /* fatal set-up error of the stand */
    uint64_t magic2;
    struct tlsh_slot slots[];
};

static inline uint64_t tlsh_status_bytes(int nslots)
{
    return sizeof(struct tlsh_status) + (uint64_t)nslots * sizeof(struct tlsh_slot);
}

/* Load generator counters: one struct per load generator process in a memfd
 * from the controller.  Updated as the loop goes; the controller samples. */
#define TLSH_LG_MAGIC 0x4c4f414447454e31ULL
#define TLSH_LAT_BUCKETS 128   /* latency histogram: see tlsh_lat_bucket() */

/* A bad reply: what the load generator read and why it did not count as
 * answered.  The kinds, each counted in bad_kind[]: */
enum tlsh_bad_kind {
    TLSH_BAD_DUPLICATE = 1,   /* a reply for a request of this connection already answered */
    TLSH_BAD_UNKNOWN = 2,     /* this connection's Call-ID, a request not outstanding (never
                                 sent, or neither answered recently nor timed out) */
    TLSH_BAD_WRONG_CONN = 3,  /* the Call-ID names another connection */
    TLSH_BAD_STATUS = 4,      /* an outstanding request answered with a status other than 200 */
    TLSH_BAD_UNPARSEABLE = 5  /* see enum tlsh_bad_why */
};
#define TLSH_BAD_KINDS 6          /* bad_kind[] entries: the kinds above, and 0 */
/* Why an unparseable reply is one. */
enum tlsh_bad_why {
    TLSH_WHY_NONE = 0,
    TLSH_WHY_PARSE = 1,       /* no status line, no Call-ID or CSeq header */
    TLSH_WHY_CALLID = 2,      /* Call-ID not of the form <conn>-<seq>@tlsharness */
    TLSH_WHY_CSEQ = 3,        /* CSeq differs from the seq in the Call-ID (or is 0) */
    TLSH_WHY_FRAMING = 4,     /* the stream cannot be framed: the connection is dropped */
    TLSH_WHY_OVERSIZE = 5     /* no complete message within the read buffer's limit */
};
#define TLSH_LG_BAD_SAMPLES 8     /* bad replies kept per load generator process */
#define TLSH_LG_BAD_BYTES 320     /* of each, its first bytes */

struct tlsh_lg_bad {
    int32_t kind;             /* enum tlsh_bad_kind */
    int32_t why;              /* enum tlsh_bad_why (unparseable) */
    int32_t status;           /* the reply's status code, 0 when none was read */
    uint32_t conn;            /* this connection's number (the one the reply came on) */
    int64_t time_ns;          /* monotonic, the counters' clock */
    uint64_t cseq;            /* the reply's CSeq number, 0 none */
    uint64_t cid_conn;        /* the connection and seq its Call-ID names (when parsed) */
    uint64_t cid_seq;
    uint64_t oldest;          /* oldest outstanding seq on the connection then, 0 none */
    uint64_t newest;          /* newest outstanding seq, 0 none */
    uint64_t next_seq;        /* the seq the connection would send next */
    uint32_t live;            /* requests outstanding on it then */
    uint32_t msg_len;         /* the reply's length (framing errors: bytes buffered) */
    int64_t answered_ns;      /* duplicate: when the first reply for that seq was read */
    uint32_t nbytes;          /* bytes[] used */
    char callid[84];          /* the Call-ID as read, cut, NUL-terminated */
    char bytes[TLSH_LG_BAD_BYTES];   /* the reply's first bytes, raw */
};

struct tlsh_lg_counters {
    uint64_t magic;
    int32_t pid;
    int32_t done;             /* 1 when the loop has ended by itself */
    int32_t ready;            /* 1 once the first connection is up */
    int32_t nconns;
    uint64_t sent;
    uint64_t answered;        /* good replies: 200, matching Call-ID and CSeq */
    uint64_t bad;             /* every bad reply (the sum of bad_kind[]) */
    uint64_t timed_out;       /* requests without a reply within the timeout */
    uint64_t connects;        /* TCP connections opened */
    uint64_t handshakes;      /* TLS handshakes completed */
    uint64_t resumed;         /* of which resumed sessions */
    uint64_t conn_errors;     /* connect/handshake/IO errors, peer closes */
    int64_t last_answer_ns;
    int64_t updated_ns;
    int64_t start_ns;         /* when the clients started connecting: the load's start */
    int64_t ready_ns;         /* when the first handshake completed */
    uint64_t rejected;        /* handshakes refused on purpose (--reject-every: unknown CA) */
    uint64_t rekeys;          /* key updates / renegotiations started (--rekey-every) */
    uint64_t opened;          /* connections opened for the first time */
    uint64_t lat_hist[TLSH_LAT_BUCKETS];
    char error[160];
    /* bad replies by kind (their sum is `bad`), and the first few kept whole */
    uint64_t bad_kind[TLSH_BAD_KINDS];   /* indexed by enum tlsh_bad_kind (0 unused) */
    uint64_t write_waits;     /* SSL_write that had to wait (WANT_WRITE/READ) and was retried */
    /* abuse the load generator causes on purpose (never bad replies or conn_errors) */
    uint64_t aborted;         /* connections reset (RST) after their requests were sent,
                                 before the replies were read (--abort-every) */
    uint64_t abandoned;       /* requests in flight on those: never settled, not timed out */
    uint64_t rst_handshakes;  /* handshakes broken off with RST after the ClientHello
                                 (--rst-handshake-every) */
    uint64_t garbage_hellos;  /* connections that wrote garbage instead of a ClientHello, then
                                 closed (--garbage-hello-every) */
    uint64_t plain_closes;    /* churn closes without close_notify (--no-close-notify) */
    uint32_t n_bad_samples;   /* bad_samples[] filled (a slot is complete before it counts) */
    uint32_t pad;
    struct tlsh_lg_bad bad_samples[TLSH_LG_BAD_SAMPLES];
    uint64_t magic2;
};

/* Latency bucket: 8 buckets per power of two of microseconds.
 * Bucket b covers [lower(b), lower(b+1)). */
static inline int tlsh_lat_bucket(uint64_t us)
{
    if (us < 8) return (int)us;
    int msb = 63 - __builtin_clzll(us);          /* >= 3 */
    int sub = (int)((us >> (msb - 3)) & 7);
    int b = 8 + (msb - 3) * 8 + sub;
    return b < TLSH_LAT_BUCKETS ? b : TLSH_LAT_BUCKETS - 1;
}

/* Activity names by number ("lock_wait"), NULL out of range. */
int tlsh_activity_count(void);
const char *tlsh_activity_name(int act);
/* cffi:end */

/* ---- process side (status.c): listener, workers, and adapters that
 * publish what they wait for ---------------------------------------- */

/* This process's status slot (NULL outside listener and workers). */
extern struct tlsh_slot *tlsh_self_slot;
/* Claim slot `slot` for this process (after fork) and make it tlsh_self_slot. */
void tlsh_slot_init(struct tlsh_status *s, int slot, int role);

static inline void tlsh_set_activity(struct tlsh_slot *s, int act, int64_t now)
{
    s->activity = act;
    s->activity_since_ns = now;
}

#endif
