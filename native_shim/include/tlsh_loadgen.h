/* Load generator: native client loop, private memory, system TLS library.
 * K connections multiplexed with epoll in one process; the controller runs
 * several such processes. */
#ifndef TLSH_LOADGEN_H
#define TLSH_LOADGEN_H
#include "tlsh_status.h"

/* cffi:begin */
/* struct tlsh_lg_config.transport */
#define TLSH_LG_TLS 0           /* SIP over TLS (the default) */
#define TLSH_LG_TCP 1           /* plain SIP over TCP: no TLS client at all */

struct tlsh_lg_config {
    char host[64];          /* always a loopback address */
    int port;
    int nconns;             /* connections of this process */
    int conn_base;          /* first connection number (unique Call-IDs across processes) */
    int window;             /* outstanding requests per connection (>= 1) */
    int churn;              /* 0 persistent; N > 0: reconnect after N requests */
    int resume;             /* with churn: resume the previous TLS session */
    int tls_version;        /* 12 or 13, or 0: negotiate 1.2-1.3 */
    double rate;            /* requests/s for this process, 0 = closed loop */
    double duration_s;      /* the loop stops by itself after this */
    double timeout_s;       /* a request unanswered this long counts as timed out */
    char ciphers[128];      /* TLS 1.2 cipher list, "" = library default */
    int reject_every;       /* every Nth handshake rejects the server's CA (0 = never) */
    int rekey_every;        /* every N requests on a connection: key update (1.3) or
                               renegotiation (1.2); 0 = never */
    double ramp_s;          /* open the connections over this long (0 = all at once) */
    int nclients;           /* load generator processes of the run (their counters are
                               consecutive: this one's is number client_index) */
    int client_index;
    int total_conns;        /* connections of all of them: with admission, requests start
                               once that many have been opened (or half the run passed) */
    int transport;          /* TLSH_LG_TLS or TLSH_LG_TCP; with TCP: tls_version and ciphers
                               unused, resume, reject_every, rekey_every, rst_handshake_every,
                               garbage_hello_every and no_close_notify must be 0 */
    /* abuse (0 = never; see loadgen.c "Abuse"): */
    int abort_every;        /* every Nth connection ready for requests is reset (RST) once its
                               first requests are written, before their replies are read */
    int rst_handshake_every;    /* every Nth TLS handshake begun: RST once the server answers
                                   the ClientHello, before the handshake completes */
    int garbage_hello_every;    /* every Nth TCP connect: random bytes behind a TLS record
                                   header instead of a ClientHello, then close */
    int no_close_notify;    /* churn closes the socket without close_notify */
};

/* Runs until duration or until *stop becomes non-zero; returns 0, or -1
 * with c->error set when it could not start at all. */
int tlsh_loadgen_run(const struct tlsh_lg_config *cfg, struct tlsh_lg_counters *c,
                     volatile int *stop);
/* cffi:end */

#endif
