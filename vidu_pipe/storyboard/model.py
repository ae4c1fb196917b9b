"""The values a storyboard becomes: frozen, rendered, ready to plan and run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vidu_pipe.errors import Problem

__all__ = ["BrokenShot", "Mode", "RunSettings", "Shot", "Storyboard", "fingerprint", "mode_of"]

Mode = Literal["text", "image", "first-last", "reference"]


def mode_of(request: Mapping[str, Any]) -> Mode:
    """The generation mode that a request body's image fields select."""
    if "reference_image_urls" in request:
        return "reference"
    if "last_image" in request:
        return "first-last"
    if "image" in request:
        return "image"
    return "text"


def fingerprint(request: Mapping[str, Any]) -> str:
    """``sha256:`` of the canonical JSON of a request body (sorted keys, no spaces)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Shot:
    """One shot (one take of it) rendered to the exact request body it sends."""

    id: str
    index: int
    source_id: str
    take: int | None
    tags: tuple[str, ...]
    notes: str | None
    request: Mapping[str, Any]
    fingerprint: str
    line: int
    #: The chosen take of the shot this take belongs to, as written (``pick: K``);
    #: None when not written (take 1 is then the chosen one) or without takes.
    pick: int | None = None

    @property
    def chosen(self) -> bool:
        """Whether ``cut`` puts this shot in the film: a shot without takes, or the
        picked take (take 1 when none is picked)."""
        return self.take is None or self.take == (self.pick or 1)

    @property
    def mode(self) -> Mode:
        return mode_of(self.request)

    @property
    def model(self) -> str:
        return str(self.request["model"])

    @property
    def duration(self) -> int:
        return int(self.request["duration"])

    @property
    def prompt(self) -> str:
        return str(self.request["prompt"])


@dataclass(frozen=True)
class BrokenShot:
    """A shot that did not validate (``run --keep-going`` runs the others): its id as
    written (``#N`` when it has none), its line, its tags, and its problems."""

    id: str
    line: int
    tags: tuple[str, ...]
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class RunSettings:
    """The ``run:`` section: scheduling defaults that command-line flags override."""

    concurrency: int | None = None
    rate_per_minute: int | None = None
    poll_interval: float | None = None
    timeout: float | None = None
    max_creates: int | None = None
    download: str | None = None


@dataclass(frozen=True)
class Storyboard:
    """A validated storyboard: every shot rendered, every rule checked."""

    path: Path
    name: str
    shots: tuple[Shot, ...]
    run: RunSettings
    assets: Mapping[str, str]
    #: Shots that did not validate; only ever non-empty when loaded with ``keep_going``.
    broken: tuple[BrokenShot, ...] = ()

    def shot(self, shot_id: str) -> Shot:
        for shot in self.shots:
            if shot.id == shot_id:
                return shot
        raise KeyError(shot_id)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.shots]

    @property
    def default_manifest_path(self) -> Path:
        """The storyboard's path with ``.yaml``/``.yml`` replaced by ``.manifest.json``."""
        if self.path.suffix in (".yaml", ".yml"):
            return self.path.with_suffix(".manifest.json")
        return self.path.with_name(self.path.name + ".manifest.json")
