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
