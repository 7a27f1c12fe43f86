"""``text_problem``'s quick pass and its naming walk agree on every value: the quick pass says "clean"
exactly when the walk finds nothing to name (control characters, lone surrogates, keys that are not
strings, unsafe integers, non-finite floats, nesting deeper than MAX_DEPTH)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from libs.activity.model import MAX_DEPTH, MAX_SAFE_INT, _clean, _first_text_problem, text_problem

_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=6)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(_text, st.integers(0, 3)), inner, max_size=3),
    ),
    max_leaves=20,
)


@given(_values)
def test_the_quick_pass_and_the_walk_agree(value: object) -> None:
    assert _clean(value, 0) == (_first_text_problem(value) is None)
    assert text_problem(value) == _first_text_problem(value)


def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def test_each_refusal_is_still_named() -> None:
    assert str(text_problem({"data": {"note": "ok\n"}})).startswith("data.note: holds the control character U+000A")
    assert "data" in str(text_problem({"data": {"n": MAX_SAFE_INT + 1}}))
    assert "nests deeper" in str(text_problem(_nested(MAX_DEPTH + 1)))
    assert text_problem(_nested(MAX_DEPTH)) is None
    assert "field name" in str(text_problem({"data": {1: "x"}}))
    assert text_problem({"id": "e-1", "data": {"hours": 2.5, "ok": True, "list": [1, "a"]}}) is None
