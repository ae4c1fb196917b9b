"""Constants every layer shares: exit codes, the endpoint's base URLs, lifetimes.

A leaf module (it imports nothing of the package), as pip's ``status_codes``:
nothing else defines an exit code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

__all__ = [
    "DEFAULT_BASE_URL",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_OK",
    "SIMULATE_TIME_SCALE",
    "SIMULATOR_BASE_URL",
    "VIDEO_URL_LIFETIME",
]

#: Every selected shot completed (or was already up to date).
EXIT_OK: Final = 0
#: One or more shots failed, or were not started.
EXIT_FAILED: Final = 1
#: An invalid storyboard or a usage error; nothing was changed.
EXIT_INVALID: Final = 2
#: A configuration or authentication problem: no key, key refused, quota spent,
#: relay unreachable, manifest locked or corrupt.
EXIT_CONFIG: Final = 3
#: Interrupted (Ctrl-C or SIGTERM); the manifest on disk is whole.
EXIT_INTERRUPTED: Final = 130

#: The relay vidu-pipe talks to unless ``--base-url`` or ``VIDU_BASE_URL`` says otherwise.
DEFAULT_BASE_URL: Final = "https://api.aijisu.cn"
#: The base URL recorded in a manifest written by ``run --simulate``. ``.invalid``
#: (RFC 6761) never resolves, so a simulated URL can never be mistaken for a real one.
SIMULATOR_BASE_URL: Final = "http://simulator.vidu-pipe.invalid"
#: ``run --simulate`` compresses time 100x: a 3-minute task takes 1.8 s.
SIMULATE_TIME_SCALE: Final = 0.01

#: Relays' video URLs expire after about a day.
VIDEO_URL_LIFETIME: Final = timedelta(hours=24)
