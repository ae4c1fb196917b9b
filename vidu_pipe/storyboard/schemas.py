"""The two JSON Schemas, loaded from the files that ship with the package.

``schemas/*.schema.json`` at the top of the repository are the one source of
truth: editors point at them, the wheel carries them as ``vidu_pipe/schemas``,
and everything here (the model list, the validators, the simulator's checks)
is read from them. Friendly messages live in the schemas too, as the
``x-message`` and ``x-hint`` annotations beside the rule they explain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from vidu_pipe.text import suggest

__all__ = [
    "ASPECT_RATIOS",
    "MODELS",
    "PRO_MODELS",
    "SchemaIssue",
    "check",
    "load_schema",
    "request_issues",
    "schema_path",
    "storyboard_issues",
]

SCHEMA_NAMES = ("storyboard", "request")


def schema_path(name: str) -> Path:
    """Where ``NAME.schema.json`` is: inside the package when installed from a wheel,
    else at the top of the source tree."""
    package = Path(__file__).resolve().parent.parent
    for folder in (package / "schemas", package.parent / "schemas"):
        candidate = folder / f"{name}.schema.json"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name}.schema.json is not installed with vidu_pipe")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema ``storyboard`` or ``request``."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}")
    data: dict[str, Any] = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return data


@cache
def validator(name: str) -> Draft202012Validator:
    """A validator for schema ``name``, with its local ``$ref``s inlined.

    Inlining changes nothing about what validates, and halves the time of a
    validation (jsonschema resolves each ``$ref`` anew every time it meets it),
    which matters for 10,000-shot storyboards.
    """
    schema = load_schema(name)
    return Draft202012Validator(_inline_refs(schema, schema))


def _inline_refs(node: Any, root: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target[part]
            target = _inline_refs(target, root)
            rest = {k: _inline_refs(v, root) for k, v in node.items() if k != "$ref"}
            if set(rest) & set(target):
                return {**rest, "allOf": [target]}
            return {**target, **rest}
        return {k: _inline_refs(v, root) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, root) for v in node]
    return node


_defs = load_schema("request")["$defs"]
MODELS: tuple[str, ...] = tuple(_defs["model"]["enum"])
PRO_MODELS: tuple[str, ...] = tuple(_defs["pro_model"]["enum"])
ASPECT_RATIOS: tuple[str, ...] = tuple(_defs["aspect_ratio"]["enum"])
MAX_REFERENCES: int = _defs["reference_image_urls"]["maxItems"]
MAX_SEED: int = _defs["seed"]["maximum"]
del _defs
MAX_TAKES: int = load_schema("storyboard")["$defs"]["shot"]["properties"]["takes"]["maximum"]


@dataclass(frozen=True)
class SchemaIssue:
    """One schema violation: where (a path of keys and indexes), what, and a hint."""

    path: tuple[str | int, ...]
    message: str
    hint: str | None = None

    @property
    def field(self) -> str:
        return ".".join(str(p) for p in self.path)


_TYPE_NAMES = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "empty",
}


def _issues_for(error: jsonschema.ValidationError) -> Iterator[SchemaIssue]:
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    kw = str(error.validator)
    rule: Any = error.validator_value
    hint = schema.get("x-hint")
    instance = error.instance

    if kw == "required":
        for name in rule:
            if isinstance(instance, dict) and name not in instance:
                yield SchemaIssue((*path, name), schema.get("x-message", "is required"), hint)
        return
    if kw == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        for name in instance if isinstance(instance, dict) else ():
            if name in schema.get("properties", {}):
                continue
            yield SchemaIssue(
                (*path, name),
                f"unknown field '{name}'",
                suggest(str(name), allowed) or f"allowed here: {', '.join(allowed)}",
            )
        return
    if kw == "dependentRequired":
        for name, needs in rule.items():
            if isinstance(instance, dict) and name in instance:
                for other in needs:
                    if other not in instance:
                        yield SchemaIssue(
                            (*path, name),
                            f"{name} needs {other}: first-and-last-frame takes image + last_image",
                            f"add {other} (the first frame), or remove {name}",
                        )
        return
    if kw in ("anyOf", "oneOf") and "x-message" not in schema:
        # Explain with the branch that got furthest, as jsonschema's best_match does.
        best = jsonschema.exceptions.best_match(error.context or [])
        if best is not None:
            yield from _issues_for(best)
            return
    if "propertyNames" in error.absolute_schema_path and isinstance(instance, str):
        # jsonschema reports a bad key at its mapping, with the key as the instance.
        yield SchemaIssue((*path, instance), str(schema.get("x-message", error.message)), hint)
        return
    message = None if kw == "type" else schema.get("x-message")
    if (
        kw == "type"
        and isinstance(instance, (int, float))
        and "string" in (rule if isinstance(rule, list) else [rule])
    ):
        hint = f'YAML reads {instance} as a number; write it in quotes: "{instance}"'
    if message is None:
        if kw == "type":
            types = rule if isinstance(rule, list) else [rule]
            message = "must be " + " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in types)
        elif kw == "enum":
            message = "must be one of " + ", ".join(json.dumps(v) for v in rule)
        else:
            message = error.message
    if isinstance(instance, str):
        choices = _enum_choices(schema)
        # The value itself among the choices (a const or type problem): nothing to suggest.
        near = suggest(instance, choices) if choices and instance not in choices else ""
        if near:
            hint = near + (f" ({hint})" if hint else "")
        elif kw == "const" and instance.lower() in _YAML11_BOOLEANS:
            hint = (
                f"'{instance}' is text here (vidu-pipe reads YAML 1.2, where only true and "
                "false are booleans); write false"
            )
    yield SchemaIssue(path, message, hint)


_YAML11_BOOLEANS = frozenset({"yes", "no", "on", "off", "y", "n"})


def _enum_choices(schema: dict[str, Any]) -> list[str]:
    """The string values an ``enum`` (or an ``anyOf`` branch's enum) allows."""
    found: list[str] = [v for v in schema.get("enum", ()) if isinstance(v, str)]
    for branch in schema.get("anyOf", ()):
        if isinstance(branch, dict):
            found.extend(v for v in branch.get("enum", ()) if isinstance(v, str))
    return found


def check(name: str, instance: object) -> list[SchemaIssue]:
    """Every violation of schema ``name`` by ``instance``, in document order, friendly."""
    return _check_with(validator(name), instance)


def _check_with(checker: Draft202012Validator, instance: object) -> list[SchemaIssue]:
    return _deduped(
        issue for error in checker.iter_errors(instance) for issue in _issues_for(error)
    )


def _deduped(issues: Iterable[SchemaIssue]) -> list[SchemaIssue]:
    """The issues in order, each (path, message) once."""
    found: list[SchemaIssue] = []
    seen: set[tuple[tuple[str | int, ...], str]] = set()
    for issue in issues:
        key = (issue.path, issue.message)
        if key not in seen:
            seen.add(key)
            found.append(issue)
    return found


def request_issues(body: object) -> list[SchemaIssue]:
    """Every rule of the endpoint that ``body`` (a create-task request) breaks."""
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        return check("request", body)
    # The prompt is the one field that differs in nearly every shot, and no rule ties it
    # to another field; so the rest of the body is checked once per distinct rest (with a
    # stand-in prompt), and the prompt on its own against its own rule. A test checks
    # that this gives exactly what checking the whole body gives.
    rest = {**body, "prompt": "x"}
    key = json.dumps(rest, sort_keys=True, default=str)
    found = _rest_issues.get(key)
    if found is None:
        found = check("request", rest)
        if len(_rest_issues) < 10_000:
            _rest_issues[key] = found
    prompt_issues = [
        SchemaIssue(("prompt", *i.path), i.message, i.hint)
        for i in _check_with(_prompt_validator(), body["prompt"])
    ]
    return prompt_issues + found


_rest_issues: dict[str, list[SchemaIssue]] = {}


@cache
def _prompt_validator() -> Draft202012Validator:
    schema = load_schema("request")
    return Draft202012Validator(_inline_refs(schema["properties"]["prompt"], schema))


# --- The storyboard check, one shot at a time -------------------------------------------
#
# ``check("storyboard", data)`` descends into every shot with jsonschema, which is most of
# the cost of validating a long storyboard. ``storyboard_issues`` gives exactly the same
# issues, in the same order (tests/test_storyboard_check.py compares the two on random
# storyboards), faster:
#
# - the document is checked with ``shots.items`` replaced by a marker keyword at the same
#   place, so the marker's error stands where the shots' errors would have come (the
#   document's own rules about shots, such as a Turbo model in ``defaults``, are checked
#   there, on the shots as written);
# - each shot is checked on its own against the shot schema: the fields that differ from
#   shot to shot (id, prompt, vars, ...) each against their own rule, and the rest of the
#   shot (those fields' values set aside) once per distinct rest. That is sound because no
#   rule of the shot schema outside ``properties`` names those fields (checked below, when
#   the validators are built): ``required`` and ``additionalProperties`` see only that they
#   are present, and the rest keeps its keys, in order.
#
# jsonschema reports the errors of one schema keyword after another, in the order the
# schema writes them, and ``properties`` one property after another; each issue of a shot
# is sorted back into that order by the keyword (and property) it came from.

_SHOTS_MARK = "x-vidu-pipe-shots"
#: The fields most likely to differ in every shot: checked each on its own.
_PER_SHOT_FIELDS = ("id", "prompt", "vars", "notes", "tags", "seed")
#: Keywords that apply a rule to properties without naming them.
_UNNAMED = frozenset(
    {"additionalProperties", "patternProperties", "unevaluatedProperties", "$ref", "$dynamicRef"}
)
#: Keywords of the shot schema itself whose errors cannot be placed by their keyword
#: (jsonschema reports an ``if``'s errors under ``then``/``else``).
_UNPLACED = _UNNAMED | {"if", "then", "else"}
_Position = tuple[int, int]


def _shots_marker(
    checker: Draft202012Validator, value: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    # Where ``items`` would descend into the shots: one error marks the place.
    if checker.is_type(instance, "array"):
        yield jsonschema.ValidationError("the shots")


def _names_in(node: Any) -> Iterator[str]:
    """Every key and string in a schema fragment (field names and keywords alike)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _names_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _names_in(value)
    elif isinstance(node, str):
        yield node


#: Keywords that say nothing about a value (annotations; ``x-*`` too).
_ANNOTATIONS = frozenset({"description", "examples", "title", "$comment", "default"})


@dataclass(frozen=True)
class _ShotCheck:
    """The validators ``storyboard_issues`` uses, and the order of the shot's keywords."""

    document: Draft202012Validator
    whole: Draft202012Validator
    rest: Draft202012Validator
    fields: dict[str, Draft202012Validator]
    #: Fields whose rule, for a mapping, reads only its keys (``vars``).
    keys_only: frozenset[str]
    order: dict[str, int]
    properties: dict[str, int]

    def position(self, error: jsonschema.ValidationError) -> _Position:
        """Where jsonschema reports ``error`` among a shot's: its keyword, its property."""
        path = error.relative_schema_path
        keyword = str(path[0]) if path else ""
        if keyword == "properties" and len(path) > 1:
            return self.order[keyword], self.properties.get(str(path[1]), 0)
        return self.order.get(keyword, 0), 0


@cache
def _shot_check() -> _ShotCheck:
    schema = load_schema("storyboard")
    inlined = _inline_refs(schema, schema)
    shots = inlined["properties"]["shots"]
    shot: dict[str, Any] = shots["items"]
    marked = {_SHOTS_MARK if k == "items" else k: v for k, v in shots.items()}
    document_schema = {**inlined, "properties": {**inlined["properties"], "shots": marked}}
    extend: Callable[..., type[Draft202012Validator]] = jsonschema.validators.extend
    document = extend(Draft202012Validator, {_SHOTS_MARK: _shots_marker})
    properties: dict[str, Any] = shot.get("properties", {})
    # Every rule of the shot outside its properties; ``required`` and a top-level
    # ``additionalProperties`` look only at which fields are present.
    ties = {k: v for k, v in shot.items() if k not in ("properties", "required")}
    ties.pop("additionalProperties", None)
    named = set(_names_in(ties))
    fields = [f for f in _PER_SHOT_FIELDS if f in properties and f not in named]
    if named & _UNNAMED or set(shot) & (_UNPLACED - {"additionalProperties"}):
        fields = []  # a rule might tie these fields to others: check whole shots
    keys_only = frozenset(
        f
        for f in fields
        if all(
            k in ("type", "propertyNames") or k in _ANNOTATIONS or k.startswith("x-")
            for k in properties[f]
        )
    )
    rest = {k: {} if k in fields else v for k, v in properties.items()}
    return _ShotCheck(
        document=document(document_schema),
        whole=Draft202012Validator(shot),
        rest=Draft202012Validator({**shot, "properties": rest}),
        fields={f: Draft202012Validator(properties[f]) for f in fields},
        keys_only=keys_only,
        order={k: i for i, k in enumerate(shot)},
        properties={k: i for i, k in enumerate(properties)},
    )


class _NotPlain(Exception):
    pass


def _frozen(value: Any) -> Any:
    """A hashable copy of plain data that keeps every type, key order and float spelling
    (``1``, ``1.0``, ``True`` and ``"1"`` stay apart): equal copies validate alike."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return (kind, value)
    if kind is float:
        return (kind, repr(value))
    if kind is list:
        return (kind, tuple(_frozen(v) for v in value))
    if kind is dict:
        return (kind, tuple((_frozen(k), _frozen(v)) for k, v in value.items()))
    raise _NotPlain


class _Memo:
    """What one ``storyboard_issues`` call has checked already."""

    def __init__(self) -> None:
        #: A shot's rest (frozen) → its issues, each with its place among the shot's.
        self.rests: dict[Any, list[tuple[_Position, SchemaIssue]]] = {}
        #: (field, its value frozen) → its issues.
        self.fields: dict[Any, list[SchemaIssue]] = {}


def storyboard_issues(data: object) -> list[SchemaIssue]:
    """Exactly what ``check("storyboard", data)`` reports, in far less time for many shots."""
    parts = _shot_check()
    memo = _Memo()
    found: list[SchemaIssue] = []
    for error in parts.document.iter_errors(data):
        if error.validator != _SHOTS_MARK:
            found.extend(_issues_for(error))
            continue
        for index, shot in enumerate(error.instance):
            found.extend(
                SchemaIssue(("shots", index, *issue.path), issue.message, issue.hint)
                for issue in _shot_issues(parts, shot, memo)
            )
    return _deduped(found)


def _shot_issues(parts: _ShotCheck, shot: Any, memo: _Memo) -> list[SchemaIssue]:
    """The issues of one shot, its paths relative to the shot, in jsonschema's order."""
    if type(shot) is not dict:  # no fields to set apart
        return [issue for error in parts.whole.iter_errors(shot) for issue in _issues_for(error)]
    own = [name for name in parts.fields if name in shot]
    rest = {k: None if k in own else v for k, v in shot.items()} if own else shot
    try:
        key: Any = _frozen(rest)
    except (_NotPlain, RecursionError):
        key = None  # not plain data: checked, not remembered
    positioned = memo.rests.get(key) if key is not None else None
    if positioned is None:
        positioned = [
            (parts.position(error), issue)
            for error in parts.rest.iter_errors(rest)
            for issue in _issues_for(error)
        ]
        if key is not None:
            memo.rests[key] = positioned
    extra: list[tuple[_Position, SchemaIssue]] = []
    where = parts.order.get("properties", 0)
    for name in own:
        position = (where, parts.properties[name])
        extra.extend((position, issue) for issue in _field_issues(parts, name, shot[name], memo))
    if not extra:
        return [issue for _, issue in positioned]
    return [issue for _, issue in sorted([*positioned, *extra], key=lambda p: p[0])]


def _field_issues(parts: _ShotCheck, name: str, value: Any, memo: _Memo) -> list[SchemaIssue]:
    """The issues of one field of a shot, checked against its own rule; paths from the shot."""
    try:
        if name in parts.keys_only and type(value) is dict:
            key: Any = (name, "keys", tuple(_frozen(k) for k in value))
        else:
            key = (name, _frozen(value))
    except (_NotPlain, RecursionError):
        key = None
    found = memo.fields.get(key) if key is not None else None
    if found is None:
        found = [
            SchemaIssue((name, *issue.path), issue.message, issue.hint)
            for error in parts.fields[name].iter_errors(value)
            for issue in _issues_for(error)
        ]
        if key is not None:
            memo.fields[key] = found
    return found
