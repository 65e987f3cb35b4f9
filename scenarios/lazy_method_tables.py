"""Method tables filled on first use, in each process's own memory.  The
headline's load (replies written by another worker, many requests in flight)
with a TLS 1.2 CBC-SHA1 suite, which BoringSSL still offers: its record MAC
is an HMAC over EVP_sha1(), whose table BoringSSL fills with CRYPTO_once into
static storage the first time a process asks for it.  The session in the
arena points at that storage; a worker that continues a handshake or writes a
record before it ever made the call itself finds the table empty and calls a
NULL function (EVP_DigestUpdate).  The cure is to use every method once in
the parent, before fork (--mitigate warm-methods)."""
from harness.spec.scenario import Scenario, fails, load, passes
from harness.verdicts import V

SCENARIO = Scenario(
    summary="a worker calls a method table it never set up: BoringSSL's lazily filled EVP_MD",
    family="method table not set up in this process",
    # the headline's load, with the CBC-SHA1 suite BoringSSL still has
    params=dict(load("headline-spinners").params, ciphers="ECDHE-ECDSA-AES128-SHA",
                duration=10, linger=2),
    expect={"boringssl": fails(verdicts=[V.CRASH, V.MIXED],
                               families=["method table not set up in this process"]),
            "boringssl+warm-methods": passes(),
            "openssl+pshared,prefork-thread": passes()},
    refs=[],
)
