"""The one check that a string is a web URL (a leaf module)."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["http_url"]


def http_url(value: object) -> str | None:
    """``value`` stripped when it is an absolute http(s) URL with a host (the scheme in
    any case), else None: never ``javascript:``, ``file:`` or a relative path."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    return text if parts.scheme.lower() in ("http", "https") and parts.netloc else None
