/* The probe's server side: real handshakes and one SIP exchange per
 * connection, served sequentially with blocking waits (poll), through the
 * same adapter ops the workers use. */
#define _GNU_SOURCE
#include "tlsh_stand.h"
#include "tlsh_sip.h"
#include "tlsh_util.h"
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int wait_io(int fd, int r, int64_t deadline)
{
    int64_t left = (deadline - tlsh_now_ns()) / 1000000;
    if (left <= 0) return -1;
    struct pollfd p = { fd, r == TLSH_IO_WANT_WRITE ? POLLOUT : POLLIN, 0 };
    return poll(&p, 1, (int)left) > 0 ? 0 : -1;
}

int tlsh_probe_serve(const struct tlsh_tls_ops *ops, void *ctx, int lfd, int nconns,
                     int timeout_ms, char *err, size_t errlen)
{
    int done = 0;
    int64_t deadline = tlsh_now_ns() + (int64_t)timeout_ms * 1000000;
    err[0] = 0;
    while (done < nconns) {
        struct pollfd p = { lfd, POLLIN, 0 };
        int64_t left = (deadline - tlsh_now_ns()) / 1000000;
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) { snprintf(err, errlen, "no client connected"); break; }
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) continue;
        void *s = ops->sess_new(ctx);
        if (!s) { close(fd); snprintf(err, errlen, "session creation failed"); break; }
        ops->set_fd(s, fd);
        int r, ok = 0;
        while ((r = ops->handshake(s)) == TLSH_IO_WANT_READ || r == TLSH_IO_WANT_WRITE)
            if (wait_io(fd, r, deadline)) break;
        if (r == TLSH_IO_OK) {
            char in[TLSH_SIP_MAX_MSG], out[4096];
            size_t have = 0, ml;
            for (;;) {
                int n = ops->read(s, in + have, (int)(sizeof(in) - have));
                if (n > 0) {
                    have += (size_t)n;
                    if (tlsh_sip_frame(in, have, &ml) == 1) break;
                    continue;
                }
                if ((n != TLSH_IO_WANT_READ && n != TLSH_IO_WANT_WRITE) || wait_io(fd, n, deadline)) break;
            }
            if (tlsh_sip_frame(in, have, &ml) == 1) {
                int m = tlsh_sip_reply(in, ml, out, sizeof(out));
                int w;
                while (m > 0 && (w = ops->write(s, out, m)) < 0 && (w == TLSH_IO_WANT_WRITE || w == TLSH_IO_WANT_READ))
                    if (wait_io(fd, w, deadline)) break;
                ok = 1;
            }
        } else {
            char e[160];
            ops->last_error(e, sizeof(e));
            snprintf(err, errlen, "handshake failed (%d) %s", r, e);
        }
        ops->shutdown(s);
        ops->free(s);
        ops->clear_errors();
        close(fd);
        if (!ok) break;
        done++;
    }
    return done;
}
