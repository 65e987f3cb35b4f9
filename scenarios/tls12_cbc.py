"""TLS 1.2 with a CBC cipher: every record needs a random IV, so the data
path itself goes through the DRBG's lock; replies written under spinlocks
produce the spinners of "high CPU, no SIP processing"."""
from harness.spec.scenario import Scenario, fails

SCENARIO = Scenario(
    summary="TLS 1.2 CBC: the DRBG on every record (window 4)",
    params=dict(memory="shared", handoff="per-message", lock="spin", tls="1.2",
                ciphers="ECDHE-ECDSA-AES128-SHA256", window=4, workers=4, conns=50, duration=10),
    expect={"openssl": fails()},
    refs=["OpenSIPS #1767", "OpenSIPS #1799"],
)
