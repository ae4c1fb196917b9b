"""Text for people: the one escape helper and the one "did you mean" (a leaf module).

Anything that reaches a terminal, a log or a manifest from outside (a relay's message, a
prompt someone wrote, a manifest's recorded error) may hold control characters: an
``ESC ] 0 ; … BEL`` retitles the window, ``ESC [ 2 J`` clears it, a bidirectional override
(U+202E) reorders what is shown. :func:`clean_text` writes each of them as an escape.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Final

__all__ = ["clean_json", "clean_text", "suggest"]

# C0, DEL, C1, the bidi marks and overrides (U+200E/F, U+202A-202E, U+2066-2069), and the
# line and paragraph separators that some terminals take as a new line.
_CONTROL: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)

# What json.dumps leaves raw: all of _CONTROL but C0 (escaped by JSON itself, and the
# newlines of indent=2 are layout, not content).
_JSON_RAW: Final = re.compile("[\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

# The two a reader knows by their backslash names; every other one by its code.
_NAMED: Final = {"\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean_text(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\n``,
    ``\\u202e``…), so that what is shown is what was there, never what it would do."""
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text


def clean_json(text: str) -> str:
    """JSON text (``json.dumps(..., ensure_ascii=False)``) with the control characters it
    leaves raw (DEL, C1, bidi, separators) written as ``\\uXXXX``: still the same JSON,
    and safe to show."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def suggest(word: str, known: Iterable[str]) -> str:
    """``"did you mean 'waves'?"`` when one of ``known`` is close to ``word`` (a typo),
    else ``""``. Every "did you mean" of vidu-pipe says it this way; the caller places it
    (after ``; ``, in parentheses, as a hint)."""
    near = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"did you mean '{clean_text(near[0])}'?" if near else ""
