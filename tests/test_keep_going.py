"""Every problem in one pass, and ``run --keep-going`` (issue 12 item 4, SPEC §3).

A storyboard used to report its problems in rounds: a shot that broke a schema rule was
not rendered, so its template errors and unknown assets showed only once the schema
errors were fixed; and one broken shot blocked ``run --only other-shot``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidu_pipe.api import run
from vidu_pipe.cli import build_parser, main
from vidu_pipe.errors import StoryboardError
from vidu_pipe.storyboard.build import load

pytestmark = pytest.mark.usefixtures("quick_simulate")  # simulated runs at 1/500 (conftest)

HEAD = """\
version: 1
defaults:
  model: viduq3p-720p
  duration: 5
assets:
  hero: https://cdn.example.com/hero.png
vars:
  place: a beach
shots:
"""

FIVE = (
    HEAD
    + """\
  - id: fine
    prompt: A calm sea
  - id: schema
    model: viduq3-720p
    prompt: x
  - id: asset
    image: heroo
    prompt: x
  - id: template
    prompt: "{{ plcae }}"
  - id: ref
    prompt: "{{ ref('hero') }} walks"
  - id: fine
    prompt: again
  - id: both
    duration: 17
    reference_image_urls: [hero, nope]
    prompt: "{{ ref('hero') }} at {{ palce }}"
"""
)


def lines_of(text: str, needle: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if needle in line]


def write(tmp_path: Path, text: str, name: str = "sb.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_validate_reports_the_problems_of_five_shots_in_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, FIVE)
    assert main(["validate", "--json", str(path)]) == 2
    problems = json.loads(capsys.readouterr().out)["problems"]
    found = {(p["shot"], p["field"], p["line"]) for p in problems}
    assert found == {
        ("schema", "model", lines_of(FIVE, "viduq3-720p")[0]),
        ("asset", "image", lines_of(FIVE, "heroo")[0]),
        ("template", "prompt", lines_of(FIVE, "plcae")[0]),
        ("ref", "prompt", lines_of(FIVE, "walks")[0]),
        ("fine", "id", lines_of(FIVE, "id: fine")[1]),  # the duplicate
        # a shot that broke a schema rule is still rendered as far as it can be
        ("both", "duration", lines_of(FIVE, "duration: 17")[0]),
        ("both", "reference_image_urls.1", lines_of(FIVE, "nope")[0]),
        ("both", "prompt", lines_of(FIVE, "palce")[0]),
    }
    by_shot = {p["shot"]: p for p in problems}
    assert "did you mean 'hero'" in by_shot["asset"]["hint"]
    assert "did you mean 'place'" in by_shot["template"]["hint"]
    assert "did you mean 'viduq3" in by_shot["schema"]["hint"]


@pytest.mark.parametrize(
    ("shot", "field"),
    [
        ("- id: s\n    promt: x", "promt"),  # not also "prompt is required"
        ("- id: s\n    model: viduq3t-720p\n    reference_image_urls: [hero]\n    prompt: x", ""),
        ("- id: s\n    image: 'file:///etc/passwd'\n    prompt: x", "image"),
        ("- id: s\n    seed: -1\n    prompt: x", "seed"),
    ],
    ids=["typo", "turbo-references", "bad-url", "seed"],
)
def test_one_cause_is_one_problem(shot: str, field: str, tmp_path: Path) -> None:
    """Rendering a shot that broke a schema rule must not repeat that rule's problem."""
    with pytest.raises(StoryboardError) as info:
        load(write(tmp_path, HEAD + "  " + shot + "\n"))
    assert len(info.value.problems) == 1, info.value
    assert field in (info.value.problems[0].field or "")


def test_a_bad_default_is_reported_once_not_in_every_shot(tmp_path: Path) -> None:
    text = HEAD.replace("duration: 5", "duration: 50") + "".join(
        f"  - id: s{i}\n    prompt: x\n" for i in range(20)
    )
    with pytest.raises(StoryboardError) as info:
        load(write(tmp_path, text))
    [problem] = info.value.problems
    assert problem.field == "defaults.duration"


def test_a_bad_asset_is_reported_once_not_in_every_shot(tmp_path: Path) -> None:
    text = HEAD.replace("https://cdn.example.com/hero.png", "http://localhost/hero.png") + "".join(
        f"  - id: s{i}\n    image: hero\n    prompt: x\n" for i in range(20)
    )
    with pytest.raises(StoryboardError) as info:
        load(write(tmp_path, text))
    [problem] = info.value.problems
    assert problem.field == "assets.hero"


# --- run --keep-going -----------------------------------------------------------------

BROKEN = (
    HEAD
    + """\
  - id: good
    prompt: A calm sea
    tags: [act1]
  - id: bad
    prompt: "{{ plcae }}"
    tags: [act1]
  - id: worse
    model: nope
    prompt: x
  - id: other
    prompt: Waves
"""
)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_without_keep_going_one_broken_shot_blocks_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, BROKEN)
    before = files(tmp_path)
    assert main(["run", str(path), "--simulate", "-q", "--only", "other"]) == 2
    assert "undefined name 'plcae'" in capsys.readouterr().err
    assert files(tmp_path) == before


def test_keep_going_runs_the_valid_shots_lists_the_broken_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, BROKEN)
    assert main(["run", str(path), "--simulate", "-q", "--keep-going"]) == 2
    captured = capsys.readouterr()
    assert f"{path}:{lines_of(BROKEN, 'plcae')[0]}:5: shot 'bad': prompt:" in captured.err
    assert "shot 'worse': model:" in captured.err
    assert "2 invalid shots not run: bad, worse" in captured.out
    manifest = json.loads((tmp_path / "sb.manifest.json").read_text())
    assert list(manifest["shots"]) == ["good", "other"]
    assert all(e["status"] == "completed" for e in manifest["shots"].values())


def test_keep_going_lists_a_duplicate_id_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = BROKEN + '  - id: bad\n    prompt: "again {{ nope }}"\n  - id: worse\n    prompt: x\n'
    path = write(tmp_path, text)
    assert main(["run", str(path), "--simulate", "-q", "--keep-going"]) == 2
    captured = capsys.readouterr()
    assert "duplicate shot id 'bad'" in captured.err
    assert "2 invalid shots not run: bad, worse\n" in captured.out, captured.out


def test_keep_going_json_run_finished_carries_the_exit_code_of_the_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, BROKEN)
    code = main(["run", str(path), "--simulate", "--json", "--keep-going"])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finished = events[-1]
    assert finished["event"] == "run-finished" and finished["completed"] == 2
    assert finished["exit_code"] == code == 2


def test_keep_going_library_result_names_the_broken_shots_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    result = run(path, simulate=True, keep_going=True)
    assert result.broken == ("bad", "worse") and result.completed == ("good", "other")
    assert result.exit_code == 2


def test_keep_going_with_only_another_shot_runs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, BROKEN)
    assert main(["run", str(path), "--simulate", "-q", "--keep-going", "--only", "other"]) == 0
    manifest = json.loads((tmp_path / "sb.manifest.json").read_text())
    assert list(manifest["shots"]) == ["other"]


def test_keep_going_with_a_tag_runs_the_valid_shots_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, BROKEN)
    assert main(["run", str(path), "--simulate", "-q", "--keep-going", "--tag", "act1"]) == 2
    assert "1 invalid shot not run: bad" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "sb.manifest.json").read_text())
    assert list(manifest["shots"]) == ["good"]


def test_keep_going_with_only_broken_shots_selected_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, BROKEN)
    before = files(tmp_path)
    assert main(["run", str(path), "--simulate", "-q", "--keep-going", "--only", "ba*"]) == 2
    assert "1 invalid shot not run: bad" in capsys.readouterr().out
    assert files(tmp_path) == before


def test_keep_going_still_stops_on_a_problem_outside_the_shots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, BROKEN.replace("duration: 5", "duration: 50"))
    before = files(tmp_path)
    assert main(["run", str(path), "--simulate", "-q", "--keep-going"]) == 2
    assert "defaults.duration" in capsys.readouterr().err
    assert files(tmp_path) == before


def test_keep_going_help_states_its_default() -> None:
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    [action] = [a for a in run._actions if "--keep-going" in a.option_strings]
    assert action.default is False
    assert "default" in (action.help or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "version: 1\ndefaults: [1, 2]\nshots:\n  - id: a\n    prompt: x\n",
            [(None, "defaults")],  # not also "model is required" in every shot
            id="defaults-not-a-mapping",
        ),
        pytest.param(
            "version: 1\ndefaults: {model: viduq3p-720p, duration: 5}\nassets: {hero: 7}\n"
            "shots:\n  - id: a\n    image: hero\n    prompt: x\n",
            [(None, "assets.hero")],  # not also "unknown asset 'hero'"
            id="asset-not-text",
        ),
        pytest.param(
            "version: 1\ndefaults: {model: viduq3p-720p, duration: 5}\ntemplates: {look: 5}\n"
            "shots:\n  - id: a\n    prompt: \"{% include 'look' %}x\"\n",
            [(None, "templates.look")],  # not also "no template named 'look'"
            id="template-not-text",
        ),
        pytest.param(
            "version: 1\ndefaults: {model: viduq3p-720p, duration: 5}\n"
            "assets: {hero: 'https://cdn.example.com/h.png'}\n"
            "shots:\n  - id: a\n    reference_image_urls: hero\n"
            "    prompt: \"{{ ref('hero') }}\"\n",
            [("a", "reference_image_urls")],  # not also "this shot has no reference images"
            id="references-not-a-list",
        ),
        pytest.param(
            "version: 1\ndefaults: [1]\nshots:\n  - 1\n  - id: a\n    prompt: x\n",
            [(None, "defaults"), ("#1", None)],  # no Turbo rule applied to a list
            id="shot-not-a-mapping",
        ),
    ],
)
def test_a_broken_part_is_reported_as_itself_not_in_its_users(
    text: str, expected: list[tuple[str | None, str | None]], tmp_path: Path
) -> None:
    with pytest.raises(StoryboardError) as info:
        load(write(tmp_path, text))
    assert [(p.shot, p.field) for p in info.value.problems] == expected, info.value


@pytest.mark.parametrize(
    ("pattern", "selected"),
    [("bad.take2", ["bad"]), ("bad.take*", ["bad"]), ("ba?", ["bad"]), ("bad.takeover", [])],
)
def test_only_selects_a_broken_shot_by_its_take_ids_too(
    pattern: str, selected: list[str], tmp_path: Path
) -> None:
    from vidu_pipe.planner import select_broken

    board = load(
        write(
            tmp_path,
            BROKEN.replace(
                "    tags: [act1]\n  - id: worse", "    takes: 3\n    tags: [act1]\n  - id: worse"
            ),
        ),
        keep_going=True,
    )
    assert [b.id for b in select_broken(board, [pattern])] == selected
