"""Help and error texts say what they mean, literally (found by trying the README as a user)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidu_pipe.cli import main

pytestmark = pytest.mark.usefixtures("quick_simulate")  # simulated runs at 1/500 (conftest)

REPO = Path(__file__).resolve().parent.parent


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_square_brackets_in_help_are_text_not_markup(capsys: pytest.CaptureFixture[str]) -> None:
    # rich-argparse read "[editors]" as a style tag and printed "pip install 'vidu-pipe'".
    assert "pip install 'vidu-pipe[editors]'" in _help(capsys, "cut")


def test_plan_help_names_every_action(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "plan")
    for action in ("skip", "restore", "resume", "hold", "create"):
        assert action in text


def test_an_unwritable_download_folder_is_named_as_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    board = tmp_path / "board.yaml"
    board.write_text((REPO / "pipelines" / "text-to-video.yaml").read_text())
    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    code = main(["run", "board.yaml", "--simulate", "--download", "afile/x"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--download 'afile/x': cannot write there" in err
    assert "PosixPath" not in err
    assert not (tmp_path / "board.manifest.json").exists()
