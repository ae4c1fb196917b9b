from __future__ import annotations

import sys

from vidu_pipe.cli import main

if __name__ == "__main__":
    sys.exit(main())
