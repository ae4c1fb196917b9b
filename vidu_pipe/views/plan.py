"""What ``vidu-pipe plan`` prints: a table that fits a screen, the exact request
bodies (``--bodies``), or JSON (``--json``).

The table has one line per shot — what a run would do and why, the mode, model,
duration and the start of the prompt, cut to the terminal's width — then the
counts and the bill. ``--bodies`` adds each selected shot's request body, exactly
as it is (or would be) sent, under its shot's line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidu_pipe.manifest.store import unknown_summary
from vidu_pipe.planner import Plan
from vidu_pipe.text import clean_json, clean_text

__all__ = ["format_bodies", "format_table", "plan_json"]


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _header(the_plan: Plan, manifest_path: Path) -> str:
    where = str(manifest_path) + ("" if manifest_path.exists() else " (none yet)")
    return f"{the_plan.storyboard.path}: {_count(len(the_plan.steps), 'shot')}; manifest {where}"


def _summary(the_plan: Plan) -> list[str]:
    lines = [
        f"{the_plan.count('create')} to create, {the_plan.count('resume')} to resume, "
        + (f"{the_plan.count('restore')} to restore, " if the_plan.count("restore") else "")
        + f"{the_plan.count('skip')} up to date"
    ]
    billing = the_plan.billing()
    if billing:
        parts = [f"{m}: {_count(t, 'task')}, {s} s" for m, (t, s) in billing.items()]
        total_t = sum(t for t, _ in billing.values())
        total_s = sum(s for _, s in billing.values())
        lines.append(
            f"would bill {_count(total_t, 'task')}, {total_s} s of video: " + "; ".join(parts)
        )
    held = [step.shot.id for step in the_plan.steps if step.action == "hold"]
    if held:
        lines.append(unknown_summary(held))
    return lines


# The narrowest PROMPT and WHY columns worth showing (the prompt is never left out).
_MIN_PROMPT = 12
_MIN_WHY = len("up to date")


def _cut(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters (an ellipsis marks the cut)."""
    flat = clean_text(" ".join(text.split()))
    if len(flat) <= width:
        return flat
    return flat[: max(0, width - 1)] + "…"


def format_table(the_plan: Plan, manifest_path: Path, *, width: int = 100) -> str:
    """The default ``plan`` output: one line per shot, then the counts and the bill.

    Every line fits in ``width`` columns except when the fixed columns alone do not
    (a very long shot id). The prompt always keeps at least 12 columns (enough to tell
    shots apart) and takes what is left; a long reason (a restore's) is cut to make room
    rather than pushing the prompt out. Text from the storyboard or the manifest
    (prompts, reasons, warnings) is shown with its control characters escaped.
    """
    steps = the_plan.steps
    head = ("ACTION", "SHOT", "MODE", "MODEL", "DUR", "WHY")
    rows = [
        tuple(
            clean_text(cell)
            for cell in (
                s.action,
                s.shot.id,
                s.shot.mode,
                s.shot.model,
                f"{s.shot.duration}s",
                s.reason,
            )
        )
        for s in steps
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    # WHY gets what the other columns, the separators and the prompt's minimum leave,
    # but never less than "up to date" needs.
    why_room = width - sum(widths[:5]) - 2 * len(head) - _MIN_PROMPT
    widths[5] = min(widths[5], max(why_room, _MIN_WHY))
    rows = [(*row[:5], _cut(row[5], widths[5])) for row in rows]

    def line(cells: tuple[str, ...], prompt: str) -> str:
        fixed = "  ".join(
            c.rjust(widths[i]) if i == 4 else c.ljust(widths[i]) for i, c in enumerate(cells)
        )
        return f"{fixed}  {_cut(prompt, max(width - len(fixed) - 2, _MIN_PROMPT))}"

    out = [_header(the_plan, manifest_path), ""]
    out.append(line(head, "PROMPT"))
    out += [line(row, step.shot.prompt) for row, step in zip(rows, steps, strict=True)]
    out.append("")
    out += _summary(the_plan)
    out += [f"warning: {clean_text(f'{s.shot.id}: {s.advice}')}" for s in steps if s.advice]
    return "\n".join(out) + "\n"


def format_bodies(the_plan: Plan, manifest_path: Path) -> str:
    """``plan --bodies``: each shot's line with its exact request body under it (also
    of a shot a run would not send: up to date, restored or held), then the counts and
    the bill."""
    out = [_header(the_plan, manifest_path), ""]
    width = max((len(s.shot.id) for s in the_plan.steps), default=0)
    for step in the_plan.steps:
        shot = step.shot
        out.append(
            f"{step.action:<7} {clean_text(shot.id):<{width}}  {shot.mode:<10} {shot.model:<14}"
            f" {shot.duration:>2}s  {clean_text(step.reason)}"
        )
        # Every selected shot's body (SPEC §3), sent or not: what a skip, restore or
        # hold was made from (or would be made from) is what one checks.
        body = clean_json(json.dumps(shot.request, indent=2, ensure_ascii=False))
        out += ["    " + line for line in body.splitlines()]
    out.append("")
    out += _summary(the_plan)
    return "\n".join(out) + "\n"


def plan_json(the_plan: Plan, manifest_path: Path) -> dict[str, Any]:
    """``plan --json``: every shot with its action, reason and exact request body."""
    billing = the_plan.billing()
    return {
        "storyboard": str(the_plan.storyboard.path),
        "manifest": str(manifest_path),
        "shots": [
            {
                "id": step.shot.id,
                "action": step.action,
                "reason": step.reason,
                "mode": step.shot.mode,
                "model": step.shot.model,
                "duration": step.shot.duration,
                "fingerprint": step.shot.fingerprint,
                "request": step.shot.request,
            }
            for step in the_plan.steps
        ],
        "summary": {
            "create": the_plan.count("create"),
            "resume": the_plan.count("resume"),
            "skip": the_plan.count("skip"),
            "restore": the_plan.count("restore"),
            # Only when there are: shots whose create got no answer (SPEC §4 unknown).
            **({"hold": the_plan.count("hold")} if the_plan.count("hold") else {}),
            "billing": {m: {"tasks": t, "seconds": s} for m, (t, s) in billing.items()},
        },
    }
