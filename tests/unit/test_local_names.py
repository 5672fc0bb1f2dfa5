"""Names derived from user input are injective (issue 9): unix accounts, cgroups, logs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemhub.spawner.local import names

# Hub user names as JupyterHub allows them (lower-cased, no '/'), plus the adversarial
# shapes that collided before: dots, dashes, a trailing hash, long names, non-ASCII.
hub_users = st.one_of(
    st.text(alphabet="abcxyz019._-@+ ", min_size=1, max_size=40),
    st.text(min_size=1, max_size=60).filter(lambda s: "/" not in s),
    st.builds(lambda a, b: f"{a}-{b}", st.text(alphabet="abc.-", min_size=1, max_size=12),
              st.text(alphabet="0123456789abcdef", min_size=8, max_size=12)),
)
server_names = st.one_of(st.just(""), st.text(alphabet="abcgpu019._-@ ", min_size=1, max_size=50),
                         st.text(min_size=1, max_size=60))
UNIX = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def test_the_reported_collision_is_gone():
    a, b = names.unix_name("alice.smith"), names.unix_name("alice-smith-63425827")
    assert a != b
    assert names.legacy_unix_name("alice.smith") == names.legacy_unix_name("alice-smith-63425827")
    # user "alice" + server "x" vs user "alice-x": different units and logs
    assert names.unit_name(names.unix_name("alice"), "x") != names.unit_name(names.unix_name("alice-x"))


def test_safe_names_are_kept_and_others_hashed():
    assert names.unix_name("alice") == "gem-alice"
    assert names.unix_name("alice", "gem-t") == "gem-talice"
    assert names.unix_name("Bob").startswith("gem-bob--")
    assert names.unix_name("a--b") != "gem-a--b"  # '--' marks hashed names only
    assert names.unit_name("gem-alice") == "gem-alice"
    assert names.unit_name("gem-alice", "gpu") == "gem-alice.gpu"
    assert names.server_key("") == ""
    assert names.workspace_group(7) == "gemws-7"
    with pytest.raises(names.NamingError):
        names.workspace_group("7")
    with pytest.raises(names.NamingError):
        names.check_prefix("gem--")


@settings(max_examples=400, deadline=None)
@given(hub_users, hub_users)
def test_unix_names_are_valid_and_injective(a, b):
    na, nb = names.unix_name(a), names.unix_name(b)
    assert UNIX.match(na), na
    assert (na == nb) == (a == b)


@settings(max_examples=400, deadline=None)
@given(hub_users, server_names, hub_users, server_names)
def test_units_are_injective_in_user_and_server(u1, s1, u2, s2):
    a = names.unit_name(names.unix_name(u1), s1)
    b = names.unit_name(names.unix_name(u2), s2)
    assert (a == b) == ((u1, s1) == (u2, s2))
    assert "/" not in a and a not in (".", "..") and len(a) <= 80


@settings(max_examples=300, deadline=None)
@given(server_names, server_names)
def test_server_keys_are_injective(a, b):
    ka, kb = names.server_key(a), names.server_key(b)
    assert (ka == kb) == (a == b)
    assert "." not in ka and "/" not in ka
