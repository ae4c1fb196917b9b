"""``python -m vidu_pipe``: the same as the ``vidu-pipe`` console script."""

from __future__ import annotations

import sys

try:
    from vidu_pipe.cli import main
except KeyboardInterrupt:
    # Ctrl-C while Python is still loading the command line: end as an interrupted
    # command does (EXIT_INTERRUPTED, which may not be loaded yet), not with a
    # traceback. main() guards from its first line on.
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
