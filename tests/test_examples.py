"""The example storyboards in pipelines/: all valid, one per mode, and a short film."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from vidu_pipe.cli import main
from vidu_pipe.storyboard.build import load
from vidu_pipe.storyboard.loader import load_document
from vidu_pipe.storyboard.model import Storyboard

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = sorted((ROOT / "pipelines").glob("*.yaml"))
STORYBOARD_SCHEMA = json.loads((ROOT / "schemas" / "storyboard.schema.json").read_text())
MODES = ("text", "image", "first-last", "reference")


def _all() -> dict[str, Storyboard]:
    return {p.name: load(p) for p in PIPELINES}


def test_there_are_examples() -> None:
    assert len(PIPELINES) >= 5
    assert not list((ROOT / "pipelines").glob("*.yml"))  # one extension throughout


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_example_validates(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) == 0, capsys.readouterr().out
    storyboard = load(path)
    assert storyboard.shots
    # the document as written also passes the storyboard schema that editors use
    data = load_document(path).data
    assert not list(Draft202012Validator(STORYBOARD_SCHEMA).iter_errors(data))
    # editors find the schema through the first line
    first = path.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schemas/storyboard.schema.json"


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_example_plans(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--json", str(path), "--manifest", str(path) + ".none.json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in doc["shots"]] == load(path).ids


@pytest.mark.parametrize("mode", MODES)
def test_one_example_per_mode(mode: str) -> None:
    """A small storyboard whose every shot is in that mode (the file a user copies)."""
    single = [name for name, sb in _all().items() if {s.mode for s in sb.shots} == {mode}]
    assert single, f"no example storyboard is all {mode}"


def test_a_short_of_six_to_ten_shots_in_every_mode() -> None:
    shorts = {
        name: sb
        for name, sb in _all().items()
        if 6 <= len({s.source_id for s in sb.shots}) <= 10
        and {s.mode for s in sb.shots} == set(MODES)
    }
    assert shorts, "no 6-10 shot example using all four modes"
    for sb in shorts.values():
        assert len({s.model for s in sb.shots}) >= 2


def test_reference_examples_use_pro_models_only() -> None:
    shots = [s for sb in _all().values() for s in sb.shots]
    references = [s for s in shots if s.mode == "reference"]
    assert references
    for s in references:
        assert s.model.startswith("viduq3p-"), s.id
        assert "@Image1" in s.prompt


def test_lighthouse_uses_the_templates_folder() -> None:
    sb = load(ROOT / "pipelines" / "lighthouse.yaml")
    grade = (ROOT / "pipelines" / "templates" / "grade.j2").read_text()
    assert "anamorphic lens flare" in grade
    with_grade = [s for s in sb.shots if "anamorphic lens flare" in s.prompt]
    assert with_grade
    beam = [s for s in sb.shots if s.source_id == "beam"]
    assert [s.id for s in beam] == ["beam.take1", "beam.take2", "beam.take3"]
    assert [s.prompt.rsplit(", ", 1)[1] for s in beam] == ["take 1", "take 2", "take 3"]
