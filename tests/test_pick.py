"""`pick: K` and `vidu-pipe pick FILE ID.takeK`: the chosen take, written into the text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import vidu_pipe
from vidu_pipe.cli import main

BOARD = """\
# yaml-language-server: $schema=../schemas/storyboard.schema.json
version: 1
defaults: {model: viduq3t-540p, duration: 3}   # keep this comment
shots:
  - id: opening
    prompt: 'Wide shot: a harbour'   # quoted on purpose
  - id: closeup
    takes: 3
    prompt: "Slow push-in"

  - {id: flow, takes: 2, prompt: Gulls}
  - id: later
    prompt: The end
"""


@pytest.fixture
def board(tmp_path: Path) -> Path:
    path = tmp_path / "board.yaml"
    path.write_text(BOARD, encoding="utf-8")
    return path


def chosen(path: Path) -> list[str]:
    return [s.id for s in vidu_pipe.load(path).shots if s.chosen]


def test_take_one_is_chosen_until_one_is_picked(board: Path) -> None:
    assert chosen(board) == ["opening", "closeup.take1", "flow.take1", "later"]


def test_pick_inserts_one_line_after_takes_and_changes_nothing_else(
    board: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pick", str(board), "closeup.take2"]) == 0
    assert f"{board}:9: closeup: pick: 2" in capsys.readouterr().out
    expected = BOARD.replace("    takes: 3\n", "    takes: 3\n    pick: 2\n")
    assert board.read_text(encoding="utf-8") == expected
    assert chosen(board) == ["opening", "closeup.take2", "flow.take1", "later"]


def test_dry_run_writes_nothing(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pick", str(board), "closeup.take2", "--dry-run"]) == 0
    assert f"{board}:9: closeup: pick: 2 (dry run: not written)" in capsys.readouterr().out
    assert board.read_text(encoding="utf-8") == BOARD


def test_pick_replaces_an_existing_pick_in_place(
    board: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board.write_text(BOARD.replace("    takes: 3\n", "    takes: 3\n    pick: 1  # why\n"))
    assert main(["pick", str(board), "closeup.take3"]) == 0
    assert "(was 1)" in capsys.readouterr().out
    assert board.read_text() == BOARD.replace(
        "    takes: 3\n", "    takes: 3\n    pick: 3  # why\n"
    )


def test_pick_in_a_flow_mapping(board: Path) -> None:
    assert main(["pick", str(board), "flow.take2"]) == 0
    assert board.read_text() == BOARD.replace(
        "{id: flow, takes: 2, prompt: Gulls}", "{id: flow, takes: 2, pick: 2, prompt: Gulls}"
    )
    assert chosen(board)[2] == "flow.take2"


def test_pick_keeps_windows_line_endings(board: Path) -> None:
    board.write_bytes(BOARD.replace("\n", "\r\n").encode())
    assert main(["pick", str(board), "closeup.take2"]) == 0
    data = board.read_bytes()
    assert b"    takes: 3\r\n    pick: 2\r\n" in data
    assert data.count(b"\n") == data.count(b"\r\n")


def test_takes_from_defaults_get_pick_after_the_id(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(
        "version: 1\ndefaults: {model: viduq3t-540p, duration: 3, takes: 2}\nshots:\n"
        "  - id: a\n    prompt: x\n"
    )
    assert main(["pick", str(path), "a.take2"]) == 0
    assert "  - id: a\n    pick: 2\n    prompt: x\n" in path.read_text()


@pytest.mark.parametrize(
    ("take", "message"),
    [
        ("closeup.take4", "shot 'closeup' has takes 1-3; there is no 'closeup.take4'"),
        ("closup.take1", "no shot 'closup' (did you mean 'closeup'?)"),
        ("opening.take1", "shot 'opening' has no takes"),
        ("closeup", "name a take, ID.takeK: 'closeup.take1' ... 'closeup.take3'"),
        ("closeup.take0", "no shot 'closeup.take0'"),
    ],
)
def test_bad_ids_are_refused_clearly_and_change_nothing(
    board: Path, capsys: pytest.CaptureFixture[str], take: str, message: str
) -> None:
    assert main(["pick", str(board), take]) == 2
    assert message in capsys.readouterr().err
    assert board.read_text() == BOARD


def test_a_pick_beyond_the_takes_is_a_validation_error(
    board: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board.write_text(BOARD.replace("    takes: 3\n", "    takes: 3\n    pick: 5\n"))
    assert main(["validate", str(board)]) == 2
    out = capsys.readouterr().out
    assert f"{board}:9:5: shot 'closeup': pick 5 is not a take of this shot: it has 3" in out
    board.write_text(BOARD.replace("    takes: 3\n", "    takes: 3\n    pick: 0\n"))
    assert main(["validate", str(board)]) == 2
    assert "pick" in capsys.readouterr().out


def test_an_invalid_storyboard_is_not_edited(
    board: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = BOARD.replace("prompt: The end", "prompt: ''")
    board.write_text(broken)
    assert main(["pick", str(board), "closeup.take2"]) == 2
    assert "shot 'later'" in capsys.readouterr().err
    assert board.read_text() == broken


def test_pick_writes_no_file_through_a_link_planted_at_a_guessable_temporary_name(
    board: Path, tmp_path: Path
) -> None:
    # The old temporary name was .NAME.PID.tmp: a link planted there was written through.
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    (tmp_path / f".{board.name}.{os.getpid()}.tmp").symlink_to(victim)
    assert main(["pick", str(board), "closeup.take2"]) == 0
    assert victim.read_text(encoding="utf-8") == "keep me"
    assert not board.is_symlink()
    assert chosen(board) == ["opening", "closeup.take2", "flow.take1", "later"]
