"""Timestamps as vidu-pipe writes and reads them: UTC, ``YYYY-MM-DDTHH:MM:SSZ``.

One format for the manifest, the lock file and events; a leaf module.
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["parse_time", "utc_now"]


def utc_now() -> str:
    """The current time as the manifest writes it: UTC ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """A manifest timestamp (``2026-11-24T12:00:00Z``) as an aware UTC datetime, or None."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
