"""Base tornado handlers: JSON API errors in one place, HTML pages, health and OpenAPI."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from tornado import web

from .auth import HubIdentityMixin
from .errors import BadRequest, NotFound, ServiceError

MAX_LIMIT = 200


def _error_of(status: int, exc_info) -> tuple[int, str]:
    exc = exc_info[1] if exc_info else None
    if isinstance(exc, ServiceError):
        return exc.status, exc.message
    if isinstance(exc, web.HTTPError):
        return exc.status_code, exc.log_message or exc.reason or "error"
    if status >= 500:
        return status, "internal error"
    return status, {400: "bad request", 404: "not found", 405: "method not allowed"}.get(status, "error")


class BaseHandler(HubIdentityMixin, web.RequestHandler):
    @property
    def db(self):
        """A session for this request (closed in :meth:`on_finish`)."""
        if not hasattr(self, "_db"):
            self._db = self.settings["sessionmaker"]()
        return self._db

    def on_finish(self):
        if hasattr(self, "_db"):
            self._db.close()

    def log_exception(self, typ, value, tb):
        if isinstance(value, ServiceError):
            self.log.debug("%s %s -> %s %s", self.request.method, self.request.path, value.status, value.message)
            return
        super().log_exception(typ, value, tb)

    def error_status(self, status_code: int, kwargs: dict) -> tuple[int, str]:
        status, message = _error_of(status_code, kwargs.get("exc_info"))
        if status != status_code:
            self.set_status(status)
        return status, message


class APIHandler(BaseHandler):
    """JSON in, JSON out; every error is ``{"status": N, "message": "..."}``."""

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        status, message = self.error_status(status_code, kwargs)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status, "message": message}))

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, default=str))

    def json_body(self) -> dict:
        """The request body as a JSON object; anything else is a 400."""
        if not self.request.body:
            raise BadRequest("a JSON object body is required")
        try:
            data = json.loads(self.request.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"the body is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        return data

    def page_args(self) -> tuple[int, int]:
        """(offset, limit) from the query, validated the JupyterHub way."""
        values = []
        for name, default in (("offset", 0), ("limit", MAX_LIMIT)):
            raw = self.get_query_argument(name, None)
            if raw is None or raw == "":
                values.append(default)
                continue
            try:
                value = int(raw)
            except ValueError:
                raise BadRequest(f"{name} must be an integer, not {raw!r}") from None
            if value < 0:
                raise BadRequest(f"{name} must not be negative")
            values.append(value)
        offset, limit = values
        return offset, min(limit or MAX_LIMIT, MAX_LIMIT)

    def paginated(self, items: list, offset: int, limit: int, total: int) -> dict:
        nxt = None
        if offset + len(items) < total:
            nxt = {"offset": offset + limit, "limit": limit,
                   "url": f"{self.request.path}?offset={offset + limit}&limit={limit}"}
        return {"items": items, "_pagination": {"offset": offset, "limit": limit, "total": total, "next": nxt}}


class PageHandler(BaseHandler):
    """HTML pages rendered with the service's jinja2 environment."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        status, message = self.error_status(status_code, kwargs)
        self.finish(self.render_page("error.html", status=status, message=message))

    def render_page(self, template: str, **ctx: Any) -> str:
        env = self.settings["jinja_env"]
        ctx.setdefault("user", self.current_user)
        ctx.setdefault("base_url", self.settings["service_base_url"])
        hub_url = self.settings.get("hub_prefix", "/hub/")
        ctx.setdefault("hub_url", hub_url)
        # where every service's pages live (/services/), for links between services
        ctx.setdefault("services_url", hub_url.removesuffix("hub/") + "services/")
        # xsrf_token also sets the _xsrf cookie that fetch() requests echo back in X-XSRFToken
        token = self.xsrf_token if self.current_user else b""
        ctx.setdefault("xsrf_token", token.decode() if isinstance(token, bytes) else token)
        return env.get_template(template).render(**ctx)

    async def login_or_user(self) -> dict | None:
        """The user, or None after redirecting a browser to the hub login."""
        if self.current_user is None and not self._not_allowed and self.request.method in ("GET", "HEAD"):
            self.redirect(self.get_login_url())
            return None
        return self.require_user()


class HealthHandler(web.RequestHandler):
    def get(self):
        with self.settings["sessionmaker"]() as session:
            session.execute(text("SELECT 1"))
        self.set_header("Content-Type", "application/json")
        self.finish({"status": "ok", "service": self.settings["service_name"]})


class OpenAPIHandler(web.RequestHandler):
    def get(self):
        registry = self.settings["openapi"]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(registry.document(self.settings["api_base_url"])))


class NotFoundHandler(APIHandler):
    """Unmatched paths: a JSON 404 (no identity needed)."""

    async def prepare(self):
        raise NotFound(f"no such resource: {self.request.path}")
