/* SIP over a stream: framing and the stateless 200 OK reply. */
#define _GNU_SOURCE
#include "tlsh_sip.h"
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* One header line inside the header block. */
struct hline {
    const char *name; size_t nlen;
    const char *val; size_t vlen;   /* value without leading/trailing blanks */
    const char *line; size_t llen;  /* whole line without CRLF */
};

/* Iterate header lines of msg[0..hlen) (hlen = position of the blank line).
 * *pos starts after the start line.  Returns 1 with h filled, 0 at the end,
 * -1 on a line without a colon. Folded continuation lines are appended. */
static int next_header(const char *msg, size_t hlen, size_t *pos, struct hline *h)
{
    size_t p = *pos;
    if (p >= hlen) return 0;
    size_t start = p;
    const char *e;
    for (;;) {
        e = memmem(msg + p, hlen - p, "\r\n", 2);
        size_t end = e ? (size_t)(e - msg) : hlen;
        p = end + 2;
        if (p < hlen && (msg[p] == ' ' || msg[p] == '\t'))
            continue;                              /* folded line */
        h->line = msg + start; h->llen = end - start;
        break;
    }
    *pos = p;
    const char *colon = memchr(h->line, ':', h->llen);
    if (!colon) return -1;
    const char *n = h->line, *ne = colon;
    while (ne > n && (ne[-1] == ' ' || ne[-1] == '\t')) ne--;
    h->name = n; h->nlen = (size_t)(ne - n);
    const char *v = colon + 1, *ve = h->line + h->llen;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    h->val = v; h->vlen = (size_t)(ve - v);
    return h->nlen ? 1 : -1;
}

static int is_name(const struct hline *h, const char *full, const char *compact)
{
    size_t fl = strlen(full);
    if (h->nlen == fl && strncasecmp(h->name, full, fl) == 0) return 1;
    return compact && h->nlen == 1 && (h->name[0] | 0x20) == compact[0];
}

/* Start of headers (after the start line); 0 if the start line is bad. */
static size_t start_line_end(const char *msg, size_t hlen)
{
    if (hlen == 0 || !((msg[0] >= 'A' && msg[0] <= 'Z') || (msg[0] >= 'a' && msg[0] <= 'z')))
        return 0;
    const char *e = memmem(msg, hlen, "\r\n", 2);
    if (!e) return hlen;             /* no headers at all */
    for (const char *c = msg; c < e; c++)
        if ((unsigned char)*c < 0x20 && *c != '\t') return 0;
    return (size_t)(e - msg) + 2;
}

static int parse_ulong(const char *s, size_t n, unsigned long *out)
{
    unsigned long v = 0;
    size_t i = 0;
    if (n == 0) return -1;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (~0UL - 9) / 10) return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (i == 0) return -1;
    *out = v;
    return (int)i;
}

int tlsh_sip_frame(const char *buf, size_t len, size_t *msg_len)
{
    size_t lim = len < TLSH_SIP_MAX_MSG ? len : TLSH_SIP_MAX_MSG;
    if (len > 0 && !((buf[0] >= 'A' && buf[0] <= 'Z') || (buf[0] >= 'a' && buf[0] <= 'z')))
        return -1;
    const char *e = memmem(buf, lim, "\r\n\r\n", 4);
    if (!e)
        return len >= TLSH_SIP_MAX_MSG ? -1 : 0;
    size_t hlen = (size_t)(e - buf) + 2;          /* up to and including the last header CRLF */
    size_t p = start_line_end(buf, hlen);
    if (p == 0) return -1;
    struct hline h;
    int r, have_cl = 0;
    unsigned long cl = 0;
    while ((r = next_header(buf, hlen, &p, &h)) == 1) {
        if (is_name(&h, "Content-Length", "l")) {
            unsigned long v = 0;
            if (parse_ulong(h.val, h.vlen, &v) != (int)h.vlen) return -1;
            if (have_cl && v != cl) return -1;
            cl = v; have_cl = 1;
        }
    }
    if (r < 0 || !have_cl) return -1;              /* RFC 3261 18.3: mandatory on streams */
    size_t total = hlen + 2 + cl;
    if (cl > TLSH_SIP_MAX_MSG || total > TLSH_SIP_MAX_MSG) return -1;
    if (len < total) return 0;
    *msg_len = total;
    return 1;
}

struct outbuf { char *p; size_t len, cap; int overflow; };

static void put(struct outbuf *o, const char *s, size_t n)
{
    if (o->overflow || o->len + n > o->cap) { o->overflow = 1; return; }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}
#define PUTS(o, s) put((o), (s), sizeof(s) - 1)

int tlsh_sip_reply(const char *req, size_t len, char *out, size_t cap)
{
    const char *e = memmem(req, len, "\r\n\r\n", 4);
    if (!e) return -1;
    size_t hlen = (size_t)(e - req) + 2;
    size_t p = start_line_end(req, hlen);
    if (p == 0 || (len >= 4 && strncmp(req, "SIP/", 4) == 0)) return -1;   /* not a request */
    struct outbuf o = { out, 0, cap, 0 };
    struct hline h, from = {0}, to = {0}, callid = {0}, cseq = {0};
    int r, nvia = 0;
    PUTS(&o, "SIP/2.0 200 OK\r\n");
    while ((r = next_header(req, hlen, &p, &h)) == 1) {
        if (is_name(&h, "Via", "v")) {
            put(&o, h.line, h.llen); PUTS(&o, "\r\n"); nvia++;
        } else if (is_name(&h, "From", "f")) from = h;
        else if (is_name(&h, "To", "t")) to = h;
        else if (is_name(&h, "Call-ID", "i")) callid = h;
        else if (is_name(&h, "CSeq", NULL)) cseq = h;
    }
    if (r < 0 || !nvia || !from.line || !to.line || !callid.vlen || !cseq.vlen) return -1;
    put(&o, from.line, from.llen); PUTS(&o, "\r\n");
    put(&o, to.line, to.llen);
    if (!memmem(to.val, to.vlen, ";tag=", 5)) PUTS(&o, ";tag=tlsh");
    PUTS(&o, "\r\n");
    put(&o, callid.line, callid.llen); PUTS(&o, "\r\n");
    put(&o, cseq.line, cseq.llen); PUTS(&o, "\r\n");
    PUTS(&o, "Server: tlsharness\r\nContent-Length: 0\r\n\r\n");
    return o.overflow ? -1 : (int)o.len;
}

int tlsh_sip_parse_reply(const char *msg, size_t len, int *status,
                         const char **callid, size_t *callid_len, unsigned long *cseq)
{
    const char *e = memmem(msg, len, "\r\n\r\n", 4);
    if (!e || len < 12 || strncmp(msg, "SIP/2.0 ", 8) != 0) return -1;
    unsigned long code;
    if (parse_ulong(msg + 8, 3, &code) != 3 || (msg[11] != ' ' && msg[11] != '\r')) return -1;
    size_t hlen = (size_t)(e - msg) + 2;
    size_t p = start_line_end(msg, hlen);
    if (p == 0) return -1;
    struct hline h;
    int r, have_cid = 0, have_cseq = 0;
    while ((r = next_header(msg, hlen, &p, &h)) == 1) {
        if (is_name(&h, "Call-ID", "i")) {
            *callid = h.val; *callid_len = h.vlen; have_cid = 1;
        } else if (is_name(&h, "CSeq", NULL)) {
            if (parse_ulong(h.val, h.vlen, cseq) < 0) return -1;
            have_cseq = 1;
        }
    }
    if (r < 0 || !have_cid || !have_cseq) return -1;
    *status = (int)code;
    return 0;
}

int tlsh_sip_request(char *out, size_t cap, unsigned conn, unsigned long seq)
{
    int n = snprintf(out, cap,
        "OPTIONS sip:tlsh@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK-%u-%lu\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:loadgen@127.0.0.1>;tag=lg%u\r\n"
        "To: <sip:tlsh@127.0.0.1>\r\n"
        "Call-ID: %u-%lu@tlsharness\r\n"
        "CSeq: %lu OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n",
        conn, seq, conn, conn, seq, seq);
    return (n < 0 || (size_t)n >= cap) ? -1 : n;
}
