"""`schemas.storyboard_issues` takes a shortcut (each shot on its own: the fields that
differ per shot against their own rules, the rest of the shot memoised, the document
without its shots once); it must report exactly what a plain validation of the whole
document reports: the same issues, with the same paths, messages and hints, in the same
order."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from vidu_pipe.storyboard import schemas

MODELS = [*schemas.MODELS, "viduq3-720p", "{{ m }}", 5]
IMAGES = ["hero", "https://cdn.example.com/a.png", "file:///etc/x.png", "", 3, 3.0, "{{ i }}"]
NUMBERS = [0, 1, 5, 5.0, 16, 17, -1, 2**31, True, "5", " 8 ", "x", None, 2.5]
#: Values that are equal, or print alike, in Python but not to the schema or its messages.
CONFUSABLE = [
    [1, 1.0, True, "1"],
    [0, 0.0, -0.0, False, "0", None, ""],
    [[], {}, [1], [True], [1.0], ["1"]],
]
TEXT = st.one_of(
    st.sampled_from(["", " ", "a b", "s/1", "ok", "{{ x }}", "é"]), st.text(max_size=4)
)
NAMES = st.sampled_from(["place", "n", "ref", "shot", "1x", "a b", "_"])
VARS = st.one_of(
    st.dictionaries(NAMES, st.one_of(st.integers(0, 3), TEXT), max_size=3),
    st.sampled_from([None, [], "x"]),
)
SHOT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.one_of(TEXT, st.sampled_from(["s1", "s2", "x" * 129, 7])),
    "prompt": st.one_of(TEXT, st.sampled_from([None, 3, ["a"]])),
    "model": st.sampled_from(MODELS),
    "duration": st.sampled_from(NUMBERS),
    "aspect_ratio": st.sampled_from(["16:9", "4:3", "1:1", 169]),
    "image": st.sampled_from(IMAGES),
    "last_image": st.sampled_from(IMAGES),
    "reference_image_urls": st.one_of(
        st.lists(st.sampled_from(IMAGES), max_size=5), st.sampled_from(["hero", None])
    ),
    "seed": st.sampled_from(NUMBERS),
    "takes": st.sampled_from(NUMBERS),
    "pick": st.sampled_from(NUMBERS),
    "tags": st.one_of(st.lists(st.sampled_from(["a", "a", "b c", 1]), max_size=3), st.just("a")),
    "vars": VARS,
    "notes": st.one_of(TEXT, st.sampled_from([1, {"a": 1}, {}])),
    "audio": st.sampled_from([False, True, "off", "no"]),
    "bgm": st.sampled_from([False, 0]),
    "images": st.just(["hero"]),
    "image_urls": st.just(["hero"]),
    "promt": TEXT,  # unknown fields, one near a known one
    "x-mine": st.just(1),
    "1": st.just(1),
}


@st.composite
def shots(draw: st.DrawFn) -> Any:
    """A shot: mostly a mapping of some fields (in any order), sometimes not a mapping."""
    if draw(st.integers(0, 15)) == 0:
        return draw(st.sampled_from([None, "s1", [], 3]))
    names = draw(st.lists(st.sampled_from(sorted(SHOT_FIELDS)), unique=True, max_size=7))
    if draw(st.booleans()):
        names = ["id", *(n for n in names if n != "id")]
    return {name: draw(SHOT_FIELDS[name]) for name in names}


@st.composite
def storyboards(draw: st.DrawFn) -> Any:
    """A storyboard, valid or not; its shots repeat one another in part (as generated ones
    do), so that the memoised checks are used, and differ in id, prompt and vars."""
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([None, [], "shots", {}]))
    pool = draw(st.lists(shots(), min_size=1, max_size=4))
    picks = draw(st.lists(st.integers(0, len(pool) - 1), max_size=12))
    # One field of the rest that the copies vary, among values the memo must not confuse.
    varied = draw(
        st.sampled_from(["image", "duration", "model", "takes", "tags", "audio", "promt"])
    )
    values = draw(st.sampled_from(CONFUSABLE))
    shot_list: list[Any] = []
    for k in picks:
        shot = pool[k]
        if isinstance(shot, dict) and draw(st.booleans()):
            shot = {**shot}
            for name in draw(st.lists(st.sampled_from(["id", "prompt", "vars"]), unique=True)):
                shot[name] = draw(SHOT_FIELDS[name])
            if draw(st.booleans()):
                shot[varied] = draw(st.sampled_from(values))
            if draw(st.booleans()):  # the same fields in another order
                shot = dict(reversed(list(shot.items())))
            if isinstance(shot.get("vars"), dict) and draw(st.booleans()):
                shot["vars"] = dict(reversed(list(shot["vars"].items())))
        shot_list.append(shot)
    doc: dict[str, Any] = {
        "version": draw(st.sampled_from([1, 1, 2, "1"])),
        "shots": draw(st.sampled_from([shot_list, shot_list, {}, "s"])),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "name": TEXT,
        "defaults": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    k: SHOT_FIELDS[k]
                    for k in ("model", "duration", "reference_image_urls", "image", "prompt")
                },
            ),
            st.sampled_from([[], "x", {"id": "s"}]),
        ),
        "vars": VARS,
        "assets": st.dictionaries(
            st.sampled_from(["hero", "a b"]), st.sampled_from(IMAGES), max_size=2
        ),
        "templates": st.dictionaries(st.sampled_from(["look", "-x"]), TEXT, max_size=2),
        "run": st.fixed_dictionaries({}, optional={"concurrency": st.sampled_from(NUMBERS)}),
        "x-base": st.just({"model": "viduq3p-720p"}),
        "shot": st.just([]),  # an unknown top-level field
    }
    names = draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=4))
    for name in names:
        doc[name] = draw(optional[name])
    if draw(st.booleans()):  # any order of the top-level keys
        doc = dict(reversed(list(doc.items())))
    return doc


def _as_written(data: Any) -> bool:
    return Draft202012Validator(schemas.load_schema("storyboard")).is_valid(data)


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(storyboards())
def test_shortcut_reports_exactly_what_plain_validation_reports(data: Any) -> None:
    fast = schemas.storyboard_issues(data)
    assert fast == schemas.check("storyboard", data)
    assert (not fast) == _as_written(data)


def test_shortcut_on_many_shots_that_share_their_rest() -> None:
    shots: list[Any] = [
        {"id": f"s{i}", "prompt": f"p {i}", "vars": {"n": i}, "model": "viduq3t-540p"}
        for i in range(50)
    ]
    shots[7]["reference_image_urls"] = ["hero"]  # a Turbo shot with references
    shots[9]["vars"] = {"ref": 1}  # a reserved name
    shots[11]["id"] = "a/b"
    shots[12]["promt"] = "x"
    shots.append("not a shot")
    data = {"version": 1, "defaults": {"reference_image_urls": ["a"]}, "shots": shots}
    fast = schemas.storyboard_issues(data)
    assert fast == schemas.check("storyboard", data)
    assert len(fast) >= 50  # every Turbo shot refused (defaults gives references)


def test_shortcut_never_takes_one_rest_for_another() -> None:
    """Rests that Python finds equal (1 == 1.0 == True), or that print alike, or that hold
    the same fields in another order, are told apart."""
    values = [1, 1.0, True, "1", 0, 0.0, -0.0, False, "0", None, [1], [True], [1.0]]
    shots: list[Any] = []
    for i, value in enumerate(values):
        shots.append({"id": f"a{i}", "image": value, "duration": value})
        shots.append({"id": f"b{i}", "promt": value, "vars": {"1x": value, "ref": value}})
        shots.append({"id": f"c{i}", "vars": {"ref": value, "1x": value}, "promt": value})
    data = {"version": 1, "shots": shots}
    assert schemas.storyboard_issues(data) == schemas.check("storyboard", data)
