"""gemhub.hub_config.auth: the auth: section -> traitlets, and GemAuthenticator's own logic."""

from __future__ import annotations

import pytest
from jupyterhub import orm
from nativeauthenticator import handlers as native_handlers

from gemhub.hub_config import auth
from gemhub.hub_config.auth import GemAuthenticator, GemLoginHandler, authenticator_config

GITHUB = {"client_id": "cid", "client_secret": "sec",
          "callback_url": "https://hub.example/hub/oauth_callback", "allowed_users": ["ada"]}
GENERIC = dict(GITHUB, authorize_url="https://idp.example/auth",
               token_url="https://idp.example/token", userdata_url="https://idp.example/userinfo")


# -- authenticator_config -------------------------------------------------------------------
def test_native_defaults():
    cfg = authenticator_config({"type": "native"})
    assert cfg == {
        "__class__": "gemhub.hub_config.auth.GemAuthenticator",
        "NativeAuthenticator": {
            "open_signup": True, "minimum_password_length": 8, "check_common_password": True,
            "allowed_failed_logins": 5, "seconds_before_next_try": 1800,
        },
    }


def test_native_settings_map_to_native_traits():
    cfg = authenticator_config({"type": "native", "open_signup": False, "lockout_seconds": 3,
                                "allowed_failed_logins": 2, "minimum_password_length": 12,
                                "check_common_password": False, "oauth": {}})
    assert cfg["NativeAuthenticator"] == {
        "open_signup": False, "minimum_password_length": 12, "check_common_password": False,
        "allowed_failed_logins": 2, "seconds_before_next_try": 3,
    }


@pytest.mark.parametrize("key,value", [
    ("open_signup", "yes"), ("minimum_password_length", 0), ("allowed_failed_logins", -1),
    ("lockout_seconds", 1.5), ("lockout_seconds", True),
])
def test_native_bad_values(key, value):
    with pytest.raises(ValueError, match=key):
        authenticator_config({"type": "native", key: value})


def test_unknown_type():
    with pytest.raises(ValueError, match="unknown auth type 'ldap'"):
        authenticator_config({"type": "ldap"})


def test_github():
    cfg = authenticator_config({"type": "github", "oauth": GITHUB})
    assert cfg == {
        "__class__": "oauthenticator.github.GitHubOAuthenticator",
        "GitHubOAuthenticator": {
            "client_id": "cid", "client_secret": "sec",
            "oauth_callback_url": "https://hub.example/hub/oauth_callback",
            "scope": [], "allow_all": False, "allowed_users": {"ada"},
        },
    }


def test_generic():
    cfg = authenticator_config({"type": "generic", "oauth": dict(
        GENERIC, allowed_users=[], allow_all=True, scope=["openid", "email"], username_claim="email")})
    assert cfg["__class__"] == "oauthenticator.generic.GenericOAuthenticator"
    assert cfg["GenericOAuthenticator"] == {
        "client_id": "cid", "client_secret": "sec",
        "oauth_callback_url": "https://hub.example/hub/oauth_callback",
        "scope": ["openid", "email"], "allow_all": True,
        "authorize_url": "https://idp.example/auth", "token_url": "https://idp.example/token",
        "userdata_url": "https://idp.example/userinfo", "username_claim": "email",
    }


def test_generic_defaults():
    traits = authenticator_config({"type": "generic", "oauth": GENERIC})["GenericOAuthenticator"]
    assert traits["username_claim"] == "preferred_username"
    assert traits["scope"] == ["openid", "profile"]


def test_traits_exist_on_the_classes():
    """Every trait we set is a real config trait of the class we name (no silent typos)."""
    from oauthenticator.generic import GenericOAuthenticator
    from oauthenticator.github import GitHubOAuthenticator
    from nativeauthenticator import NativeAuthenticator
    for cls, conf in ((GitHubOAuthenticator, {"type": "github", "oauth": GITHUB}),
                      (GenericOAuthenticator, {"type": "generic", "oauth": GENERIC}),
                      (NativeAuthenticator, {"type": "native"})):
        traits = authenticator_config(conf)[cls.__name__]
        assert set(traits) <= set(cls.class_trait_names(config=True))


@pytest.mark.parametrize("kind,oauth,match", [
    ("github", {}, "needs oauth.client_id, oauth.client_secret, oauth.callback_url"),
    ("generic", GITHUB, "needs oauth.authorize_url, oauth.token_url, oauth.userdata_url"),
    ("github", dict(GITHUB, client_secret=""), "needs oauth.client_secret"),
    ("github", dict(GITHUB, tenant="x"), "unknown oauth key"),
    ("github", dict(GITHUB, allowed_users=[]), "allowed_users .* or allow_all"),
    ("github", dict(GITHUB, scope="read:user"), "oauth.scope must be a list"),
    ("github", dict(GITHUB, allow_all="yes"), "allow_all must be true or false"),
    ("github", dict(GITHUB, username_claim="sub"), "generic only"),
    ("generic", dict(GENERIC, username_claim=""), "username_claim"),
    ("generic", dict(GENERIC, client_id=5), "client_id must be a string"),
])
def test_oauth_errors(kind, oauth, match):
    with pytest.raises(ValueError, match=match):
        authenticator_config({"type": kind, "oauth": oauth})


def test_missing_oauth_section():
    with pytest.raises(ValueError, match="needs oauth.client_id"):
        authenticator_config({"type": "github"})


# -- GemAuthenticator -----------------------------------------------------------------------
@pytest.fixture
def authenticator():
    db = orm.new_session_factory("sqlite://")()
    a = GemAuthenticator(_deprecated_db_session=db, admin_users={"admin"},
                         admin_password="Adm1n-secret", allowed_failed_logins=3,
                         seconds_before_next_try=60, minimum_password_length=8,
                         open_signup=True)
    yield a
    db.close()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(auth.time, "monotonic", c)
    return c


def test_login_handler_replaced(authenticator):
    handlers = dict(authenticator.get_handlers(None))
    assert handlers["/login"] is GemLoginHandler
    assert issubclass(GemLoginHandler, native_handlers.LoginHandler)
    assert handlers["/signup"] is native_handlers.SignUpHandler
    assert "/change-password/([^/]+)" in handlers


def test_allow_all_by_default(authenticator):
    assert authenticator.allow_all


async def _login(a, name, password):
    return await a.authenticate(None, {"username": name, "password": password})


async def test_admin_account_bootstrapped_once(authenticator):
    admin = orm.User(name="admin", admin=True)
    authenticator.add_user(admin)
    assert await _login(authenticator, "admin", "Adm1n-secret") == "admin"
    # an existing account (e.g. a changed password) is left alone
    authenticator.change_password("admin", "Changed-pass-1")
    authenticator.add_user(admin)
    assert await _login(authenticator, "admin", "Changed-pass-1") == "admin"
    assert await _login(authenticator, "admin", "Adm1n-secret") is None


async def test_no_bootstrap_for_other_users_or_without_password(authenticator):
    authenticator.add_user(orm.User(name="bob"))
    assert authenticator.get_user("bob") is None
    authenticator.admin_password = ""
    authenticator.add_user(orm.User(name="admin"))
    assert authenticator.get_user("admin") is None


async def test_lockout_refuses_right_password_then_reopens(authenticator, clock):
    authenticator.create_user("carol", "Carol-pass-1")
    for _ in range(3):
        assert await _login(authenticator, "carol", "wrong") is None
    assert authenticator.lockout_remaining("carol") == 60
    clock.now += 59
    assert await _login(authenticator, "carol", "Carol-pass-1") is None  # locked: refused
    assert authenticator.lockout_remaining("carol") == pytest.approx(1)
    clock.now += 1
    assert await _login(authenticator, "carol", "Carol-pass-1") == "carol"


async def test_after_the_window_a_fresh_set_of_tries(authenticator, clock):
    authenticator.create_user("dave", "Dave-pass-1")
    for _ in range(3):
        await _login(authenticator, "dave", "wrong")
    clock.now += 86400 + 61  # NativeAuthenticator's timedelta.seconds wrapped here
    assert await _login(authenticator, "dave", "wrong") is None
    assert authenticator.lockout_remaining("dave") == 0  # one failure does not lock again
    assert await _login(authenticator, "dave", "Dave-pass-1") == "dave"


async def test_success_resets_the_count(authenticator, clock):
    authenticator.create_user("erin", "Erin-pass-1")
    for _ in range(2):
        await _login(authenticator, "erin", "wrong")
    assert await _login(authenticator, "erin", "Erin-pass-1") == "erin"
    for _ in range(2):
        await _login(authenticator, "erin", "wrong")
    assert await _login(authenticator, "erin", "Erin-pass-1") == "erin"


async def test_lockout_off(authenticator, clock):
    authenticator.allowed_failed_logins = 0
    authenticator.create_user("fay", "Fay-pass-12")
    for _ in range(10):
        await _login(authenticator, "fay", "wrong")
    assert authenticator.lockout_remaining("fay") == 0
    assert await _login(authenticator, "fay", "Fay-pass-12") == "fay"


def test_password_strength(authenticator):
    authenticator.check_common_password = True
    assert authenticator.create_user("gus", "short") is None
    assert authenticator.create_user("gus", "password1") is None  # common
    assert authenticator.create_user("gus", "Gus-pass-77") is not None


def test_lockout_message_duration():
    assert auth._duration(0.2) == "about 1 more second"
    assert auth._duration(3) == "about 3 more seconds"
    assert auth._duration(1800) == "about 30 more minutes"
