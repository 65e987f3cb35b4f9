/* The listener-worker channel (chan.h).  Non-blocking on both sides: a
 * full channel is the listener's cue to retry later, never to wait. */
#define _GNU_SOURCE
#include "chan.h"
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

int tlsh_chan_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    int buf = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    return 0;
}

int tlsh_send_msg(int chan, const struct tlsh_msg *m, int fd)
{
    struct iovec iov = { (void *)m, sizeof(*m) };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (fd >= 0) {
        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof(u.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    for (;;) {
        ssize_t n = sendmsg(chan, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)sizeof(*m)) return 0;
        if (n < 0 && errno == EINTR) continue;
        return -1;
    }
}

int tlsh_recv_msg(int chan, struct tlsh_msg *m, int *fd)
{
    struct iovec iov = { m, sizeof(*m) };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof(u.buf) };
    *fd = -1;
    ssize_t n;
    do n = recvmsg(chan, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    if (n == 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            memcpy(fd, CMSG_DATA(c), sizeof(int));
    return n == (ssize_t)sizeof(*m) ? 1 : -1;
}
