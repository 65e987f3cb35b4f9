"""OpenSIPS #3767 / #3905 (3.4, OpenSSL 3, TLS domains from a database): a
double free in tls_mgm's domain code at shutdown, after at least one TLS
connection.  Each run here loads the domain from db_text, serves TLS clients
for a few seconds and is then stopped with SIGTERM; a crash at shutdown
shows as a death in the log."""
from harness.spec.scenario import Scenario

SCENARIO = Scenario(
    summary="OpenSIPS #3767: shutdown with DB-provisioned TLS domains and TLS connections open",
    target="opensips",
    family="exit double free",
    params=dict(opensips_version="3.6", tls_lib="openssl", db_domains=True, judge_shutdown=True,
                workers=4,
                load="persistent", conns=50, clients=2, tls="1.3", duration=4),
    refs=["OpenSIPS #3767", "OpenSIPS #3905"],
    notes='not reproduced on 3.6.8 (2026-12-03): 0/5, TLS domain from db_text, 50 TLS connections open at SIGTERM, no death and no double free while it shut down',
)
