"""The package version, in a leaf module: what reports it (the HTTP client's
User-Agent, the report's footer, ``--version``) imports nothing else."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
