"""`vidu-pipe report`: the storyboard as a self-contained HTML contact sheet.

The scenario: the lighthouse short, run against the simulator with downloads,
then its manifest edited into every state a report must show (failed, running,
stale, pending, a missing download, an expired URL, an orphan), and one prompt
carrying markup. The page is checked as text, and rendered in headless Chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

import vidu_pipe
from vidu_pipe.api import SIMULATOR_BASE_URL
from vidu_pipe.cli import main
from vidu_pipe.execution.client import DEFAULT_BASE_URL
from vidu_pipe.execution.runner import RunOptions
from vidu_pipe.manifest.store import load_manifest
from vidu_pipe.views.report import render_report

pytestmark = pytest.mark.usefixtures("quick_simulate")  # simulated runs at 1/500 (conftest)

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)
EVIL = '<script>alert("pwned")</script> & "quotes"'

# What the scenario leaves each shot as, in storyboard order.
EXPECTED = {
    "establishing": "completed",
    "keeper-intro": "completed",
    "storm-builds": "stale",
    "lamp-fails": "failed",
    "repair": "running",
    "relight": "completed",
    "beam.take1": "completed",
    "beam.take2": "completed",
    "beam.take3": "completed",
    "dawn": "pending",
}


@dataclass(frozen=True)
class Scenario:
    board: Path
    manifest: Path
    out: Path


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    root = tmp_path_factory.mktemp("report")
    folder = root / "board"
    folder.mkdir()
    shutil.copytree(REPO / "pipelines" / "templates", folder / "templates")
    text = (REPO / "pipelines" / "lighthouse.yaml").read_text(encoding="utf-8")
    assert "lantern in hand" in text
    board = folder / "lighthouse.yaml"
    board.write_text(text.replace("lantern in hand", f"lantern in hand {EVIL}"), "utf-8")

    # At 1/500 as quick_simulate (conftest.py), which a module-scoped fixture cannot use.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("vidu_pipe.api.SIMULATE_TIME_SCALE", 0.002)
        result = vidu_pipe.run(
            board,
            simulate=True,
            options=RunOptions(concurrency=10, rate_per_minute=0, download_dir=folder / "videos"),
        )
    assert result.exit_code == 0, result

    manifest = folder / "lighthouse.manifest.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    assert not (folder / "lighthouse.manifest.json.journal").exists()
    # A real relay's manifest (the simulated label has its own test below).
    data["base_url"] = DEFAULT_BASE_URL
    data["updated_at"] = _stamp(NOW - timedelta(minutes=5))
    shots = data["shots"]
    for entry in shots.values():
        entry["finished_at"] = _stamp(NOW - timedelta(hours=2))
        entry["submitted_at"] = _stamp(NOW - timedelta(hours=2, minutes=4))
    shots["lamp-fails"].update(
        status="failed",
        video_url=None,
        download=None,
        error="content moderation refused the prompt <b>(code 4003)</b>",
    )
    shots["repair"].update(
        status="submitted", video_url=None, download=None, finished_at=None, progress=45
    )
    (folder / "videos" / "beam.take3.mp4").unlink()  # a download gone missing
    shots["beam.take2"].update(finished_at=_stamp(NOW - timedelta(hours=30)))
    shots["beam.take2"].pop("download")  # never downloaded, and its URL has expired
    del shots["dawn"]
    shots["old-teaser"] = dict(shots["relight"], task_id="task_orphan")
    manifest.write_text(json.dumps(data, indent=2), encoding="utf-8")
    # Changed after its video was made: stale.
    board.write_text(
        board.read_text("utf-8").replace("lightning far off", "lightning close by"), "utf-8"
    )
    return Scenario(board, manifest, root / "out" / "report.html")


class _Cards(HTMLParser):
    """The cards of a report (or of Chromium's DOM): id, state, badge text, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, str]] = []
        self.tags: list[str] = []
        self.videos: list[str] = []
        self.counts: dict[str, str] = {}
        self._in: str | None = None
        self._count: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "article":
            self.cards.append({"id": a["data-shot"], "state": a["data-state"], "badge": ""})
        elif tag == "video":
            self.videos.append(a.get("src", ""))
        elif tag == "span" and "badge" in a.get("class", "").split():
            self._in = "badge"
        elif tag == "h2":
            self._in = "h2"
        elif "data-count" in a:
            self._count = a["data-count"]
        elif tag == "span" and a.get("class") == "n" and self._count:
            self._in = "count"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("span", "h2"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "badge":
            self.cards[-1]["badge"] += data
        elif self._in == "h2":
            self.cards[-1]["h2"] = self.cards[-1].get("h2", "") + data
        elif self._in == "count" and self._count:
            self.counts[self._count] = data
            self._count = None


def _parse(text: str) -> _Cards:
    parser = _Cards()
    parser.feed(text)
    return parser


@pytest.fixture(scope="module")
def page(scenario: Scenario) -> str:
    assert main(["report", str(scenario.board), "-o", str(scenario.out)]) == 0
    return scenario.out.read_text(encoding="utf-8")


def test_every_shot_in_storyboard_order_with_its_state(page: str) -> None:
    cards = _parse(page).cards
    assert [(c["id"], c["state"]) for c in cards] == list(EXPECTED.items())
    assert [c["h2"] for c in cards] == list(EXPECTED)
    running = next(c for c in cards if c["id"] == "repair")
    assert running["badge"] == "running 45%"


def test_summary_counts_seconds_and_models(page: str) -> None:
    counts = _parse(page).counts
    assert counts == {
        "completed": "6",
        "failed": "1",
        "running": "1",
        "pending": "1",
        "stale": "1",
        "orphaned": "1",
    }
    # Completed: establishing 8 + keeper-intro 5 + relight 6 + 3 beam takes x 5 = 34 s.
    assert "34 s</span>" in page
    assert "of 55 s planned" in page
    for model in ("viduq3p-1080p", "viduq3p-720p", "viduq3t-720p", "viduq3t-1080p"):
        assert model in page


def test_user_text_is_escaped(page: str) -> None:
    assert "<script" not in page
    # Jinja's autoescape (markupsafe) writes a double quote as &#34;.
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt; &amp; &#34;quotes&#34;" in page
    assert "&lt;b&gt;(code 4003)&lt;/b&gt;" in page
    assert "<b>(code" not in page


def test_self_contained(page: str) -> None:
    tags = set(_parse(page).tags)
    assert not tags & {"script", "link", "iframe", "object", "embed"}
    # Input images are thumbnails: <img> of the shots' own http(s) URLs, loaded lazily.
    images = re.findall(r"<img [^>]*>", page)
    assert images and all('loading="lazy"' in i for i in images)
    assert all(re.search(r'src="https://cdn\.example\.com/', i) for i in images)
    style = page[page.index("<style>") : page.index("</style>")]
    assert "url(" not in style
    assert "@import" not in style
    assert "@font-face" not in style
    # The only web addresses are the shots' own (image inputs and video URLs).
    hosts = set(re.findall(r'(?:href|src)="https?://([^/"]+)', page))
    assert hosts <= {"cdn.example.com", "simulator.vidu-pipe.invalid"}


def test_downloaded_videos_are_linked_relative_to_the_report(scenario: Scenario, page: str) -> None:
    videos = _parse(page).videos
    local = [v for v in videos if not v.startswith("http")]
    assert "../board/videos/establishing.mp4" in local
    for src in local:
        assert (scenario.out.parent / src).is_file(), src
    # beam.take3's download is gone and beam.take2 never had one: their URLs instead.
    assert sum(v.startswith("http://simulator.vidu-pipe.invalid/") for v in videos) == 2
    assert "the downloaded file videos/beam.take3.mp4 is missing" in page


def test_expired_url_is_noted(scenario: Scenario) -> None:
    board = vidu_pipe.load(scenario.board)
    text = render_report(
        board,
        load_manifest(scenario.manifest),
        manifest_path=scenario.manifest,
        output=scenario.out,
        now=NOW,
    )
    card = text[text.index('data-shot="beam.take2"') :]
    card = card[: card.index("</article>")]
    assert "this URL expired: the task finished 1d ago" in card
    other = text[text.index('data-shot="relight"') :]
    assert "expired" not in other[: other.index("</article>")]


def test_stale_failed_and_orphaned_are_explained(page: str) -> None:
    assert "changed since this video was made" in page
    assert "content moderation refused the prompt" in page
    assert "In the manifest, no longer in the storyboard" in page
    assert 'data-orphan="old-teaser"' in page
    assert "task_orphan" in page


def test_no_manifest_means_every_shot_pending(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    board = REPO / "pipelines" / "beach-teaser.yaml"
    assert (
        main(["report", str(board), "-o", str(out), "--manifest", str(tmp_path / "no.json")]) == 0
    )
    cards = _parse(out.read_text("utf-8")).cards
    assert [c["id"] for c in cards] == [s.id for s in vidu_pipe.load(board).shots]
    assert {c["state"] for c in cards} == {"pending"}
    assert "(none yet)" in out.read_text("utf-8")


def test_manifest_option_and_simulated_label(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(scenario.manifest.read_text("utf-8"))
    data["base_url"] = SIMULATOR_BASE_URL
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps(data), "utf-8")
    out = tmp_path / "r.html"
    assert main(["report", str(scenario.board), "--manifest", str(other), "-o", str(out)]) == 0
    assert f"{out}: contact sheet of 10 shots" in capsys.readouterr().out
    text = out.read_text("utf-8")
    assert '<span class="flag">simulated</span>' in text
    # The --download files sit beside the scenario's manifest, not beside this one; the
    # clips the simulated run made are in the results cache beside the storyboard.
    videos = _parse(text).videos
    assert videos and all("/.vidu-pipe/videos/" in v for v in videos)
    assert not any(v.startswith("http") for v in videos)
    # Without the cache: nothing to play, and the card says why.
    board = vidu_pipe.load(scenario.board)
    bare = render_report(
        board,
        load_manifest(other),
        manifest_path=other,
        output=out,
        cache_dir=tmp_path / "no-cache",
    )
    assert "simulated run: its URL holds no video" in bare
    assert _parse(bare).videos == []


def test_invalid_storyboard_exits_2_with_the_usual_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nshots:\n  - id: a\n    prompt: ''\n    model: nope\n", "utf-8")
    out = tmp_path / "r.html"
    assert main(["report", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(bad))}:\d+:\d+: shot 'a':", err)
    assert not out.exists()


# --- in a browser ------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[list[str]]:
    binary = _chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must render the report: install Chromium (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium); CI runs this test")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    yield [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]


def _browse(command: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_rendered_in_chromium(
    scenario: Scenario, page: str, chromium: list[str], tmp_path: Path
) -> None:
    url = scenario.out.resolve().as_uri()
    dom = _browse([*chromium, "--dump-dom", url]).stdout
    parsed = _parse(dom)
    assert [(c["id"], c["state"]) for c in parsed.cards] == list(EXPECTED.items())
    assert "script" not in parsed.tags  # the prompt's markup stayed text
    assert EVIL.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in dom

    shot = tmp_path / "report.png"
    _browse([*chromium, f"--screenshot={shot}", "--window-size=1280,2000", url])
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # a page, not a blank
    keep = os.environ.get("VIDU_PIPE_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")
        shutil.copy(scenario.out, Path(keep) / "report.html")


# --- a simulated run's report plays its placeholder clips --------------------------------

HARBOUR = """\
version: 1
name: harbour
defaults: {model: viduq3t-540p, duration: 2}
assets:
  quay: https://cdn.example.com/quay.png
shots:
  - id: open
    prompt: A harbour at dawn, mist over the water
    duration: 3
  - id: gulls
    prompt: Gulls circling the lighthouse
    takes: 3
    pick: 2
  - id: boat
    image: quay
    prompt: A small boat leaves the quay
    duration: 4
"""

# Injected into a copy of the report (the report itself has no script): once every
# <video> has loaded its metadata, each gets data-loaded (its duration, or "error"), and
# the body gets the cards' boxes as laid out.
PROBE = """<script>
(function () {
  const videos = [...document.querySelectorAll("video")];
  let left = videos.length;
  const boxes = {};
  document.querySelectorAll("article").forEach((a) => {
    const b = a.getBoundingClientRect();
    boxes[a.dataset.shot] = [Math.round(b.left), Math.round(b.top)];
  });
  document.body.setAttribute("data-boxes", JSON.stringify(boxes));
  const settle = (v, value) => {
    v.setAttribute("data-loaded", value);
    if (--left === 0) document.body.setAttribute("data-probe", "done");
  };
  videos.forEach((v) => {
    v.addEventListener("loadedmetadata", () => settle(v, String(v.duration)));
    v.addEventListener("error", () => settle(v, "error"));
    v.load();
  });
})();
</script>"""


def test_a_simulated_run_plays_in_chromium_with_takes_side_by_side(
    tmp_path: Path, chromium: list[str]
) -> None:
    board = tmp_path / "harbour.yaml"
    board.write_text(HARBOUR, encoding="utf-8")
    assert main(["run", str(board), "--simulate", "--quiet", "--rate", "0"]) == 0
    out = tmp_path / "out" / "report.html"
    assert main(["report", str(board), "-o", str(out)]) == 0
    page = out.read_text("utf-8")
    assert '<img src="https://cdn.example.com/quay.png" loading="lazy"' in page
    probe = out.with_name("probe.html")
    probe.write_text(page.replace("</body>", PROBE + "</body>"), "utf-8")
    dom = _browse(
        [
            *chromium,
            "--virtual-time-budget=15000",
            "--window-size=1280,1600",
            "--dump-dom",
            probe.as_uri(),
        ]
    ).stdout
    assert 'data-probe="done"' in dom
    durations = dict(
        re.findall(r'<article[^>]*data-shot="([^"]+)"[^>]*>.*?data-loaded="([^"]+)"', dom, re.S)
    )
    assert durations == {
        "open": "3",
        "gulls.take1": "2",
        "gulls.take2": "2",
        "gulls.take3": "2",
        "boat": "4",
    }
    boxes = json.loads(
        re.search(r'data-boxes="([^"]+)"', dom).group(1).replace("&quot;", '"')  # type: ignore[union-attr]
    )
    takes = [boxes[f"gulls.take{k}"] for k in (1, 2, 3)]
    assert len({top for _, top in takes}) == 1  # one row
    assert takes[0][0] < takes[1][0] < takes[2][0]  # side by side, in order
    assert boxes["boat"][1] > takes[0][1]
    chosen = re.findall(r'data-shot="(gulls\.take\d)"[^>]*data-chosen="true"', dom)
    assert chosen == ["gulls.take2"]
    assert dom.count("★ picked") == 1

    shot = tmp_path / "harbour.png"
    _browse(
        [
            *chromium,
            f"--screenshot={shot}",
            "--window-size=1280,1900",
            "--virtual-time-budget=5000",
            out.as_uri(),
        ]
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("VIDU_PIPE_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "harbour.png")
