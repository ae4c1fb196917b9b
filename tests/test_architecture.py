"""The layout holds: layers point one way, and the low layers stay cheap to import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _modules_after(statement: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after running ``statement``."""
    code = f"{statement}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return {name.split(".")[0] for name in json.loads(out.stdout.splitlines()[-1])}


@pytest.mark.parametrize(
    ("statement", "absent"),
    [
        # The HTTP client needs neither the storyboard language nor its schemas.
        ("import vidu_pipe.execution.client", {"yaml", "jinja2", "jsonschema"}),
        # `import vidu_pipe` (the pre-commit hook's first step) loads nothing heavy.
        ("import vidu_pipe", {"yaml", "jinja2", "jsonschema", "httpx", "anyio", "rich"}),
        # Leaf modules import nothing of the package's upper layers.
        ("import vidu_pipe.constants, vidu_pipe.errors, vidu_pipe.events", {"httpx", "yaml"}),
    ],
)
def test_low_layers_do_not_load_high_ones(statement: str, absent: set[str]) -> None:
    loaded = _modules_after(statement)
    assert not (loaded & absent), f"{statement!r} loaded {sorted(loaded & absent)}"


def test_the_layers_contract_is_kept() -> None:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not os.path.exists(lint):
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    result = subprocess.run([lint], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


#: What cli.py may import of the package: the library API and the leaf modules.
CLI_MAY_IMPORT = {
    "vidu_pipe.api",
    "vidu_pipe.constants",
    "vidu_pipe.errors",
    "vidu_pipe.events",
    "vidu_pipe._version",
}
#: The exceptions, each for a reason:
CLI_EXCEPTIONS = {
    # Formatting only: the library returns a Plan, a StatusReport, events; turning them
    # into text (tables, JSON documents, the live progress display) is the CLI's part,
    # and these views are that text, not decisions.
    "vidu_pipe.views.plan": "formats a Plan as the table, --bodies or --json",
    "vidu_pipe.views.progress": "draws a run's events (the live display, --json lines)",
    "vidu_pipe.views.status": "prints a StatusReport",
    # `vidu-pipe validate` runs in pre-commit hooks and must not load vidu_pipe.api (which
    # loads httpx and anyio): test_integrations.py::test_import_stays_light holds that.
    # It is the same function as vidu_pipe.api.load (api re-exports it).
    "vidu_pipe.storyboard.build": "load, for validate only (no httpx/anyio at commit time)",
}


def _package_imports(path: Path) -> dict[str, set[str]]:
    """Every ``vidu_pipe`` module a file imports (top-level and inside functions),
    module -> the names taken from it."""
    import ast

    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "vidu_pipe":
                found.setdefault(node.module, set()).update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):  # relative: the package's own, by definition
            found.setdefault(f"<relative level {node.level}> {node.module}", set())
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "vidu_pipe":
                    found.setdefault(alias.name, set())
    return found


def test_the_cli_talks_only_to_the_api() -> None:
    """Every decision lives in the library: the CLI parses, calls vidu_pipe.api, formats."""
    imports = _package_imports(REPO / "vidu_pipe" / "cli.py")
    assert "vidu_pipe.api" in imports  # the walk sees function-level imports
    unexpected = set(imports) - CLI_MAY_IMPORT - set(CLI_EXCEPTIONS)
    assert not unexpected, f"cli.py imports {sorted(unexpected)}: route them through api"
    # The validate exception takes load and nothing else.
    assert imports.get("vidu_pipe.storyboard.build", {"load"}) == {"load"}


def test_the_import_walk_sees_function_level_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import vidu_pipe.planner\n"
        "def f():\n    from vidu_pipe.film.pick import pick\n    import os\n"
        "class C:\n    def g(self):\n        from . import x\n",
        encoding="utf-8",
    )
    assert set(_package_imports(source)) == {
        "vidu_pipe.planner",
        "vidu_pipe.film.pick",
        "<relative level 1> None",
    }
