"""``python -m harness.loadgen CONFIG FD INDEX CONTROLLER_PID``: one load generator process."""
import sys

from harness.loadgen.main import main

sys.exit(main())
