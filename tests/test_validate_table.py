"""The storyboard language as a table: valid storyboards and the request each renders to,
invalid ones and the error each gives (exit code 2, the field, the LINE), through the CLI.

In an invalid case, ``# <-`` marks the line (or the lines) where the problem may be
reported; the expected line is computed from the YAML text, never written as a number.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vidu_pipe.cli import main
from vidu_pipe.storyboard.build import load

MODELS = [
    "viduq3p-540p",
    "viduq3p-720p",
    "viduq3p-1080p",
    "viduq3t-540p",
    "viduq3t-720p",
    "viduq3t-1080p",
]
PRO = MODELS[:3]
TURBO = MODELS[3:]
MARK = "# <-"

HEAD = """\
version: 1
defaults:
  model: viduq3p-720p
  duration: 5
assets:
  hero: https://cdn.example.com/hero.png
  beach: https://cdn.example.com/beach.png
  dog: https://cdn.example.com/dog.png
vars:
  style: cinematic
shots:
"""
HERO = "https://cdn.example.com/hero.png"
BEACH = "https://cdn.example.com/beach.png"
DOG = "https://cdn.example.com/dog.png"
OFF = {"audio": False, "bgm": False}


def doc(shots: str, head: str = HEAD) -> str:
    """A storyboard: ``head`` (up to and including ``shots:``) and the shots, dedented."""
    return head + textwrap.indent(textwrap.dedent(shots).strip("\n"), "  ") + "\n"


def write(tmp_path: Path, text: str, name: str = "board.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@dataclass(frozen=True)
class Reported:
    line: int
    column: int
    text: str  # the problem line and its hint lines


def problems_in(output: str, path: Path) -> list[Reported]:
    """The ``FILE:LINE:COL: ...`` problems in CLI output, each with its hint lines."""
    found: list[Reported] = []
    prefix = re.compile(re.escape(str(path)) + r":(\d+):(\d+): ")
    for line in output.splitlines():
        m = prefix.match(line)
        if m:
            found.append(Reported(int(m.group(1)), int(m.group(2)), line))
        elif found and line.startswith("    "):
            last = found[-1]
            found[-1] = Reported(last.line, last.column, last.text + "\n" + line)
    return found


def marked_lines(text: str) -> set[int]:
    return {n for n, line in enumerate(text.splitlines(), 1) if line.rstrip().endswith(MARK)}


# --- valid storyboards ----------------------------------------------------------------


@dataclass(frozen=True)
class Valid:
    id: str
    yaml: str
    requests: dict[str, dict[str, Any]]


def _mode_cases() -> list[Valid]:
    cases: list[Valid] = []
    for model in MODELS:
        cases.append(
            Valid(
                f"text-{model}",
                doc(f"- id: s\n  model: {model}\n  prompt: A lake at dawn"),
                {"s": {"model": model, "prompt": "A lake at dawn", "duration": 5}},
            )
        )
        cases.append(
            Valid(
                f"image-{model}",
                doc(f"- id: s\n  model: {model}\n  image: hero\n  prompt: Slow push-in"),
                {"s": {"model": model, "prompt": "Slow push-in", "duration": 5, "image": HERO}},
            )
        )
        cases.append(
            Valid(
                f"first-last-{model}",
                doc(
                    f"- id: s\n  model: {model}\n  image: hero\n  last_image: {BEACH}\n"
                    "  prompt: From portrait to shore"
                ),
                {
                    "s": {
                        "model": model,
                        "prompt": "From portrait to shore",
                        "duration": 5,
                        "image": HERO,
                        "last_image": BEACH,
                    }
                },
            )
        )
    for model in PRO:
        cases.append(
            Valid(
                f"reference-{model}",
                doc(
                    f"- id: s\n  model: {model}\n  reference_image_urls: [hero, beach]\n"
                    "  prompt: \"{{ ref('hero') }} walks along {{ ref('beach') }}\""
                ),
                {
                    "s": {
                        "model": model,
                        "prompt": "@Image1 walks along @Image2",
                        "duration": 5,
                        "reference_image_urls": [HERO, BEACH],
                    }
                },
            )
        )
    return cases


VALID: list[Valid] = [
    *_mode_cases(),
    Valid(
        "duration-string-5-sent-as-int",
        doc('- id: s\n  duration: "5"\n  prompt: x'),
        {"s": {"model": "viduq3p-720p", "prompt": "x", "duration": 5}},
    ),
    Valid(
        "duration-int-5",
        doc("- id: s\n  duration: 5\n  prompt: x"),
        {"s": {"model": "viduq3p-720p", "prompt": "x", "duration": 5}},
    ),
    Valid(
        "duration-bounds-1-and-16",
        doc("- id: a\n  duration: 1\n  prompt: x\n- id: b\n  duration: 16\n  prompt: x"),
        {
            "a": {"model": "viduq3p-720p", "prompt": "x", "duration": 1},
            "b": {"model": "viduq3p-720p", "prompt": "x", "duration": 16},
        },
    ),
    Valid(
        "aspect-ratios-unquoted-yaml12",
        doc(
            "- id: a\n  aspect_ratio: 16:9\n  prompt: x\n"
            "- id: b\n  aspect_ratio: 9:16\n  prompt: x\n"
            "- id: c\n  aspect_ratio: 1:1\n  prompt: x"
        ),
        {
            "a": {"model": "viduq3p-720p", "prompt": "x", "duration": 5, "aspect_ratio": "16:9"},
            "b": {"model": "viduq3p-720p", "prompt": "x", "duration": 5, "aspect_ratio": "9:16"},
            "c": {"model": "viduq3p-720p", "prompt": "x", "duration": 5, "aspect_ratio": "1:1"},
        },
    ),
    Valid(
        "prompt-5000-chars",
        doc("- id: s\n  prompt: \"{{ 'y' * 5000 }}\""),
        {"s": {"model": "viduq3p-720p", "prompt": "y" * 5000, "duration": 5}},
    ),
    Valid(
        "seed-bounds",
        doc("- id: a\n  seed: 0\n  prompt: x\n- id: b\n  seed: 2147483647\n  prompt: x"),
        {
            "a": {"model": "viduq3p-720p", "prompt": "x", "duration": 5, "seed": 0},
            "b": {"model": "viduq3p-720p", "prompt": "x", "duration": 5, "seed": 2147483647},
        },
    ),
    Valid(
        "audio-bgm-false-written",
        doc("- id: s\n  audio: false\n  bgm: false\n  prompt: x"),
        {"s": {"model": "viduq3p-720p", "prompt": "x", "duration": 5}},
    ),
    Valid(
        "four-references-by-url-and-name",
        doc(
            f"- id: s\n  reference_image_urls: [hero, beach, dog, {DOG}?v=2]\n"
            f"  prompt: \"{{{{ ref('{DOG}?v=2') }}}} and {{{{ ref('dog') }}}}\""
        ),
        {
            "s": {
                "model": "viduq3p-720p",
                "prompt": "@Image4 and @Image3",
                "duration": 5,
                "reference_image_urls": [HERO, BEACH, DOG, DOG + "?v=2"],
            }
        },
    ),
    Valid(
        "one-reference",
        doc("- id: s\n  reference_image_urls: [dog]\n  prompt: \"{{ ref('dog') }} runs\""),
        {
            "s": {
                "model": "viduq3p-720p",
                "prompt": "@Image1 runs",
                "duration": 5,
                "reference_image_urls": [DOG],
            }
        },
    ),
    Valid(
        "image-from-a-var",
        doc(
            "- id: a\n  vars: {pic: hero}\n  image: '{{ pic }}'\n  prompt: x\n"
            f"- id: b\n  vars: {{pic: '{DOG}'}}\n  image: '{{{{ pic }}}}'\n  prompt: x"
        ),
        {
            "a": {"model": "viduq3p-720p", "prompt": "x", "duration": 5, "image": HERO},
            "b": {"model": "viduq3p-720p", "prompt": "x", "duration": 5, "image": DOG},
        },
    ),
    Valid(
        "shot-overrides-defaults",
        doc(
            "- id: s\n  model: viduq3t-1080p\n  duration: 9\n  prompt: x",
            head=HEAD.replace("  duration: 5\n", "  duration: 5\n  aspect_ratio: 1:1\n  seed: 7\n"),
        ),
        {
            "s": {
                "model": "viduq3t-1080p",
                "prompt": "x",
                "duration": 9,
                "aspect_ratio": "1:1",
                "seed": 7,
            }
        },
    ),
    Valid(
        "turbo-default-pro-shot-with-references",
        doc(
            "- id: s\n  model: viduq3p-540p\n  reference_image_urls: [hero]\n  prompt: x",
            head=HEAD.replace("model: viduq3p-720p", "model: viduq3t-720p"),
        ),
        {
            "s": {
                "model": "viduq3p-540p",
                "prompt": "x",
                "duration": 5,
                "reference_image_urls": [HERO],
            }
        },
    ),
]


def _body(expected: dict[str, Any]) -> dict[str, Any]:
    """Expected request: ``seed`` moves into extra_body, which always has audio/bgm false."""
    body = {k: v for k, v in expected.items() if k != "seed"}
    body["extra_body"] = dict(OFF)
    if "seed" in expected:
        body["extra_body"]["seed"] = expected["seed"]
    return body


@pytest.mark.parametrize("case", VALID, ids=[c.id for c in VALID])
def test_valid_storyboard_renders_exact_requests(
    case: Valid, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, case.yaml)
    assert main(["validate", str(path)]) == 0, capsys.readouterr()
    assert f"{path}: ok" in capsys.readouterr().out
    board = load(path)
    got = {shot.id: dict(shot.request) for shot in board.shots}
    assert got == {sid: _body(req) for sid, req in case.requests.items()}
    for shot in board.shots:
        assert type(shot.request["duration"]) is int


def test_valid_table_covers_every_mode_and_model() -> None:
    seen_modes: set[str] = set()
    seen_models: set[str] = set()
    for case in VALID:
        for req in case.requests.values():
            seen_models.add(req["model"])
            if "reference_image_urls" in req:
                seen_modes.add("reference")
            elif "last_image" in req:
                seen_modes.add("first-last")
            elif "image" in req:
                seen_modes.add("image")
            else:
                seen_modes.add("text")
    assert seen_modes == {"text", "image", "first-last", "reference"}
    assert seen_models == set(MODELS)


# --- invalid storyboards --------------------------------------------------------------


@dataclass(frozen=True)
class Invalid:
    id: str
    yaml: str
    field: str
    also: tuple[str, ...] = ()  # regexes the reported problem (with its hint) must match
    count: int = 1  # most problems the file may report


TURBO_HEAD = HEAD.replace("model: viduq3p-720p", "model: viduq3t-720p")
REFS_HEAD = HEAD.replace("  duration: 5\n", "  duration: 5\n  reference_image_urls: [hero]\n")
NOMODEL_HEAD = HEAD.replace("  model: viduq3p-720p\n", "")

INVALID: list[Invalid] = [
    # models
    Invalid(
        "model-viduq3-720p",
        doc("- id: s\n  model: viduq3-720p  # <-\n  prompt: x"),
        "model",
        (r"one of the six", r"did you mean 'viduq3[pt]-720p'"),
    ),
    Invalid(
        "model-viduq3p-720",
        doc("- id: s\n  model: viduq3p-720  # <-\n  prompt: x"),
        "model",
        (r"did you mean 'viduq3p-720p'",),
    ),
    Invalid(
        "model-vidu2-in-defaults",
        HEAD.replace("model: viduq3p-720p", "model: vidu2.0  # <-") + "  - id: s\n    prompt: x\n",
        "model",
    ),
    Invalid(
        "model-missing-everywhere",
        doc("- id: s  # <-\n  prompt: x", head=NOMODEL_HEAD),
        "model",
        (r"required",),
    ),
    # mode rules
    Invalid(
        "last_image-without-image",
        doc("- id: s  # <-\n  last_image: beach  # <-\n  prompt: x"),
        "last_image",
        (r"image",),
    ),
    Invalid(
        "references-with-image",
        doc(
            "- id: s  # <-\n  image: hero  # <-\n  reference_image_urls: [beach]  # <-\n  prompt: x"
        ),
        "reference_image_urls",
        (r"image",),
    ),
    Invalid(
        "references-with-last_image",
        doc(
            "- id: s  # <-\n  image: hero\n  last_image: dog  # <-\n"
            "  reference_image_urls: [beach]  # <-\n  prompt: x"
        ),
        "reference_image_urls",
        (r"last_image",),
    ),
    Invalid(
        "references-on-turbo-shot",
        doc(
            "- id: s  # <-\n  model: viduq3t-1080p  # <-\n"
            "  reference_image_urls: [hero]  # <-\n  prompt: x"
        ),
        "model",
        (r"Turbo", r"viduq3p"),
    ),
    Invalid(
        "references-on-turbo-from-defaults",
        doc("- id: s  # <-\n  reference_image_urls: [hero]  # <-\n  prompt: x", head=TURBO_HEAD),
        "model",
        (r"Turbo", r"defaults"),
    ),
    Invalid(
        "references-from-defaults-shot-turbo",
        doc("- id: s  # <-\n  model: viduq3t-540p  # <-\n  prompt: x", head=REFS_HEAD),
        "reference",
        (r"Turbo",),
    ),
    Invalid(
        "references-zero",
        doc("- id: s\n  reference_image_urls: []  # <-\n  prompt: x"),
        "reference_image_urls",
        (r"1 to 4",),
    ),
    Invalid(
        "references-five",
        doc("- id: s\n  reference_image_urls: [hero, beach, dog, hero, beach]  # <-\n  prompt: x"),
        "reference_image_urls",
        (r"1 to 4",),
    ),
    # duration
    *(
        Invalid(
            f"duration-{name}",
            doc(f"- id: s\n  duration: {value}  # <-\n  prompt: x"),
            "duration",
            (r"1 to 16",),
        )
        for name, value in [("0", "0"), ("17", "17"), ("abc", "abc"), ("5.5", "5.5")]
    ),
    Invalid(
        "duration-17-rendered-from-var",
        doc("- id: s\n  vars: {d: 17}\n  duration: '{{ d }}'  # <-\n  prompt: x"),
        "duration",
        (r"1 to 16",),
    ),
    # aspect ratio
    Invalid(
        "aspect-4:3",
        doc("- id: s\n  aspect_ratio: 4:3  # <-\n  prompt: x"),
        "aspect_ratio",
        (r"16:9",),
    ),
    Invalid(
        "aspect-4:3-rendered-from-var",
        doc("- id: s\n  vars: {r: '4:3'}\n  aspect_ratio: '{{ r }}'  # <-\n  prompt: x"),
        "aspect_ratio",
    ),
    # prompt
    Invalid("prompt-empty", doc("- id: s\n  prompt: ''  # <-"), "prompt"),
    Invalid("prompt-blank", doc("- id: s\n  prompt: '   '  # <-"), "prompt", (r"blank",)),
    Invalid(
        "prompt-5001-after-rendering",
        doc("- id: s\n  prompt: \"{{ 'y' * 4990 }} {{ style }}a\"  # <-"),
        "prompt",
        (r"5000",),
    ),
    Invalid("prompt-missing", doc("- id: s  # <-\n  image: hero"), "prompt", (r"required",)),
    # seed
    Invalid(
        "seed-minus-1", doc("- id: s\n  seed: -1  # <-\n  prompt: x"), "seed", (r"2147483647",)
    ),
    Invalid(
        "seed-2147483648",
        doc("- id: s\n  seed: 2147483648  # <-\n  prompt: x"),
        "seed",
        (r"2147483647",),
    ),
    # audio and bgm
    Invalid("audio-true", doc("- id: s\n  audio: true  # <-\n  prompt: x"), "audio", (r"false",)),
    Invalid("bgm-true", doc("- id: s\n  bgm: true  # <-\n  prompt: x"), "bgm", (r"false",)),
    Invalid(
        "audio-no-is-text",
        doc("- id: s\n  audio: no  # <-\n  prompt: x"),
        "audio",
        (r"hint: .*'no' is text", r"YAML 1\.2"),
    ),
    Invalid(
        "bgm-no-is-text",
        doc("- id: s\n  bgm: no  # <-\n  prompt: x"),
        "bgm",
        (r"hint: .*'no' is text",),
    ),
    # the seed's common errors
    Invalid(
        "images-field",
        doc("- id: s\n  images: [hero, beach]  # <-\n  prompt: x"),
        "images",
        (r"hint: .*image \+ last_image", r"reference_image_urls"),
    ),
    Invalid(
        "image_urls-field",
        doc("- id: s\n  image_urls: [hero]  # <-\n  prompt: x"),
        "image_urls",
        (r"hint: .*reference_image_urls",),
    ),
    # URLs
    *(
        Invalid(
            f"image-url-{name}",
            doc(f"- id: s\n  image: '{url}'  # <-\n  prompt: x"),
            "image",
            (r"http\(s\)",),
        )
        for name, url in [
            ("ftp", "ftp://cdn.example.com/x.png"),
            ("file", "file:///etc/passwd"),
            ("data", "data:image/png;base64,iVBORw0KGgo="),
            ("localhost", "http://localhost:8000/x.png"),
            ("loopback-ip", "https://127.0.0.1/x.png"),
        ]
    ),
    Invalid(
        "last_image-url-file",
        doc("- id: s\n  image: hero\n  last_image: file:///tmp/x.png  # <-\n  prompt: x"),
        "last_image",
    ),
    Invalid(
        "reference-url-localhost",
        doc(
            "- id: s\n  reference_image_urls:\n    - hero\n"
            "    - http://localhost/x.png  # <-\n  prompt: x"
        ),
        "reference_image_urls.1",
    ),
    Invalid(
        "asset-url-ftp",
        HEAD.replace("  dog: https://", "  dog: ftp://  # <-\n  dog2: https://")
        + "  - id: s\n    prompt: x\n",
        "assets",
    ),
    # unknown fields
    Invalid(
        "unknown-top-level-field",
        doc(
            "- id: s\n  prompt: x", head=HEAD.replace("version: 1\n", "version: 1\nnmae: x  # <-\n")
        ),
        "nmae",
        (r"did you mean 'name'",),
    ),
    Invalid(
        "unknown-shot-field",
        doc("- id: s\n  promt: x  # <-\n  prompt: y"),
        "promt",
        (r"did you mean 'prompt'",),
    ),
    Invalid(
        "unknown-defaults-field",
        HEAD.replace("  duration: 5\n", "  duraton: 5  # <-\n") + "  - id: s\n    prompt: x\n",
        "duraton",
        (r"did you mean 'duration'",),
    ),
    # ids
    Invalid(
        "duplicate-id",
        doc("- id: s\n  prompt: x\n- id: t\n  prompt: x\n- id: s  # <-\n  prompt: y"),
        "id",
        (r"duplicate", r"line 12"),
    ),
    Invalid(
        "duplicate-id-from-takes",
        doc("- id: s\n  takes: 2\n  prompt: x\n- id: s.take2  # <-\n  prompt: y"),
        "id",
        (r"duplicate",),
    ),
    *(
        Invalid(f"bad-id-{name}", doc(f"- id: {text}  # <-\n  prompt: x"), "id")
        for name, text in [
            ("dotdot-slash", "../x"),
            ("slash", "a/b"),
            ("hidden", ".hidden"),
            ("empty", "''"),
            ("space", "'a b'"),
        ]
    ),
    # assets, ref(), @ImageN
    Invalid(
        "unknown-asset-image",
        doc("- id: s\n  image: heroo  # <-\n  prompt: x"),
        "image",
        (r"unknown asset 'heroo'", r"did you mean 'hero'"),
    ),
    Invalid(
        "unknown-asset-reference",
        doc("- id: s\n  reference_image_urls:\n    - hero\n    - cat  # <-\n  prompt: x"),
        "reference_image_urls",
        (r"unknown asset 'cat'",),
    ),
    Invalid(
        "ref-names-a-non-reference",
        doc("- id: s\n  reference_image_urls: [hero, beach]\n  prompt: \"{{ ref('dog') }}\"  # <-"),
        "prompt",
        (r"ref\('dog'\)",),
    ),
    Invalid(
        "ref-without-references",
        doc("- id: s\n  image: hero\n  prompt: \"{{ ref('hero') }}\"  # <-"),
        "prompt",
        (r"ref\('hero'\)",),
    ),
    Invalid(
        "Image3-with-two-references",
        doc(
            "- id: s\n  reference_image_urls: [hero, beach]\n"
            "  prompt: '@Image1 meets @Image3'  # <-"
        ),
        "prompt",
        (r"@Image3",),
    ),
    # Jinja
    Invalid(
        "jinja-syntax-error",
        doc("- id: s\n  prompt: '{{ style '  # <-"),
        "prompt",
        (r"[Ss]yntax",),
    ),
    Invalid(
        "jinja-syntax-error-in-templates",
        HEAD.replace("vars:\n", "templates:\n  look: '{% if %}'  # <-\nvars:\n")
        + "  - id: s\n    prompt: x\n",
        "templates.look",
        (r"[Ss]yntax",),
    ),
    Invalid(
        "undefined-name",
        doc("- id: s\n  prompt: 'A {{ styel }} shot'  # <-"),
        "prompt",
        (r"styel", r"did you mean 'style'"),
    ),
    Invalid(
        "undefined-name-in-image",
        doc("- id: s\n  image: '{{ picture }}'  # <-\n  prompt: x"),
        "image",
        (r"picture",),
    ),
    Invalid(
        "missing-include",
        doc("- id: s\n  prompt: 'x {% include \"nope\" %}'  # <-"),
        "prompt",
        (r"nope",),
    ),
    # document level
    Invalid(
        "version-2",
        doc("- id: s\n  prompt: x", head=HEAD.replace("version: 1", "version: 2  # <-")),
        "version",
    ),
    Invalid(
        "version-string",
        doc("- id: s\n  prompt: x", head=HEAD.replace("version: 1", "version: '1'  # <-")),
        "version",
    ),
    Invalid("shots-empty", HEAD.replace("shots:\n", "shots: []  # <-\n"), "shots"),
    Invalid("shots-missing", "version: 1  # <-\nname: x\n", "shots", (r"required",)),
    Invalid(
        "takes-zero",
        doc("- id: s\n  takes: 0  # <-\n  prompt: x"),
        "takes",
    ),
    # `$` in a Python pattern admits a final newline (issue 10 item 11)
    Invalid("id-final-newline", doc('- id: "abc\\n"  # <-\n  prompt: x'), "id", (r"abc\\n",)),
    Invalid("tag-final-newline", doc('- id: s\n  tags: ["act1\\n"]  # <-\n  prompt: x'), "tags"),
    Invalid(
        "image-url-final-newline",
        doc('- id: s\n  image: "https://cdn.example.com/a.png\\n"  # <-\n  prompt: x'),
        "image",
    ),
    Invalid(
        "asset-url-final-newline",
        HEAD.replace("dog: https://cdn.example.com/dog.png", 'dog: "https://x.org/d.png\\n"  # <-')
        + "  - id: s\n    prompt: x\n",
        "assets.dog",
    ),
    Invalid(
        "asset-name-final-newline",
        HEAD.replace("  dog: https", '  "dog\\n": https').replace("dog.png", "dog.png  # <-")
        + "  - id: s\n    prompt: x\n",
        "assets",
    ),
    # what the storyboard says is echoed with its control characters escaped
    Invalid(
        "terminal-escape-in-id",
        doc('- id: "\\e[2J\\rFAKE"  # <-\n  prompt: x'),
        "id",
        (r"shot '\\x1b\[2J\\rFAKE'",),
    ),
    # a NUL in a path is a located problem, not "ValueError: embedded null byte" (item 12)
    Invalid(
        "download-nul",
        doc(
            "- id: s\n  prompt: x",
            head=HEAD.replace("shots:", 'run: {download: "a\\0b"}  # <-\nshots:'),
        ),
        "run.download",
        (r"control characters",),
    ),
    Invalid(
        "download-newline",
        doc(
            "- id: s\n  prompt: x",
            head=HEAD.replace("shots:", 'run: {download: "v\\n"}  # <-\nshots:'),
        ),
        "run.download",
    ),
]


@pytest.mark.parametrize("case", INVALID, ids=[c.id for c in INVALID])
def test_invalid_storyboard_reports_field_and_line(
    case: Invalid, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, case.yaml)
    expected_lines = marked_lines(case.yaml)
    assert expected_lines, "a case must mark its line"
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    assert "Traceback" not in captured.out + captured.err
    reported = problems_in(captured.out, path)
    assert 1 <= len(reported) <= case.count, captured.out
    hits = [p for p in reported if p.line in expected_lines and case.field in p.text]
    assert hits, f"expected '{case.field}' at line(s) {sorted(expected_lines)}:\n{captured.out}"
    for pattern in case.also:
        assert any(re.search(pattern, p.text) for p in hits), (pattern, captured.out)
    assert re.search(r"\b1 problem|\d+ problems", captured.err)


def test_invalid_table_is_big_enough() -> None:
    assert len(VALID) + len(INVALID) >= 40
    assert len({c.id for c in INVALID}) == len(INVALID)


# --- several problems at once ---------------------------------------------------------

SEVERAL = doc(
    """\
    - id: a
      prompt: x
    - id: b
      duration: 17
      prompt: x
    - id: c
      model: viduq3-720p
      prompt: x
    - id: d
      prompt: 'A {{ styel }}'
    - id: a
      prompt: y
    - id: e
      image: heroo
      prompt: x
    """,
    head=HEAD.replace("version: 1\n", "version: 1\nnmae: oops\n"),
)
SEVERAL_EXPECTED = [
    # (line, shot, field)
    (2, None, "nmae"),
    (16, "b", "duration"),
    (19, "c", "model"),
    (22, "d", "prompt"),
    (23, "a", "id"),
    (26, "e", "image"),
]


def test_every_problem_is_reported_not_only_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, SEVERAL)
    lines = SEVERAL.splitlines()
    for line, _, fld in SEVERAL_EXPECTED:  # the table above matches the text
        assert fld in lines[line - 1] or fld == "id", (line, lines[line - 1])
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    reported = problems_in(captured.out, path)
    assert [p.line for p in reported] == [line for line, _, _ in SEVERAL_EXPECTED]
    for problem, (_, shot, fld) in zip(reported, SEVERAL_EXPECTED, strict=True):
        assert fld in problem.text
        assert (f"shot '{shot}'" in problem.text) == (shot is not None)
    assert "6 problems in 1 file" in captured.err


def test_json_output_lists_every_problem_with_its_parts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, SEVERAL)
    good = write(tmp_path, doc("- id: s\n  prompt: x"), "good.yaml")
    assert main(["validate", "--json", str(good), str(path)]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    assert out["files"] == [
        {"file": str(good), "ok": True, "shots": 1},
        {"file": str(path), "ok": False, "problems": 6},
    ]
    problems = out["problems"]
    for p in problems:
        assert set(p) == {"file", "line", "column", "shot", "field", "message", "hint"}
        assert p["file"] == str(path)
        assert isinstance(p["column"], int) and p["column"] >= 1
        assert p["message"]
    assert [(p["line"], p["shot"], p["field"]) for p in problems] == SEVERAL_EXPECTED
    by_field = {p["field"]: p for p in problems}
    assert "did you mean 'name'" in by_field["nmae"]["hint"]
    assert "did you mean 'hero'" in by_field["image"]["hint"]
    assert "did you mean 'style'" in by_field["prompt"]["hint"]


def test_json_output_for_a_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, doc("- id: s\n  takes: 2\n  prompt: x"))
    assert main(["validate", "--json", str(good)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "ok": True,
        "files": [{"file": str(good), "ok": True, "shots": 2}],
        "problems": [],
    }


def test_problem_line_format_names_file_line_column_shot_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = doc("- id: opening\n  duration: 17\n  prompt: x")
    path = write(tmp_path, text)
    assert main(["validate", str(path)]) == 2
    line = text.splitlines().index("    duration: 17") + 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{path}:{line}:5: shot 'opening': duration: ")


@pytest.mark.parametrize("broken", ["first", "second"])
def test_duplicate_id_reported_even_when_a_shot_has_another_problem(
    broken: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every problem, not only the first: the broken shot's id still counts."""
    bad, good = "  duration: 17\n  prompt: x", "  prompt: x"
    first, second = (bad, good) if broken == "first" else (good, bad)
    text = doc(f"- id: a\n{first}\n- id: a  {MARK}\n{second}")
    path = write(tmp_path, text)
    assert main(["validate", str(path)]) == 2
    reported = problems_in(capsys.readouterr().out, path)
    assert any("duration" in p.text for p in reported)
    assert any(p.line in marked_lines(text) and "duplicate" in p.text for p in reported)
