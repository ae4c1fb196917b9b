"""The two JSON Schemas, loaded from the files that ship with the package.

``schemas/*.schema.json`` at the top of the repository are the one source of
truth: editors point at them, the wheel carries them as ``vidu_pipe/schemas``,
and everything here (the model list, the validators, the simulator's checks)
is read from them. Friendly messages live in the schemas too, as the
``x-message`` and ``x-hint`` annotations beside the rule they explain.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
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
    found: list[SchemaIssue] = []
    seen: set[tuple[tuple[str | int, ...], str]] = set()
    for error in checker.iter_errors(instance):
        for issue in _issues_for(error):
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
