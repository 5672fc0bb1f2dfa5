"""Who may log in to GemHub.

Two parts:

- ``authenticator_config(auth)``: pure mapping of the ``auth:`` section of gemhub.yaml to
  traitlets configuration (native accounts, GitHub OAuth or a generic OAuth2/OIDC provider).
- ``GemAuthenticator``: jupyterhub-nativeauthenticator (sign-up, admin approval, change
  password, admin password reset, password strength, lockout) with the fixes GemHub needs
  on JupyterHub 6, and a bootstrapped password for the admin account.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator import handlers as native_handlers
from nativeauthenticator.orm import UserInfo
from traitlets import Unicode, default

GEM_AUTHENTICATOR = "gemhub.hub_config.auth.GemAuthenticator"
GITHUB_AUTHENTICATOR = "oauthenticator.github.GitHubOAuthenticator"
GENERIC_AUTHENTICATOR = "oauthenticator.generic.GenericOAuthenticator"

NATIVE_DEFAULTS: dict[str, Any] = {
    "open_signup": True,
    "minimum_password_length": 8,
    "check_common_password": True,
    "allowed_failed_logins": 5,
    "lockout_seconds": 1800,
}

_OAUTH_REQUIRED = {
    "github": ("client_id", "client_secret", "callback_url"),
    "generic": (
        "client_id", "client_secret", "callback_url",
        "authorize_url", "token_url", "userdata_url",
    ),
}
_OAUTH_OPTIONAL = ("username_claim", "scope", "allowed_users", "allow_all")
_DEFAULT_SCOPE = {"github": [], "generic": ["openid", "profile"]}


# -- configuration (pure) -------------------------------------------------------------------
def authenticator_config(auth: Mapping[str, Any]) -> dict[str, Any]:
    """Traitlets configuration for the ``auth:`` section of gemhub.yaml.

    Returns ``{ClassName: {trait: value}, "__class__": "dotted.path.Of.Authenticator"}``.
    Raises ValueError (with a message naming the key) for an unknown type or bad values.
    """
    kind = auth.get("type", "native")
    if kind == "native":
        return _native_config(auth)
    if kind in _OAUTH_REQUIRED:
        return _oauth_config(kind, auth.get("oauth") or {})
    raise ValueError(f"unknown auth type {kind!r} (use native, github or generic)")


def _native_config(auth: Mapping[str, Any]) -> dict[str, Any]:
    opts = {k: auth.get(k, v) for k, v in NATIVE_DEFAULTS.items()}
    for key in ("open_signup", "check_common_password"):
        if not isinstance(opts[key], bool):
            raise ValueError(f"{key} must be true or false, not {opts[key]!r}")
    for key, low in (("minimum_password_length", 1), ("allowed_failed_logins", 0),
                     ("lockout_seconds", 0)):
        value = opts[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{key} must be a whole number >= {low}, not {value!r}")
    return {
        "__class__": GEM_AUTHENTICATOR,
        "NativeAuthenticator": {
            "open_signup": opts["open_signup"],
            "minimum_password_length": opts["minimum_password_length"],
            "check_common_password": opts["check_common_password"],
            "allowed_failed_logins": opts["allowed_failed_logins"],
            "seconds_before_next_try": opts["lockout_seconds"],
        },
    }


def _oauth_config(kind: str, oauth: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(oauth, Mapping):
        raise ValueError(f"oauth must be a mapping, not {oauth!r}")
    required = _OAUTH_REQUIRED[kind]
    unknown = sorted(set(oauth) - set(required) - set(_OAUTH_OPTIONAL))
    if unknown:
        known = ", ".join(required + _OAUTH_OPTIONAL)
        raise ValueError(f"unknown oauth key(s) {', '.join(unknown)} (known: {known})")
    missing = [k for k in required if not oauth.get(k)]
    if missing:
        raise ValueError(f"auth type {kind} needs oauth.{', oauth.'.join(missing)}")
    for key in required:
        if not isinstance(oauth[key], str):
            raise ValueError(f"oauth.{key} must be a string, not {oauth[key]!r}")
    scope = oauth.get("scope", _DEFAULT_SCOPE[kind])
    allowed = oauth.get("allowed_users", [])
    allow_all = oauth.get("allow_all", False)
    for key, value in (("scope", scope), ("allowed_users", allowed)):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"oauth.{key} must be a list of names, not {value!r}")
    if not isinstance(allow_all, bool):
        raise ValueError(f"oauth.allow_all must be true or false, not {allow_all!r}")
    if not allowed and not allow_all:
        raise ValueError("oauth needs allowed_users (a list of user names) or allow_all: true;"
                         " otherwise nobody but the admin could log in")

    traits: dict[str, Any] = {
        "client_id": oauth["client_id"],
        "client_secret": oauth["client_secret"],
        "oauth_callback_url": oauth["callback_url"],
        "scope": list(scope),
        "allow_all": allow_all,
    }
    if allowed:
        traits["allowed_users"] = set(allowed)
    if kind == "github":
        if "username_claim" in oauth:
            raise ValueError("oauth.username_claim is for auth type generic only"
                             " (GitHub user names are the login)")
        return {"__class__": GITHUB_AUTHENTICATOR, "GitHubOAuthenticator": traits}
    claim = oauth.get("username_claim", "preferred_username")
    if not isinstance(claim, str) or not claim:
        raise ValueError(f"oauth.username_claim must be a claim name, not {claim!r}")
    traits.update(
        authorize_url=oauth["authorize_url"],
        token_url=oauth["token_url"],
        userdata_url=oauth["userdata_url"],
        username_claim=claim,
    )
    return {"__class__": GENERIC_AUTHENTICATOR, "GenericOAuthenticator": traits}


# -- the authenticator ----------------------------------------------------------------------
class GemLoginHandler(native_handlers.LoginHandler):
    """nativeauthenticator's /hub/login without its ``self.statsd`` call.

    jupyterhub-nativeauthenticator 1.3.0 times the login with ``self.statsd``, which
    JupyterHub 6 removed from its handlers: every login POST answered 500. We keep the
    package (sign-up, approval, password change and reset are worth having) and replace
    only this handler. The POST follows JupyterHub 6's own LoginHandler (no ``_xsrf`` in
    the auth data, username stripped, 403 on failure) and says so when an account is locked.
    """

    def _render(self, login_error=None, username=None, **kwargs):
        # JupyterHub 6 calls _render(**namespace) to show form errors: accept extra keys.
        return super()._render(login_error=login_error, username=username)

    async def post(self):
        data = {
            arg: self.get_argument(arg, strip=arg == "username")
            for arg in self.request.body_arguments
            if arg != "_xsrf"
        }
        data.setdefault("username", "")
        data.setdefault("password", "")
        user = await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return

        username = data["username"]
        error = "Invalid username or password."
        wait = self.authenticator.lockout_remaining(username)
        if wait > 0:
            error = f"Too many failed logins: this account is locked for {_duration(wait)}."
        else:
            info = self.authenticator.get_user(username)
            if (info is not None and not info.is_authorized
                    and info.is_valid_password(data["password"])):
                error = f"User {username} has not been authorized by an administrator yet."
        self.set_status(403)
        self.finish(await self._render(login_error=error, username=username))


def _duration(seconds: float) -> str:
    """``about 3 more seconds`` / ``about 30 more minutes``."""
    if seconds < 90:
        n, unit = max(1, round(seconds)), "second"
    else:
        n, unit = round(seconds / 60), "minute"
    return f"about {n} more {unit}{'s' if n != 1 else ''}"


class GemAuthenticator(NativeAuthenticator):
    """Native accounts for GemHub.

    On top of NativeAuthenticator:

    - a working /hub/login on JupyterHub 6 (``GemLoginHandler``);
    - the admin accounts get a native account with ``admin_password`` at startup when
      they have none (JupyterHub calls ``add_user`` for every user, admins included,
      in ``init_users`` before it serves requests: nobody can sign up as admin first);
    - lockout: after ``allowed_failed_logins`` failures in a row the account refuses every
      password, the right one too, for ``seconds_before_next_try`` seconds, then starts
      afresh. (NativeAuthenticator compares ``timedelta.seconds``, which wraps every day,
      and keeps the old count, so one wrong password after the window locked again.)
    """

    admin_password = Unicode(
        "",
        help="""Password given to the admin users' native accounts when they have none.

        Applied at hub startup to each name in Authenticator.admin_users without an
        account; an existing account (and its changed password) is left alone. Empty:
        nothing is created, and the admin signs up like everyone else.
        """,
    ).tag(config=True)

    @default("allow_all")
    def _default_allow_all(self):
        # Sign-up plus approval (open_signup or an admin at /hub/authorize) is the gate.
        return True

    def get_handlers(self, app):
        return [
            (path, GemLoginHandler if handler is native_handlers.LoginHandler else handler)
            for path, handler in super().get_handlers(app)
        ]

    # -- admin bootstrap ------------------------------------------------------------------
    def add_user(self, user):
        super().add_user(user)
        if self.admin_password and user.name in self.admin_users:
            self.ensure_account(user.name, self.admin_password)

    def ensure_account(self, username: str, password: str) -> bool:
        """Give ``username`` an approved native account with ``password`` unless it has one.

        Returns True when an account was created. The password strength rules are for
        people choosing passwords; the operator's bootstrap password is only warned about.
        """
        if self.get_user(username) is not None:
            return False
        if not self.is_password_strong(password):
            self.log.warning("The bootstrap password for %s is weak; change it at"
                             " /hub/change-password", username)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
        self.db.add(UserInfo(username=username, password=hashed, is_authorized=True))
        self.db.commit()
        self.log.info("Created the native account of admin user %s", username)
        return True

    # -- lockout --------------------------------------------------------------------------
    def add_login_attempt(self, username):
        entry = self.login_attempts.setdefault(username, {"count": 0, "time": 0.0})
        entry["count"] += 1
        entry["time"] = time.monotonic()

    def lockout_remaining(self, username: str) -> float:
        """Seconds the account stays locked (0 when it is not locked)."""
        if not self.allowed_failed_logins:
            return 0.0
        entry = self.login_attempts.get(self.normalize_username(username))
        if not entry or entry["count"] < self.allowed_failed_logins:
            return 0.0
        return max(0.0, entry["time"] + self.seconds_before_next_try - time.monotonic())

    def can_try_to_login_again(self, username):
        return self.lockout_remaining(username) <= 0

    def is_blocked(self, username):
        entry = self.login_attempts.get(username)
        if not entry or entry["count"] < self.allowed_failed_logins:
            return False
        if self.lockout_remaining(username) > 0:
            return True
        # The window is over: a fresh set of tries.
        self.login_attempts.pop(username, None)
        return False
