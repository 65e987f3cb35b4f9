"""OpenSIPS #3814 (3.4.11, wolfSSL 5.8.4): SIGSEGV at start-up.  OpenSIPS's
shared-memory allocator gave 8-byte-aligned blocks; wolfSSL's vector code
stores into them with instructions that need 16.  Here: the arena at
--arena-align 8 (every block 8 bytes past a 16-byte boundary) with wolfSSL
5.9 built with tls_wolfssl's options; the default alignment (16) beside it
shows the alignment alone decides."""
from harness.spec.scenario import Scenario, fails
from harness.verdicts import V

SCENARIO = Scenario(
    summary="OpenSIPS #3814: wolfSSL on an 8-byte-aligned shared allocator, SIGSEGV at start",
    family="misaligned arena",
    params=dict(lib="wolfssl@5.9", memory="shared", handoff="per-message", arena_align="8",
                workers=4, conns=20, duration=3),
    expect={"wolfssl@5.9": fails(verdicts=[V.CRASH], families=["misaligned arena"]),
            "wolfssl@5.7": fails(verdicts=[V.CRASH], families=["misaligned arena"]),
            "wolfssl": fails(verdicts=[V.CRASH], families=["misaligned arena"])},
    refs=["OpenSIPS #3814"],
    notes="make libs builds wolfssl@5.9 (the upstream 5.9.2 tarball; the mirror lacks its "
          "Debian files); Debian's own 5.5 (--lib wolfssl) faults the same way",
)
