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
from vidu_pipe.storyboard.model import BrokenShot, RunSettings, Shot, Storyboard, fingerprint
from vidu_pipe.storyboard.render import RenderError, TemplateEnv, make_ref
from vidu_pipe.text import clean_text, suggest
from vidu_pipe.urls import http_url

__all__ = ["build_storyboard", "load"]

_SHOT_STRING_FIELDS = ("model", "aspect_ratio", "duration", "image", "last_image", "prompt")
_MODE_FIELDS = frozenset({"shot", "model", "image", "last_image", "reference_image_urls"})
_IMAGE_REF = re.compile(r"@Image(\d+)")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_SMALL_INT = re.compile(r"\s*[0-9]{1,18}\s*")


def load(path: Path | str, *, keep_going: bool = False) -> Storyboard:
    """Load, validate and render a storyboard file; raise StoryboardError with every problem.

    ``keep_going`` (``run --keep-going``): problems confined to single shots do not
    raise; the storyboard holds the valid shots, and the broken ones with their
    problems in ``Storyboard.broken``. A problem outside the shots still raises.
    """
    p = Path(path)
    return build_storyboard(load_document(p), p, keep_going=keep_going)


def _seed_for(source_id: str) -> int:
    """A stable seed for a shot that has none: the same id always gives the same seed."""
    digest = hashlib.sha256(source_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % (schemas.MAX_SEED + 1)


class _Collector:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        #: The problems of each shot (by index in ``shots:``); the rest are global.
        self.by_shot: dict[int, list[Problem]] = {}
        self.global_problems: list[Problem] = []
        self._seen: set[tuple[int, int, str | None, str]] = set()

    def add(
        self,
        path: Path_,
        message: str,
        *,
        shot: str | None = None,
        field: str | None = None,
        hint: str | None = None,
        index: int | None = None,
        same_as: str | None = None,
    ) -> None:
        """Record one problem at ``path``; ``index`` is the shot it belongs to (None: the
        storyboard as a whole); ``same_as`` dedupes the takes of one shot."""
        line, col = self.doc.locate(path)
        key = (line, col, same_as or shot, message)
        if key in self._seen:
            return
        self._seen.add(key)
        problem = Problem(
            self.doc.file,
            line,
            col,
            clean_text(message),
            None if shot is None else clean_text(shot),
            None if field is None else clean_text(field),
            None if hint is None else clean_text(hint),
        )
        self.problems.append(problem)
        if index is None:
            self.global_problems.append(problem)
        else:
            self.by_shot.setdefault(index, []).append(problem)

    def duplicate_id(self, index: int, shot_id: str, first_line: int, *, take: bool) -> None:
        self.add(
            ("shots", index, "id"),
            f"duplicate shot id '{shot_id}' (first used at line {first_line})",
            shot=shot_id,
            field="id",
            hint="shot ids must be unique: they key the manifest and name files"
            + (" (takes add .takeN to the id)" if take else ""),
            index=index,
        )

    def error(self, problems: list[Problem] | None = None) -> StoryboardError:
        """Every problem found (or those given), in the order of the file."""
        found = self.problems if problems is None else problems
        return StoryboardError(sorted(found, key=lambda p: (p.line, p.column)))


def _shot_label(doc: Document, index: int) -> str | None:
    shots = doc.data.get("shots") if isinstance(doc.data, dict) else None
    if isinstance(shots, list) and index < len(shots):
        sid = shots[index].get("id") if isinstance(shots[index], dict) else None
        if isinstance(sid, str):
            return sid
        return f"#{index + 1}"
    return None


def _flag(path: Path_, flagged: set[Path_]) -> None:
    """Remember which field a layer-1 problem is about, so that layers 2-3 do not
    report the same cause again (``model: foo`` is one problem, not two)."""
    if len(path) >= 2 and path[0] == "shots" and isinstance(path[1], int):
        flagged.add(path[:3])
    elif len(path) >= 2 and path[0] in ("defaults", "assets"):
        flagged.add(path[:2])


def _located(doc: Document, out: _Collector, path: Path_, message: str, hint: str | None) -> None:
    """A layer-1 problem at ``path``, given to its shot when it lies in one."""
    if len(path) >= 2 and path[0] == "shots" and isinstance(path[1], int):
        field = ".".join(str(p) for p in path[2:]) or None
        shot = _shot_label(doc, path[1])
        out.add(path, message, shot=shot, field=field, hint=hint, index=path[1])
    else:
        field = ".".join(str(p) for p in path) or None
        out.add(path, message, field=field, hint=hint)


def _schema_problems(doc: Document, out: _Collector) -> set[Path_]:
    """Layer 1, and the numbers the loader refused. Returns the fields they flag."""
    flagged: set[Path_] = set()
    refused = {issue.path for issue in doc.issues}
    for load_issue in doc.issues:
        _located(doc, out, load_issue.path, load_issue.message, load_issue.hint)
        _flag(load_issue.path, flagged)
    for issue in schemas.storyboard_issues(doc.data):
        if any(issue.path[: len(r)] == r for r in refused):
            continue  # the loader said why already ("a NaN", not "must be a number")
        _located(doc, out, issue.path, issue.message, issue.hint)
        _flag(issue.path, flagged)
    return flagged


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def build_storyboard(doc: Document, path: Path, *, keep_going: bool = False) -> Storyboard:
    """Layers 1-3 on a loaded document. Raises StoryboardError listing every problem.

    Every shot is rendered as far as it can be, even one that broke a schema rule or
    sits beside a broken ``defaults:``, so that one run of ``validate`` reports every
    problem of every shot; a field that layer 1 refused is not reported again.
    """
    out = _Collector(doc)
    data = doc.data
    if not isinstance(data, dict):
        out.add((), "a storyboard is a mapping with version: 1 and shots:", hint=_EXAMPLE_HINT)
        raise out.error()
    flagged = _schema_problems(doc, out)
    shots_raw = data.get("shots")
    if not isinstance(shots_raw, list):
        shots_raw = []

    defaults = _mapping(data.get("defaults"))
    default_vars = _mapping(defaults.pop("vars", None))
    # An asset or template of the wrong type is reported once, as itself; the shots that
    # use it see a stand-in, not "unknown asset" or "no template named" as well.
    assets = {k: v if isinstance(v, str) else "" for k, v in _mapping(data.get("assets")).items()}
    templates = {
        k: v if isinstance(v, str) else "" for k, v in _mapping(data.get("templates")).items()
    }
    env = TemplateEnv(templates, path.parent / "templates")
    if env.folder_problem is not None:
        out.add((), env.folder_problem, field="templates", hint="make templates/ a real folder")
    for name, source in templates.items():
        try:
            env.check_syntax(source, name)
        except RenderError as exc:
            out.add(("templates", name), exc.message, field=f"templates.{name}", hint=exc.hint)
    base_vars: dict[str, Any] = {**_mapping(data.get("vars")), **default_vars}
    usable = isinstance(data.get("defaults", {}), dict)
    context = _Context(doc, out, env, defaults, base_vars, assets, flagged, usable)

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
        if not isinstance(raw, dict):
            continue
        for shot in context.expand(index, raw):
            if shot.id in first_line:
                if shot.take is not None or shot.id not in reported:  # else: reported above
                    out.duplicate_id(index, shot.id, first_line[shot.id], take=bool(shot.take))
                continue
            first_line[shot.id] = shot.line
            shots.append(shot)
    if out.global_problems or (out.problems and not keep_going):
        raise out.error()
    broken = tuple(
        _broken_shot(doc, index, shots_raw[index], problems)
        for index, problems in sorted(out.by_shot.items())
    )
    valid = [s for s in shots if s.index not in out.by_shot]
    settings = _mapping(data.get("run"))
    run = RunSettings(
        concurrency=_as_int(settings.get("concurrency")),
        rate_per_minute=_as_int(settings.get("rate_per_minute")),
        poll_interval=settings.get("poll_interval"),
        timeout=settings.get("timeout"),
        max_creates=_as_int(settings.get("max_creates")),
        download=settings.get("download"),
    )
    name = data.get("name") or path.stem
    return Storyboard(
        path=path,
        name=str(name),
        # Renumbered past the broken shots; a shot already in its place is kept as it is
        # (a copy of each of 10,000 shots took 0.04 s).
        shots=tuple(
            s if s.index == i else dataclasses.replace(s, index=i) for i, s in enumerate(valid)
        ),
        run=run,
        assets=assets,
        broken=broken,
    )


def _broken_shot(doc: Document, index: int, raw: Any, problems: list[Problem]) -> BrokenShot:
    label = _shot_label(doc, index) or f"#{index + 1}"
    tags = raw.get("tags") if isinstance(raw, dict) else None
    return BrokenShot(
        id=label,
        line=doc.locate(("shots", index))[0],
        tags=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
        problems=tuple(sorted(problems, key=lambda p: (p.line, p.column))),
    )


_EXAMPLE_HINT = (
    "start from: version: 1 / shots: [{id: opening, prompt: ..., model: viduq3p-720p, duration: 5}]"
)


def _valid_takes(value: Any) -> int:
    """``takes`` as written when it is valid (1-50); else 1, its problem already reported."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 1
    if float(value).is_integer() and 1 <= value <= schemas.MAX_TAKES:
        return int(value)
    return 1


class _Context:
    """What every shot of one storyboard renders with."""

    def __init__(
        self,
        doc: Document,
        out: _Collector,
        env: TemplateEnv,
        defaults: Mapping[str, Any],
        base_vars: Mapping[str, Any],
        assets: Mapping[str, str],
        flagged: set[Path_],
        defaults_usable: bool = True,
    ) -> None:
        self.defaults_usable = defaults_usable
        self.doc = doc
        self.out = out
        self.env = env
        self.defaults = defaults
        self.base_vars = base_vars
        self.assets = assets
        self.flagged = flagged

    def expand(self, index: int, raw: Mapping[str, Any]) -> list[Shot]:
        """Merge defaults under one shot, expand its takes and render each."""
        written_id = raw.get("id")
        source_id = written_id if isinstance(written_id, str) else f"#{index + 1}"
        merged: dict[str, Any] = dict(self.defaults)
        merged.update({k: v for k, v in raw.items() if k != "vars"})
        variables = {**self.base_vars, **_mapping(raw.get("vars"))}
        defaults = self.defaults

        def origin(field: str) -> Path_:
            if field in raw:
                return ("shots", index, field)
            if field in defaults:
                return ("defaults", field)
            return ("shots", index)

        takes = _valid_takes(merged.get("takes", 1))
        pick = _as_int(raw.get("pick"))
        if isinstance(pick, bool) or not isinstance(pick, int):
            pick = None  # not written, or refused by layer 1
        elif pick > takes:
            self.out.add(
                ("shots", index, "pick"),
                f"pick {pick} is not a take of this shot: it has {takes} take"
                + ("" if takes == 1 else "s"),
                shot=source_id,
                field="pick",
                hint=f"pick one of the takes 1-{takes}, or remove pick:"
                if takes > 1
                else "pick chooses among takes: set takes: N first",
                index=index,
            )
            return []
        seed = _as_int(merged.get("seed"))  # 5.0 is an integer to JSON Schema; send 5
        result: list[Shot] = []
        line = self.doc.locate(("shots", index))[0]
        for k in range(1, takes + 1):
            if takes == 1:
                shot_id, take, take_seed = source_id, None, seed
            else:
                shot_id, take = f"{source_id}.take{k}", k
                base = seed if type(seed) is int else _seed_for(source_id)
                take_seed = (base + k - 1) % (schemas.MAX_SEED + 1)
            shot = _Render(self, index, source_id, shot_id, take, take_seed, merged, origin)
            body = shot.run(variables)
            if body is not None:
                tags = merged.get("tags")
                notes = merged.get("notes")
                result.append(
                    Shot(
                        id=shot_id,
                        index=index,
                        source_id=source_id,
                        take=take,
                        tags=tuple(tags) if isinstance(tags, list) else (),
                        notes=notes if isinstance(notes, str) else None,
                        request=body,
                        fingerprint=fingerprint(body),
                        line=line,
                        pick=pick if take is not None else None,
                    )
                )
        return result


class _Render:
    """One take of one shot: its strings rendered, its assets resolved, its body checked."""

    def __init__(
        self,
        ctx: _Context,
        index: int,
        source_id: str,
        shot_id: str,
        take: int | None,
        seed: Any,
        merged: Mapping[str, Any],
        origin: Callable[[str], Path_],
    ) -> None:
        self.ctx = ctx
        self.index = index
        self.source_id = source_id
        self.shot_id = shot_id
        self.take = take
        self.seed = seed
        self.merged = merged
        self.origin = origin
        #: Fields whose value came from a refused asset: their problem is the asset's.
        self.quiet: set[str] = set()
        self.problems = 0

    def problem(
        self,
        field: str,
        rest: tuple[str | int, ...],
        message: str,
        hint: str | None,
        *,
        always: bool = False,
    ) -> None:
        """A problem of this shot's ``field``, unless layer 1 already reported that field
        (``always``: a problem no schema can see, such as a template error)."""
        if not always and self.quiet_about(field):
            return
        self.problems += 1
        name = ".".join(str(p) for p in (field, *rest))
        self.ctx.out.add(
            (*self.origin(field), *rest),
            message,
            shot=self.shot_id,
            field=name,
            hint=hint,
            index=self.index,
            same_as=self.source_id if always else None,
        )

    def explained(self, field: str) -> bool:
        """Whether a missing ``field`` is already explained by another problem: an unknown
        field of this shot or of defaults: that looks like it, or a defaults: that is
        not a mapping."""
        if not self.ctx.defaults_usable:
            return True
        typos = [
            str(path[-1])
            for path in self.ctx.flagged
            if path[:2] == ("shots", self.index) or path[:1] == ("defaults",)
        ]
        return bool(difflib.get_close_matches(field, typos, n=1))

    def quiet_about(self, field: str) -> bool:
        flagged = self.ctx.flagged
        if field in _MODE_FIELDS and ("shots", self.index) in flagged:
            return True  # layer 1 refused the shot's mode (Turbo with references, ...)
        return field in self.quiet or self.origin(field) in flagged

    def render(self, field: str, rest: tuple[str | int, ...], value: Any, scope: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.ctx.env.render(value, scope)
        except RenderError as exc:
            self.problem(field, rest, exc.message, exc.hint, always=True)
            self.quiet.add(field)  # checked no further: its problem is the template's
            return None

    def resolve(self, field: str, rest: tuple[str | int, ...], written: Any) -> Any:
        assets = self.ctx.assets
        if not isinstance(written, str):
            return written
        if written in assets:
            if ("assets", written) in self.ctx.flagged:
                self.quiet.add(field)
            return assets[written]
        if _URL.match(written):
            return written
        hint = suggest(written, assets) or (
            "assets: " + ", ".join(assets)
            if assets
            else "define it under assets:, or write an https:// URL"
        )
        self.problem(field, rest, f"unknown asset '{written}'", hint)
        self.quiet.add(field)
        return None

    def run(self, variables: Mapping[str, Any]) -> dict[str, Any] | None:
        """The request body, or None when this take has a problem (each one reported)."""
        merged = self.merged
        shot_view = {**merged, "id": self.shot_id, "take": self.take, "seed": self.seed}
        scope: dict[str, Any] = {**variables, "shot": shot_view}

        references_written: list[str] = []
        references: list[str] = []
        written_refs = merged.get("reference_image_urls")
        if isinstance(written_refs, list):
            for i, item in enumerate(written_refs):
                text = self.render("reference_image_urls", (i,), item, scope)
                references_written.append(str(text))
                references.append(str(self.resolve("reference_image_urls", (i,), text)))
        elif written_refs is not None:  # refused by layer 1; kept for the mode and ref()
            references_written.append(str(written_refs))
            references.append(str(written_refs))
        scope["ref"] = make_ref(references_written, references)

        rendered: dict[str, Any] = {}
        for field in _SHOT_STRING_FIELDS:
            if field in merged:
                rendered[field] = self.render(field, (), merged[field], scope)
        for field in ("image", "last_image"):
            if rendered.get(field) is not None:
                rendered[field] = self.resolve(field, (), rendered[field])

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
        if self.seed is not None:
            extra["seed"] = self.seed
        body["extra_body"] = extra
        self.check(body, references)
        if self.problems or self.index in self.ctx.out.by_shot:
            return None
        return body

    def check(self, body: dict[str, Any], references: list[str]) -> None:
        """Layer 2's request schema and layer 3's checks on the body."""
        issues = schemas.request_issues(body)
        flagged = {issue.path for issue in issues}
        for issue in issues:
            path = issue.path
            if path[:1] == ("extra_body",):
                path = path[1:]
            field = str(path[0]) if path else "shot"
            if field in ("model", "prompt", "duration") and field not in self.merged:
                if self.explained(field):
                    continue  # "unknown field 'promt'" or "defaults: must be a mapping" says it
                self.problems += 1
                self.ctx.out.add(
                    self.origin(field),
                    f"{field} is required",
                    shot=self.shot_id,
                    field=field,
                    hint=f"set {field} on the shot, or under defaults: for every shot",
                    index=self.index,
                    same_as=self.source_id,
                )
                continue
            self.problem(field, tuple(path[1:]), issue.message, issue.hint)

        for field, rest, url in _image_urls(body):
            if (field, *rest) in flagged or self.quiet_about(field):
                continue
            reason = _not_public(url)
            if reason is not None:
                self.problem(
                    field,
                    rest,
                    f"must be a public http(s) image URL: {reason}",
                    "the relay's servers fetch the image: localhost and private addresses "
                    "do not work",
                )
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            for match in _IMAGE_REF.finditer(prompt):
                n = int(match.group(1))
                if not references:
                    self.problem(
                        "prompt",
                        (),
                        f"{match.group(0)} names a reference image, but the shot has none",
                        "@Image1...@Image4 only work with reference_image_urls (Q3 Pro)",
                    )
                    break
                if not 1 <= n <= len(references):
                    self.problem(
                        "prompt",
                        (),
                        f"{match.group(0)} is not among this shot's {len(references)} "
                        "reference image(s)",
                        "write {{ ref('asset') }} to get the right @ImageN",
                    )
                    break


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
    if http_url(url) is None:
        return "it is not an http(s) URL"
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
    # ASCII digits only, and few: "²".isdigit() is true, and int() of 5000 digits raises.
    if isinstance(value, str) and _SMALL_INT.fullmatch(value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
