"""The manifest (SPEC §4) and its store's promises (SPEC §5): a task id is on disk
before anything else happens, the file is never half-written, two runs cannot share it,
and the bytes written grow linearly with the state changes."""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidu_pipe.errors import ConfigError, ManifestError
from vidu_pipe.manifest.store import (
    STATUSES,
    Download,
    Manifest,
    ManifestEntry,
    ManifestStore,
    journal_path,
    load_manifest,
    lock_path,
)

STORYBOARD = "beach-teaser.yaml"
BASE_URL = "https://api.aijisu.cn"
ORDER = ("opening", "hero-walk", "transition", "closeup")
REQUEST: dict[str, Any] = {
    "model": "viduq3p-720p",
    "prompt": "Wide aerial shot of a quiet beach, cinematic, golden hour",
    "duration": 5,
    "aspect_ratio": "16:9",
    "extra_body": {"audio": False, "bgm": False, "seed": 42},
}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def completed(shot: str, **changes: Any) -> ManifestEntry:
    entry = ManifestEntry(
        status="completed",
        fingerprint=f"sha256:{shot}",
        request=REQUEST,
        task_id=f"task_{shot}",
        video_url=f"https://cdn.example.com/{shot}.mp4",
        attempts=1,
        submitted_at="2026-11-24T12:00:00Z",
        finished_at="2026-11-24T12:04:00Z",
    )
    return entry.replace(**changes)


def open_store(path: Path, order: Sequence[str] = ORDER, **kwargs: Any) -> ManifestStore:
    options: dict[str, Any] = {"storyboard": STORYBOARD, "base_url": BASE_URL, "order": order}
    options.update(kwargs)
    return ManifestStore.open(path, **options)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "beach-teaser.manifest.json"


def files_of(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir())}


# --- entries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        ManifestEntry("pending", "sha256:abc"),
        ManifestEntry("submitted", "sha256:abc", REQUEST, task_id="task_1", progress=40),
        completed("opening", download=Download("out/opening.mp4", 1234, "ab" * 32)),
        ManifestEntry("failed", "sha256:abc", REQUEST, attempts=3, error="内容审核未通过\u2028x"),
    ],
    ids=["pending", "submitted", "completed+download", "failed"],
)
def test_entry_round_trips_through_json(entry: ManifestEntry) -> None:
    text = json.dumps(entry.to_json(), ensure_ascii=False)
    assert ManifestEntry.from_json(json.loads(text), shot="x") == entry


def test_entry_keys_follow_the_spec_and_optional_ones_appear_only_when_set() -> None:
    spec_keys = [
        "status",
        "fingerprint",
        "request",
        "task_id",
        "video_url",
        "attempts",
        "error",
        "submitted_at",
        "finished_at",
    ]
    assert list(completed("a").to_json()) == spec_keys
    full = completed("a", progress=100, download=Download("a.mp4", 1, "00"))
    assert list(full.to_json()) == [*spec_keys, "progress", "download"]
    assert full.to_json()["download"] == {"path": "a.mp4", "size": 1, "sha256": "00"}


def test_entry_reading_is_lenient_about_missing_optional_keys() -> None:
    entry = ManifestEntry.from_json({"status": "pending", "fingerprint": "sha256:x"}, shot="a")
    assert entry == ManifestEntry("pending", "sha256:x")
    assert (entry.request, entry.task_id, entry.attempts, entry.download) == ({}, None, 0, None)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"status": "done"}, "status"),
        ({"status": None}, "status"),
        ({"fingerprint": 7}, "fingerprint"),
        ({"request": ["model"]}, "request"),
        ({"task_id": 12}, "task_id"),
        ({"attempts": "1"}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"attempts": -1}, "attempts"),
        ({"progress": 101}, "progress"),
        ({"progress": "30%"}, "progress"),
        ({"download": {"path": "a.mp4", "size": 1}}, "sha256"),
        ({"download": {"path": "a.mp4", "size": "1", "sha256": "00"}}, "download.size"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_entry_reading_is_strict_about_present_keys(changes: dict[str, Any], named: str) -> None:
    data = {**completed("a").to_json(), **changes}
    with pytest.raises(ManifestError, match=r"shot 'hero-walk'") as info:
        ManifestEntry.from_json(data, shot="hero-walk")
    assert named in str(info.value)


def test_entry_missing_a_required_key_is_refused() -> None:
    with pytest.raises(ManifestError, match=r"shot 'a'.*missing key 'fingerprint'"):
        ManifestEntry.from_json({"status": "pending"}, shot="a")


@pytest.mark.parametrize(
    "request_body",
    [
        {**REQUEST, "headers": {"Content-Type": "application/json"}},
        {**REQUEST, "Authorization": "sk-secret-value"},
        {**REQUEST, "extra_body": {"api_key": "sk-secret-value"}},
    ],
)
def test_entry_refuses_anything_like_a_credential(request_body: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="credential") as info:
        ManifestEntry("pending", "sha256:x", request_body)
    assert "sk-secret-value" not in str(info.value)


def test_a_prompt_that_starts_like_a_credential_is_just_a_prompt() -> None:
    body = {**REQUEST, "prompt": "Bearer of good news runs across a field"}
    assert ManifestEntry("pending", "sha256:x", body).request["prompt"] == body["prompt"]


def test_entry_keeps_its_own_copy_of_the_request() -> None:
    body = json.loads(json.dumps(REQUEST))
    entry = ManifestEntry("pending", "sha256:x", body)
    body["prompt"] = "changed later"
    body["extra_body"]["seed"] = 7
    assert entry.request["prompt"] == REQUEST["prompt"]
    assert entry.request["extra_body"]["seed"] == 42
    with pytest.raises(TypeError):
        entry.request["prompt"] = "x"  # type: ignore[index]


# --- the written file ----------------------------------------------------------------


def test_written_file_has_the_spec_shape_in_storyboard_order(path: Path) -> None:
    with open_store(path) as store:
        for shot in ("closeup", "opening", "transition"):  # not in storyboard order
            store.set(shot, completed(shot))
        store.set("hero-walk", ManifestEntry("pending", "sha256:hw", {"prompt": "été 🌊"}))
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert list(data) == ["manifest_version", "storyboard", "base_url", "updated_at", "shots"]
    assert data["manifest_version"] == 1
    assert (data["storyboard"], data["base_url"]) == (STORYBOARD, BASE_URL)
    assert TIMESTAMP.match(data["updated_at"])
    assert list(data["shots"]) == list(ORDER)
    assert data["shots"]["opening"] == completed("opening").to_json()
    # canonical: indent 2, UTF-8 as is, a final newline, nothing else
    assert text == json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    assert "été 🌊" in text
    assert text.startswith('{\n  "manifest_version": 1,\n  "storyboard": "beach-teaser.yaml",')
    assert '\n    "opening": {\n      "status": "completed",\n' in text
    assert load_manifest(path) == Manifest(
        STORYBOARD,
        BASE_URL,
        data["updated_at"],
        {s: ManifestEntry.from_json(data["shots"][s]) for s in ORDER},
    )


def _block(lines: list[str], shot: str) -> range:
    start = lines.index(f'    "{shot}": {{\n')
    end = next(i for i in range(start, len(lines)) if lines[i] in ("    },\n", "    }\n"))
    return range(start, end + 1)


def test_changing_one_shot_changes_only_that_shots_lines(path: Path) -> None:
    with open_store(path) as store:
        for shot in ORDER:
            store.set(shot, completed(shot))
    old = path.read_text(encoding="utf-8").splitlines(keepends=True)
    with open_store(path) as store:
        store.set("hero-walk", completed("hero-walk", status="failed", error="timeout"))
    new = path.read_text(encoding="utf-8").splitlines(keepends=True)

    old_block, new_block = _block(old, "hero-walk"), _block(new, "hero-walk")
    changes = [
        op for op in difflib.SequenceMatcher(None, old, new).get_opcodes() if op[0] != "equal"
    ]
    assert changes
    for _, i1, i2, j1, j2 in changes:
        for i in range(i1, i2):
            assert i in old_block or '"updated_at"' in old[i], old[i]
        for j in range(j1, j2):
            assert j in new_block or '"updated_at"' in new[j], new[j]


def test_shots_gone_from_the_storyboard_are_kept_after_it_in_their_old_order(path: Path) -> None:
    with open_store(path, order=["a", "b", "c", "d"]) as store:
        for shot in ("a", "b", "c", "d"):
            store.set(shot, completed(shot))
    with open_store(path, order=["c", "new"]) as store:
        store.set("new", completed("new"))
        store.set("zz-unlisted", completed("zz-unlisted"))
    written = json.loads(path.read_text(encoding="utf-8"))["shots"]
    assert list(written) == ["c", "new", "a", "b", "d", "zz-unlisted"]


def test_close_removes_journal_and_lock_and_an_idle_run_does_not_rewrite(path: Path) -> None:
    with open_store(path) as store:
        store.set("opening", completed("opening"))
        assert journal_path(path).exists() and lock_path(path).exists()
    assert sorted(files_of(path)) == [path.name]
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    with open_store(path) as store:
        assert store.get("opening") == completed("opening")
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert sorted(files_of(path)) == [path.name]


def test_a_new_base_url_is_taken_and_noted(path: Path) -> None:
    with open_store(path) as store:
        store.set("opening", completed("opening"))
    with open_store(path, base_url="http://127.0.0.1:8000") as store:
        assert store.previous_base_url == BASE_URL
    manifest = load_manifest(path)
    assert manifest is not None and manifest.base_url == "http://127.0.0.1:8000"
    assert manifest.get("opening") == completed("opening")


def test_set_after_close_is_refused(path: Path) -> None:
    store = open_store(path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(ManifestError, match="closed"):
        store.set("opening", completed("opening"))


def test_durable_sets_fsync_and_progress_updates_wait(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    with open_store(path) as store:
        monkeypatch.setattr(os, "fsync", counting_fsync)
        store.set("opening", ManifestEntry("submitted", "sha256:o", task_id="task_1"))
        assert len(synced) == 1
        store.set("opening", store.entries["opening"].replace(progress=30), durable=False)
        assert len(synced) == 1
        assert store.statistics().syncs == 1 and store.statistics().journal_records == 2


# --- atomicity and crashes -----------------------------------------------------------


def test_a_failed_compaction_leaves_the_old_manifest_intact(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(path) as store:
        store.set("opening", completed("opening"))
        store.compact()
        old = path.read_bytes()
        store.set("hero-walk", ManifestEntry("submitted", "sha256:hw", task_id="task_hw"))

        def broken_replace(src: object, dst: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(ManifestError, match="No space left"):
            store.compact()
        assert path.read_bytes() == old
        assert not list(path.parent.glob("*.tmp"))
        # the change is still safe in the journal
        seen = load_manifest(path)
        assert seen is not None and seen.get("hero-walk") is not None
        monkeypatch.undo()
    manifest = load_manifest(path)
    assert manifest is not None and set(manifest.entries) == {"opening", "hero-walk"}


def _crash_image(path: Path, into: Path) -> Path:
    """What a crash right now would leave on disk: the files as they are (lock included)."""
    into.mkdir()
    for name in (path.name, journal_path(path).name, lock_path(path).name):
        if (path.parent / name).exists():
            shutil.copy2(path.parent / name, into / name)
    return into / path.name


def test_an_unclosed_stores_journal_is_replayed(path: Path, tmp_path: Path) -> None:
    store = open_store(path)
    try:
        store.set("opening", completed("opening"))
        store.set("hero-walk", ManifestEntry("submitted", "sha256:hw", REQUEST, task_id="t_hw"))
        store.set("opening", completed("opening", attempts=2))
        crashed = _crash_image(path, tmp_path / "crash")
    finally:
        store.close()

    expected = {
        "opening": completed("opening", attempts=2),
        "hero-walk": ManifestEntry("submitted", "sha256:hw", REQUEST, task_id="t_hw"),
    }
    seen = load_manifest(crashed)
    assert seen is not None and dict(seen.entries) == expected
    with open_store(crashed) as resumed:  # the copied lock file is stale: taken over
        assert dict(resumed.entries) == expected
        assert resumed.recovered_records == 3
        assert resumed.statistics().journal_bytes == 0  # folded in at once


def test_the_journal_holds_only_what_changed_and_replays_it(path: Path, tmp_path: Path) -> None:
    submitted = ManifestEntry("submitted", "sha256:op", REQUEST, task_id="t_op", attempts=1)
    store = open_store(path)
    try:
        store.set("opening", submitted)
        store.set("opening", submitted.replace(progress=40), durable=False)
        store.set("opening", completed("opening", fingerprint="sha256:op", task_id="t_op"))
        lines = [json.loads(x) for x in journal_path(path).read_text().splitlines()]
        crashed = _crash_image(path, tmp_path / "crash")
    finally:
        store.close()
    assert lines[0] == {"shot": "opening", "entry": submitted.to_json()}
    assert lines[1] == {"shot": "opening", "set": {"progress": 40}}
    assert set(lines[2]["set"]) == {
        "status",
        "video_url",
        "finished_at",
        "submitted_at",
        "progress",
    }
    assert lines[2]["set"]["progress"] is None  # unset again: gone from the entry
    seen = load_manifest(crashed)
    assert seen is not None
    assert seen.entries["opening"] == completed("opening", fingerprint="sha256:op", task_id="t_op")


def test_a_journal_change_to_an_unknown_shot_is_corruption(path: Path) -> None:
    with open_store(path) as store:
        store.set("opening", completed("opening"))
    journal_path(path).write_text('{"shot":"ghost","set":{"progress":5}}\n')
    before = files_of(path)
    with pytest.raises(ManifestError, match="ghost"):
        load_manifest(path)
    with pytest.raises(ManifestError, match="ghost"):
        open_store(path)
    assert files_of(path) == before


CHILD_PRELUDE = f"""
import os, signal, sys
from vidu_pipe.manifest.store import ManifestEntry, ManifestStore
path = sys.argv[1]
store = ManifestStore.open(path, storyboard={STORYBOARD!r}, base_url={BASE_URL!r}, order=[])
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_9_after_durable_sets_loses_no_task_id(path: Path) -> None:
    child = _python(
        """
        for i in range(50):
            store.set(f"shot-{i}", ManifestEntry("submitted", f"sha256:{i}", task_id=f"task_{i}"))
        store.set("shot-0", store.get("shot-0").replace(progress=40), durable=False)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        str(path),
    )
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    assert journal_path(path).stat().st_size > 0 and lock_path(path).exists()

    seen = load_manifest(path)
    assert seen is not None
    assert {s: e.task_id for s, e in seen.entries.items()} == {
        f"shot-{i}": f"task_{i}" for i in range(50)
    }
    # written at once, only its fsync deferred: a killed process does not lose it
    assert seen.entries["shot-0"].progress == 40
    with open_store(path, order=[]) as store:
        assert dict(store.entries) == dict(seen.entries)


def test_a_torn_last_journal_line_is_ignored(path: Path, tmp_path: Path) -> None:
    with open_store(path) as store:
        store.set("opening", completed("opening"))
        store.set("hero-walk", completed("hero-walk"))
        crashed = _crash_image(path, tmp_path / "crash")
    with journal_path(crashed).open("ab") as journal:
        journal.write(b'{"shot":"closeup","entry":{"status":"subm')
    seen = load_manifest(crashed)
    assert seen is not None and list(seen.entries) == ["opening", "hero-walk"]
    with open_store(crashed) as store:
        assert store.statistics().journal_bytes == 0  # the torn tail is gone before appending
        store.set("closeup", completed("closeup"))
    seen = load_manifest(crashed)
    assert seen is not None and list(seen.entries) == ["opening", "hero-walk", "closeup"]


@pytest.mark.parametrize(
    "bad_line",
    [b"{not json}\n", b'{"shot": "x"}\n', b'{"shot":"x","entry":{"status":"done"}}\n'],
    ids=["garbage", "not-a-record", "bad-entry"],
)
@pytest.mark.parametrize("where", ["middle", "last-complete-line"])
def test_a_bad_complete_journal_line_is_corruption(
    path: Path, tmp_path: Path, bad_line: bytes, where: str
) -> None:
    with open_store(path) as store:
        store.set("opening", completed("opening"))
        crashed = _crash_image(path, tmp_path / "crash")
    good = json.dumps({"shot": "closeup", "entry": completed("closeup").to_json()}).encode()
    with journal_path(crashed).open("ab") as journal:
        journal.write(bad_line + good + b"\n" if where == "middle" else good + b"\n" + bad_line)
    before = files_of(crashed)
    with pytest.raises(ManifestError, match=r"journal:\d+:") as info:
        load_manifest(crashed)
    assert "hint:" in str(info.value)
    with pytest.raises(ManifestError, match=r"journal:\d+:"):
        open_store(crashed)
    after = files_of(crashed)
    after.pop(lock_path(crashed).name, None)  # the stale lock was taken, then released
    before.pop(lock_path(crashed).name, None)
    assert after == before


def test_a_journal_without_its_manifest_is_refused(path: Path) -> None:
    record = {"shot": "opening", "entry": completed("opening").to_json()}
    journal_path(path).write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="without its manifest"):
        load_manifest(path)
    with pytest.raises(ManifestError, match="without its manifest"):
        open_store(path)
    assert not path.exists()


# --- the lock --------------------------------------------------------------------------


def test_a_second_run_from_another_process_fails_at_once_naming_it(path: Path) -> None:
    child = _python(
        """
        store.set("opening", ManifestEntry("submitted", "sha256:o", task_id="task_1"))
        print("locked", flush=True)
        sys.stdin.read()
        store.close()
        """,
        str(path),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "locked\n", child.stderr
        started = time.monotonic()
        with pytest.raises(ConfigError) as info:
            open_store(path)
        assert time.monotonic() - started < 1.0
        message = str(info.value)
        assert f"pid {child.pid}" in message
        assert socket.gethostname() in message and str(path) in message
        assert not isinstance(info.value, ManifestError)
        assert lock_path(path).exists()  # the holder's lock file is left alone
    finally:
        child.communicate(input="", timeout=60)
    assert child.returncode == 0
    with open_store(path) as store:
        assert store.get("opening") == ManifestEntry("submitted", "sha256:o", task_id="task_1")


def test_a_second_open_in_the_same_process_fails_too(path: Path) -> None:
    with open_store(path), pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
        open_store(path)


def test_a_stale_lock_file_is_taken_over(path: Path) -> None:
    stale = {"pid": 999_999, "host": "elsewhere", "started_at": "2020-01-01T00:00:00Z"}
    lock_path(path).write_text(json.dumps(stale), encoding="utf-8")
    with open_store(path):
        holder = json.loads(lock_path(path).read_text(encoding="utf-8"))
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert TIMESTAMP.match(holder["started_at"])
    assert not lock_path(path).exists()


# --- corrupt and foreign manifests ---------------------------------------------------

GOOD = {"manifest_version": 1, "storyboard": STORYBOARD, "base_url": BASE_URL, "shots": {}}


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"", "not valid JSON"),
        (b'{"manifest_version": 1, "storyboard": ', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[]", "expected a JSON object"),
        (json.dumps({**GOOD, "manifest_version": 2}).encode(), "manifest_version is 2"),
        (json.dumps({**GOOD, "manifest_version": "1"}).encode(), "manifest_version is '1'"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "storyboard"}).encode(), "storyboard"),
        (json.dumps({**GOOD, "shots": []}).encode(), "'shots' must be an object"),
        (json.dumps({**GOOD, "extra": 1}).encode(), "unknown top-level key 'extra'"),
        (
            json.dumps(
                {**GOOD, "shots": {"opening": {"status": "done", "fingerprint": ""}}}
            ).encode(),
            "shot 'opening': 'status'",
        ),
    ],
)
def test_a_corrupt_manifest_is_refused_and_left_untouched(
    path: Path, content: bytes, what: str
) -> None:
    path.write_bytes(content)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = str(info.value)
    assert str(path) in message and what in message and "hint:" in message
    with pytest.raises(ManifestError, match=re.escape(what)):
        open_store(path)
    assert files_of(path) == {path.name: content}  # no journal, no lock, no rewrite


def test_a_foreign_manifest_is_refused_and_left_untouched(path: Path) -> None:
    with open_store(path, storyboard="other.yaml") as store:
        store.set("opening", completed("opening"))
    before = files_of(path)
    with pytest.raises(ManifestError, match=r"other\.yaml") as info:
        open_store(path)
    assert "use --manifest to pick another path" in str(info.value)
    assert files_of(path) == before


def test_no_manifest_reads_as_none(path: Path) -> None:
    assert load_manifest(path) is None


# --- cost ------------------------------------------------------------------------------


def _run_like_a_runner(store: ManifestStore, shots: Sequence[str], width: int = 8) -> None:
    """Four state changes per shot, ``width`` shots in flight at once."""
    for start in range(0, len(shots), width):
        wave = shots[start : start + width]
        for shot in wave:
            store.set(shot, ManifestEntry("pending", f"sha256:{shot}", REQUEST))
        for shot in wave:
            store.set(shot, store.entries[shot].replace(status="submitted", task_id=f"task_{shot}"))
        for shot in wave:
            store.set(shot, store.entries[shot].replace(progress=50), durable=False)
        for shot in wave:
            store.set(shot, completed(shot))


@pytest.mark.parametrize("rerun", [False, True], ids=["fresh-run", "rerun-of-a-full-manifest"])
def test_bytes_written_grow_linearly_with_state_changes(
    path: Path, monkeypatch: pytest.MonkeyPatch, rerun: bool
) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # this test counts bytes, not syncs
    shots = [f"shot-{i:04d}" for i in range(2000)]
    if rerun:
        with open_store(path, order=shots) as store:
            _run_like_a_runner(store, shots)
    with open_store(path, order=shots) as store:
        _run_like_a_runner(store, shots)
    stats = store.statistics()
    final = path.stat().st_size
    assert stats.journal_records == 8000
    # Each change is one journal line (only the keys that changed, once a shot is on
    # record); a compaction rewrites the manifest only after as many journal bytes as the
    # manifest has, so the total is a fixed multiple of the final file (measured: 3.4x for
    # a fresh run, 1.7x for a rerun), where rewriting the manifest on every change would
    # write thousands of times its size.
    assert stats.bytes_written <= 4 * final, stats.bytes_written / final
    assert stats.compactions <= 30  # log-many while the file grows, a few once it is full


# --- property: any sequence of changes reads back as a dict ----------------------------


class _SmallStore(ManifestStore):
    min_journal_bytes = 600  # compact often, so sequences cross compactions


texts = st.text(max_size=10)
json_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | texts
entries = st.builds(
    ManifestEntry,
    status=st.sampled_from(STATUSES),
    fingerprint=texts.map("sha256:".__add__),
    request=st.fixed_dictionaries(
        {"model": st.sampled_from(["viduq3p-720p", "viduq3t-540p"]), "prompt": texts},
        optional={
            "duration": st.integers(1, 16),
            # "z…": never a credential-like key (those are refused, tested above).
            "extra_body": st.dictionaries(texts.map("z".__add__), json_scalars, max_size=2),
        },
    ),
    task_id=st.none() | texts,
    video_url=st.none() | texts,
    attempts=st.integers(0, 5),
    error=st.none() | texts,
    submitted_at=st.none() | st.just("2026-11-24T12:00:00Z"),
    finished_at=st.none() | st.just("2026-11-24T12:04:00Z"),
    progress=st.none() | st.integers(0, 100),
    download=st.none() | st.builds(Download, path=texts, size=st.integers(0, 2**40), sha256=texts),
)
SHOTS = [*ORDER, "old-shot", "été"]


@given(entry=entries)
def test_any_entry_round_trips(entry: ManifestEntry) -> None:
    assert ManifestEntry.from_json(json.loads(json.dumps(entry.to_json())), shot="x") == entry


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(
        st.tuples(st.sampled_from([*SHOTS, None]), st.none() | entries, st.booleans()),
        max_size=25,
    )
)
def test_any_sequence_of_sets_reads_back_as_the_dict_model(
    ops: list[tuple[str | None, ManifestEntry | None, bool]],
) -> None:
    """Sets, drops (``None``: a write-ahead mark taken back) and compactions, in any order."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.manifest.json"
        model: dict[str, ManifestEntry] = {}
        store = _SmallStore.open(path, storyboard=STORYBOARD, base_url=BASE_URL, order=ORDER)
        with store:
            for shot, entry, durable in ops:
                if shot is None:
                    store.compact()
                    continue
                store.set(shot, entry, durable=durable)
                if entry is None:
                    model.pop(shot, None)
                else:
                    model[shot] = entry
            # a reader during the run (manifest + journal, no lock) sees it all
            live = load_manifest(path)
            assert live is not None and dict(live.entries) == model
        expected_order = [s for s in ORDER if s in model] + [s for s in model if s not in ORDER]
        done = load_manifest(path)
        assert done is not None and list(done.entries) == expected_order
        assert dict(done.entries) == model
        with _SmallStore.open(path, storyboard=STORYBOARD, base_url=BASE_URL, order=ORDER) as again:
            assert dict(again.entries) == model


# --- the schema is the format ----------------------------------------------------------


def test_the_schema_is_valid_2020_12_and_every_written_manifest_passes_it(path: Path) -> None:
    from jsonschema import Draft202012Validator

    schema = json.loads(
        (Path(__file__).parent.parent / "schemas" / "manifest.schema.json").read_text()
    )
    Draft202012Validator.check_schema(schema)
    assert schema["$defs"]["entry"]["properties"]["status"]["enum"] == list(STATUSES)
    with open_store(path) as store:
        store.set("opening", completed("opening", download=Download("o.mp4", 3, "ab")))
        store.set("hero-walk", ManifestEntry("unknown", "sha256:h", REQUEST, attempts=1))
        store.set("transition", ManifestEntry("submitted", "sha256:t", task_id="t", progress=7))
    Draft202012Validator(schema).validate(json.loads(path.read_text(encoding="utf-8")))


# --- property: no manifest text gives anything but a ManifestError -----------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
entry_keys = st.sampled_from(
    ["status", "fingerprint", "request", "attempts", "progress", "download", "x"]
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    top=st.dictionaries(st.sampled_from([*GOOD, "x"]), json_values, max_size=3),
    entry=st.dictionaries(entry_keys, json_values, max_size=4),
    junk=st.binary(max_size=40),
)
def test_any_manifest_text_reads_or_is_a_manifest_error(
    tmp_path: Path, top: dict[str, Any], entry: dict[str, Any], junk: bytes
) -> None:
    path = tmp_path / "fuzz.manifest.json"
    good_entry = {"status": "pending", "fingerprint": "sha256:x"}
    for content in (
        json.dumps({**GOOD, **top}).encode(),
        json.dumps({**GOOD, "shots": {"a": {**good_entry, **entry}}}).encode(),
        junk,
    ):
        path.write_bytes(content)
        try:
            load_manifest(path)
        except ManifestError as exc:
            assert str(path) in str(exc)
