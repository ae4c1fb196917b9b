"""The YAML loader: YAML 1.2 scalars, positions, and refusing what is not a plain,
bounded, single YAML document."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from vidu_pipe.cli import main
from vidu_pipe.errors import StoryboardError
from vidu_pipe.storyboard.build import load
from vidu_pipe.storyboard.loader import MAX_BYTES, parse_yaml

pytestmark = pytest.mark.usefixtures("quick_simulate")  # simulated runs at 1/500 (conftest)

VALID = "version: 1\nshots:\n  - id: s\n    model: viduq3p-720p\n    duration: 5\n    prompt: x\n"


def value_of(text: str) -> Any:
    return parse_yaml(f"v: {text}\n").data["v"]


def refused(text: str) -> StoryboardError:
    with pytest.raises(StoryboardError) as info:
        parse_yaml(text, "f.yaml")
    return info.value


# --- scalars: YAML 1.2 core schema, not YAML 1.1 ---------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("16:9", "16:9"),  # YAML 1.1: sexagesimal 969
        ("9:16", "9:16"),
        ("1:1", "1:1"),
        ("no", "no"),  # YAML 1.1: False
        ("No", "No"),
        ("off", "off"),
        ("on", "on"),  # YAML 1.1: True
        ("yes", "yes"),
        ("y", "y"),
        ("08", 8),  # YAML 1.1: an error (bad octal)
        ("010", 10),  # YAML 1.1: octal 8
        ("0o10", 8),
        ("0x1F", 31),
        ("1_000", "1_000"),  # YAML 1.1: 1000
        ("2026-01-02", "2026-01-02"),  # YAML 1.1: a date
        ("2026-01-02T10:00:00Z", "2026-01-02T10:00:00Z"),
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
        ("", None),
        ("5", 5),
        ("-3", -3),
        ("5.5", 5.5),
        ("1e3", 1000.0),
        ("'08'", "08"),
        ('"true"', "true"),
        ("!!str 5", "5"),
        ("!!int '7'", 7),
    ],
)
def test_scalars_resolve_by_yaml_12(written: str, expected: object) -> None:
    got = value_of(written)
    assert got == expected
    assert type(got) is type(expected)


def test_mapping_keys_are_text_as_written() -> None:
    doc = parse_yaml("1: a\non: b\nno: c\n08: d\n")
    assert doc.data == {"1": "a", "on": "b", "no": "c", "08": "d"}


def test_unquoted_16_9_validates_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(VALID.replace("duration: 5\n", "duration: 08\n    aspect_ratio: 16:9\n"))
    shot = load(path).shots[0]
    assert shot.request["aspect_ratio"] == "16:9"
    assert shot.request["duration"] == 8


def test_positions_are_one_based_lines_and_columns() -> None:
    doc = parse_yaml(VALID, "f.yaml")
    assert doc.locate(("shots",)) == (2, 1)
    assert doc.locate(("shots", 0)) == (3, 5)
    assert doc.locate(("shots", 0, "prompt")) == (6, 5)
    assert doc.locate(("shots", 0, "nonexistent", 3)) == (3, 5)  # nearest written ancestor


# --- duplicate keys, merge keys, aliases -----------------------------------------------


def test_duplicate_key_refused_naming_both_lines() -> None:
    err = refused("version: 1\nname: a\nshots: []\nname: b\n")
    [problem] = err.problems
    assert (problem.line, problem.column) == (4, 1)
    assert "duplicate key 'name'" in problem.message
    assert "line 2" in problem.message


def test_duplicate_key_inside_a_shot_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(VALID + "    prompt: y\n")
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert out.startswith(f"{path}:7:5: ")
    assert "duplicate key 'prompt'" in out
    assert "line 6" in out


def test_duplicate_key_in_flow_mapping_refused() -> None:
    err = refused("a: {x: 1, x: 2}\n")
    assert "duplicate key 'x'" in err.problems[0].message


def test_merge_key_with_one_alias() -> None:
    doc = parse_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n")
    assert doc.data["c"] == {"x": 1, "y": 3}
    assert doc.data["base"] == {"x": 1, "y": 2}


def test_merge_keys_in_a_storyboard(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(
        "version: 1\n"
        "common: &common\n"
        "  model: viduq3t-540p\n"
        "  duration: 4\n"
        "shots:\n"
        "  - <<: *common\n"
        "    id: a\n"
        "    prompt: x\n"
        "  - <<: *common\n"
        "    id: b\n"
        "    duration: 9\n"
        "    prompt: y\n"
    )
    # 'common' is not a storyboard field: the merge works, the unknown field is refused.
    with pytest.raises(StoryboardError) as info:
        load(path)
    assert [p.field for p in info.value.problems] == ["common"]
    path.write_text(path.read_text().replace("common: &common", "defaults: &common"))
    shots = load(path).shots
    assert [(s.id, s.model, s.duration) for s in shots] == [
        ("a", "viduq3t-540p", 4),
        ("b", "viduq3t-540p", 9),
    ]


@pytest.mark.parametrize(
    ("text", "merged"),
    [
        (
            "a: &a {x: 1, y: 1}\nb: &b {y: 2, w: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n",
            {"x": 1, "y": 1, "w": 2, "z": 3},  # the first mapping of the list wins
        ),
        ("c:\n  <<: {x: 1, y: 2}\n  y: 3\n", {"x": 1, "y": 3}),
        ("c:\n  <<:\n    - {x: 1}\n    - {x: 2, v: 0}\n  y: 3\n", {"x": 1, "v": 0, "y": 3}),
    ],
    ids=["list-of-aliases", "inline-mapping", "block-list"],
)
def test_merge_key_with_list_or_inline_mapping(text: str, merged: dict[str, int]) -> None:
    assert parse_yaml(text).data["c"] == merged


@pytest.mark.parametrize("text", ["c:\n  <<: [1, 2]\n", "c:\n  <<: 5\n", "c:\n  <<: [[{x: 1}]]\n"])
def test_merge_key_of_non_mappings_refused(text: str) -> None:
    assert "merge" in refused(text).problems[0].message


def test_merge_key_with_list_does_not_crash_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("version: 1\nshots:\n  - <<: [{model: viduq3p-720p}]\n    id: a\n")
    assert main(["validate", str(path)]) in (0, 2)


def test_billion_laughs_refused_fast() -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    start = time.monotonic()
    err = refused("\n".join(lines) + "\n")
    assert time.monotonic() - start < 5
    assert "alias" in (err.problems[0].hint or "") + err.problems[0].message


def test_modest_aliases_are_fine() -> None:
    doc = parse_yaml("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n")
    assert doc.data["b"] == [[1, 2, 3]] * 3


@pytest.mark.parametrize(
    "text",
    ["a: &x [*x]\n", "a: &x {b: *x}\n", "a: *nope\n"],
    ids=["recursive-list", "recursive-map", "unknown-alias"],
)
def test_bad_aliases_refused(text: str) -> None:
    assert refused(text).problems[0].line == 1


def test_alias_as_mapping_key_refused() -> None:
    err = refused("a: &k x\n*k : 1\n")
    assert err.problems[0].line == 2


# --- size, depth, documents, encoding, tags --------------------------------------------


@pytest.mark.parametrize(
    "content",
    ["[" * 100_000, "a: " + "{b: " * 100_000, "- " * 100_000 + "x"],
    ids=["flow-lists", "flow-maps", "block-lists"],
)
def test_deep_nesting_refused_in_a_subprocess(content: str, tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(content + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "vidu_pipe", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])  # not a segfault (<0)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "nesting deeper than" in proc.stdout
    assert proc.stdout.startswith(f"{path}:1:")


def test_nesting_within_the_limit_is_fine() -> None:
    value = parse_yaml("a: " + "[" * 60 + "]" * 60 + "\n").data["a"]
    depth = 0
    while value:
        [value] = value
        depth += 1
    assert depth == 59


def test_oversized_file_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as fh:
        fh.write(VALID)
        fh.write("# " + "x" * MAX_BYTES + "\n")
    assert MAX_BYTES == 8 * 1024 * 1024
    start = time.monotonic()
    assert main(["validate", str(path)]) == 2
    assert time.monotonic() - start < 5
    out = capsys.readouterr().out
    assert f"{path}:" in out
    assert "8 MiB" in out


def test_file_just_under_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    comment = "# " + "x" * (MAX_BYTES - len(VALID) - 10) + "\n"
    path.write_text(VALID + comment)
    assert path.stat().st_size <= MAX_BYTES
    assert load(path).ids == ["s"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: 1\n---\nb: 2\n", 2),
        ("---\na: 1\n...\n---\nb: 2\n", 4),
        (VALID + "---\n" + VALID, 7),
    ],
    ids=["plain", "after-end-marker", "two-storyboards"],
)
def test_second_document_refused(text: str, line: int) -> None:
    [problem] = refused(text).problems
    assert problem.line == line
    assert "second" in problem.message


def test_one_explicit_document_is_fine() -> None:
    assert parse_yaml("---\na: 1\n...\n").data == {"a": 1}


def test_non_utf8_refused_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(VALID.encode() + "    notes: café\n".encode("latin-1"))
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert out.startswith(f"{path}:7:")
    assert "UTF-8" in out


def test_utf8_bom_and_non_ascii_text_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.replace("prompt: x", "prompt: café 東京 🌊").encode())
    assert load(path).shots[0].prompt == "café 東京 🌊"


@pytest.mark.parametrize(
    "tagged",
    [
        "!!python/object:os.system x",
        "!!python/object/apply:os.system ['touch {tmp}/pwned']",
        "!!python/name:os.system ''",
        "!custom x",
        "!!binary aGVsbG8=",
        "!!set {a, b}",
        "!!timestamp 2026-01-02",
        "!!omap [a: 1]",
    ],
)
def test_custom_tags_refused(tagged: str, tmp_path: Path) -> None:
    [problem] = refused(f"a: 1\nb: {tagged.replace('{tmp}', str(tmp_path))}\n").problems
    assert problem.line == 2
    assert "tag" in problem.message
    # ... and nothing ran
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("text", "line", "hint"),
    [
        ("a: 1\nprompt: Wide shot: a beach\n", 2, "quoted"),
        ("a: [1, 2\n", 2, None),
        ("a: 'unclosed\n", 2, None),
    ],
    ids=["colon-space", "unclosed-flow", "unclosed-quote"],
)
def test_broken_yaml_reports_line_and_hint(text: str, line: int, hint: str | None) -> None:
    [problem] = refused(text).problems
    assert problem.line == line
    assert problem.message.startswith("invalid YAML")
    if hint:
        assert hint in (problem.hint or "")


@pytest.mark.parametrize(
    "text",
    ["shots:\n\t- id: a\n", "a:\n  b: 1\n\tc: 2\n"],
    ids=["tab-before-item", "tab-in-mapping"],
)
def test_tab_indentation_gets_a_hint(text: str) -> None:
    [problem] = refused(text).problems
    assert "tab" in (problem.hint or "")


@pytest.mark.parametrize(
    "text",
    ["", "# only a comment\n", "- a\n- b\n", "just text\n", "42\n", "null\n"],
    ids=["empty", "comment", "list", "text", "number", "null"],
)
def test_not_a_mapping_is_a_clear_error(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert f"{path}:1:1:" in captured.out
    assert "mapping" in captured.out


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_unreadable_paths_are_problems(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nope.yaml" if kind == "missing" else tmp_path
    assert main(["validate", str(path)]) == 2
    assert f"{path}:" in capsys.readouterr().out


# --- numbers no field can use: located problems, never a crash (issue 10, items 9-10) ---

HUGE = "9" * 5000
BOARD = (
    "version: 1\n"
    "defaults: {model: viduq3p-720p, duration: 5}\n"
    "{run}"
    "shots:\n"
    "  - id: a\n"
    "    prompt: x\n"
    "{shot}"
)


def _board(tmp_path: Path, *, run: str = "", shot: str = "") -> Path:
    path = tmp_path / "b.yaml"
    path.write_text(BOARD.replace("{run}", run).replace("{shot}", shot), encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["validate", "plan", "run", "status"])
def test_a_5000_digit_integer_is_a_located_problem_in_every_command(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _board(tmp_path, shot=f"    seed: {HUGE}\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [command, str(path)] + (["--simulate"] if command == "run" else [])
    assert main(args) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert f"{path}:6:5: shot 'a': seed: " in text
    assert "more than 300 digits" in text
    assert "Traceback" not in text and "4300" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize(
    ("written", "where"),
    [
        (f"seed: {HUGE}", "seed"),
        (f"seed: 0x{'f' * 5000}", "seed"),
        (f"seed: !!int {HUGE}", "seed"),
        (f"vars: {{n: {HUGE}}}", "vars.n"),
        (f"tags: [{HUGE}]", "tags.0"),
        ("duration: 1e999", "duration"),
        ("seed: .nan", "seed"),
        ("duration: !!float .inf", "duration"),
    ],
    ids=["int", "hex", "tagged", "in-vars", "in-tags", "1e999", "nan", "tagged-inf"],
)
def test_unusable_numbers_in_a_shot(written: str, where: str, tmp_path: Path) -> None:
    path = _board(tmp_path, shot=f"    {written}\n")
    with pytest.raises(StoryboardError) as info:
        load(path)
    [problem] = info.value.problems  # one cause, one problem (not also "must be a number")
    assert (problem.line, problem.shot, problem.field) == (6, "a", where)
    assert problem.hint == "quote it if it is meant as text"


@pytest.mark.parametrize(
    "run",
    [
        "{poll_interval: .nan}",
        "{timeout: .nan}",
        "{timeout: .inf}",
        "{poll_interval: -.Inf}",
        "{timeout: 1e400}",
        "{rate_per_minute: .NaN}",
        f"{{max_creates: {HUGE}}}",
    ],
    ids=["poll-nan", "timeout-nan", "timeout-inf", "poll-minus-inf", "1e400", "rate-nan", "huge"],
)
def test_nan_and_infinity_refused_in_run_settings(
    run: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _board(tmp_path, run=f"run: {run}\n")
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert out.startswith(f"{path}:3:"), out
    assert "run." in out and ("NaN" in out or "infinity" in out or "digits" in out)


def test_a_huge_number_as_a_key_is_just_text() -> None:
    # (a key that long must be written as an explicit "? key")
    assert parse_yaml(f"? {HUGE}\n: a\n.nan: b\n").data == {HUGE: "a", ".nan": "b"}


def test_small_exotic_numbers_still_load() -> None:
    assert value_of("1e-400") == 0.0
    assert value_of("0x" + "f" * 200) == int("f" * 200, 16)
    assert value_of("9" * 300) == int("9" * 300)


@pytest.mark.parametrize("flag", ["--poll-interval", "--timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "Infinity"])
def test_nan_and_infinity_refused_on_the_command_line(
    flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _board(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["run", str(path), "--simulate", flag, value])
    assert info.value.code == 2
    assert flag in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.yaml"]
