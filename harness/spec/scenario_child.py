"""The child process that executes scenario files (see harness.spec.sandbox):

    python -m harness.spec.scenario_child FD PATH...

One JSON line per file on the pipe FD: {"path", "scenario"} or {"path",
"error"}.  Nothing here writes to stdout, which the parent sends to its
stderr (a scenario's own print() lands there)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from harness.spec import scenario
    fd = int(argv[0])
    for path in argv[1:]:
        try:
            rec = {"path": path, "scenario": scenario.to_data(scenario.run_file(Path(path)))}
            line = json.dumps(rec)
        except scenario.ScenarioError as e:
            line = json.dumps({"path": path, "error": str(e).splitlines()[0]})
        except (TypeError, ValueError) as e:       # params that are not plain values
            line = json.dumps({"path": path, "error": f"{path}: SCENARIO holds a value that is "
                                                      f"not plain data ({e})"})
        os.write(fd, (line + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
