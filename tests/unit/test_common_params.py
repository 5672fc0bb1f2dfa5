"""The one parser of client numbers (services/common/params.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemhub.services.common import params
from gemhub.services.common.errors import BadRequest

INT64_MAX = 2**63 - 1


@pytest.mark.parametrize("value, expected", [("1", 1), (7, 7), ("9223372036854775807", INT64_MAX),
                                             ("007", 7)])
def test_ids(value, expected):
    assert params.id_arg(value) == expected


@pytest.mark.parametrize("value", ["0", 0, "-1", -1, str(2**63), 2**63, "²", "٣", " 7", "7 ", "+7", "7_0",
                                   "1e3", "", "x", True, 1.0, None, [1], "9" * 5000])
def test_bad_ids_are_400_with_a_short_message(value):
    with pytest.raises(BadRequest) as e:
        params.id_arg(value, "workspace id")
    assert "workspace id" in e.value.message and len(e.value.message) < 200


def test_ranges_and_negatives():
    assert params.whole("-3", "delta", low=-5) == -3
    with pytest.raises(BadRequest, match="between 0 and"):
        params.whole("-1", "offset")
    with pytest.raises(BadRequest, match="between 1 and 10"):
        params.whole(11, "n", low=1, high=10)


def test_page():
    assert params.page(None, None) == (0, 200)
    assert params.page("5", "0") == (5, 200)
    assert params.page("", "10") == (0, 10)
    assert params.page(0, 10_000) == (0, 200)
    for bad in (("-1", None), (None, "-1"), (str(2**63), None), ("²", None)):
        with pytest.raises(BadRequest):
            params.page(*bad)


def test_references_by_name_or_id():
    assert params.ref(" team-a ", "workspace") == "team-a"
    assert params.ref("42", "workspace") == "42" and params.as_id("42") == 42
    assert params.ref(42, "workspace") == 42
    assert params.ref("  ", "workspace") is None and params.ref(None, "workspace") is None
    for name in ("²", str(2**63), "x" * 255):
        assert params.ref(name, "workspace") == name and params.as_id(name) is None
    for bad in (True, 2**63, 0, "a/b", "x" * 256, 1.5, {}):
        with pytest.raises(BadRequest):
            params.ref(bad, "workspace")


def test_flags():
    assert params.flag("TRUE", "f") and params.flag("1", "f") and not params.flag("", "f")
    assert not params.flag(None, "f") and not params.flag("no", "f")
    with pytest.raises(BadRequest):
        params.flag("maybe", "f")


def test_echo_is_short_whatever_it_quotes():
    assert params.echo("abc") == "'abc'"
    assert len(params.echo("x" * 5_000_000)) == params.ECHO_CHARS
    assert len(params.echo({"k": ["v" * 1000]})) == params.ECHO_CHARS


@given(st.text())
def test_text_is_a_bounded_id_or_a_400(text):
    try:
        n = params.id_arg(text)
    except BadRequest:
        return
    assert 1 <= n <= INT64_MAX and text.isascii() and text.isdigit()


@given(st.integers())
def test_json_ints_are_bounded_or_a_400(n):
    try:
        assert 0 <= params.whole(n, "n") <= INT64_MAX
    except BadRequest:
        assert n < 0 or n > INT64_MAX
