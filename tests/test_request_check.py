"""`schemas.request_issues` takes a shortcut (the prompt apart from the rest of the
body, the rest memoised); it must report exactly what a plain validation reports."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from vidu_pipe.storyboard import schemas

URL = st.sampled_from(
    ["https://cdn.example.com/a.png", "http://x.org/b.jpg", "ftp://x/c.png", "http://localhost/d"]
)
BODY = st.fixed_dictionaries(
    {
        "model": st.sampled_from([*schemas.MODELS, "viduq3-720p", 5]),
        "prompt": st.one_of(st.text(max_size=8), st.just(" "), st.just("x" * 5001), st.none()),
        "duration": st.one_of(st.integers(-1, 18), st.just("5")),
        "extra_body": st.fixed_dictionaries(
            {"audio": st.sampled_from([False, True]), "bgm": st.just(False)},
            optional={"seed": st.integers(-2, 2**31)},
        ),
    },
    optional={
        "aspect_ratio": st.sampled_from(["16:9", "4:3", "1:1"]),
        "image": URL,
        "last_image": URL,
        "reference_image_urls": st.lists(URL, max_size=5),
        "images": st.lists(URL, max_size=2),
    },
)


def plain(body: dict[str, Any]) -> set[tuple[tuple[str | int, ...], str]]:
    return {(i.path, i.message) for i in schemas.check("request", body)}


@settings(max_examples=400, deadline=None)
@given(BODY)
def test_shortcut_reports_what_plain_validation_reports(body: dict[str, Any]) -> None:
    fast = {(i.path, i.message) for i in schemas.request_issues(body)}
    assert fast == plain(body)
    # and both agree with jsonschema on the file as written (no inlining, no shortcut)
    as_written = Draft202012Validator(schemas.load_schema("request"))
    assert (not fast) == as_written.is_valid(body)
