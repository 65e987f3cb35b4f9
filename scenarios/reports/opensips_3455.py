"""OpenSIPS #3455 (3.3.7, OpenSSL 3): "return of OpenSSL's libcrypto
deadlock" -- workers blocked in libcrypto's locks under concurrent TLS work
in several processes.  OpenSSL's rwlocks live in OpenSIPS's shared memory
(its allocator hook); initialised PROCESS_PRIVATE, a wake from another
process is lost.  OpenSIPS's own fix is ssl_tweaks.h, which exports a
pthread_rwlock_init/pthread_mutex_init that force PROCESS_SHARED; the build
without it is the server as it would be without that fix.  The amplifier
(a 200 us sleep after 5% of the pthread locks taken in shared memory) makes
the rare race quick: without it 2 of 12 runs of 15 s hung here."""
from harness.spec.scenario import Scenario, fails, passes

SCENARIO = Scenario(
    summary="OpenSIPS #3455: libcrypto's rwlocks in shared memory, the pshared override off",
    target="opensips",
    family="lost wake-up",
    params=dict(opensips_version="3.6", tls_lib="openssl", no_pshared_override=True,
                workers=4, load="churn", conns=50, clients=2, tls="1.3", duration=10,
                chaos="0.05:200"),
    expect={"openssl+no-override": fails(families=["lost wake-up"]),
            "openssl": passes()},
    refs=["OpenSIPS #3455", "OpenSIPS #1767"],
    notes='measured 2026-12-03 on 3.6.8 without ssl_tweaks.h: 5/5 (95% CI 57-100%), median time to failure 192 ms (lost wake-up 5, the spinlock on its holder 2); the shipped build under the same load: see docs/opensips.md',
)
