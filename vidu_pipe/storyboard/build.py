"""Validate: a loaded document → a Storyboard, or every problem in it.

Three layers, each reporting every problem it finds with its line:

1. ``storyboard.schema.json`` on the document as written (structure, types,
   enums, the mode rules, Turbo without references even via ``defaults``);
2. per shot: defaults merged under the shot, ``takes`` expanded, every string
   rendered through Jinja, assets resolved — then the resulting body checked
   against ``request.schema.json``, so a storyboard that validates never
   yields a request that the endpoint's rules refuse;
3. what no schema can say: unique ids, asset names that resolve, ``ref()``
   and ``@ImageN`` that name a reference of the shot.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vidu_pipe.errors import Problem, StoryboardError
from vidu_pipe.storyboard import schemas
from vidu_pipe.storyboard.loader import Document, Path_, load_document
from vidu_pipe.storyboard.model import RunSettings, Shot, Storyboard, fingerprint
from vidu_pipe.storyboard.render import RenderError, TemplateEnv, make_ref

__all__ = ["build_storyboard", "load"]

_SHOT_STRING_FIELDS = ("model", "aspect_ratio", "duration", "image", "last_image", "prompt")
_IMAGE_REF = re.compile(r"@Image(\d+)")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def load(path: Path | str) -> Storyboard:
    """Load, validate and render a storyboard file; raise StoryboardError with every problem."""
    p = Path(path)
    return build_storyboard(load_document(p), p)


def _seed_for(source_id: str) -> int:
    """A stable seed for a shot that has none: the same id always gives the same seed."""
    digest = hashlib.sha256(source_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % (schemas.MAX_SEED + 1)


class _Collector:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self._seen: set[tuple[int, int, str | None, str]] = set()

    def add(
        self,
        path: Path_,
        message: str,
        *,
        shot: str | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        line, col = self.doc.locate(path)
        key = (line, col, shot, message)
        if key in self._seen:
            return
        self._seen.add(key)
        self.problems.append(Problem(self.doc.file, line, col, message, shot, field, hint))

    def duplicate_id(self, index: int, shot_id: str, first_line: int, *, take: bool) -> None:
        self.add(
            ("shots", index, "id"),
            f"duplicate shot id '{shot_id}' (first used at line {first_line})",
            shot=shot_id,
            field="id",
            hint="shot ids must be unique: they key the manifest and name files"
            + (" (takes add .takeN to the id)" if take else ""),
        )

    def error(self) -> StoryboardError:
        """Every problem found, in the order of the file."""
        return StoryboardError(sorted(self.problems, key=lambda p: (p.line, p.column)))


def _shot_label(doc: Document, index: int) -> str | None:
    shots = doc.data.get("shots") if isinstance(doc.data, dict) else None
    if isinstance(shots, list) and index < len(shots) and isinstance(shots[index], dict):
        sid = shots[index].get("id")
        if isinstance(sid, str):
            return sid
        return f"#{index + 1}"
    return None


def _schema_problems(doc: Document, out: _Collector) -> set[int]:
    """Layer 1. Returns the indexes of shots that had problems (not rendered further)."""
    bad_shots: set[int] = set()
    for issue in schemas.check("storyboard", doc.data):
        path = issue.path
        shot = None
        field_path: tuple[str | int, ...] = path
        if len(path) >= 2 and path[0] == "shots" and isinstance(path[1], int):
            bad_shots.add(path[1])
            shot = _shot_label(doc, path[1])
            field_path = path[2:]
        elif path and path[0] == "shots":
            bad_shots.add(-1)
        field = ".".join(str(p) for p in field_path) or None
        out.add(path, issue.message, shot=shot, field=field, hint=issue.hint)
    return bad_shots


def build_storyboard(doc: Document, path: Path) -> Storyboard:
    """Layers 1-3 on a loaded document. Raises StoryboardError listing every problem."""
    out = _Collector(doc)
    data = doc.data
    if not isinstance(data, dict):
        out.add((), "a storyboard is a mapping with version: 1 and shots:", hint=_EXAMPLE_HINT)
        raise out.error()
    bad_shots = _schema_problems(doc, out)
    top_broken = any(
        p.field and p.field.split(".")[0] in ("defaults", "vars", "assets", "templates")
        for p in out.problems
        if p.shot is None
    )
    shots_raw = data.get("shots")
    if top_broken or -1 in bad_shots or not isinstance(shots_raw, list):
        raise out.error()

    defaults: dict[str, Any] = dict(data.get("defaults") or {})
    assets: dict[str, str] = dict(data.get("assets") or {})
    env = TemplateEnv(data.get("templates") or {}, path.parent / "templates")
    if env.folder_problem is not None:
        out.add((), env.folder_problem, field="templates", hint="make templates/ a real folder")
    for name, source in (data.get("templates") or {}).items():
        try:
            env.check_syntax(source, name)
        except RenderError as exc:
            out.add(("templates", name), exc.message, field=f"templates.{name}", hint=exc.hint)
    base_vars: dict[str, Any] = {**(data.get("vars") or {}), **(defaults.pop("vars", None) or {})}

    shots: list[Shot] = []
    first_line: dict[str, int] = {}
    # Ids as written, before any shot is skipped for another problem, so that a
    # duplicate is reported even when one of the two shots is broken too.
    written: dict[str, int] = {}
    reported: set[str] = set()
    for index, raw in enumerate(shots_raw):
        sid = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(sid, str):
            continue
        line = doc.locate(("shots", index))[0]
        if sid in written:
            reported.add(sid)
            out.duplicate_id(index, sid, written[sid], take=False)
        else:
            written[sid] = line
    for index, raw in enumerate(shots_raw):
        if index in bad_shots or not isinstance(raw, dict):
            continue
        for shot in _expand(doc, out, env, index, raw, defaults, base_vars, assets):
            if shot.id in first_line:
                if shot.take is not None or shot.id not in reported:  # else: reported above
                    out.duplicate_id(index, shot.id, first_line[shot.id], take=bool(shot.take))
                continue
            first_line[shot.id] = shot.line
            shots.append(shot)
    if out.problems:
        raise out.error()
    run = RunSettings(**(data.get("run") or {}))
    name = data.get("name") or path.stem
    return Storyboard(
        path=path,
        name=str(name),
        shots=tuple(dataclasses.replace(s, index=i) for i, s in enumerate(shots)),
        run=run,
        assets=assets,
    )


_EXAMPLE_HINT = (
    "start from: version: 1 / shots: [{id: opening, prompt: ..., model: viduq3p-720p, duration: 5}]"
)


def _expand(
    doc: Document,
    out: _Collector,
    env: TemplateEnv,
    index: int,
    raw: Mapping[str, Any],
    defaults: Mapping[str, Any],
    base_vars: Mapping[str, Any],
    assets: Mapping[str, str],
) -> list[Shot]:
    """Merge defaults under one shot, expand its takes and render each."""
    source_id = str(raw["id"])
    merged: dict[str, Any] = {k: v for k, v in defaults.items()}
    merged.update({k: v for k, v in raw.items() if k != "vars"})
    variables = {**base_vars, **(raw.get("vars") or {})}

    def origin(field: str) -> Path_:
        if field in raw:
            return ("shots", index, field)
        if field in defaults:
            return ("defaults", field)
        return ("shots", index)

    takes = int(merged.get("takes", 1))
    pick = raw.get("pick")
    if pick is not None and int(pick) > takes:
        out.add(
            ("shots", index, "pick"),
            f"pick {pick} is not a take of this shot: it has {takes} take"
            + ("" if takes == 1 else "s"),
            shot=source_id,
            field="pick",
            hint=f"pick one of the takes 1-{takes}, or remove pick:"
            if takes > 1
            else "pick chooses among takes: set takes: N first",
        )
        return []
    seed = _as_int(merged.get("seed"))  # 5.0 is an integer to JSON Schema; send 5
    result: list[Shot] = []
    for k in range(1, takes + 1):
        if takes == 1:
            shot_id, take, take_seed = source_id, None, seed
        else:
            shot_id, take = f"{source_id}.take{k}", k
            base = seed if seed is not None else _seed_for(source_id)
            take_seed = (base + k - 1) % (schemas.MAX_SEED + 1)
        shot = _render_one(out, env, shot_id, take, take_seed, merged, variables, assets, origin)
        if shot is not None:
            line = doc.locate(("shots", index))[0]
            tags = tuple(merged.get("tags") or ())
            result.append(
                Shot(
                    id=shot_id,
                    index=index,
                    source_id=source_id,
                    take=take,
                    tags=tags,
                    notes=merged.get("notes"),
                    request=shot[0],
                    fingerprint=fingerprint(shot[0]),
                    line=line,
                    pick=int(pick) if pick is not None and take is not None else None,
                )
            )
    return result


def _render_one(
    out: _Collector,
    env: TemplateEnv,
    shot_id: str,
    take: int | None,
    seed: int | None,
    merged: Mapping[str, Any],
    variables: Mapping[str, Any],
    assets: Mapping[str, str],
    origin: Callable[[str], Path_],
) -> tuple[dict[str, Any]] | None:
    before = len(out.problems)

    def problem(field: str, rest: tuple[str | int, ...], message: str, hint: str | None) -> None:
        name = ".".join(str(p) for p in (field, *rest))
        out.add((*origin(field), *rest), message, shot=shot_id, field=name, hint=hint)

    shot_view = {**merged, "id": shot_id, "take": take, "seed": seed}
    scope: dict[str, Any] = {**variables, "shot": shot_view}

    def render(field: str, rest: tuple[str | int, ...], value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return env.render(value, scope)
        except RenderError as exc:
            problem(field, rest, exc.message, exc.hint)
            return None

    def resolve(field: str, rest: tuple[str | int, ...], written: Any) -> Any:
        if not isinstance(written, str):
            return written
        if written in assets:
            return assets[written]
        if _URL.match(written):
            return written
        near = difflib.get_close_matches(written, list(assets), n=1)
        hint = (
            f"did you mean '{near[0]}'?"
            if near
            else (
                "assets: " + ", ".join(assets)
                if assets
                else "define it under assets:, or write an https:// URL"
            )
        )
        problem(field, rest, f"unknown asset '{written}'", hint)
        return None

    references_written: list[str] = []
    references: list[str] = []
    if "reference_image_urls" in merged:
        for i, item in enumerate(merged["reference_image_urls"]):
            text = render("reference_image_urls", (i,), item)
            references_written.append(str(text))
            references.append(str(resolve("reference_image_urls", (i,), text)))
    scope["ref"] = make_ref(references_written, references)

    rendered: dict[str, Any] = {}
    for field in _SHOT_STRING_FIELDS:
        if field in merged:
            rendered[field] = render(field, (), merged[field])
    for field in ("image", "last_image"):
        if rendered.get(field) is not None:
            rendered[field] = resolve(field, (), rendered[field])
    if len(out.problems) > before:
        return None

    body: dict[str, Any] = {}
    for field in ("model", "prompt"):
        if field in rendered:
            body[field] = rendered[field]
    if "duration" in rendered:
        body["duration"] = _as_int(rendered["duration"])
    for field in ("aspect_ratio", "image", "last_image"):
        if field in rendered:
            body[field] = rendered[field]
    if references:
        body["reference_image_urls"] = references
    extra: dict[str, Any] = {"audio": False, "bgm": False}
    if seed is not None:
        extra["seed"] = seed
    body["extra_body"] = extra

    issues = schemas.request_issues(body)
    flagged = {issue.path for issue in issues}
    for issue in issues:
        path = issue.path
        if path[:1] == ("extra_body",):
            path = path[1:]
        field = str(path[0]) if path else "shot"
        if field in ("model", "prompt", "duration") and field not in merged:
            out.add(
                origin(field),
                f"{field} is required",
                shot=shot_id,
                field=field,
                hint=f"set {field} on the shot, or under defaults: for every shot",
            )
            continue
        problem(field, tuple(path[1:]), issue.message, issue.hint)

    for field, rest, url in _image_urls(body):
        reason = None if (field, *rest) in flagged else _not_public(url)
        if reason is not None:
            problem(
                field,
                rest,
                f"must be a public http(s) image URL: {reason}",
                "the relay's servers fetch the image: localhost and private addresses do not work",
            )
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        for match in _IMAGE_REF.finditer(prompt):
            n = int(match.group(1))
            if not references:
                problem(
                    "prompt",
                    (),
                    f"{match.group(0)} names a reference image, but the shot has none",
                    "@Image1...@Image4 only work with reference_image_urls (Q3 Pro)",
                )
                break
            if not 1 <= n <= len(references):
                problem(
                    "prompt",
                    (),
                    f"{match.group(0)} is not among this shot's {len(references)} "
                    "reference image(s)",
                    "write {{ ref('asset') }} to get the right @ImageN",
                )
                break
    if len(out.problems) > before:
        return None
    return (body,)


def _image_urls(body: Mapping[str, Any]) -> list[tuple[str, tuple[int, ...], str]]:
    found: list[tuple[str, tuple[int, ...], str]] = []
    for field in ("image", "last_image"):
        if isinstance(body.get(field), str):
            found.append((field, (), body[field]))
    for i, url in enumerate(body.get("reference_image_urls") or ()):
        if isinstance(url, str):
            found.append(("reference_image_urls", (i,), url))
    return found


@functools.lru_cache(maxsize=4096)  # assets repeat across shots
def _not_public(url: str) -> str | None:
    """Why the relay could not fetch ``url`` from the internet, or None.

    The schema's pattern catches the common cases for editors; this catches every
    spelling of a private host (``LOCALHOST``, ``[::]``, ``2130706433``, ``0x7f.1``).
    """
    try:
        host = (urllib.parse.urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return "it is not a valid URL"
    if not host:
        return "it has no host"
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return f"{host} is this machine or a private network"
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(r"[0-9a-fx.]+", host) or not re.search(r"[0-9]", host):
            return None  # a name: the relay resolves it
        try:  # the legacy spellings browsers and curl accept: 2130706433, 0x7f.1, 0177.1
            address = ipaddress.ip_address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    if not address.is_global:
        return f"{host} is a private, loopback or reserved address"
    return None


def _as_int(value: Any) -> Any:
    """Durations may be written as "5" or 5.0; they are always sent as integers."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
