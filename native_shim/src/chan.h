/* The channel between the listener and one worker: a SOCK_SEQPACKET pair
 * carrying fixed-size messages, with a connection's fd attached
 * (SCM_RIGHTS) when the receiver needs its own. */
#ifndef TLSH_CHAN_H
#define TLSH_CHAN_H
#include <stdint.h>

enum tlsh_msg_type { TLSH_MSG_DISPATCH = 1, TLSH_MSG_RELEASE = 2, TLSH_MSG_HS_DONE = 3,
                     TLSH_MSG_CLOSED = 4,
                     TLSH_MSG_WRITE = 5,      /* worker -> listener: replies pending, another writes */
                     TLSH_MSG_WRITEJOB = 6,   /* listener -> worker: write conn's pending replies */
                     TLSH_MSG_WRITTEN = 7 };  /* worker -> listener: write job done */
struct tlsh_msg { int32_t type; int32_t conn; int32_t gen; int32_t pin; };

/* A new channel: sv[0] the listener's end, sv[1] the worker's.  0 or -1 (errno). */
int tlsh_chan_pair(int sv[2]);
int tlsh_send_msg(int chan, const struct tlsh_msg *m, int fd);   /* fd -1: none; 0 or -1 */
int tlsh_recv_msg(int chan, struct tlsh_msg *m, int *fd);        /* 1 got, 0 none, -1 closed */

#endif
