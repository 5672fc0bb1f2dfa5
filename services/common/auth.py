"""Hub identity for service handlers.

Browsers log in through the hub's OAuth (HubOAuth cookie, xsrf-checked by HubOAuth for
state-changing requests); API clients send ``Authorization: token T`` (a hub API token).
``HubOAuth.get_user`` handles both. A request authenticated as the service itself (its
own token, ``kind == "service"``) is an *internal caller* and may act for ``?user=NAME``.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.services.auth import (
    HubOAuth,
    HubOAuthCallbackHandler,
    HubOAuthenticated,
    UserNotAllowed,
)
from tornado import web
from tornado.log import app_log

from .errors import BadRequest, Forbidden, Unauthorized, Unavailable


def make_hub_auth(base_url: str, **kw: Any) -> HubOAuth:
    """The service's HubOAuth, configured from the JUPYTERHUB_* environment the hub sets."""
    kw.setdefault("cache_max_age", 60)
    return HubOAuth(base_url=base_url, **kw)


class HubIdentityMixin(HubOAuthenticated):
    """Resolves the caller once per request in :meth:`prepare` (asynchronously)."""

    _not_allowed = False

    @property
    def log(self):
        app = self.settings.get("service_app")
        return app.log if app is not None else app_log

    def initialize(self, **kwargs):
        self.hub_auth = self.settings["hub_auth"]

    @property
    def service_name(self) -> str:
        return self.settings["service_name"]

    def check_hub_user(self, model):
        if self.is_internal(model):
            return model
        return super().check_hub_user(model)

    def is_internal(self, model: dict | None) -> bool:
        return bool(model) and model.get("kind") == "service" and model.get("name") == self.service_name

    async def prepare(self):
        try:
            model = await self.hub_auth.get_user(self, sync=False)
        except web.HTTPError as e:
            self.log.error("hub authentication failed: %s", e)
            raise Unavailable("cannot reach the hub to check who you are") from None
        if model:
            try:
                model = self.check_hub_user(model)
            except UserNotAllowed:
                self._not_allowed = True
                model = None
        self._hub_auth_user_cache = model
        self.current_user = model

    def require_user(self) -> dict:
        """The authenticated hub user or service model, else 401 (403 when not allowed)."""
        if self.current_user is None:
            if self._not_allowed:
                raise Forbidden("you are not allowed to use this service")
            raise Unauthorized("authentication required: log in or send 'Authorization: token <token>'")
        return self.current_user

    def acting_user(self) -> str:
        """Name of the user this request acts for (the internal caller names it with ?user=)."""
        model = self.require_user()
        requested = self.get_query_argument("user", None)
        if self.is_internal(model):
            if not requested or not requested.strip():
                raise BadRequest("the internal caller must name the user it acts for (?user=NAME)")
            return requested.strip()
        if model.get("kind", "user") != "user":
            raise Forbidden(f"{model.get('kind')} {model.get('name')} cannot act here")
        if requested is not None and requested != model["name"]:
            raise Forbidden("only the service itself may act for another user")
        return model["name"]


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    def initialize(self, **kwargs):
        self.hub_auth = self.settings["hub_auth"]
