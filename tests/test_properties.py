"""Properties: no input makes ``vidu-pipe validate`` crash, and every storyboard that
validates renders only requests that the endpoint's rules (request.schema.json) accept.

The known loader crash on ``<<: [...]`` (see test_loader.py) is not generated here on
purpose: these tests guard against new crashes.
"""

from __future__ import annotations

import contextlib
import io
import json
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from vidu_pipe.cli import main
from vidu_pipe.errors import StoryboardError
from vidu_pipe.storyboard.build import load
from vidu_pipe.storyboard.model import Storyboard

ROOT = Path(__file__).resolve().parent.parent
REQUEST_SCHEMA = json.loads((ROOT / "schemas" / "request.schema.json").read_text())
REQUEST = Draft202012Validator(REQUEST_SCHEMA)
PIPELINES = sorted((ROOT / "pipelines").glob("*.yaml"))

MODELS = [
    "viduq3p-540p",
    "viduq3p-720p",
    "viduq3p-1080p",
    "viduq3t-540p",
    "viduq3t-720p",
    "viduq3t-1080p",
]
PRO, TURBO = MODELS[:3], MODELS[3:]
RATIOS = ["16:9", "9:16", "1:1"]
ASSETS = ["hero", "beach", "dog", "cat", "sky"]
URLS = ["https://img.example.com/a.png", "http://img.example.com/b.jpg?x=1"]
MAX_SEED = 2147483647

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples in CI every time; new ones come from new strategies
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue() + err.getvalue()


def assert_requests_valid(storyboard: Storyboard) -> None:
    for shot in storyboard.shots:
        errors = [e.message for e in REQUEST.iter_errors(dict(shot.request))]
        assert not errors, (shot.id, dict(shot.request), errors)
        assert shot.request["extra_body"]["audio"] is False
        assert shot.request["extra_body"]["bgm"] is False


def check_file(path: Path) -> None:
    """The CLI neither crashes nor exits oddly; a storyboard it accepts renders valid requests."""
    code, output = run_cli(["validate", str(path)])
    assert code in (0, 2), output
    assert "Traceback" not in output
    try:
        storyboard = load(path)
    except StoryboardError as exc:
        assert code == 2
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == str(path)
            assert problem.line >= 0 and problem.column >= 0
            assert problem.message
        return
    assert code == 0
    assert_requests_valid(storyboard)


# --- random text ------------------------------------------------------------------------

FRAGMENTS = [
    "version: 1\n",
    "shots:\n",
    "  - id: a\n",
    "    prompt: x\n",
    "defaults:\n",
    "  model: viduq3p-720p\n",
    "  duration: 5\n",
    "model: viduq3t-540p\n",
    "duration: '5'\n",
    "aspect_ratio: 16:9\n",
    "reference_image_urls: [hero, beach]\n",
    "image: hero\n",
    "assets: {hero: 'https://a.example.com/h.png'}\n",
    "vars: {style: x}\n",
    "templates: {look: '{{ style }}'}\n",
    'prompt: \'{{ ref("hero") }} {% include "look" %}\'\n',
    "&a ",
    "*a",
    "!!str ",
    "? ",
    "---\n",
    "...\n",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ": ",
    "'",
    '"',
    "#",
    "|\n",
    ">-\n",
    "\t",
    "\n",
    "  ",
    "\\",
    "\x00",
    "\ufeff",
    "é",
]
yaml_like_text = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=string.printable, max_size=300),
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=5), max_size=40).map("".join),
)


@FUZZ
@given(text=yaml_like_text)
def test_no_traceback_on_random_text(text: str, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_file(path)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_no_traceback_on_random_bytes(raw: bytes, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(raw)
    check_file(path)


# --- random JSON-like structures ----------------------------------------------------------

FIELDS = [
    "id",
    "prompt",
    "model",
    "duration",
    "aspect_ratio",
    "image",
    "last_image",
    "reference_image_urls",
    "seed",
    "takes",
    "tags",
    "vars",
    "notes",
    "audio",
    "bgm",
    "images",
    "image_urls",
]
INTERESTING = [
    *MODELS,
    "viduq3-720p",
    *RATIOS,
    "4:3",
    *ASSETS,
    *URLS,
    "ftp://x.example.com/a.png",
    "http://localhost/a.png",
    "",
    "  ",
    "5",
    "17",
    "no",
    "{{ style }}",
    "{{ nope }}",
    "{{ ref('hero') }}",
    "{{ ref('nope') }}",
    "@Image1 @Image3",
    "{% include 'look' %}",
    "{% include 'nope' %}",
    "{{ shot.id }}",
    "{{ x",
    "{{ ''.__class__ }}",
    "{% for i in range(3) %}{{ i }}{% endfor %}",
    "{{ '%s-%d' % (style, 5) }}",
    "{% set ns = namespace(a='') %}{{ ns.a }}",
    "../x",
    "a/b",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(INTERESTING),
    st.text(max_size=20),
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)
shot_like = st.dictionaries(st.sampled_from(FIELDS), json_like, max_size=8)
storyboard_like = st.fixed_dictionaries(
    {
        "version": st.sampled_from([1, 1, 1, 2, "1", None]),
        "shots": st.lists(shot_like, max_size=4) | json_like,
    },
    optional={
        "defaults": st.dictionaries(st.sampled_from(FIELDS[1:]), json_like, max_size=5),
        "vars": st.dictionaries(st.sampled_from(["style", "x", "1bad"]), json_like, max_size=3),
        "assets": st.dictionaries(st.sampled_from(ASSETS), st.sampled_from(INTERESTING)),
        "templates": st.dictionaries(
            st.sampled_from(["look", "nope"]), st.sampled_from(INTERESTING)
        ),
        "run": st.dictionaries(
            st.sampled_from(["concurrency", "rate_per_minute", "timeout", "bogus"]), json_like
        ),
        "name": json_like,
        "extra": json_like,
    },
)


@FUZZ
@given(data=st.one_of(json_like, storyboard_like))
def test_no_traceback_on_random_structures(data: Any, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    check_file(path)


# --- plausible storyboards: valid by construction, or broken by exactly one mutation ------

durations = st.integers(1, 16) | st.integers(1, 16).map(str)
seeds = st.integers(0, MAX_SEED)
words = st.from_regex(r"[A-Za-z][A-Za-z ,.]{0,30}", fullmatch=True)


def _mutations() -> dict[str, Callable[[dict[str, Any]], None]]:
    def put(**fields: Any) -> Callable[[dict[str, Any]], None]:
        def apply(shot: dict[str, Any]) -> None:
            for key in ("image", "last_image", "reference_image_urls"):
                shot.pop(key, None)
            shot.update(model="viduq3p-720p", duration=5, prompt="x")
            shot.update(fields)

        return apply

    return {
        "none": put(),
        "model-typo": put(model="viduq3-720p"),
        "turbo-refs": put(model="viduq3t-540p", reference_image_urls=[URLS[0]]),
        "refs-and-image": put(image=URLS[0], reference_image_urls=[URLS[1]]),
        "last-without-image": put(last_image=URLS[0]),
        "no-refs": put(reference_image_urls=[]),
        "five-refs": put(reference_image_urls=URLS * 2 + [URLS[0]]),
        "duration-0": put(duration=0),
        "duration-17": put(duration=17),
        "duration-text": put(duration="abc"),
        "duration-float": put(duration=5.5),
        "ratio": put(aspect_ratio="4:3"),
        "seed-negative": put(seed=-1),
        "seed-big": put(seed=MAX_SEED + 1),
        "audio": put(audio=True),
        "bgm-no": put(bgm="no"),
        "images": put(images=URLS),
        "image_urls": put(image_urls=URLS),
        "ftp": put(image="ftp://img.example.com/a.png"),
        "localhost": put(image="http://localhost/a.png"),
        "unknown-asset": put(image="no-such-asset"),
        "empty-prompt": put(prompt=""),
        "blank-prompt": put(prompt="   "),
        "long-prompt": put(prompt="y" * 5001),
        "undefined": put(prompt="{{ no_such_var }}"),
        "jinja-syntax": put(prompt="{{ x"),
        "image3": put(reference_image_urls=URLS, prompt="@Image3"),
        "bad-id": put(id="../x"),
        "unknown-field": put(promt="x"),
        "takes-0": put(takes=0),
    }


MUTATIONS = _mutations()


@st.composite
def plausible(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, dict[str, Any]] | None]:
    """A storyboard and the exact requests it must render to (None: it must be refused).
    ``extra_body.seed`` of None in an expected request means "some seed"."""
    assets = {
        name: f"https://cdn.example.com/{name}.png" for name in ASSETS[: draw(st.integers(0, 5))]
    }
    images = st.sampled_from(list(assets) + URLS)
    defaults: dict[str, Any] = {}
    for key, strategy in [
        ("model", st.sampled_from(MODELS)),
        ("duration", durations),
        ("aspect_ratio", st.sampled_from(RATIOS)),
        ("seed", seeds),
        ("takes", st.integers(1, 3)),
    ]:
        if draw(st.booleans()):
            defaults[key] = draw(strategy)
    style = draw(words)
    doc: dict[str, Any] = {"version": 1, "vars": {"style": style}, "shots": []}
    if assets:
        doc["assets"] = assets
    if defaults:
        doc["defaults"] = defaults
    expected: dict[str, dict[str, Any]] = {}

    def pick(key: str, strategy: st.SearchStrategy[Any], shot: dict[str, Any]) -> Any:
        if key in defaults and draw(st.booleans()):
            return defaults[key]
        shot[key] = draw(strategy)
        return shot[key]

    for i in range(draw(st.integers(1, 4))):
        shot: dict[str, Any] = {"id": f"s{i}"}
        mode = draw(st.sampled_from(["text", "image", "first-last", "reference"]))
        if mode == "reference" and defaults.get("model") not in PRO:
            model = shot["model"] = draw(st.sampled_from(PRO))
        elif mode == "reference":
            model = pick("model", st.sampled_from(PRO), shot)
        elif "model" not in defaults:
            model = shot["model"] = draw(st.sampled_from(MODELS))
        else:
            model = pick("model", st.sampled_from(MODELS), shot)
        duration = (
            pick("duration", durations, shot)
            if "duration" in defaults
            else shot.setdefault("duration", draw(durations))
        )
        ratio = (
            pick("aspect_ratio", st.sampled_from(RATIOS), shot)
            if draw(st.booleans())
            else (defaults.get("aspect_ratio"))
        )
        seed = pick("seed", seeds, shot) if draw(st.booleans()) else defaults.get("seed")
        takes = (
            pick("takes", st.integers(1, 3), shot)
            if draw(st.booleans())
            else (defaults.get("takes", 1))
        )
        request: dict[str, Any] = {"model": model, "duration": int(duration)}
        prompt = draw(words)
        if draw(st.booleans()):
            shot.setdefault("vars", {})["style"] = style = draw(words)
            prompt += " {{ style }}"
        elif draw(st.booleans()):
            prompt += " {{ style }}"
        rendered = prompt.replace(
            "{{ style }}", shot.get("vars", {}).get("style", doc["vars"]["style"])
        )
        if mode in ("image", "first-last"):
            shot["image"] = draw(images)
            request["image"] = assets.get(shot["image"], shot["image"])
        if mode == "first-last":
            shot["last_image"] = draw(images)
            request["last_image"] = assets.get(shot["last_image"], shot["last_image"])
        if mode == "reference":
            refs = draw(st.lists(images, min_size=1, max_size=4))
            shot["reference_image_urls"] = refs
            request["reference_image_urls"] = [assets.get(r, r) for r in refs]
            named = draw(st.sampled_from(refs))
            prompt += f" {{{{ ref('{named}') }}}}"
            rendered += f" @Image{refs.index(named) + 1}"
        shot["prompt"] = prompt
        request["prompt"] = rendered
        if ratio is not None:
            request["aspect_ratio"] = ratio
        doc["shots"].append(shot)
        for k in range(1, takes + 1):
            extra: dict[str, Any] = {"audio": False, "bgm": False}
            if takes > 1:
                # past the largest seed, any in-range seed will do
                over = seed is None or seed + k - 1 > MAX_SEED
                extra["seed"] = None if over else seed + k - 1
            elif seed is not None:
                extra["seed"] = seed
            shot_id = f"s{i}" if takes == 1 else f"s{i}.take{k}"
            expected[shot_id] = {**request, "extra_body": extra}
    if draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(sorted(set(MUTATIONS) - {"none"})))
        MUTATIONS[name](doc["shots"][0])
        return doc, None
    return doc, expected


def _matches(got: dict[str, Any], want: dict[str, Any]) -> bool:
    if want["extra_body"].get("seed", 0) is None:
        seed = got["extra_body"].get("seed")
        if not (type(seed) is int and 0 <= seed <= MAX_SEED):
            return False
        want = {**want, "extra_body": {**want["extra_body"], "seed": seed}}
    return got == want


@FUZZ
@given(case=plausible())
def test_plausible_storyboards_render_exactly_and_validly(
    case: tuple[dict[str, Any], dict[str, dict[str, Any]] | None], tmp_path: Path
) -> None:
    doc, expected = case
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    if expected is None:
        with pytest.raises(StoryboardError) as info:
            load(path)
        assert all(p.line >= 1 for p in info.value.problems), info.value
        return
    storyboard = load(path)
    assert_requests_valid(storyboard)
    got = {shot.id: dict(shot.request) for shot in storyboard.shots}
    assert list(got) == list(expected)
    for shot_id, want in expected.items():
        assert _matches(got[shot_id], want), (shot_id, got[shot_id], want)
    for shot in storyboard.shots:
        assert type(shot.request["duration"]) is int


@pytest.mark.parametrize("name", sorted(set(MUTATIONS) - {"none"}))
def test_each_mutation_alone_breaks_a_valid_storyboard(name: str, tmp_path: Path) -> None:
    """The property test's "must be refused" is about the mutation, not something else:
    the shot every mutation starts from is valid, and each mutation alone is refused."""
    base: dict[str, Any] = {"id": "s0"}
    MUTATIONS["none"](base)
    mutated = dict(base)
    MUTATIONS[name](mutated)
    assert mutated != base
    for shot, ok in ((base, True), (mutated, False)):
        path = tmp_path / "board.yaml"
        path.write_text(yaml.safe_dump({"version": 1, "shots": [shot]}), encoding="utf-8")
        if ok:
            assert load(path).ids == ["s0"]
        else:
            with pytest.raises(StoryboardError):
                load(path)


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_pipeline_requests_validate_against_the_request_schema(path: Path) -> None:
    assert_requests_valid(load(path))
