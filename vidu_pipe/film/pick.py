"""Pick: ``vidu-pipe pick FILE ID.takeK`` writes ``pick: K`` into the storyboard.

The file is edited as text at the line the loader located, never re-dumped, so
comments, key order, quoting and blank lines stay as they were: an existing
``pick:`` has its value replaced; otherwise a ``pick: K`` line goes right after the
shot's ``takes:`` (or its ``id:``) at the same indentation, or ``, pick: K`` after
it in a flow mapping (``{id: a, takes: 3}``). The result is loaded again before it
is written (atomically); anything unexpected changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vidu_pipe.errors import UsageError
from vidu_pipe.fileio import write_atomic
from vidu_pipe.storyboard.build import build_storyboard, load
from vidu_pipe.storyboard.loader import load_document, parse_yaml
from vidu_pipe.text import suggest

__all__ = ["Picked", "pick"]

_TAKE = re.compile(r"^(?P<id>.+)\.take(?P<k>[1-9][0-9]*)$")
_VALUE = re.compile(r"pick\s*:[ \t]*(?P<value>[^\s,}#]+)")
_SCALAR = re.compile(r"[ \t]*:[ \t]*(?:\"[^\"]*\"|'[^']*'|[^\s,}#]+)")


@dataclass(frozen=True)
class Picked:
    """What ``pick`` did."""

    path: Path
    shot: str
    take: int
    previous: int | None
    line: int


def pick(path: Path | str, take_id: str, *, dry_run: bool = False) -> Picked:
    """Record take K as the chosen take of shot ID (``ID.takeK``) in the storyboard file
    (``dry_run``: check and locate everything, write nothing).

    Raises :class:`UsageError` for an id that names no take of the storyboard (with a
    suggestion), and :class:`StoryboardError` when the storyboard is invalid.
    """
    file = Path(path)
    board = load(file)
    match = _TAKE.match(take_id)
    sources: dict[str, list[int]] = {s.source_id: [] for s in board.shots}
    for shot in board.shots:
        if shot.take is not None:
            sources[shot.source_id].append(shot.take)
    wanted = match.group("id") if match else take_id
    if wanted not in sources:
        near = suggest(wanted, sources)
        hint = f" ({near})" if near else ""
        raise UsageError(f"{file}: no shot '{wanted}'{hint}")
    takes = sources[wanted]
    if not takes:
        raise UsageError(
            f"{file}: shot '{wanted}' has no takes: pick chooses among takes (set takes: N)"
        )
    if match is None:
        raise UsageError(
            f"{file}: name a take, ID.takeK: '{wanted}.take1' ... '{wanted}.take{max(takes)}'"
        )
    k = int(match.group("k"))
    if k not in takes:
        raise UsageError(
            f"{file}: shot '{wanted}' has takes 1-{max(takes)}; there is no '{take_id}'"
        )
    if file.is_symlink():
        raise UsageError(f"{file} is a symlink; vidu-pipe never writes through one")

    doc = load_document(file)
    index = next(
        i
        for i, raw in enumerate(doc.data["shots"])
        if isinstance(raw, dict) and raw.get("id") == wanted
    )
    raw = doc.data["shots"][index]
    previous = raw.get("pick")
    data = file.read_bytes()  # bytes: line endings and a BOM stay as they are
    bom = data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    # Split at "\n" only, as the YAML positions count lines (str.splitlines would also
    # split at U+2028 and friends inside a prompt).
    lines = re.findall(r"[^\n]*\n|[^\n]+$", text)
    if "pick" in raw:
        line, col = doc.positions[("shots", index, "pick")]
        here = lines[line - 1]
        found = _VALUE.match(here, col - 1)
        if found is None:
            raise UsageError(
                f"{file}:{line}: shot '{wanted}' takes its pick: from a merge key; edit it there"
            )
        start, end = found.span("value")
        lines[line - 1] = here[:start] + str(k) + here[end:]
    else:
        key = "takes" if "takes" in raw else "id"
        line, col = doc.positions[("shots", index, key)]
        here = lines[line - 1]
        before = here[: col - 1].rstrip()
        if before.endswith(("{", ",")):  # a flow mapping: {id: a, takes: 3}
            value = _SCALAR.match(here, col - 1 + len(key))
            if value is None:
                raise UsageError(f"{file}:{line}: cannot find where to write pick: {k}")
            at = value.end()
            lines[line - 1] = here[:at] + f", pick: {k}" + here[at:]
        else:
            ending = "\r\n" if here.endswith("\r\n") else "\n"
            if not here.endswith("\n"):
                lines[line - 1] = here + ending
            # Right after the key's line: the value is one scalar on that line.
            lines.insert(line, " " * (col - 1) + f"pick: {k}" + ending)
            line += 1
    new_text = "".join(lines)
    check = build_storyboard(parse_yaml(new_text, str(file)), file)
    if not any(s.source_id == wanted and s.pick == k for s in check.shots):
        raise UsageError(f"{file}: could not write pick: {k} for shot '{wanted}' safely")
    if not dry_run:
        _replace(file, (b"\xef\xbb\xbf" if bom else b"") + new_text.encode("utf-8"))
    return Picked(file, wanted, k, previous if isinstance(previous, int) else None, line)


def _replace(path: Path, data: bytes) -> None:
    # fileio: an unpredictable temporary name, the file's mode kept, never through a link.
    write_atomic(path, data)
