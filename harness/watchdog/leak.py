"""The leak rule: the arena's floor rising per closed connection."""
from __future__ import annotations

from harness.watchdog.verdict import Thresholds, Verdict
from harness.verdicts import V


def leak_verdict(arena_track: list, load_start_ns: int | None, th: Thresholds) -> Verdict | None:
    """Arena growth over the second half of the load (after a 1 s warm-up),
    judged on its floor: the lowest use within each second (connections
    come and go; what a leak leaves behind raises the floor).  A floor
    that rises steadily, by much, and by much per connection closed
    meanwhile is a leak.  Connections still open are not leaked: as many
    must be open at both ends of the window."""
    if not load_start_ns:
        return None
    tr = [x for x in arena_track if x[0] >= load_start_ns + 1_000_000_000]
    if len(tr) < 4 or (tr[-1][0] - tr[0][0]) / 1e9 < th.leak_min_s - 1:
        return None
    half = tr[len(tr) // 2:]
    t0, t1 = half[0][0], half[-1][0]
    floors, opens = [], []
    for x in half:
        k = int((x[0] - t0) // 1_000_000_000)
        if k == len(floors):
            floors.append(x[1])
            opens.append([x[3]])
        elif k < len(floors):
            floors[k] = min(floors[k], x[1])
            opens[k].append(x[3])
    if len(floors) < 3:
        return None
    third = max(1, len(floors) // 3)
    grown = int(sum(floors[-third:]) / third - sum(floors[:third]) / third)
    closed = half[-1][2] - half[0][2]
    o0, o1 = (sum(opens[0]) / len(opens[0]), sum(opens[-1]) / len(opens[-1]))
    steps = [b - a for a, b in zip(floors, floors[1:])]
    steady = sum(1 for d in steps if d > 0) / len(steps)
    if abs(o1 - o0) > max(4, 0.2 * max(o0, o1)):
        return None                        # connections opened or closed for good: can't tell
    per_conn = grown / closed if closed else None
    if (grown >= th.leak_min_bytes and steady >= th.leak_steady
            and (per_conn is None or per_conn >= th.leak_per_conn)):
        dt = (t1 - t0) / 1e9
        ev = [f"arena growth: +{grown / 1048576:.1f} MiB of floor in {dt:.1f} s "
              f"({grown / dt / 1024:.0f} KiB/s), rising in {steady:.0%} of seconds"
              + (f", {per_conn:.0f} bytes per connection closed ({closed})" if closed else "")
              + f", about {o1:.0f} connections open at both ends"]
        return Verdict(V.LEAK, reason=ev[0][len("arena growth: "):], onset_ns=t0,
                       detect_ns=t1, evidence=ev)
    return None
