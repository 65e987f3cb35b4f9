/* SIP over a stream: framing (headers end at CRLFCRLF, body by
 * Content-Length) and the stateless 200 OK reply builder. */
#ifndef TLSH_SIP_H
#define TLSH_SIP_H
#include <stddef.h>

/* cffi:begin */
#define TLSH_SIP_MAX_MSG 16384

/* Find one complete message at the start of buf.
 * Returns 1 and sets *msg_len when complete, 0 when more bytes are needed,
 * -1 when malformed (no header end within TLSH_SIP_MAX_MSG, bad or missing
 * Content-Length, body larger than the limit, garbage start line). */
int tlsh_sip_frame(const char *buf, size_t len, size_t *msg_len);

/* Build "SIP/2.0 200 OK" for the request req[0..len): Via (all, in order),
 * From, To (a to-tag added when absent), Call-ID, CSeq copied; compact
 * header names accepted.  Returns the reply length, or -1 when the request
 * lacks a required header or the reply does not fit in cap. */
int tlsh_sip_reply(const char *req, size_t len, char *out, size_t cap);

/* Parse a reply: status code, Call-ID value, CSeq number.
 * Returns 0, or -1 when unparsable. */
int tlsh_sip_parse_reply(const char *msg, size_t len, int *status,
                         const char **callid, size_t *callid_len,
                         unsigned long *cseq);

/* Write an OPTIONS request for (conn, seq) into out; returns its length. */
int tlsh_sip_request(char *out, size_t cap, unsigned conn, unsigned long seq);
/* cffi:end */

#endif
