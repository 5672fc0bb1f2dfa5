"""Workspace rules: names and roles (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemhub.services.common.errors import BadRequest, Conflict, Forbidden
from gemhub.services.quota import domain
from gemhub.services.quota.domain import ADMIN, MEMBER, OWNER

printable = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn"), blacklist_characters="/")


@given(st.text(printable, min_size=1, max_size=63).filter(lambda s: s.strip()))
def test_valid_names_come_back_stripped(name):
    assert domain.validate_name(name) == name.strip()
    assert domain.validate_name(f"  {name}\t") == name.strip()


@given(st.text(printable, min_size=64, max_size=200).filter(lambda s: len(s.strip()) > 63))
def test_long_names_are_refused(name):
    with pytest.raises(BadRequest, match="63"):
        domain.validate_name(name)


@given(st.text(printable, max_size=30), st.text(printable, max_size=30))
def test_slash_is_refused(a, b):
    with pytest.raises(BadRequest):
        domain.validate_name(f"{a}/{b}")


@given(st.text(st.sampled_from(" \t\n\r\u3000"), max_size=10))
def test_blank_names_are_refused(blank):
    with pytest.raises(BadRequest, match="empty"):
        domain.validate_name(blank)


@pytest.mark.parametrize("bad", [None, 3, ["a"], {"a": 1}, b"bytes", "a\x00b", "tab\x07"])
def test_non_strings_and_control_characters_are_refused(bad):
    with pytest.raises(BadRequest):
        domain.validate_name(bad)


def test_boundary_lengths():
    assert domain.validate_name("x" * 63) == "x" * 63
    with pytest.raises(BadRequest):
        domain.validate_name("x" * 64)


@pytest.mark.parametrize("role,allowed", [
    (OWNER, set(domain.PERMISSIONS[OWNER])),
    (ADMIN, {domain.VIEW, domain.CREATE_PROJECT, domain.MANAGE_PROJECTS, domain.RENAME, domain.MANAGE_MEMBERS}),
    (MEMBER, {domain.VIEW, domain.CREATE_PROJECT}),
])
def test_role_permissions(role, allowed):
    for action in domain.PERMISSIONS[OWNER]:
        if action in allowed:
            domain.require(role, action)
        else:
            with pytest.raises(Forbidden):
                domain.require(role, action)


def test_non_member_is_forbidden():
    with pytest.raises(Forbidden, match="not a member"):
        domain.require(None, domain.VIEW, "w")


def test_member_changes():
    ok = domain.check_member_change
    ok("o", OWNER, "x", None, OWNER, 1)
    ok("o", OWNER, "o2", OWNER, MEMBER, 2)
    ok("a", ADMIN, "x", None, ADMIN, 1)
    ok("a", ADMIN, "x", MEMBER, ADMIN, 1)
    ok("m", MEMBER, "m", MEMBER, None, 1)  # leaving
    ok("o", OWNER, "o", OWNER, None, 2)
    for args in (("a", ADMIN, "x", None, OWNER, 1), ("a", ADMIN, "o", OWNER, MEMBER, 2),
                 ("a", ADMIN, "o", OWNER, None, 2), ("m", MEMBER, "x", None, MEMBER, 1),
                 ("m", MEMBER, "y", MEMBER, None, 1), ("x", None, "x", None, MEMBER, 1)):
        with pytest.raises(Forbidden):
            ok(*args)
    for args in (("o", OWNER, "o", OWNER, ADMIN, 1), ("o", OWNER, "o", OWNER, None, 1)):
        with pytest.raises(Conflict, match="owner"):
            ok(*args)
    with pytest.raises(BadRequest, match="role"):
        ok("o", OWNER, "x", None, "boss", 1)


@given(st.text(printable, min_size=1, max_size=300).filter(lambda s: s.strip()))
def test_personal_names_are_valid_and_distinct(username):
    names = domain.personal_names(username)
    assert len(set(names)) == len(names)
    for n in names[:3]:
        assert domain.validate_name(n) == n
