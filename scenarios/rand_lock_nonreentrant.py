"""The RAND method wrapped in the server's own non-recursive lock in shared
memory (OpenSIPS 2.4.7): if the library calls back into the method while
the lock is held, the process spins on a lock it holds itself.  The run
counts the calls and the re-entries (outcome.json: rand_method); the
watchdog names a waiter on its own lock "self-deadlock"."""
from harness.spec.scenario import Scenario, passes

SCENARIO = Scenario(
    summary="RAND method under a non-recursive shared lock (self-deadlock if re-entered)",
    family="self-deadlock",
    params=dict(memory="shared", handoff="per-message", mitigate="pshared,prefork-thread",
                rand_lock="plain", load="churn", churn_every=1, workers=4, conns=50, duration=10),
    # measured: OpenSSL 3.0.x and 1.1.1w never re-enter the method on these paths
    expect={"openssl+pshared,prefork-thread": passes(),
            "openssl@1.1.1+pshared,prefork-thread": passes()},
    refs=["OpenSIPS #1953"],
    notes="No re-entry measured with these versions: the deadlock of the report does not "
          "reproduce here; the re-entrant lock (locked-rand) is the shipped fix.",
)
