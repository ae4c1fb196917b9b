"""The two JSON Schemas: printed by ``vidu-pipe schema``, valid 2020-12 schemas, documented,
one source of truth for the endpoint's rules, and encoding every rule of SPEC §1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from vidu_pipe.cli import main
from vidu_pipe.storyboard import schemas

ROOT = Path(__file__).resolve().parent.parent
STORYBOARD = json.loads((ROOT / "schemas" / "storyboard.schema.json").read_text())
REQUEST = json.loads((ROOT / "schemas" / "request.schema.json").read_text())
MODELS = [
    "viduq3p-540p",
    "viduq3p-720p",
    "viduq3p-1080p",
    "viduq3t-540p",
    "viduq3t-720p",
    "viduq3t-1080p",
]
PRO, TURBO = MODELS[:3], MODELS[3:]


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["schema", "storyboard"], "storyboard"),
        (["schema", "request"], "request"),
        (["schema"], "storyboard"),
    ],
    ids=["storyboard", "request", "default"],
)
def test_schema_command_prints_the_file(
    argv: list[str], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())


def test_schema_command_refuses_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["schema", "manifest"])
    assert info.value.code == 2


def test_package_reads_the_same_schemas() -> None:
    assert schemas.load_schema("storyboard") == STORYBOARD
    assert schemas.load_schema("request") == REQUEST
    assert list(schemas.MODELS) == MODELS
    assert list(schemas.PRO_MODELS) == PRO


@pytest.mark.parametrize("schema", [STORYBOARD, REQUEST], ids=["storyboard", "request"])
def test_schemas_are_valid_2020_12(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def _declared_properties(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property declaration: ``properties`` members of the schema and of its $defs,
    following items/additionalProperties, but not the constraints inside if/then/not."""
    if not isinstance(node, dict):
        return
    for name, sub in node.get("properties", {}).items():
        yield f"{where}/properties/{name}", sub
        yield from _declared_properties(sub, f"{where}/properties/{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _declared_properties(node[key], f"{where}/{key}")
    for name, sub in node.get("$defs", {}).items():
        yield from _declared_properties(sub, f"{where}/$defs/{name}")


STORYBOARD_PROPERTIES = list(_declared_properties(STORYBOARD))


def _forbidden(prop: dict[str, Any]) -> bool:
    return prop.get("not") == {}


def test_walk_finds_the_properties() -> None:
    names = {where.rsplit("/", 1)[1] for where, _ in STORYBOARD_PROPERTIES}
    assert {"version", "defaults", "shots", "id", "prompt", "concurrency", "seed"} <= names
    assert len(STORYBOARD_PROPERTIES) > 40


@pytest.mark.parametrize(
    ("where", "prop"),
    [pytest.param(w, p, id=w) for w, p in STORYBOARD_PROPERTIES],
)
def test_every_storyboard_property_has_description_and_examples(
    where: str, prop: dict[str, Any]
) -> None:
    assert isinstance(prop.get("description"), str) and len(prop["description"]) > 10
    if _forbidden(prop):  # 'images', 'image_urls': no value is allowed, so none to show
        assert prop.get("x-hint")
        return
    assert isinstance(prop.get("examples"), list) and prop["examples"]
    # each example is itself valid where it is written
    check = Draft202012Validator({**prop, "$defs": STORYBOARD["$defs"]})
    for example in prop["examples"]:
        assert check.is_valid(example), (where, example)


def _enums(node: Any) -> Iterator[list[Any]]:
    if isinstance(node, dict):
        if "enum" in node:
            yield node["enum"]
        for value in node.values():
            yield from _enums(value)
    elif isinstance(node, list):
        for value in node:
            yield from _enums(value)


def test_one_source_of_truth_for_models() -> None:
    assert REQUEST["$defs"]["model"]["enum"] == MODELS
    assert REQUEST["$defs"]["pro_model"]["enum"] == PRO
    shot_model = STORYBOARD["$defs"]["shot"]["properties"]["model"]
    defaults_model = STORYBOARD["properties"]["defaults"]["properties"]["model"]
    for copy in (shot_model, defaults_model):
        assert copy["anyOf"][0]["enum"] == REQUEST["$defs"]["model"]["enum"]
    # every model list anywhere in the storyboard schema is the six, or the Pro or Turbo three
    model_lists = [e for e in _enums(STORYBOARD) if any(str(v).startswith("vidu") for v in e)]
    assert len(model_lists) >= 6
    for found in model_lists:
        assert found in (MODELS, PRO, TURBO), found


def test_one_source_of_truth_for_image_urls_and_limits() -> None:
    assert STORYBOARD["$defs"]["image_url"] == REQUEST["$defs"]["image_url"]
    shot = STORYBOARD["$defs"]["shot"]["properties"]
    req = REQUEST["$defs"]
    assert shot["aspect_ratio"]["anyOf"][0]["enum"] == req["aspect_ratio"]["enum"]
    assert (shot["seed"]["minimum"], shot["seed"]["maximum"]) == (
        req["seed"]["minimum"],
        req["seed"]["maximum"],
    )
    assert (shot["reference_image_urls"]["minItems"], shot["reference_image_urls"]["maxItems"]) == (
        req["reference_image_urls"]["minItems"],
        req["reference_image_urls"]["maxItems"],
    )
    duration = shot["duration"]["anyOf"][0]
    assert (duration["minimum"], duration["maximum"]) == (
        req["duration"]["minimum"],
        req["duration"]["maximum"],
    )


def test_defaults_accept_the_same_fields_as_a_shot_except_id_and_pick() -> None:
    shot = STORYBOARD["$defs"]["shot"]["properties"]
    defaults = STORYBOARD["properties"]["defaults"]["properties"]
    # pick chooses among one shot's own takes: a default for every shot would not mean that.
    assert set(shot) - set(defaults) == {"id", "pick"}
    for name, prop in defaults.items():
        assert prop == shot[name], name


# --- the request schema encodes SPEC §1 -----------------------------------------------

GOOD = {
    "model": "viduq3p-720p",
    "prompt": "A lake",
    "duration": 5,
    "extra_body": {"audio": False, "bgm": False},
}
URL = "https://cdn.example.com/a.png"


def _with(**changes: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


VALID_BODIES = (
    {f"text-{m}": _with(model=m) for m in MODELS}
    | {f"image-{m}": _with(model=m, image=URL) for m in MODELS}
    | {f"first-last-{m}": _with(model=m, image=URL, last_image=URL) for m in MODELS}
    | {f"reference-{m}": _with(model=m, reference_image_urls=[URL] * 4) for m in PRO}
    | {
        "seed-max": _with(extra_body={"audio": False, "bgm": False, "seed": 2147483647}),
        "seed-0": _with(extra_body={"audio": False, "bgm": False, "seed": 0}),
        "ratio-1:1": _with(aspect_ratio="1:1"),
        "duration-16": _with(duration=16),
        "prompt-5000": _with(prompt="y" * 5000),
        "http-with-port": _with(image="http://cdn.example.com:8080/a.png?x=1"),
    }
)
INVALID_BODIES = {
    "model-unknown": _with(model="viduq3-720p"),
    "model-missing": _with(model=None),
    "prompt-missing": _with(prompt=None),
    "prompt-empty": _with(prompt=""),
    "prompt-blank": _with(prompt=" \n\t"),
    "prompt-5001": _with(prompt="y" * 5001),
    "duration-missing": _with(duration=None),
    "duration-string": _with(duration="5"),
    "duration-0": _with(duration=0),
    "duration-17": _with(duration=17),
    "duration-bool": _with(duration=True),
    "ratio-4:3": _with(aspect_ratio="4:3"),
    "last-without-image": _with(last_image=URL),
    "refs-with-image": _with(image=URL, reference_image_urls=[URL]),
    "refs-with-last": _with(image=URL, last_image=URL, reference_image_urls=[URL]),
    **{f"refs-on-{m}": _with(model=m, reference_image_urls=[URL]) for m in TURBO},
    "refs-0": _with(reference_image_urls=[]),
    "refs-5": _with(reference_image_urls=[URL] * 5),
    "images": _with(images=[URL, URL]),
    "image_urls": _with(image_urls=[URL]),
    "other-field": _with(negative_prompt="x"),
    "extra_body-missing": _with(extra_body=None),
    "audio-true": _with(extra_body={"audio": True, "bgm": False}),
    "bgm-missing": _with(extra_body={"audio": False}),
    "bgm-string": _with(extra_body={"audio": False, "bgm": "false"}),
    "seed-negative": _with(extra_body={"audio": False, "bgm": False, "seed": -1}),
    "seed-too-big": _with(extra_body={"audio": False, "bgm": False, "seed": 2147483648}),
    "extra_body-other": _with(extra_body={"audio": False, "bgm": False, "fps": 24}),
    "url-ftp": _with(image="ftp://cdn.example.com/a.png"),
    "url-file": _with(image="file:///etc/passwd"),
    "url-data": _with(image="data:image/png;base64,AAAA"),
    "url-localhost": _with(image="http://localhost/a.png"),
    "url-127": _with(image="https://127.0.0.1/a.png"),
    "url-private": _with(image="http://192.168.1.2/a.png"),
    "url-space": _with(image="https://cdn.example.com/a b.png"),
    "url-relative": _with(image="/a.png"),
    # Python's `$` also matches before a final newline (ECMA-262's does not): issue 10 item 11
    "url-final-newline": _with(image=URL + "\n"),
    "ref-url-final-newline": _with(reference_image_urls=[URL + "\n"]),
}


@pytest.mark.parametrize("body", VALID_BODIES.values(), ids=list(VALID_BODIES))
def test_request_schema_accepts(body: dict[str, Any]) -> None:
    errors = [e.message for e in Draft202012Validator(REQUEST).iter_errors(body)]
    assert not errors


@pytest.mark.parametrize("body", INVALID_BODIES.values(), ids=list(INVALID_BODIES))
def test_request_schema_refuses(body: dict[str, Any]) -> None:
    assert not Draft202012Validator(REQUEST).is_valid(body)
    assert schemas.request_issues(body)  # and the package explains it


# --- patterns mean the same in Python and in editors (ECMA-262) -------------------------


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


PATTERNS = sorted(set(_patterns(STORYBOARD)) | set(_patterns(REQUEST)))
SAMPLES = ["a", "hero", "act1", "x_1", "5", "videos", "https://cdn.example.com/a.png", "{{ x }}"]


# (a numeric duration may have whitespace around it, "5\n" too: it is sent as the integer 5)
@pytest.mark.parametrize("pattern", [p for p in PATTERNS if "$" in p and "\\s*$" not in p])
def test_anchored_patterns_refuse_a_final_newline(pattern: str) -> None:
    """jsonschema runs patterns with re.search, whose `$` also matches before a final
    newline: "abc\n" passed the id pattern and named a file "abc\u23ce.mp4"."""
    import re

    matching = [s for s in SAMPLES if re.search(pattern, s)]
    assert matching, "the samples must exercise every anchored pattern"
    for sample in matching:
        assert not re.search(pattern, sample + "\n"), sample
        assert not re.search(pattern, sample + "\n\n"), sample
