"""Random SIP-ish byte strings through the C framing, reply builder and reply
parser, checking their contracts; run as a child process so that a crash of
the C code fails one test instead of killing the test session.

    python sipfuzz.py SEED COUNT      prints "ok N" or the first broken contract
"""
import random
import sys

from harness.builds import native

PIECES = [b"\r\n", b"\r\n\r\n", b":", b"Content-Length: ", b"l:", b"9", b"0", b"Via: x",
          b"To: y", b"CSeq: 1 A", b"Call-ID: z", b"From: f", b" ", b"\t", b"OPTIONS s S\r\n",
          b"SIP/2.0 200 OK\r\n", b"\x00", b"\xff", b"999999999999999999999"]


def main() -> int:
    seed, count = int(sys.argv[1]), int(sys.argv[2])
    ffi, lib = native.core()
    rnd = random.Random(seed)
    n = ffi.new("size_t *")
    out = ffi.new("char[4096]")
    st, cid = ffi.new("int *"), ffi.new("char **")
    cl, cs = ffi.new("size_t *"), ffi.new("unsigned long *")
    for i in range(count):
        data = b"".join(rnd.choice(PIECES) for _ in range(rnd.randrange(1, 40)))
        r = lib.tlsh_sip_frame(data, len(data), n)
        if r not in (-1, 0, 1) or (r == 1 and not 0 < n[0] <= len(data)):
            print(f"frame broke its contract: {r} {n[0]} on {data!r}")
            return 1
        k = lib.tlsh_sip_reply(data, len(data), out, 4096)
        if k != -1 and not (0 < k <= 4096 and ffi.buffer(out, k)[:8] == b"SIP/2.0 "):
            print(f"reply broke its contract: {k} on {data!r}")
            return 1
        p = lib.tlsh_sip_parse_reply(data, len(data), st, ffi.cast("const char **", cid), cl, cs)
        if p not in (0, -1) or (p == 0 and cl[0] > len(data)):
            print(f"parse_reply broke its contract: {p} on {data!r}")
            return 1
    print(f"ok {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
