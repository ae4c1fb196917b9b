"""The one error tree of vidu-pipe.

No yaml, jsonschema, jinja2 or httpx exception reaches a user: each is mapped
into one of these, ``from`` the original, where it happens::

    ViduPipeError                 root; the CLI turns it into a message and an exit code
    ├── StoryboardError           bad input; carries every Problem found (exit 2)
    ├── UsageError                bad command line (exit 2)
    ├── ConfigError               no key, bad base URL, manifest locked or foreign (exit 3)
    │   ├── AuthError             the relay refused the key (401, or 403 on a query) (exit 3)
    │   └── RelayUnreachableError the relay never answered: wrong base URL, no network (exit 3)
    ├── ManifestError             the manifest cannot be read or written (exit 3)
    └── ApiError                  the relay answered with an error, or not at all
        ├── QuotaError            403: quota spent or key banned; stop creating
        └── AmbiguousCreateError  a create got no answer: it may or may not exist
"""

from __future__ import annotations

from dataclasses import dataclass

from vidu_pipe.constants import EXIT_CONFIG, EXIT_FAILED, EXIT_INVALID

__all__ = [
    "AmbiguousCreateError",
    "ApiError",
    "AuthError",
    "ConfigError",
    "ManifestError",
    "Problem",
    "QuotaError",
    "RelayUnreachableError",
    "StoryboardError",
    "UsageError",
    "ViduPipeError",
]


class ViduPipeError(Exception):
    """Root of every error vidu-pipe raises on purpose."""

    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class Problem:
    """One located problem in one storyboard file.

    ``line`` and ``column`` are 1-based (1:1 for a problem with the file as a whole).
    ``field`` is a dotted path inside the shot (``reference_image_urls.2``) or
    inside the document when ``shot`` is None (``defaults.model``).
    """

    file: str
    line: int
    column: int
    message: str
    shot: str | None = None
    field: str | None = None
    hint: str | None = None

    def format(self) -> str:
        """``FILE:LINE:COL: shot 'ID': field: message`` and an indented hint."""
        where = f"{self.file}:{self.line}:{self.column}:"
        parts = [where]
        if self.shot is not None:
            parts.append(f"shot '{self.shot}':")
        text = self.message
        if self.field and not text.startswith(self.field):
            text = f"{self.field}: {text}"
        parts.append(text)
        out = " ".join(parts)
        if self.hint:
            out += f"\n    hint: {self.hint}"
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "shot": self.shot,
            "field": self.field,
            "message": self.message,
            "hint": self.hint,
        }


class StoryboardError(ViduPipeError):
    """Raised when a storyboard cannot be loaded, validated or rendered.

    It carries every problem found, not only the first.
    """

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(p.format() for p in self.problems))


class UsageError(ViduPipeError):
    """Raised for a command line that makes no sense (unknown shot in --only, ...)."""

    exit_code = EXIT_INVALID


class ConfigError(ViduPipeError):
    """Raised for configuration problems: no key, a bad base URL, a locked manifest."""

    exit_code = EXIT_CONFIG


class AuthError(ConfigError):
    """Raised when the relay refuses the key (401, or 403 on a query: a banned key).
    It stops the whole run."""


class RelayUnreachableError(ConfigError):
    """Raised when the relay has not answered once in a run after a few tries: a wrong
    base URL or no network, not a problem of one shot. It stops the whole run."""


class ManifestError(ConfigError):
    """Raised when a manifest is corrupt, foreign or cannot be written."""


class ApiError(ViduPipeError):
    """Raised when the relay answers with an error status, or garbage, or not at all.

    ``retryable`` says whether the same request may be sent again (after a backoff);
    ``retry_after`` is the relay's own hint in seconds, when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after


class QuotaError(ApiError):
    """Raised on 403 (``insufficient_user_quota`` or a banned key): stop creating."""


class AmbiguousCreateError(ApiError):
    """Raised when a create request may have reached the relay but got no answer.

    The task may exist and be billed; it is never created again blindly.
    """
