"""Fitting in: the pre-commit hook, the typed library API and its example."""

from __future__ import annotations

import inspect
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import vidu_pipe

REPO = Path(__file__).resolve().parent.parent
HOOKS = REPO / ".pre-commit-hooks.yaml"
INVALID = "version: 1\nshots:\n  - id: a\n    prompt: hi\n    model: viduq9-8k\n"


# --- the pre-commit hook --------------------------------------------------------------


def _hook() -> dict[str, object]:
    hooks = yaml.safe_load(HOOKS.read_text(encoding="utf-8"))
    assert isinstance(hooks, list)
    (hook,) = [h for h in hooks if h["id"] == "vidu-pipe-validate"]
    return dict(hook)


def _selected(hook: dict[str, object], paths: list[str]) -> list[str]:
    """The files pre-commit would pass to the hook: `files` regex and `types: [yaml]`."""
    pattern = re.compile(str(hook["files"]))
    return [p for p in paths if pattern.search(p) and p.endswith((".yaml", ".yml"))]


def test_hook_definition() -> None:
    hook = _hook()
    assert hook["entry"] == "vidu-pipe validate"
    assert hook["language"] == "python"
    assert hook["types"] == ["yaml"]
    assert hook.get("pass_filenames", True) is True


@pytest.mark.parametrize(
    ("path", "picked"),
    [
        ("pipelines/lighthouse.yaml", True),
        ("storyboards/teaser.yml", True),
        ("film/pipelines/a.yaml", True),
        ("shorts/intro.storyboard.yaml", True),
        (".github/workflows/ci.yml", False),
        ("docker-compose.yaml", False),
        (".pre-commit-config.yaml", False),
        ("pipelines/templates/grade.j2", False),
        ("pipelines/nested/deeper.yaml", False),
    ],
)
def test_hook_files_pattern(path: str, picked: bool) -> None:
    assert _selected(_hook(), [path]) == ([path] if picked else [])


def _run_entry(files: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The hook's entry as pre-commit runs it, with ``vidu-pipe`` taken from this Python's
    environment (not from PATH, which need not have the venv's scripts on it)."""
    program, *rest = shlex.split(str(_hook()["entry"]))
    assert program == "vidu-pipe"
    command = [sys.executable, "-m", "vidu_pipe", *rest]
    return subprocess.run([*command, *files], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_hook_entry_on_this_repository() -> None:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    files = _selected(_hook(), listed)
    assert "pipelines/lighthouse.yaml" in files
    assert all(f.startswith("pipelines/") for f in files)
    done = _run_entry(files, REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hook_entry_passes_valid_and_fails_invalid(tmp_path: Path) -> None:
    (tmp_path / "pipelines").mkdir()
    shutil.copy(REPO / "pipelines" / "beach-teaser.yaml", tmp_path / "pipelines" / "good.yaml")
    (tmp_path / "pipelines" / "bad.yaml").write_text(INVALID, encoding="utf-8")
    (tmp_path / "compose.yaml").write_text("services: {}\n", encoding="utf-8")
    paths = ["pipelines/good.yaml", "pipelines/bad.yaml", "compose.yaml"]
    assert _selected(_hook(), paths) == ["pipelines/good.yaml", "pipelines/bad.yaml"]

    good = _run_entry(["pipelines/good.yaml"], tmp_path)
    assert good.returncode == 0
    assert "pipelines/good.yaml: ok (6 shots)" in good.stdout

    both = _run_entry(["pipelines/good.yaml", "pipelines/bad.yaml"], tmp_path)
    assert both.returncode == 2
    assert re.search(r"^pipelines/bad\.yaml:5:\d+: shot 'a': ", both.stdout, re.M)


def test_real_pre_commit_with_a_local_hook(tmp_path: Path) -> None:
    """The real tool, offline: a `repo: local` hook with this hook's entry and files.

    (`language: system` here, as a local `python` hook would build a virtualenv with
    the package in it, which needs the network.)"""
    tool = shutil.which("pre-commit")
    if tool is None:
        pytest.skip("pre-commit is not installed (pip install pre-commit)")
    hook = _hook()
    config = {
        "repos": [
            {
                "repo": "local",
                "hooks": [
                    {
                        "id": hook["id"],
                        "name": hook["name"],
                        "entry": hook["entry"],
                        "language": "system",
                        "files": hook["files"],
                        "types": hook["types"],
                    }
                ],
            }
        ]
    }
    (tmp_path / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config), "utf-8")
    (tmp_path / "pipelines").mkdir()
    shutil.copy(REPO / "pipelines" / "beach-teaser.yaml", tmp_path / "pipelines" / "good.yaml")
    (tmp_path / "ci.yml").write_text("not: [a, storyboard]\n", "utf-8")
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PRE_COMMIT_HOME": str(tmp_path / "cache"),
        "GIT_CONFIG_NOSYSTEM": "1",
    }

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True, capture_output=True)

    def pre_commit() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tool, "run", "--all-files", "--color", "never"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    git("init", "-q")
    git("add", ".")
    ok = pre_commit()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "vidu-pipe validate" in ok.stdout and "Passed" in ok.stdout

    (tmp_path / "pipelines" / "bad.yaml").write_text(INVALID, "utf-8")
    git("add", ".")
    bad = pre_commit()
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failed" in bad.stdout
    assert "pipelines/bad.yaml:5:" in bad.stdout


# --- the library API -----------------------------------------------------------------


def test_exported_members() -> None:
    assert sorted(vidu_pipe.__all__) == vidu_pipe.__all__
    for name in vidu_pipe.__all__:
        value = getattr(vidu_pipe, name)
        if name != "__version__":
            assert value.__module__.startswith("vidu_pipe"), name
            assert inspect.getdoc(value), f"{name} has no docstring"
        assert name in dir(vidu_pipe)
    # Functions, not the submodules of the same names.
    for name in ("load", "validate", "plan", "run", "arun"):
        assert inspect.isfunction(getattr(vidu_pipe, name)), name
    assert issubclass(vidu_pipe.StoryboardError, vidu_pipe.ViduPipeError)
    with pytest.raises(AttributeError):
        vidu_pipe.no_such_name  # noqa: B018


def test_library_api_round_trip(tmp_path: Path) -> None:
    board = REPO / "pipelines" / "beach-teaser.yaml"
    assert vidu_pipe.validate(board) == []
    bad = tmp_path / "bad.yaml"
    bad.write_text(INVALID, "utf-8")
    problems = vidu_pipe.validate(bad)
    assert problems and all(isinstance(p, vidu_pipe.Problem) for p in problems)
    with pytest.raises(vidu_pipe.StoryboardError):
        vidu_pipe.load(bad)
    loaded = vidu_pipe.load(board)
    assert isinstance(loaded, vidu_pipe.Storyboard)
    the_plan = vidu_pipe.plan(loaded, manifest=tmp_path / "m.json")
    assert isinstance(the_plan, vidu_pipe.Plan)
    assert the_plan.count("create") == len(loaded.shots)


def test_import_stays_light() -> None:
    """`vidu-pipe validate` runs in pre-commit hooks: it loads no HTTP, async or rich."""
    code = (
        "import sys; from vidu_pipe.cli import main; "
        f"code = main(['validate', {str(REPO / 'pipelines' / 'lighthouse.yaml')!r}]); "
        "heavy = [m for m in ('httpx', 'anyio', 'rich', 'vidu_pipe.api') if m in sys.modules]; "
        "print(heavy); sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_library_example_runs(tmp_path: Path) -> None:
    manifest = REPO / "pipelines" / "lighthouse.manifest.json"
    existed = manifest.exists()
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "library_example.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "lighthouse-keeper: 10 shots"
    assert "plan: 10 to create, 0 up to date" in lines
    assert "run: 10 completed, 0 failed" in lines
    assert "plan again: 0 to create, 10 up to date" in lines
    assert manifest.exists() == existed  # it ran into a temporary manifest
    assert list(tmp_path.iterdir()) == []
