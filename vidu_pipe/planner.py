"""Plan: storyboard + manifest → what a run does to each selected shot.

Like make: a shot is up to date when its manifest entry is ``completed`` and
its fingerprint equals the fingerprint of the request it renders to now.

=====================================  ========  ==========================
manifest entry                         action    reason
=====================================  ========  ==========================
none, or ``pending``                   create    new / pending
``failed``                             create    failed
``completed``, other fingerprint       create    changed
``completed``, same fingerprint        skip      up to date (create: forced)
``completed`` without a video URL      create    no video (a hand edit); but one
                                                 whose inline video was saved
                                                 (``--download``) is up to date
``unknown``, same fingerprint          hold      a create got no answer: it may be billed
                                                 (create: --retry-unknown)
``unknown``, other fingerprint         create    changed (the old create is abandoned)
``submitted``, same fingerprint        resume    submitted (poll the task)
``submitted``, other fingerprint       create    changed (old task abandoned)
none, but a shot no longer in the      skip      up to date (its video is
storyboard completed the same request            adopted: a rename, or takes
                                                 changed between 1 and N)
would create, but the results cache    restore   completed before (a reverted
holds this request with a video still            prompt, another branch): no
to be had (cached file, or a URL                 create, the old video back
younger than 24 h)
=====================================  ========  ==========================

``--force`` turns "up to date" into a create; it never re-creates a task that
is still running (that would pay twice for one shot), nor a shot whose create got no
answer: only ``--retry-unknown`` does that (the task may exist and be billed).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from vidu_pipe.errors import UsageError
from vidu_pipe.failures import failure_advice
from vidu_pipe.manifest.history import Restorable
from vidu_pipe.manifest.store import Manifest, ManifestEntry, unknown_note
from vidu_pipe.storyboard.model import BrokenShot, Shot, Storyboard
from vidu_pipe.text import suggest

__all__ = ["Action", "Plan", "Step", "decide", "plan", "select", "select_broken"]

Action = Literal["skip", "resume", "restore", "create", "hold"]


@dataclass(frozen=True)
class Step:
    """What a run does to one shot, and why."""

    shot: Shot
    action: Action
    reason: str
    entry: ManifestEntry | None
    #: A shot no longer in the storyboard whose completed video this shot takes over
    #: (same request): a renamed shot, or ``ID`` <-> ``ID.take1`` when takes change.
    adopted_from: str | None = None
    #: For ``restore``: the earlier result of this very request, from the cache.
    restore: Restorable | None = None
    #: What to change before paying again, when the last failure says the same request is
    #: likely to fail again (a content-review refusal).
    advice: str | None = None


@dataclass(frozen=True)
class Plan:
    """The steps of a run, in storyboard order."""

    storyboard: Storyboard
    steps: tuple[Step, ...]

    def count(self, action: Action) -> int:
        return sum(1 for s in self.steps if s.action == action)

    def billing(self) -> dict[str, tuple[int, int]]:
        """Per model: (tasks to create, seconds of video they bill), models sorted."""
        out: dict[str, tuple[int, int]] = {}
        for step in self.steps:
            if step.action == "create":
                tasks, seconds = out.get(step.shot.model, (0, 0))
                out[step.shot.model] = (tasks + 1, seconds + step.shot.duration)
        return dict(sorted(out.items()))


def select(
    storyboard: Storyboard, only: Sequence[str] = (), tags: Sequence[str] = ()
) -> list[Shot]:
    """The shots that ``--only`` globs (on the id, or the id before ``.takeN``) and
    ``--tag`` pick. Both given: a shot must match both. A pattern or tag that
    matches nothing is a usage error, as a typo should not silently run nothing.
    A shot that did not validate (``run --keep-going``) counts as matched; it is
    in :func:`select_broken`, not here."""
    broken = storyboard.broken
    for pattern in only:
        if not any(_matches(shot, pattern) for shot in storyboard.shots) and not any(
            _matches_broken(b, pattern) for b in broken
        ):
            ids = dict.fromkeys(i for s in storyboard.shots for i in (s.source_id, s.id))
            ids.update(dict.fromkeys(b.id for b in broken))
            raise UsageError(
                f"--only {pattern!r} matches no shot in {storyboard.path}"
                + _did_you_mean(pattern, ids)
            )
    for tag in tags:
        if not any(tag in shot.tags for shot in storyboard.shots) and not any(
            tag in b.tags for b in broken
        ):
            known = sorted(
                {t for s in storyboard.shots for t in s.tags} | {t for b in broken for t in b.tags}
            )
            listed = f" (tags: {', '.join(known)})" if known else " (no shot has a tag)"
            raise UsageError(
                f"--tag {tag!r} is on no shot in {storyboard.path}"
                + _did_you_mean(tag, known)
                + listed
            )
    chosen = [
        shot
        for shot in storyboard.shots
        if (not only or any(_matches(shot, p) for p in only))
        and (not tags or any(t in shot.tags for t in tags))
    ]
    if not chosen and not select_broken(storyboard, only, tags):
        raise UsageError(
            f"no shot in {storyboard.path} matches both --only and --tag (a shot must match both)"
        )
    return chosen


def select_broken(
    storyboard: Storyboard, only: Sequence[str] = (), tags: Sequence[str] = ()
) -> list[BrokenShot]:
    """The shots that did not validate and that ``--only``/``--tag`` would pick."""
    return [
        b
        for b in storyboard.broken
        if (not only or any(_matches_broken(b, p) for p in only))
        and (not tags or any(t in b.tags for t in tags))
    ]


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    """``"; did you mean 'waves'?"`` for a typo, as ``validate`` says it; else ``""``."""
    hint = suggest(word, known)
    return f"; {hint}" if hint else ""


def _matches(shot: Shot, pattern: str) -> bool:
    return fnmatch.fnmatchcase(shot.id, pattern) or fnmatch.fnmatchcase(shot.source_id, pattern)


def _matches_broken(shot: BrokenShot, pattern: str) -> bool:
    # A broken shot has no takes expanded: ID.take2 names it too.
    base = re.sub(r"\.take[0-9*?]+$", "", pattern)
    return fnmatch.fnmatchcase(shot.id, pattern) or fnmatch.fnmatchcase(shot.id, base)


def decide(
    shot: Shot,
    entry: ManifestEntry | None,
    *,
    force: bool = False,
    resumable: bool = True,
    retry_unknown: bool = False,
) -> Step:
    """The table in this module's docstring, for one shot."""
    if entry is None:
        return Step(shot, "create", "new", None)
    same = entry.fingerprint == shot.fingerprint
    if entry.status == "unknown":
        if not resumable:
            return Step(shot, "create", "its simulated create ended with its simulator", entry)
        if not same:
            # A new request: the old create (maybe billed) is abandoned, as a running
            # task of a changed shot is.
            return Step(shot, "create", "changed (an earlier create got no answer)", entry)
        if retry_unknown:
            return Step(shot, "create", "--retry-unknown: " + unknown_note(entry), entry)
        return Step(shot, "hold", unknown_note(entry, hint=False), entry)
    if entry.status == "submitted" and entry.task_id:
        if not resumable:
            return Step(shot, "create", "its simulated task ended with its simulator", entry)
        if same:
            return Step(shot, "resume", "submitted", entry)
        return Step(shot, "create", "changed (the running task is abandoned)", entry)
    if entry.status == "completed":
        if not same:
            return Step(shot, "create", "changed", entry)
        # A video the relay sent inline (a data: URI) is never in the manifest: its saved
        # file (the download record) is the video, and the shot is up to date.
        if not entry.video_url and entry.download is None:
            return Step(shot, "create", "completed without a video URL", entry)
        if force:
            return Step(shot, "create", "forced", entry)
        return Step(shot, "skip", "up to date", entry)
    if entry.status == "failed":
        advice = failure_advice(entry.error) if same else None
        return Step(shot, "create", "failed", entry, advice=advice)
    return Step(shot, "create", entry.status, entry)


def plan(
    storyboard: Storyboard,
    manifest: Manifest | None,
    *,
    only: Sequence[str] = (),
    tags: Sequence[str] = (),
    force: bool = False,
    trusted: bool = True,
    resumable: bool = True,
    restorable: Mapping[str, Restorable] | None = None,
    retry_unknown: bool = False,
) -> Plan:
    """Decide every selected shot against the manifest (None: no manifest yet).

    ``trusted=False`` (a real run over a manifest that the simulator wrote)
    creates every shot: simulated videos are not videos. ``resumable=False``
    (a fresh in-process simulator) creates the shots whose task was submitted
    to an earlier simulator, which no longer exists. ``restorable`` (by
    fingerprint: results of the cache whose video can still be had) turns a
    create into a ``restore``, unless ``force``. ``retry_unknown`` creates the
    shots whose last create got no answer (else they are held).
    """
    cached = restorable if restorable is not None and not force else {}
    entries = manifest.entries if manifest is not None else {}
    shots: Iterable[Shot] = select(storyboard, only, tags)
    if not trusted:
        return Plan(
            storyboard,
            tuple(
                _restored(
                    Step(shot, "create", "only simulated so far", entries.get(shot.id)), cached
                )
                for shot in shots
            ),
        )
    # Completed videos of shots that left the storyboard, by request: a shot that renders
    # exactly that request again takes the video over instead of paying for it again.
    ids = set(storyboard.ids)
    orphans = {
        entry.fingerprint: shot_id
        for shot_id, entry in entries.items()
        if shot_id not in ids and entry.status == "completed" and entry.video_url
    }
    steps = []
    for shot in shots:
        step = decide(
            shot,
            entries.get(shot.id),
            force=force,
            resumable=resumable,
            retry_unknown=retry_unknown,
        )
        old = orphans.pop(shot.fingerprint, None) if step.reason == "new" else None
        if old is not None and not force:
            step = Step(shot, "skip", f"up to date (the video of {old})", entries[old], old)
        steps.append(_restored(step, cached))
    return Plan(storyboard, tuple(steps))


def _restored(step: Step, cached: Mapping[str, Restorable]) -> Step:
    """A create whose request the cache completed before becomes a restore (so does a held
    shot: its video is to be had without asking what the unanswered create did)."""
    found = cached.get(step.shot.fingerprint) if step.action in ("create", "hold") else None
    if found is None:
        return step
    where = "cached file" if found.source == "cache" else "its URL, still fresh"
    made = f", {found.result.finished_at}" if found.result.finished_at else ""
    reason = f"{step.reason}; completed before ({where}{made})"
    return Step(step.shot, "restore", reason, step.entry, restore=found)
