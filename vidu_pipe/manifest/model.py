"""The manifest as values: :class:`Manifest`, :class:`ManifestEntry`, :class:`Download`.

The file format is ``schemas/manifest.schema.json`` (JSON Schema 2020-12); reading
checks a parsed file against it and turns the first problem into a
:class:`~vidu_pipe.errors.ManifestError` that names the file, the shot, the key and what
to do. JSON text is parsed by :func:`parse_json`, which bounds numbers and nesting so that
a hostile file gives that error too, never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal

from vidu_pipe.errors import ManifestError

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = [
    "ENTRY_KEYS",
    "MANIFEST_VERSION",
    "REPAIR_HINT",
    "STATUSES",
    "Download",
    "Manifest",
    "ManifestEntry",
    "Status",
    "describe",
    "error",
    "parse_json",
    "unknown_note",
    "unknown_summary",
]

MANIFEST_VERSION: Final = 1

Status = Literal["pending", "submitted", "completed", "failed", "unknown"]
STATUSES: Final[tuple[Status, ...]] = ("pending", "submitted", "completed", "failed", "unknown")

REPAIR_HINT: Final = (
    "the manifest records tasks already paid for: repair it by hand, or move it aside and "
    "rerun (the tasks it lists would then be created again)"
)

# The order of an entry's keys in the file (SPEC §4); progress and download follow,
# and only when set, so that a finished entry keeps the SPEC's shape.
ENTRY_KEYS: Final = (
    "status",
    "fingerprint",
    "request",
    "task_id",
    "video_url",
    "attempts",
    "error",
    "submitted_at",
    "finished_at",
    "progress",
    "download",
)

# Keys that would only ever hold a credential. The store never sees the API key, but a
# request body that somehow carried headers must not reach a file under version control.
_SECRET_KEYS: Final = frozenset(
    {
        "authorization",
        "headers",
        "apikey",
        "xapikey",
        "key",
        "token",
        "accesstoken",
        "secret",
        "password",
        "bearer",
    }
)

#: The most digits a number in a manifest or journal may have. The largest honest
#: number is a file size or a seed (< 2**63, 19 digits); Python refuses to parse ints of
#: more than 4300 digits with a ValueError that would otherwise reach the user.
MAX_DIGITS: Final = 40
#: The deepest nesting of a manifest or journal line: an entry is 4 levels deep, a
#: request body a few more; 200,000 nested ``[`` would otherwise exhaust the stack.
MAX_DEPTH: Final = 64


def error(where: object, what: str, hint: str | None = None) -> ManifestError:
    """A :class:`ManifestError` reading ``WHERE: WHAT`` and, on its own line, the hint."""
    message = f"{where}: {what}"
    if hint:
        message += f"\n    hint: {hint}"
    return ManifestError(message)


def describe(value: object) -> str:
    """A short, safe rendering of a value for an error message: ``'x' (str)``."""
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    kind = {"dict": "object"}.get(type(value).__name__, type(value).__name__)
    return f"{text} ({kind})"


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"a number of {len(text)} digits (at most {MAX_DIGITS} are read)")
    return int(text)


def _refuse_constant(text: str) -> float:
    raise ValueError(f"{text} is not a number JSON allows")


def _too_deep(value: object) -> bool:
    """Whether ``value`` nests deeper than :data:`MAX_DEPTH` (iteratively: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def parse_json(raw: bytes) -> Any:
    """Parse a manifest or a journal line; ``ValueError`` with a reason for bad input
    (not UTF-8, not JSON, a number too long, nesting too deep), never anything else."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(text, parse_int=_bounded_int, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ValueError("not valid JSON: nested too deep") from None
    except ValueError as exc:  # from the hooks above, or a float out of range
        raise ValueError(f"not valid JSON: {exc}") from None
    if _too_deep(data):
        raise ValueError(f"not valid JSON: nested more than {MAX_DEPTH} levels deep")
    return data


def _json_value(value: object, where: str) -> Any:
    """A deep, plain-JSON copy of ``value``; refuses what JSON cannot hold and credentials.

    Messages name the offending place, never a value that might be secret.
    """
    if value is None or isinstance(value, (str, bool, int)):
        # Values are not judged: a prompt may well begin "Bearer of good news"; the request
        # is built from a whitelist of fields and never holds the key.
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}, which JSON cannot hold")
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key {key!r} that is not a string")
            if key.lower().replace("-", "").replace("_", "") in _SECRET_KEYS:
                raise ValueError(
                    f"{where}.{key} looks like a credential; the manifest never stores one"
                )
            out[key] = _json_value(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_value(item, f"{where}.{i}") for i, item in enumerate(value)]
    raise TypeError(f"{where} holds a {type(value).__name__}, which JSON cannot hold")


# --- the schema -------------------------------------------------------------------------


@cache
def _validators() -> tuple[Validator, Validator]:
    """Validators of a whole manifest and of one entry (jsonschema is imported here, not
    when the package is: ``import vidu_pipe.execution.client`` must stay light)."""
    import jsonschema
    from jsonschema import Draft202012Validator

    from vidu_pipe.storyboard.schemas import schema_path

    schema = json.loads(schema_path("manifest").read_text(encoding="utf-8"))
    # JSON Schema counts 1.0 and (in Python) True as integers; a count in a manifest is
    # neither.
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _c, v: isinstance(v, int) and not isinstance(v, bool)
    )
    strict = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, type_checker=checker
    )
    # The entry's $ref inlined: jsonschema resolves a $ref anew each time it meets it, which
    # made reading a 10,000-shot manifest twice as slow.
    entry = {"$schema": schema["$schema"], **schema["$defs"]["entry"]}
    whole = json.loads(json.dumps(schema))
    whole["properties"]["shots"]["additionalProperties"] = schema["$defs"]["entry"]
    return strict(whole), strict(entry)


_TYPE_WORDS: Final = {
    "string": "a string",
    "integer": "an integer",
    "object": "an object",
    "array": "a list",
    "null": "null",
    "boolean": "true or false",
    "number": "a number",
}


def _name(path: Sequence[object]) -> str:
    return ".".join(str(p) for p in path)


def _schema_problem(errors: Iterable[Any], prefix: Sequence[object] = ()) -> str | None:
    """The first schema error, in words: which key, what it must be, what it is."""
    ordered = sorted(errors, key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if not ordered:
        return None
    e = ordered[0]
    path = [*prefix, *e.absolute_path]
    # ["shots", ID, key, ...] -> "shot 'ID': 'key...'"
    who = ""
    if len(path) >= 2 and path[0] == "shots":
        who = f"shot {path[1]!r}: "
        path = path[2:]
    name = _name(path)
    kind = e.validator
    if kind == "additionalProperties":
        extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
        where = "top-level key" if not path and not who else "key"
        inside = f" in {name!r}" if name else ""
        return f"{who}unknown {where} {extra[0]!r}{inside}"
    if kind == "required":
        missing = [k for k in e.validator_value if k not in e.instance]
        inside = f"{name!r} lacks the key" if name else "missing key"
        return f"{who}{inside} {missing[0]!r}"
    subject = f"{who}{name!r}" if name else (who.rstrip(": ") or "the manifest")
    if kind == "type":
        types = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
        wanted = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types)
        return f"{subject} must be {wanted}, got {describe(e.instance)}"
    if kind == "enum":
        return (
            f"{subject} must be one of {', '.join(map(str, e.validator_value))}, "
            f"got {describe(e.instance)}"
        )
    if kind == "minimum":
        return f"{subject} must be >= {e.validator_value}, got {describe(e.instance)}"
    if kind == "maximum":
        return f"{subject} must be <= {e.validator_value}, got {describe(e.instance)}"
    return f"{subject}: {e.message}"


def entry_problem(data: object) -> str | None:
    """What is wrong with one entry as read from JSON (None: nothing)."""
    return _schema_problem(_validators()[1].iter_errors(data))  # type: ignore[arg-type]


# --- the values -------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """Where ``--download`` saved a shot's video, and what it saved."""

    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """``{"path", "size", "sha256"}``."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class ManifestEntry:
    """What the manifest knows about one shot.

    ``request`` is the exact body sent (or to be sent); it is copied on construction
    and exposed read-only (a request that holds a credential-like key is refused with
    ``ValueError``). Use :meth:`replace` to derive the next state.

    ``unknown`` means a create was sent at ``submitted_at`` and no answer came: the task
    may exist and be billed (SPEC §4).
    """

    status: Status
    fingerprint: str
    request: Mapping[str, Any] = field(default_factory=dict)
    task_id: str | None = None
    video_url: str | None = None
    attempts: int = 0
    error: str | None = None
    submitted_at: str | None = None
    finished_at: str | None = None
    progress: int | None = None
    download: Download | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"'status' must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if not isinstance(self.request, Mapping):
            raise TypeError(f"'request' must be an object, got {describe(self.request)}")
        # A private copy: a caller mutating its dict later cannot change what was recorded.
        object.__setattr__(self, "request", MappingProxyType(_json_value(self.request, "request")))

    def replace(self, **changes: Any) -> ManifestEntry:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @property
    def up_to_date_for(self) -> str | None:
        """The fingerprint this entry holds a usable result for (None: none).

        A ``completed`` entry without a ``video_url`` (edited by hand) holds nothing.
        """
        if self.status == "completed" and self.video_url:
            return self.fingerprint
        return None

    def to_json(self) -> dict[str, Any]:
        """The entry as plain JSON, keys in the SPEC's order."""
        out: dict[str, Any] = {
            "status": self.status,
            "fingerprint": self.fingerprint,
            "request": _json_value(self.request, "request"),
            "task_id": self.task_id,
            "video_url": self.video_url,
            "attempts": self.attempts,
            "error": self.error,
            "submitted_at": self.submitted_at,
            "finished_at": self.finished_at,
        }
        if self.progress is not None:
            out["progress"] = self.progress
        if self.download is not None:
            out["download"] = self.download.to_json()
        return out

    @classmethod
    def from_json(cls, data: object, *, shot: str | None = None) -> ManifestEntry:
        """Read an entry: missing optional keys take their defaults; present keys must
        have the right type. A bad entry raises :class:`ManifestError` naming ``shot``."""
        try:
            return cls.parse(data)
        except (TypeError, ValueError) as exc:
            who = f"shot {shot!r}" if shot is not None else "manifest entry"
            raise ManifestError(f"{who}: {exc}") from exc

    @classmethod
    def parse(cls, data: object) -> ManifestEntry:
        """An entry from JSON, checked against the schema (``ValueError`` saying what is
        wrong)."""
        problem = entry_problem(data)
        if problem is not None:
            raise ValueError(problem)
        assert isinstance(data, dict)
        return cls._build(data)

    @classmethod
    def _build(cls, data: Mapping[str, Any]) -> ManifestEntry:
        fields = dict(data)
        raw = fields.pop("download", None)
        download = None if raw is None else Download(raw["path"], raw["size"], raw["sha256"])
        return cls(**fields, download=download)


def unknown_note(entry: ManifestEntry, *, hint: bool = True) -> str:
    """What an ``unknown`` entry means, in the words ``plan``, ``run``, ``status`` and the
    report all use (``hint``: with what to do about it)."""
    when = entry.submitted_at or "an unrecorded time"
    note = f"a create was sent at {when} and no answer came: it may be billed"
    return note + " (--retry-unknown creates it again)" if hint else note


def unknown_summary(shot_ids: Sequence[str]) -> str:
    """The closing line of a run or plan that leaves ``unknown`` shots."""
    n = len(shot_ids)
    return (
        f"{n} shot{'s' if n != 1 else ''} may be billed without a result: a create was sent "
        f"and no answer came ({', '.join(shot_ids)}); check the relay's task list, then "
        "`run --retry-unknown` creates them again"
    )


def _ordered(entries: Mapping[str, ManifestEntry], order: Sequence[str]) -> list[str]:
    """Shot ids in ``order`` first, then the others in their present order."""
    listed = dict.fromkeys(order)
    return [s for s in listed if s in entries] + [s for s in entries if s not in listed]


@dataclass(frozen=True)
class Manifest:
    """A manifest as a value: what one reading of the files said.

    ``entries`` is read-only and keeps the file's order.
    """

    storyboard: str
    base_url: str
    updated_at: str | None = None
    entries: Mapping[str, ManifestEntry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", MappingProxyType(dict(self.entries)))

    def get(self, shot_id: str) -> ManifestEntry | None:
        """The entry of ``shot_id``, or None."""
        return self.entries.get(shot_id)

    def to_json(self, order: Sequence[str] = ()) -> dict[str, Any]:
        """The whole manifest as plain JSON; ``shots`` in ``order``, then the rest."""
        return {
            "manifest_version": MANIFEST_VERSION,
            "storyboard": self.storyboard,
            "base_url": self.base_url,
            "updated_at": self.updated_at,
            "shots": {s: self.entries[s].to_json() for s in _ordered(self.entries, order)},
        }

    def dumps(self, order: Sequence[str] = ()) -> str:
        """The canonical text of the file: indent 2, UTF-8 as is, a final newline.

        Every entry spans its own block of lines, so changing one shot changes only
        that shot's lines (and ``updated_at``) in a diff.
        """
        return json.dumps(self.to_json(order), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: object, *, source: object = "manifest") -> Manifest:
        """Read a parsed manifest; anything not of our shape raises :class:`ManifestError`
        naming ``source``."""
        if not isinstance(data, dict):
            raise error(
                source,
                f"not a manifest: expected a JSON object, got {describe(data)}",
                "use --manifest to pick another path, or move this file aside",
            )
        version = data.get("manifest_version")
        if version != MANIFEST_VERSION or isinstance(version, bool) or type(version) is not int:
            raise error(
                source,
                f"manifest_version is {describe(version)}; this vidu-pipe reads version "
                f"{MANIFEST_VERSION}",
                "written by another vidu-pipe version? upgrade it, or use --manifest to pick "
                "another path",
            )
        problem = _schema_problem(_validators()[0].iter_errors(data))
        if problem is not None:
            raise error(source, problem, REPAIR_HINT)
        try:
            entries = {s: ManifestEntry._build(raw) for s, raw in data.get("shots", {}).items()}
        except (TypeError, ValueError) as exc:  # a credential in a request
            raise error(source, str(exc), REPAIR_HINT) from exc
        return cls(
            storyboard=data["storyboard"],
            base_url=data["base_url"],
            updated_at=data.get("updated_at"),
            entries=entries,
        )
