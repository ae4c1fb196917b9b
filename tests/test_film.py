"""The film: placeholder clips of simulated runs, `cut` to one MP4 or a timeline.

Checked with PyAV and OpenTimelineIO themselves: streams, durations, frame
counts, the order of the clips (the film's packets are the clips' packets), and
timelines read back.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import av
import opentimelineio as otio
import pytest
import yaml

import vidu_pipe
from vidu_pipe.cli import main
from vidu_pipe.film.join import mp4_top_level_boxes, probe
from vidu_pipe.manifest.history import Cache
from vidu_pipe.manifest.store import load_manifest
from vidu_pipe.simulator import Simulator
from vidu_pipe.simulator._video import placeholder_size

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.usefixtures("quick_simulate"),  # simulated runs at 1/500 (conftest)
]

KEY = "sk-film-test"
RELAY_SEED = 3  # for the relay fixture (conftest.py)


def write_board(folder: Path, shots: list[dict[str, Any]], name: str = "film") -> Path:
    doc = {
        "version": 1,
        "name": "harbour",
        "defaults": {"model": "viduq3t-540p", "duration": 2, "aspect_ratio": "16:9"},
        "shots": shots,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


THREE = [
    {"id": "open", "prompt": "A harbour at dawn", "duration": 3},
    {"id": "gulls", "prompt": "Gulls over the water", "takes": 2, "pick": 2},
    {"id": "close", "prompt": "The lamp goes out", "duration": 1},
]


def simulate(board: Path) -> None:
    assert main(["run", str(board), "--simulate", "--quiet", "--rate", "0"]) == 0


def packets(path: Path) -> list[str]:
    with av.open(str(path)) as container:
        return [hashlib.sha256(bytes(p)).hexdigest() for p in container.demux(video=0) if p.size]


def clip_of(board: Path, shot_id: str) -> Path:
    shot = vidu_pipe.load(board).shot(shot_id)
    found = Cache.beside(board).video_for(shot.fingerprint)
    assert found is not None, shot_id
    return found


def test_a_simulated_run_keeps_a_placeholder_clip_of_each_shot(tmp_path: Path) -> None:
    board = write_board(tmp_path, [*THREE, {"id": "tall", "prompt": "x", "aspect_ratio": "9:16"}])
    simulate(board)
    for shot in vidu_pipe.load(board).shots:
        info = probe(clip_of(board, shot.id))
        assert info.codec == "h264" and info.pix_fmt == "yuv420p"
        assert info.duration == pytest.approx(shot.duration)
        assert info.frames == shot.duration * 24
        assert (info.width, info.height) == placeholder_size(
            shot.model, shot.request["aspect_ratio"]
        )
    assert probe(clip_of(board, "tall")).height > probe(clip_of(board, "tall")).width
    boxes = mp4_top_level_boxes(clip_of(board, "open"))
    assert boxes.index("moov") < boxes.index("mdat")  # plays while loading


def test_cut_joins_the_chosen_takes_in_order_without_reencoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = write_board(tmp_path, THREE)
    simulate(board)
    capsys.readouterr()
    film = tmp_path / "out" / "film.mp4"
    assert main(["cut", str(board), "-o", str(film)]) == 0
    out = capsys.readouterr().out
    assert f"{film}: film of 3 shots, 6.00 s" in out
    assert "joined without re-encoding" in out
    with av.open(str(film)) as container:
        assert len(container.streams.video) == 1 and not container.streams.audio
        stream = container.streams.video[0]
        assert float(stream.duration * stream.time_base) == pytest.approx(6.0)
        assert stream.frames == 6 * 24
    # The film's packets are the clips' packets: open, gulls.take2 (picked), close.
    order = ["open", "gulls.take2", "close"]
    assert packets(film) == [p for sid in order for p in packets(clip_of(board, sid))]
    assert packets(clip_of(board, "gulls.take1")) != packets(clip_of(board, "gulls.take2"))


def test_pick_changes_the_take_in_the_cut(tmp_path: Path) -> None:
    board = write_board(tmp_path, THREE)
    simulate(board)
    assert main(["pick", str(board), "gulls.take1"]) == 0
    film = tmp_path / "film.mp4"
    assert main(["cut", str(board), "-o", str(film), "--only", "gulls"]) == 0
    assert packets(film) == packets(clip_of(board, "gulls.take1"))
    # A take named exactly is cut even when it is not the pick.
    assert main(["cut", str(board), "-o", str(film), "--only", "gulls.take2"]) == 0
    assert packets(film) == packets(clip_of(board, "gulls.take2"))


def test_mixed_sizes_are_reencoded_to_the_first_clip_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shots = [
        {"id": "wide", "prompt": "a", "model": "viduq3t-720p"},
        {"id": "tall", "prompt": "b", "aspect_ratio": "9:16"},
        {"id": "small", "prompt": "c", "duration": 1},
    ]
    board = write_board(tmp_path, shots)
    simulate(board)
    capsys.readouterr()
    film = tmp_path / "film.mp4"
    assert main(["cut", str(board), "-o", str(film)]) == 0
    out = capsys.readouterr().out
    width, height = placeholder_size("viduq3t-720p", "16:9")
    assert f"re-encoded to {width}x{height} (the first clip's format)" in out
    assert "shot 'tall': size differs from shot 'wide'" in out
    info = probe(film)
    assert (info.width, info.height) == (width, height)
    assert info.duration == pytest.approx(5.0) and info.frames == 5 * 24


def test_cut_as_an_otio_timeline(tmp_path: Path) -> None:
    board = write_board(tmp_path, THREE)
    simulate(board)
    path = tmp_path / "cut.otio"
    assert main(["cut", str(board), "--format", "otio", "-o", str(path)]) == 0
    timeline = otio.adapters.read_from_file(str(path))
    assert timeline.name == "harbour"
    clips = list(timeline.find_clips())
    assert [c.name for c in clips] == ["open", "gulls.take2", "close"]
    assert [c.duration().to_seconds() for c in clips] == [3.0, 2.0, 1.0]
    assert clips[1].metadata["vidu_pipe"]["prompt"] == "Gulls over the water"
    for clip in clips:
        target = clip.media_reference.target_url
        assert target.startswith("file://") and Path(target[7:]).is_file()


@pytest.mark.parametrize(
    ("fmt", "needle"), [("edl", "FROM CLIP NAME:  gulls.take2"), ("fcpxml", "gulls.take2")]
)
def test_cut_as_edl_and_fcpxml(tmp_path: Path, fmt: str, needle: str) -> None:
    board = write_board(tmp_path, THREE)
    simulate(board)
    path = tmp_path / f"cut.{fmt}"
    assert main(["cut", str(board), "--format", fmt, "-o", str(path)]) == 0
    assert needle in path.read_text()
    names = [c.name for c in otio.adapters.read_from_file(str(path)).find_clips()]
    assert names == ["open", "gulls.take2", "close"]


def test_a_missing_adapter_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    board = write_board(tmp_path, THREE)
    monkeypatch.setattr(otio.adapters, "available_adapter_names", lambda: ["otio_json"])
    assert main(["cut", str(board), "--format", "edl", "-o", str(tmp_path / "x.edl")]) == 3
    assert "pip install 'vidu-pipe[editors]'" in capsys.readouterr().err
    assert not (tmp_path / "x.edl").exists()


def test_shots_without_a_video_are_each_named_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = write_board(tmp_path, THREE)
    assert main(["run", str(board), "--simulate", "--quiet", "--only", "open"]) == 0
    capsys.readouterr()
    film = tmp_path / "film.mp4"
    assert main(["cut", str(board), "-o", str(film)]) == 1
    err = capsys.readouterr().err
    assert "2 shots of the cut have no video" in err
    assert "shot 'gulls.take2': not made yet (run it first)" in err
    assert "shot 'close': not made yet (run it first)" in err
    assert "open" not in err.split("video:")[1]
    assert not film.exists()


def test_videos_not_downloaded_are_fetched_into_the_cache_first(
    relay: tuple[Simulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim, url = relay
    board = write_board(tmp_path, THREE)
    args = ["run", str(board), "--base-url", url, "--quiet", "--rate", "0"]
    assert main([*args, "--poll-interval", "0.05"]) == 0
    assert sim.stats().downloads == {}
    capsys.readouterr()
    film = tmp_path / "film.mp4"
    assert main(["cut", str(board), "-o", str(film)]) == 0
    assert "fetched into the cache first: open, gulls.take2, close" in capsys.readouterr().out
    assert sum(sim.stats().downloads.values()) == 3
    assert probe(film).duration == pytest.approx(6.0)
    # Now in the cache: a second cut fetches nothing, even once the relay is gone.
    assert main(["cut", str(board), "-o", str(film)]) == 0
    assert "fetched" not in capsys.readouterr().out
    assert sum(sim.stats().downloads.values()) == 3
    manifest = load_manifest(tmp_path / "film.manifest.json")
    assert manifest is not None and json.dumps(manifest.to_json()).count("download") == 0


@pytest.mark.parametrize("fmt", ["mp4", "otio"])
def test_cut_writes_nothing_through_a_link_at_its_output_or_a_guessable_temporary_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    board = write_board(tmp_path, THREE)
    simulate(board)
    capsys.readouterr()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    film = tmp_path / f"film.{fmt}"
    # The old temporary name (.STEM.PID.tmp.SUFFIX), opened by PyAV/OTIO for writing.
    (tmp_path / f".{film.stem}.{os.getpid()}.tmp{film.suffix}").symlink_to(victim)
    assert main(["cut", str(board), "-o", str(film), "--format", fmt]) == 0
    assert victim.read_text(encoding="utf-8") == "keep me" and film.stat().st_size > 0
    film.unlink()
    film.symlink_to(victim)
    assert main(["cut", str(board), "-o", str(film), "--format", fmt]) == 3
    assert "symbolic link" in capsys.readouterr().err
    assert film.is_symlink() and victim.read_text(encoding="utf-8") == "keep me"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name and not p.is_symlink()]
