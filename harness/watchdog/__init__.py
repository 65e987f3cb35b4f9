"""The watchdog: reads /proc (and, in the stand, its status segment), decides
a verdict, and only then collects stacks.  Runs in the controller process.

- verdict.py       thresholds, the verdict record, shared helpers
- history.py       the sample window and the CPU / run-queue / progress figures over it
- rules.py         the rules for the stand (activities published by the workers)
- leak.py          the leak rule (the arena's floor per closed connection)
- foreign_sampler.py, foreign.py   servers tlsharness did not build: conditions
                   from /proc alone, their rules, the loop shared by target and watch
- procfs.py        reading /proc without ptrace
- stacks.py        stacks after the verdict (eu-stack, py-spy, gdb)
- families.py, signatures.toml   naming failure families from the evidence
"""
from harness.watchdog.rules import BUSY, NONBLOCKING, Watchdog
from harness.watchdog.verdict import Thresholds, Verdict, in_arena, outstanding

__all__ = ["BUSY", "NONBLOCKING", "Thresholds", "Verdict", "Watchdog", "in_arena", "outstanding"]
