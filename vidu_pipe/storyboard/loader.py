"""Load: YAML text → plain values, with the line and column of every node.

PyYAML's own composer and constructor are not used: the composer recurses (a
deeply nested file crashes the C extension outright), the constructor expands
aliases without limit (billion laughs), keeps the last of two duplicate keys
silently, and resolves scalars by YAML 1.1, which turns what people write in a
storyboard into something else:

=============  ===========  ==================================================
written        YAML 1.1     here (YAML 1.2 core schema, which is what people mean)
=============  ===========  ==================================================
``16:9``       969          the string ``"16:9"`` (sexagesimal numbers are gone)
``no``, ``on`` False, True  the strings ``"no"``, ``"on"``; only true/false are booleans
``08``         error/octal  the integer 8 (leading zeros are decimal; ``0o10`` is octal)
``2026-01-02`` a date       the string ``"2026-01-02"``
=============  ===========  ==================================================

So this module walks the libyaml event stream itself (iteratively, so depth is
only bounded by ``MAX_DEPTH``), resolves plain scalars by the YAML 1.2 core
schema, counts every node an alias expands to, and records positions.

Numbers that no field can use are refused where they are written, not where they
would crash later: ``.nan`` and ``.inf`` (and ``1e999``, which is infinity), which
pass every ``minimum`` of a JSON Schema and would make a run poll without pause or
never give up; and integers of more than ``MAX_INT_DIGITS`` digits, which Python
refuses to print and which overflow any float. Those are *soft* problems: the value
is kept as the text written, the problem is recorded in ``Document.issues``, and
validation goes on, so that every problem of a file is reported in one pass.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vidu_pipe.errors import Problem, StoryboardError

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "Document",
    "LoadIssue",
    "load_document",
    "parse_yaml",
]

MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
#: Aliases may repeat structure, but never past this many nodes in all
#: (plus a little per byte of input, so big honest files are never refused).
MAX_NODES = 250_000
#: Longest integer accepted. No field takes more than 10 digits; this bound keeps every
#: integer printable (Python refuses past 4300 digits) and convertible to a float.
MAX_INT_DIGITS = 300
_MAX_INT_BITS = 996  # 2**996 < 10**300: the same bound for 0x and 0o integers

Path_ = tuple[str | int, ...]

try:  # libyaml's parser is ~10x faster; its events are the same as the pure one's
    _Parser: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Parser = yaml.SafeLoader

_TAG = "tag:yaml.org,2002:"
_ScalarEvent = yaml.ScalarEvent
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT10 = re.compile(r"^[-+]?[0-9]+$")
_INT8 = re.compile(r"^0o[0-7]+$")
_INT16 = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")


@dataclass(frozen=True)
class LoadIssue:
    """A value that parsed but cannot be used (a NaN, a 400-digit integer): where and why."""

    path: Path_
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class Document:
    """A loaded YAML file: its value and where each part of it was written.

    ``positions`` maps a path of keys and indexes to the 1-based (line, column)
    of the key (for a mapping member) or of the item (for a list item).
    """

    file: str
    data: Any
    positions: dict[Path_, tuple[int, int]] = field(repr=False)
    #: Soft problems: the document is usable, but not valid.
    issues: tuple[LoadIssue, ...] = ()

    def locate(self, path: Path_) -> tuple[int, int]:
        """The position of ``path``, or of its nearest written ancestor."""
        while path:
            found = self.positions.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return self.positions.get((), (1, 1))


class _YamlProblem(Exception):
    def __init__(self, message: str, where: tuple[int, int], hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line, self.column = where
        self.hint = hint


class _BadNumber(Exception):
    """A scalar that reads as a number no storyboard can use."""


_NUMBER_HINT = "quote it if it is meant as text"


def _pos(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


#: Every null, boolean and number of the core schema starts with one of these (or is empty).
_NOT_TEXT_START = frozenset("~nNtTfF+-.0123456789")


def _resolve_plain(text: str) -> object:
    if text and text[0] not in _NOT_TEXT_START:
        return text  # most scalars: no pattern below can match
    if _NULL.match(text):
        return None
    if _BOOL.match(text):
        return text.lower() == "true"
    if _INT10.match(text):
        if len(text.lstrip("+-").lstrip("0")) > MAX_INT_DIGITS:
            raise _BadNumber(f"a whole number of more than {MAX_INT_DIGITS} digits")
        return int(text, 10)
    if _INT8.match(text) or _INT16.match(text):
        value = int(text[2:], 8 if text[1] == "o" else 16)
        if value.bit_length() > _MAX_INT_BITS:
            raise _BadNumber(f"a whole number of more than {MAX_INT_DIGITS} digits")
        return value
    if _FLOAT.match(text):
        number = float(text)
        if math.isinf(number):
            raise _BadNumber(f"{text} is too large for a number (it reads as infinity)")
        return number
    if _INF.match(text) or _NAN.match(text):
        # JSON has neither; every `minimum` of a schema lets NaN through.
        raise _BadNumber(f"{text} is not a number a storyboard can use (no NaN or infinity)")
    return text


def _scalar(event: Any) -> object:
    tag = event.tag
    text: str = event.value
    plain = event.implicit[0] and not event.style
    if tag in (None, "!"):
        return _resolve_plain(text) if plain else text
    short = tag[len(_TAG) :] if tag.startswith(_TAG) else None
    where = _pos(event.start_mark)
    if short == "str":
        return text
    if short in ("int", "float", "bool", "null"):
        value = _resolve_plain(text)
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "null": value is None,
        }[short]
        if not ok:
            raise _YamlProblem(f"{text!r} is not a valid !!{short}", where)
        return float(value) if short == "float" else value  # type: ignore[arg-type]
    raise _YamlProblem(
        f"the YAML tag {tag!r} is not supported",
        where,
        "storyboards are plain data: remove the tag (quote the value to make it text)",
    )


class _Frame:
    """A mapping or list under construction."""

    __slots__ = ("anchor", "keys", "merges", "path", "pending_key", "start", "value")

    def __init__(self, value: Any, path: Path_, anchor: str | None, start: tuple[int, int]):
        self.value = value
        self.path = path
        self.anchor = anchor
        self.start = start
        self.pending_key: object = _NO_KEY
        self.keys: dict[str, tuple[int, int]] = {}
        self.merges: list[tuple[Any, tuple[int, int]]] = []


_NO_KEY = object()
_MERGE = object()


def _key_text(event: Any) -> object:
    if event.tag in (None, "!") and event.implicit[0] and not event.style and event.value == "<<":
        return _MERGE
    try:
        value = _scalar(event)
    except _BadNumber:
        return event.value
    # Mapping keys are always text (JSON has no other kind): ``1:`` and ``on:`` mean
    # the keys "1" and "on", as written.
    return event.value if not isinstance(value, str) else value


def parse_yaml(text: str, file: str = "<string>") -> Document:
    """Parse one YAML document into plain values and positions.

    Raises StoryboardError (one Problem) on anything that is not plain,
    bounded, well-formed YAML.
    """
    try:
        return _parse(text, file)
    except _YamlProblem as exc:
        raise StoryboardError(
            [Problem(file, exc.line, exc.column, exc.message, hint=exc.hint)]
        ) from None
    except yaml.MarkedYAMLError as exc:
        line, col = _pos(exc.problem_mark)
        if "maximum nesting depth" in str(exc.problem):
            # PyYAML >= 6.0.4 stops deep nesting itself, before our own count sees it.
            problem = Problem(file, line, col, f"nesting deeper than {MAX_DEPTH} levels")
            raise StoryboardError([problem]) from None
        message = exc.problem or "invalid YAML"
        if exc.context:
            message = f"{message} ({exc.context})"
        hint = None
        lines = text.splitlines()
        here = lines[line - 1] if 0 < line <= len(lines) else ""
        if "mapping values are not allowed" in message:
            hint = 'a value that contains ": " must be quoted, e.g. prompt: "Wide shot: a beach"'
        elif "\t" in here[: max(col, 1)] or "tab" in message:
            hint = "YAML does not allow tabs for indentation; use spaces"
        problem = Problem(file, line, col, f"invalid YAML: {message}", hint=hint)
        raise StoryboardError([problem]) from None
    except yaml.YAMLError as exc:
        raise StoryboardError([Problem(file, 1, 1, f"invalid YAML: {exc}")]) from None


def _events(text: str) -> Iterator[Any]:
    return iter(yaml.parse(text, Loader=_Parser))


def _parse(text: str, file: str) -> Document:
    positions: dict[Path_, tuple[int, int]] = {(): (1, 1)}
    anchors: dict[str, tuple[Any, int]] = {}  # anchor -> (value, node count)
    stack: list[_Frame] = []
    counts: list[int] = []  # node count of each open frame
    budget = MAX_NODES + len(text)
    used = 0
    root: Any = None
    seen_document = False
    # Anchors whose frame is still open: an alias to them would be recursive.
    open_anchors: set[str] = set()
    issues: list[LoadIssue] = []

    def child_path(frame: _Frame) -> Path_:
        if isinstance(frame.value, list):
            return (*frame.path, len(frame.value))
        key = frame.pending_key
        return (*frame.path, key if isinstance(key, str) else "<<")

    def attach(value: Any, size: int, where: tuple[int, int]) -> None:
        nonlocal root
        if not stack:
            root = value
            return
        frame = stack[-1]
        counts[-1] += size
        if isinstance(frame.value, list):
            positions.setdefault((*frame.path, len(frame.value)), where)
            frame.value.append(value)
            return
        key = frame.pending_key
        frame.pending_key = _NO_KEY
        if key is _MERGE:
            frame.merges.append((value, where))
            return
        assert isinstance(key, str)
        frame.value[key] = value

    def take_key(frame: _Frame, event: Any, where: tuple[int, int]) -> None:
        """A scalar in key position of a mapping: a key, not a value."""
        key = _key_text(event)
        if key is not _MERGE:
            assert isinstance(key, str)
            if key in frame.keys:
                first = frame.keys[key]
                raise _YamlProblem(
                    f"duplicate key '{key}' (first written at line {first[0]})",
                    where,
                    "YAML keeps only the last one, which is rarely what was meant",
                )
            frame.keys[key] = where
            key_path: Path_ = (*frame.path, key)
            positions[key_path] = where
        frame.pending_key = key

    def spend(nodes: int, where: tuple[int, int]) -> None:
        nonlocal used
        used += nodes
        if used > budget:
            raise _YamlProblem(
                f"the document expands to more than {budget} nodes",
                where,
                "anchors and aliases are expanded; this looks like an alias bomb",
            )

    def scalar_value(event: Any) -> Any:
        try:
            return _scalar(event)
        except _BadNumber as exc:
            here = child_path(stack[-1]) if stack else ()
            issues.append(LoadIssue(here, str(exc), _NUMBER_HINT))
            return event.value  # kept as written, so the rest can still be checked

    for event in _events(text):
        # The common case first, in short: a scalar that is a key, or a value.
        if type(event) is _ScalarEvent and stack:
            frame = stack[-1]
            mark = event.start_mark
            where = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
            if frame.pending_key is _NO_KEY and type(frame.value) is dict:
                take_key(frame, event, where)
                continue
            spend(1, where)
            value = scalar_value(event)
            if event.anchor:
                anchors[event.anchor] = (value, 1)
            attach(value, 1, where)
            continue
        if isinstance(event, yaml.DocumentStartEvent):
            if seen_document:
                raise _YamlProblem(
                    "a storyboard is one YAML document; found a second one",
                    _pos(event.start_mark),
                    "remove the '---' line, or split the file",
                )
            seen_document = True
            continue
        if isinstance(event, (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent)):
            continue
        where = _pos(event.start_mark)

        # A scalar in key position of a mapping is a key, not a value.
        if (
            stack
            and isinstance(stack[-1].value, dict)
            and stack[-1].pending_key is _NO_KEY
            and not isinstance(event, (yaml.MappingEndEvent,))
        ):
            frame = stack[-1]
            if not isinstance(event, yaml.ScalarEvent):
                raise _YamlProblem(
                    "mapping keys must be plain text, not lists, mappings or aliases",
                    where,
                )
            take_key(frame, event, where)
            continue

        spend(1, where)

        if isinstance(event, yaml.ScalarEvent):
            value = scalar_value(event)
            if event.anchor:
                anchors[event.anchor] = (value, 1)
            attach(value, 1, where)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise _YamlProblem(f"the alias *{event.anchor} refers to itself", where)
            if event.anchor not in anchors:
                raise _YamlProblem(f"unknown alias *{event.anchor}", where)
            value, size = anchors[event.anchor]
            spend(size, where)
            attach(value, size, where)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if event.tag not in (None, "!", _TAG + "seq", _TAG + "map"):
                raise _YamlProblem(f"the YAML tag {event.tag!r} is not supported", where)
            if len(stack) >= MAX_DEPTH:
                raise _YamlProblem(f"nesting deeper than {MAX_DEPTH} levels", where)
            path: Path_ = child_path(stack[-1]) if stack else ()
            container: Any = [] if isinstance(event, yaml.SequenceStartEvent) else {}
            stack.append(_Frame(container, path, event.anchor, where))
            counts.append(1)
            if event.anchor:
                open_anchors.add(event.anchor)
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            frame = stack.pop()
            size = counts.pop()
            if frame.merges:
                _apply_merges(frame, positions)
            if frame.anchor:
                open_anchors.discard(frame.anchor)
                anchors[frame.anchor] = (frame.value, size)
            attach(frame.value, size, frame.start)
    if not seen_document:
        root = None
    return Document(file, root, positions, tuple(issues))


def _apply_merges(frame: _Frame, positions: dict[Path_, tuple[int, int]]) -> None:
    """``<<: *base`` (or a list of them): keys written in the mapping itself win."""
    merged: dict[str, Any] = {}
    for value, where in frame.merges:
        sources = value if isinstance(value, list) else [value]
        for source in sources:
            if not isinstance(source, dict):
                raise _YamlProblem("'<<' merges mappings only", where)
            for key, item in source.items():
                if key not in merged:
                    merged[key] = item
                    positions.setdefault((*frame.path, key), where)
    for key, item in frame.value.items():
        merged[key] = item
    frame.value.clear()
    frame.value.update(merged)


def load_document(path: Path | str, *, display: str | None = None) -> Document:
    """Read and parse a storyboard file, refusing what is too big to be one."""
    p = Path(path)
    name = display if display is not None else str(path)
    try:
        with p.open("rb") as fh:
            # read(MAX_BYTES + 1) would allocate 8 MiB for every file, however small
            expected = os.fstat(fh.fileno()).st_size
            raw = fh.read(min(expected, MAX_BYTES) + 1) if expected else b""
            if not expected or len(raw) > expected:  # a pipe, or a file that grew
                raw += fh.read(MAX_BYTES + 1 - len(raw))
    except FileNotFoundError:
        raise StoryboardError([Problem(name, 1, 1, "no such file")]) from None
    except IsADirectoryError:
        raise StoryboardError([Problem(name, 1, 1, "is a folder, not a storyboard file")]) from None
    except OSError as exc:
        raise StoryboardError([Problem(name, 1, 1, f"cannot read: {exc.strerror}")]) from None
    if len(raw) > MAX_BYTES:
        raise StoryboardError(
            [
                Problem(
                    name,
                    1,
                    1,
                    f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB; refusing to load it",
                    hint="split the storyboard into several files",
                )
            ]
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise StoryboardError([Problem(name, line, 1, "file is not UTF-8 text")]) from None
    return parse_yaml(text, name)
