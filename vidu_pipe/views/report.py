"""Report: the storyboard as an HTML contact sheet (``vidu-pipe report FILE -o report.html``).

One self-contained page: inline CSS, no script, no web fonts, no CDN, so that it
works offline, opened from disk, and can be attached to a review. Shots come in
storyboard order, each a card with its id, tags, mode, model, duration, the
prompt it renders to, its state (as ``vidu-pipe status`` computes it), its error
and a video player:

- the downloaded file when the manifest records one that is still on disk, by a
  path relative to the report (so a folder of report plus videos can move);
- else the relay's URL, with a note once the URL is past its 24-hour life
  (counted from ``finished_at``);
- a manifest written by the simulator is labelled so: its URLs hold no video.

Every piece of text is escaped (prompts and errors are user and relay text), and
only ``http(s)`` URLs become links or sources.
"""

from __future__ import annotations

import html
import os
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlsplit

from vidu_pipe._version import __version__
from vidu_pipe.manifest.store import Manifest
from vidu_pipe.storyboard.model import Shot, Storyboard
from vidu_pipe.timestamps import parse_time
from vidu_pipe.views.status import STATES, ShotStatus, StatusReport, compute, format_age

__all__ = ["render_report", "write_report"]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _web_url(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) URL (never ``javascript:`` and friends)."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _relative_href(target: Path, start: Path) -> str:
    try:
        rel = os.path.relpath(target, start)
    except ValueError:  # another drive (Windows): fall back to an absolute file URL
        return target.resolve().as_uri()
    return quote(Path(rel).as_posix())


def _ago(seconds: float) -> str:
    text = format_age(seconds)
    return text if text == "just now" else f"{text} ago"


_CSS = """
:root {
  --bg: #f4f4f1; --card: #ffffff; --ink: #1c1d21; --muted: #6b6f78; --line: #e3e3de;
  --chip: #f0f0ec; --media: #16171b;
  --completed: #1f8a4c; --failed: #c43a31; --running: #2563c9; --pending: #8a8f98;
  --stale: #b7791f; --orphaned: #7c4dbd;
  --radius: 12px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", sans-serif;
  color: var(--ink); background: var(--bg);
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #121316; --card: #1b1d21; --ink: #e9e9ec; --muted: #9a9ea8; --line: #2b2e34;
          --chip: #25282e; --media: #0a0b0d; }
}
* { box-sizing: border-box; }
body { margin: 0; font-size: 15px; line-height: 1.45; }
a { color: var(--running); text-decoration: none; }
a:hover { text-decoration: underline; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono",
  monospace; font-size: 12.5px; }
.wrap { max-width: 1400px; margin: 0 auto; padding: 32px 28px 56px; }
header.top { display: grid; gap: 20px; margin-bottom: 28px; }
.eyebrow { margin: 0; text-transform: uppercase; letter-spacing: .12em; font-size: 12px;
  color: var(--muted); font-weight: 600; }
h1 { margin: 4px 0 6px; font-size: 30px; letter-spacing: -.01em; }
.sub { margin: 0; color: var(--muted); font-size: 13.5px; }
.sub code { color: var(--ink); }
.flag { display: inline-block; margin-left: 6px; padding: 1px 8px; border-radius: 999px;
  background: var(--stale); color: #fff; font-size: 12px; font-weight: 600; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: var(--radius);
  padding: 12px 16px; min-width: 116px; }
.tile .n { display: block; font-size: 24px; font-weight: 700; font-variant-numeric: tabular-nums; }
.tile .l { color: var(--muted); font-size: 12.5px; }
.tile.state { border-top: 4px solid var(--c); }
.tile.state .n { color: var(--c); }
.tile.wide { flex: 1 1 280px; }
.models { list-style: none; margin: 6px 0 0; padding: 0; display: flex; flex-wrap: wrap;
  gap: 6px; }
.models li { background: var(--chip); border-radius: 6px; padding: 2px 8px; font-size: 12.5px; }
.meter { display: flex; height: 8px; border-radius: 999px; overflow: hidden;
  background: var(--line); }
.meter span { display: block; background: var(--c); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 20px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: var(--radius);
  overflow: hidden; display: flex; flex-direction: column;
  box-shadow: 0 1px 2px rgba(0,0,0,.04), 0 4px 14px rgba(0,0,0,.04); }
.media { position: relative; aspect-ratio: 16 / 9; background: var(--media);
  display: flex; align-items: center; justify-content: center; }
.media video { width: 100%; height: 100%; object-fit: contain; display: block; }
.frame { height: 72%; border: 1.5px dashed rgba(255,255,255,.28); border-radius: 6px;
  display: flex; align-items: center; justify-content: center; color: rgba(255,255,255,.6);
  font-size: 13px; letter-spacing: .04em; padding: 6px; text-align: center; }
.badge { position: absolute; top: 10px; left: 10px; padding: 3px 10px; border-radius: 999px;
  background: var(--c); color: #fff; font-size: 12px; font-weight: 600; letter-spacing: .02em;
  box-shadow: 0 1px 3px rgba(0,0,0,.3); }
.body { padding: 14px 16px 16px; display: flex; flex-direction: column; gap: 10px; flex: 1; }
.head { display: flex; align-items: baseline; gap: 10px; }
.num { color: var(--muted); font-variant-numeric: tabular-nums; font-size: 13px; }
h2 { margin: 0; font-size: 17px; overflow-wrap: anywhere; }
.facts, .tags { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap;
  gap: 6px; }
.facts li { background: var(--chip); border-radius: 6px; padding: 2px 8px; font-size: 12.5px; }
.tags li { border: 1px solid var(--line); border-radius: 999px; padding: 1px 9px;
  font-size: 12px; color: var(--muted); }
.tags li::before { content: "#"; opacity: .6; }
.prompt { margin: 0; padding: 10px 12px; background: var(--chip); border-radius: 8px;
  font-size: 14px; white-space: pre-wrap; overflow-wrap: anywhere; }
.inputs { margin: 0; font-size: 12.5px; color: var(--muted); overflow-wrap: anywhere; }
.error { margin: 0; padding: 8px 12px; border-left: 3px solid var(--failed);
  background: rgba(196,58,49,.08); border-radius: 0 8px 8px 0; font-size: 13px;
  white-space: pre-wrap; overflow-wrap: anywhere; }
.note { margin: 0; padding: 8px 12px; border-left: 3px solid var(--stale);
  background: rgba(183,121,31,.09); border-radius: 0 8px 8px 0; font-size: 13px;
  overflow-wrap: anywhere; }
.task { margin: auto 0 0; padding-top: 10px; border-top: 1px solid var(--line);
  display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12.5px; color: var(--muted); }
.s-completed { --c: var(--completed); } .s-failed { --c: var(--failed); }
.s-running { --c: var(--running); } .s-pending { --c: var(--pending); }
.s-stale { --c: var(--stale); } .s-orphaned { --c: var(--orphaned); }
.card.s-failed { border-color: rgba(196,58,49,.45); }
h3 { margin: 40px 0 12px; font-size: 18px; }
table.orphans { border-collapse: collapse; width: 100%; background: var(--card);
  border: 1px solid var(--line); border-radius: var(--radius); overflow: hidden; }
table.orphans td, table.orphans th { text-align: left; padding: 8px 12px;
  border-bottom: 1px solid var(--line); font-size: 13px; }
footer.page { margin-top: 40px; color: var(--muted); font-size: 12.5px; }
@media print { .card { break-inside: avoid; box-shadow: none; } .media video { display: none; } }
"""


class _Sheet:
    def __init__(
        self, report: StatusReport, output: Path, now: datetime, assets: dict[str, str]
    ) -> None:
        self.report = report
        self.out_dir = output.parent
        self.now = now
        self.asset_names = {url: name for name, url in assets.items()}
        self.base = report.manifest_path.parent

    # --- pieces ---------------------------------------------------------------

    def _link(self, url: str, text: str | None = None) -> str:
        label = _e(text if text is not None else url)
        web = _web_url(url)
        return f'<a href="{_e(web)}">{label}</a>' if web else label

    def _image(self, url: str) -> str:
        return self._link(url, self.asset_names.get(url, url.rsplit("/", 1)[-1] or url))

    def _inputs(self, shot: Shot) -> str:
        req = shot.request
        parts: list[str] = []
        if "reference_image_urls" in req:
            refs = list(req["reference_image_urls"])
            parts.append(
                "references: "
                + ", ".join(f"@Image{i} {self._image(u)}" for i, u in enumerate(refs, 1))
            )
        elif "image" in req:
            parts.append(f"image: {self._image(str(req['image']))}")
            if "last_image" in req:
                parts.append(f"last frame: {self._image(str(req['last_image']))}")
        return f'<p class="inputs">{" · ".join(parts)}</p>' if parts else ""

    def _media(self, row: ShotStatus, aspect: str) -> tuple[str, list[str]]:
        """The player (or an empty frame) and the notes it needs."""
        notes: list[str] = []
        entry = row.entry
        src: str | None = None
        if entry is not None and entry.download is not None:
            saved = self.base / entry.download.path
            if saved.is_file():
                src = _relative_href(saved, self.out_dir)
            else:
                notes.append(f"the downloaded file {entry.download.path} is missing")
        if src is None and entry is not None and entry.video_url and row.state != "orphaned":
            if self.report.simulated:
                notes.append("simulated run: its URL holds no video (run with --download)")
            else:
                src = _web_url(entry.video_url)
                finished = parse_time(entry.finished_at)
                if row.url_expired and finished is not None:
                    age = _ago((self.now - finished).total_seconds())
                    notes.append(
                        f"this URL expired: the task finished {age} and the relay's video URLs "
                        "live about 24 hours (use run --download to keep videos)"
                    )
        badge = f'<span class="badge s-{row.state}">{_e(self._state_label(row))}</span>'
        if src is not None:
            player = f'<video controls preload="metadata" playsinline src="{_e(src)}"></video>'
        else:
            w, _, h = aspect.partition(":")
            ratio = f"{w} / {h}" if w.isdigit() and h.isdigit() else "16 / 9"
            player = (
                f'<div class="frame" style="aspect-ratio: {_e(ratio)}">'
                f"{_e(aspect)}<br>{_e(self._empty_label(row))}</div>"
            )
        return f'<div class="media">{player}{badge}</div>', notes

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
        }.get(row.state, "no video here")

    def card(self, index: int, row: ShotStatus) -> str:
        shot = row.shot
        assert shot is not None
        req = shot.request
        aspect = str(req.get("aspect_ratio", "16:9"))
        media, notes = self._media(row, aspect)
        facts = [shot.mode, shot.model, f"{shot.duration} s", aspect]
        seed = req.get("extra_body", {}).get("seed")
        if seed is not None:
            facts.append(f"seed {seed}")
        if shot.take is not None:
            facts.append(f"take {shot.take}")
        out = [
            f'<article class="card s-{row.state}" id="shot-{_e(shot.id)}" '
            f'data-shot="{_e(shot.id)}" data-state="{row.state}" data-index="{index}">',
            media,
            '<div class="body">',
            f'<div class="head"><span class="num">{index:02d}</span>'
            f'<h2 class="shot-id">{_e(shot.id)}</h2></div>',
            '<ul class="facts">' + "".join(f"<li>{_e(f)}</li>" for f in facts) + "</ul>",
        ]
        if shot.tags:
            out.append('<ul class="tags">' + "".join(f"<li>{_e(t)}</li>" for t in shot.tags))
            out.append("</ul>")
        out.append(f'<p class="prompt">{_e(shot.prompt)}</p>')
        out.append(self._inputs(shot))
        if shot.notes:
            out.append(f'<p class="inputs">{_e(shot.notes)}</p>')
        if row.error:
            out.append(f'<p class="error">{_e(row.error)}</p>')
        if row.changed and row.state == "stale":
            notes.insert(0, "changed since this video was made: the next run makes it again")
        elif row.changed and row.state == "running":
            notes.insert(0, "changed since: the next run abandons this task")
        out += [f'<p class="note">{_e(n)}</p>' for n in notes]
        out.append(self._task(row))
        out.append("</div></article>")
        return "\n".join(p for p in out if p)

    def _task(self, row: ShotStatus) -> str:
        e = row.entry
        if e is None:
            return '<div class="task"><span>no task yet</span></div>'
        bits: list[str] = []
        if e.task_id:
            bits.append(f'<span class="mono">{_e(e.task_id)}</span>')
        finished = parse_time(e.finished_at)
        submitted = parse_time(e.submitted_at)
        if finished is not None:
            bits.append(f"<span>finished {_e(_ago((self.now - finished).total_seconds()))}</span>")
        elif submitted is not None:
            bits.append(
                f"<span>submitted {_e(_ago((self.now - submitted).total_seconds()))}</span>"
            )
        if e.attempts > 1:
            bits.append(f"<span>{e.attempts} attempts</span>")
        web = _web_url(e.video_url)
        if web and not self.report.simulated:
            bits.append(f'<a href="{_e(web)}">video URL</a>')
        return '<div class="task">' + "".join(bits) + "</div>"

    def summary(self) -> str:
        r = self.report
        counts = r.counts()
        shots = [row for row in r.rows if row.shot is not None]
        total = len(shots)
        done_seconds = sum(
            row.shot.duration for row in shots if row.shot and row.state == "completed"
        )
        planned = sum(row.shot.duration for row in shots if row.shot)
        models: dict[str, tuple[int, int]] = {}
        for row in shots:
            assert row.shot is not None
            n, s = models.get(row.shot.model, (0, 0))
            models[row.shot.model] = (n + 1, s + row.shot.duration)
        tiles = [
            f'<div class="tile"><span class="n">{total}</span><span class="l">shots</span></div>'
        ]
        for state in STATES:
            if state == "orphaned" and not counts[state]:
                continue
            tiles.append(
                f'<div class="tile state s-{state}" data-count="{state}">'
                f'<span class="n">{counts[state]}</span><span class="l">{state}</span></div>'
            )
        tiles.append(
            f'<div class="tile"><span class="n">{done_seconds} s</span>'
            f'<span class="l">of video made, of {planned} s planned</span></div>'
        )
        chips = "".join(
            f"<li><b>{_e(m)}</b> × {n} · {s} s</li>" for m, (n, s) in sorted(models.items())
        )
        tiles.append(
            '<div class="tile wide"><span class="l">models</span>'
            f'<ul class="models">{chips}</ul></div>'
        )
        meter = "".join(
            f'<span class="s-{state}" style="width: {100 * counts[state] / total:.3f}%" '
            f'title="{counts[state]} {state}"></span>'
            for state in STATES
            if counts[state] and state != "orphaned" and total
        )
        return (
            f'<div class="tiles">{"".join(tiles)}</div>'
            f'<div class="meter" aria-hidden="true">{meter}</div>'
        )

    def orphans(self) -> str:
        rows = [row for row in self.report.rows if row.shot is None]
        if not rows:
            return ""
        body = []
        for row in rows:
            e = row.entry
            status = e.status if e is not None else ""
            link = self._link(row.video_url, "video URL") if row.video_url else ""
            body.append(
                f'<tr data-orphan="{_e(row.id)}"><td><b>{_e(row.id)}</b></td><td>{_e(status)}</td>'
                f'<td class="mono">{_e(row.task_id or "")}</td><td>{link}</td></tr>'
            )
        return (
            "<h3>In the manifest, no longer in the storyboard</h3>"
            '<table class="orphans"><tr><th>shot</th><th>status</th><th>task</th>'
            "<th>video</th></tr>" + "".join(body) + "</table>"
        )

    def page(self) -> str:
        r = self.report
        board = r.storyboard
        m = r.manifest
        if m is None:
            where = f"<code>{_e(r.manifest_path.name)}</code> (none yet)"
        else:
            where = f"<code>{_e(r.manifest_path.name)}</code>"
            if m.updated_at:
                where += f", updated {_e(m.updated_at)}"
        flag = '<span class="flag">simulated</span>' if r.simulated else ""
        cards = "\n".join(
            self.card(i, row) for i, row in enumerate((x for x in r.rows if x.shot is not None), 1)
        )
        stamp = self.now.strftime("%Y-%m-%d %H:%M UTC")
        return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="vidu-pipe {_e(__version__)}">
<title>{_e(board.name)} · vidu-pipe contact sheet</title>
<style>{_CSS}</style>
</head>
<body>
<div class="wrap">
<header class="top">
<div>
<p class="eyebrow">vidu-pipe contact sheet</p>
<h1 id="storyboard-name">{_e(board.name)}{flag}</h1>
<p class="sub">storyboard <code>{_e(board.path.name)}</code> · manifest {where}
 · generated {_e(stamp)}</p>
</div>
{self.summary()}
</header>
<main class="grid" id="shots">
{cards}
</main>
{self.orphans()}
<footer class="page">Made by vidu-pipe {_e(__version__)}. Video URLs from the relay live about
24 hours; <code>vidu-pipe run --download DIR</code> keeps the files.</footer>
</div>
</body>
</html>
"""


def render_report(
    storyboard: Storyboard,
    manifest: Manifest | None,
    *,
    manifest_path: Path,
    output: Path,
    now: datetime | None = None,
) -> str:
    """The contact sheet as one HTML document. ``output`` is where it will be written
    (downloaded videos are linked relative to its folder)."""
    moment = now if now is not None else datetime.now(timezone.utc)
    report = compute(storyboard, manifest, manifest_path, now=moment)
    return _Sheet(report, output, moment, dict(storyboard.assets)).page()


def write_report(
    storyboard: Storyboard,
    manifest: Manifest | None,
    *,
    manifest_path: Path,
    output: Path,
    now: datetime | None = None,
) -> Path:
    """Render the contact sheet and write it to ``output`` (atomically); returns ``output``."""
    text = render_report(storyboard, manifest, manifest_path=manifest_path, output=output, now=now)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, output)
    return output
