"""SIP framing (CRLFCRLF + Content-Length) and the 200 OK reply builder."""
import pytest

REQ = (b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\n"
       b"Via: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK-1\r\n"
       b"Via: SIP/2.0/TLS 10.0.0.1;branch=z9hG4bK-0\r\n"
       b"From: <sip:x@127.0.0.1>;tag=abc\r\n"
       b"To: <sip:a@127.0.0.1>\r\n"
       b"Call-ID: 7-42@tlsharness\r\n"
       b"CSeq: 42 OPTIONS\r\n"
       b"Content-Length: 0\r\n\r\n")


def frame(core, data: bytes):
    ffi, lib = core
    n = ffi.new("size_t *")
    r = lib.tlsh_sip_frame(data, len(data), n)
    return r, (n[0] if r == 1 else None)


def reply(core, req: bytes):
    ffi, lib = core
    out = ffi.new("char[4096]")
    n = lib.tlsh_sip_reply(req, len(req), out, 4096)
    return None if n < 0 else ffi.buffer(out, n)[:]


def parse(core, msg: bytes):
    ffi, lib = core
    st, cid, cl, cs = ffi.new("int *"), ffi.new("char **"), ffi.new("size_t *"), ffi.new("unsigned long *")
    r = lib.tlsh_sip_parse_reply(msg, len(msg), st, ffi.cast("const char **", cid), cl, cs)
    if r != 0:
        return None
    return st[0], ffi.buffer(cid[0], cl[0])[:], cs[0]


def test_complete_message(core):
    assert frame(core, REQ) == (1, len(REQ))


@pytest.mark.parametrize("cut", [1, 10, len(REQ) // 2, len(REQ) - 3, len(REQ) - 1])
def test_split_message_needs_more(core, cut):
    assert frame(core, REQ[:cut]) == (0, None)


def test_two_pipelined_messages_framed_one_at_a_time(core):
    data = REQ + REQ
    r, n = frame(core, data)
    assert (r, n) == (1, len(REQ))
    assert frame(core, data[n:]) == (1, len(REQ))


def test_body_by_content_length(core):
    body = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n"
    msg = REQ.replace(b"Content-Length: 0", b"Content-Length: %d" % len(body)) + body
    assert frame(core, msg) == (1, len(msg))
    assert frame(core, msg[:-1]) == (0, None)        # body incomplete
    assert frame(core, msg + b"INVITE") == (1, len(msg))


def test_compact_content_length(core):
    msg = REQ.replace(b"Content-Length: 0", b"l: 0")
    assert frame(core, msg) == (1, len(msg))


@pytest.mark.parametrize("bad", [
    REQ.replace(b"Content-Length: 0\r\n", b""),                  # mandatory on streams
    REQ.replace(b"Content-Length: 0", b"Content-Length: x1"),
    REQ.replace(b"Content-Length: 0", b"Content-Length: 99999999"),
    REQ.replace(b"Content-Length: 0", b"Content-Length: 0\r\nContent-Length: 5"),
    b"\x00\x01garbage\r\n\r\n",
    b"\x16\x03\x01\x02\x00",                                     # a TLS record in the clear
    REQ.replace(b"CSeq: 42 OPTIONS", b"no colon here"),
])
def test_malformed(core, bad):
    assert frame(core, bad)[0] == -1


def test_header_without_end_too_large(core):
    big = b"OPTIONS sip:a SIP/2.0\r\nX: " + b"a" * 20000
    assert frame(core, big)[0] == -1


def test_reply_copies_headers(core):
    r = reply(core, REQ)
    assert r.startswith(b"SIP/2.0 200 OK\r\n")
    lines = r.split(b"\r\n")
    assert lines[1] == b"Via: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK-1"
    assert lines[2] == b"Via: SIP/2.0/TLS 10.0.0.1;branch=z9hG4bK-0"   # order kept
    assert b"From: <sip:x@127.0.0.1>;tag=abc\r\n" in r
    assert b"To: <sip:a@127.0.0.1>;tag=" in r                        # to-tag added
    assert b"Call-ID: 7-42@tlsharness\r\n" in r and b"CSeq: 42 OPTIONS\r\n" in r
    assert r.endswith(b"Content-Length: 0\r\n\r\n")
    assert frame(core, r) == (1, len(r))
    assert parse(core, r) == (200, b"7-42@tlsharness", 42)


def test_reply_keeps_existing_to_tag_and_compact_forms(core):
    req = (b"OPTIONS sip:a SIP/2.0\r\nv: SIP/2.0/TLS h;branch=z9hG4bK-9\r\n"
           b"f: <sip:x@h>;tag=1\r\nt: <sip:a@h>;tag=2\r\ni: cid-9\r\nCSeq: 9 OPTIONS\r\nl: 0\r\n\r\n")
    r = reply(core, req)
    assert r is not None and b"t: <sip:a@h>;tag=2\r\n" in r and b";tag=tlsh" not in r
    assert parse(core, r) == (200, b"cid-9", 9)


@pytest.mark.parametrize("drop", [b"Via", b"From", b"To", b"Call-ID", b"CSeq"])
def test_reply_refuses_request_missing_header(core, drop):
    req = b"\r\n".join(l for l in REQ.split(b"\r\n") if not l.startswith(drop + b":"))
    assert reply(core, req) is None


def test_reply_refuses_a_response_and_small_buffer(core):
    ffi, lib = core
    resp = reply(core, REQ)
    assert reply(core, resp) is None
    out = ffi.new("char[64]")
    assert lib.tlsh_sip_reply(REQ, len(REQ), out, 64) == -1


def test_request_builder_round_trip(core):
    ffi, lib = core
    out = ffi.new("char[1024]")
    n = lib.tlsh_sip_request(out, 1024, 3, 17)
    req = ffi.buffer(out, n)[:]
    assert frame(core, req) == (1, n)
    assert parse(core, reply(core, req)) == (200, b"3-17@tlsharness", 17)


@pytest.mark.parametrize("bad", [b"SIP/2.0 20 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n",
                                 b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n\r\n"])
def test_parse_reply_rejects(core, bad):
    assert parse(core, bad) is None


def test_fuzz_keeps_the_contracts_and_never_crashes():
    """3,000 random inputs in a child process (a crash fails this test, not the session):
    framing returns -1/0/1 with a length inside the input, a built reply starts with
    the SIP status line, the reply parser returns 0 or -1 with a Call-ID inside the input."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    helper = Path(__file__).resolve().parent / "helpers" / "sipfuzz.py"
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, str(helper), "1234", "3000"], capture_output=True,
                       text=True, timeout=120, cwd=str(root),
                       env=dict(os.environ, PYTHONPATH=str(root)))
    assert r.returncode == 0 and r.stdout.strip() == "ok 3000", (r.returncode, r.stdout, r.stderr)
