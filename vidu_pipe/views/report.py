"""Report: the storyboard as an HTML contact sheet (``vidu-pipe report FILE -o report.html``).

One self-contained page from the Jinja template ``templates/report.html.j2``
(autoescaped: prompts and errors are user and relay text; it ships in the wheel):
inline CSS, no script, no web fonts, so that it works offline, opened from disk, and
can be attached to a review. Shots come in storyboard order, each a card with its
id, tags, mode, model, duration, the prompt it renders to, thumbnails of its input
images (lazy-loaded from their URLs), its state (as ``vidu-pipe status`` computes
it), its error and a video player. The takes of a shot sit side by side, the chosen
one (``pick``, take 1 by default) marked. The player plays, in this order:

- the ``--download`` file the manifest records, while it is on disk;
- the video of that request in the results cache (``.vidu-pipe/videos/``): a
  download, or the placeholder clip a simulated run made;
- else the relay's URL, with a note once it is past its 24-hour life;

each file by a path relative to the report (a folder of report plus videos can
move). Only ``http(s)`` URLs become links, sources or images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vidu_pipe._version import __version__
from vidu_pipe.errors import UsageError
from vidu_pipe.fileio import write_atomic
from vidu_pipe.manifest.history import Cache
from vidu_pipe.manifest.store import Manifest, is_run_file
from vidu_pipe.storyboard.model import Shot, Storyboard
from vidu_pipe.timestamps import parse_time
from vidu_pipe.urls import http_url
from vidu_pipe.views.status import STATES, ShotStatus, StatusReport, compute, format_age

__all__ = ["render_report", "write_report"]


def _relative_href(target: Path, start: Path) -> str:
    try:
        rel = os.path.relpath(target, start)
    except ValueError:  # another drive (Windows): fall back to an absolute file URL
        return target.resolve().as_uri()
    return quote(Path(rel).as_posix())


def _ago(seconds: float) -> str:
    text = format_age(seconds)
    return text if text == "just now" else f"{text} ago"


@cache
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )
    return env.get_template("report.html.j2")


@dataclass
class _Card:
    index: int
    id: str
    state: str
    badge: str
    take: int | None
    chosen: bool
    written: bool
    duration: int
    aspect: str
    ratio: str
    empty: str
    src: str | None
    facts: list[str]
    tags: tuple[str, ...]
    prompt: str
    inputs: list[dict[str, str | None]]
    notes_text: str | None
    error: str | None
    notes: list[str]
    task: dict[str, Any] | None


@dataclass
class _Group:
    source_id: str
    takes: bool
    pick: int = 1
    written: bool = False
    cards: list[_Card] = field(default_factory=list)


class _Sheet:
    def __init__(self, report: StatusReport, output: Path, now: datetime, videos: Cache) -> None:
        self.report = report
        self.out_dir = output.parent
        self.now = now
        self.asset_names = {url: name for name, url in report.storyboard.assets.items()}
        self.base = report.manifest_path.parent
        self.videos = videos

    def _inputs(self, shot: Shot) -> list[dict[str, str | None]]:
        req = shot.request
        urls: list[tuple[str, str]] = []
        if "reference_image_urls" in req:
            urls += [(f"@Image{i}", str(u)) for i, u in enumerate(req["reference_image_urls"], 1)]
        elif "image" in req:
            urls.append(("image", str(req["image"])))
            if "last_image" in req:
                urls.append(("last frame", str(req["last_image"])))
        return [
            {
                "label": label,
                "name": self.asset_names.get(url, url.rsplit("/", 1)[-1] or url),
                "url": http_url(url),
            }
            for label, url in urls
        ]

    def _media(self, row: ShotStatus) -> tuple[str | None, list[str]]:
        """The player's source (or None) and the notes it needs."""
        notes: list[str] = []
        entry = row.entry
        if entry is None or row.state == "orphaned":
            return None, notes
        if entry.download is not None:
            saved = self.base / entry.download.path
            if saved.is_file():
                return _relative_href(saved, self.out_dir), notes
            notes.append(f"the downloaded file {entry.download.path} is missing")
        if entry.status != "completed":
            return None, notes
        record = self.videos.get(entry.fingerprint)
        if record is not None and record.simulated == self.report.simulated:
            cached = self.videos.video_of(record)
            if cached is not None:
                return _relative_href(cached, self.out_dir), notes
        if not entry.video_url:
            return None, notes
        if self.report.simulated:
            notes.append("simulated run: its URL holds no video and no clip is in the cache")
            return None, notes
        finished = parse_time(entry.finished_at)
        if row.url_expired and finished is not None:
            age = _ago((self.now - finished).total_seconds())
            notes.append(
                f"this URL expired: the task finished {age} and the relay's video URLs "
                "live about 24 hours (use run --download to keep videos)"
            )
        return http_url(entry.video_url), notes

    @staticmethod
    def _state_label(row: ShotStatus) -> str:
        if row.state == "running" and row.entry is not None and row.entry.progress is not None:
            return f"running {row.entry.progress}%"
        return row.state

    @staticmethod
    def _empty_label(row: ShotStatus) -> str:
        return {
            "pending": "not made yet",
            "running": "generating",
            "failed": "no video",
            "unknown": "no answer: may be billed",
        }.get(row.state, "no video here")

    def card(self, index: int, row: ShotStatus) -> _Card:
        shot = row.shot
        assert shot is not None
        req = shot.request
        aspect = str(req.get("aspect_ratio", "16:9"))
        w, _, h = aspect.partition(":")
        src, notes = self._media(row)
        facts = [shot.mode, shot.model, f"{shot.duration} s", aspect]
        seed = req.get("extra_body", {}).get("seed")
        if seed is not None:
            facts.append(f"seed {seed}")
        if shot.take is not None:
            facts.append(f"take {shot.take}")
        if row.changed and row.state == "stale":
            notes.insert(0, "changed since this video was made: the next run makes it again")
        elif row.changed and row.state == "running":
            notes.insert(0, "changed since: the next run abandons this task")
        return _Card(
            index=index,
            id=shot.id,
            state=row.state,
            badge=self._state_label(row),
            take=shot.take,
            chosen=shot.chosen,
            written=shot.pick is not None,
            duration=shot.duration,
            aspect=aspect,
            ratio=f"{w} / {h}" if w.isdigit() and h.isdigit() else "16 / 9",
            empty=self._empty_label(row),
            src=src,
            facts=facts,
            tags=shot.tags,
            prompt=shot.prompt,
            inputs=self._inputs(shot),
            notes_text=shot.notes,
            error=row.error,
            notes=notes,
            task=self._task(row),
        )

    def _task(self, row: ShotStatus) -> dict[str, Any] | None:
        e = row.entry
        if e is None:
            return None
        finished = parse_time(e.finished_at)
        submitted = parse_time(e.submitted_at)
        when = None
        if finished is not None:
            when = f"finished {_ago((self.now - finished).total_seconds())}"
        elif submitted is not None:
            when = f"submitted {_ago((self.now - submitted).total_seconds())}"
        web = http_url(e.video_url)
        return {
            "id": e.task_id,
            "when": when,
            "attempts": e.attempts if e.attempts > 1 else None,
            "url": web if web and not self.report.simulated else None,
        }

    def groups(self) -> list[_Group]:
        groups: list[_Group] = []
        rows = [x for x in self.report.rows if x.shot is not None]
        for i, row in enumerate(rows, 1):
            shot = row.shot
            assert shot is not None
            card = self.card(i, row)
            last = groups[-1] if groups else None
            if shot.take is None:
                groups.append(_Group(shot.id, False, cards=[card]))
            elif last is not None and last.takes and last.source_id == shot.source_id:
                last.cards.append(card)
            else:
                groups.append(
                    _Group(
                        shot.source_id,
                        True,
                        pick=shot.pick or 1,
                        written=shot.pick is not None,
                        cards=[card],
                    )
                )
        return groups

    def summary(self) -> dict[str, Any]:
        counts = self.report.counts()
        shots = [row.shot for row in self.report.rows if row.shot is not None]
        total = len(shots)
        done = sum(
            row.shot.duration
            for row in self.report.rows
            if row.shot is not None and row.state == "completed"
        )
        models: dict[str, tuple[int, int]] = {}
        for shot in shots:
            n, s = models.get(shot.model, (0, 0))
            models[shot.model] = (n + 1, s + shot.duration)
        return {
            "total": total,
            "states": [
                {"state": state, "count": counts[state]}
                for state in STATES
                if state not in ("orphaned", "unknown") or counts[state]
            ],
            "done_seconds": done,
            "planned": sum(shot.duration for shot in shots),
            "models": [
                {"model": m, "count": n, "seconds": s} for m, (n, s) in sorted(models.items())
            ],
            "meter": [
                {
                    "state": state,
                    "count": counts[state],
                    "width": f"{100 * counts[state] / total:.3f}",
                }
                for state in STATES
                if counts[state] and state != "orphaned" and total
            ],
        }

    def orphans(self) -> list[dict[str, str | None]]:
        out = []
        for row in self.report.rows:
            if row.shot is None:
                e = row.entry
                out.append(
                    {
                        "id": row.id,
                        "status": e.status if e is not None else "",
                        "task_id": row.task_id or "",
                        "video_url": http_url(row.video_url),
                    }
                )
        return out

    def page(self) -> str:
        r = self.report
        m = r.manifest
        text: str = _template().render(
            version=__version__,
            name=r.storyboard.name,
            storyboard_file=r.storyboard.path.name,
            manifest_file=r.manifest_path.name,
            manifest_found=m is not None,
            updated_at=m.updated_at if m is not None else None,
            simulated=r.simulated,
            stamp=self.now.strftime("%Y-%m-%d %H:%M UTC"),
            summary=self.summary(),
            groups=self.groups(),
            orphans=self.orphans(),
        )
        return text.lstrip()


def render_report(
    storyboard: Storyboard,
    manifest: Manifest | None,
    *,
    manifest_path: Path,
    output: Path,
    now: datetime | None = None,
    cache_dir: Path | None = None,
) -> str:
    """The contact sheet as one HTML document. ``output`` is where it will be written
    (video files are linked relative to its folder); ``cache_dir`` is the results cache
    (default: ``.vidu-pipe/`` beside the storyboard)."""
    moment = now if now is not None else datetime.now(timezone.utc)
    report = compute(storyboard, manifest, manifest_path, now=moment)
    videos = Cache(cache_dir) if cache_dir is not None else Cache.beside(storyboard.path)
    return _Sheet(report, output, moment, videos).page()


def write_report(
    storyboard: Storyboard,
    manifest: Manifest | None,
    *,
    manifest_path: Path,
    output: Path,
    now: datetime | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Render the contact sheet and write it to ``output`` (atomically, never through a
    link); returns ``output``. A file the manifest's run owns (the manifest, its journal,
    its lock) is refused with :class:`UsageError`."""
    if is_run_file(manifest_path, output):
        raise UsageError(
            f"-o {output}: that file belongs to the manifest {manifest_path} (a run keeps "
            "its state there); write the report elsewhere, e.g. -o report.html"
        )
    text = render_report(
        storyboard,
        manifest,
        manifest_path=manifest_path,
        output=output,
        now=now,
        cache_dir=cache_dir,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, text.encode("utf-8"))
    return output
