"""What a task's failure means: worth creating again, or sure to fail the same way.

A leaf module (it imports nothing of the package), so that ``plan`` can warn about a
failure as the run does. The words come from the relays' own reasons: new-api passes
Vidu's ``err_code`` (``CreationPolicyViolation``, ``SystemThrottling`` …) or its own text
(``upstream returned error``, ``任务超时``), other relays write sentences.
"""

from __future__ import annotations

import re
from typing import Final, Literal

__all__ = ["FailureKind", "failure_advice", "failure_kind"]

FailureKind = Literal["transient", "content", "other"]

# A failure the relay itself calls passing: created again once (a failed task is refunded).
_TRANSIENT: Final = re.compile(
    r"please retry|try again|retry later|temporar|upstream (?:error|returned)|"
    r"generation failed upstream|systemthrottling|too many requests|overloaded|busy|"
    r"timed? ?out|internal error|任务超时",
    re.IGNORECASE,
)
# Content review: the same request will most likely fail again.
_CONTENT: Final = re.compile(
    r"content review|content policy|policyviolation|policy violation|moderation|sensitive|"
    r"did not pass|violat|prohibited|unsafe|nsfw|审核|违规",
    re.IGNORECASE,
)


def failure_kind(reason: str | None) -> FailureKind:
    """``content`` for a content-review refusal (checked first: it is never transient),
    ``transient`` for a failure the relay says may pass on a retry, else ``other``."""
    if not reason:
        return "other"
    if _CONTENT.search(reason):
        return "content"
    if _TRANSIENT.search(reason):
        return "transient"
    return "other"


def failure_advice(reason: str | None) -> str | None:
    """What to tell a person before they pay for a request that failed this way again."""
    if failure_kind(reason) == "content":
        return (
            "refused in content review: the same request is likely to fail again; "
            "change the prompt (or the input images) first"
        )
    return None
