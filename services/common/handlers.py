"""Base tornado handlers: JSON API errors in one place, HTML pages, health and OpenAPI.

Handlers reach the database only through ``await self.run_db(fn, ...)`` (see
:mod:`gemhub.services.common.db`: a short session in a worker thread, never across an
await) and parse every number a client sends with :mod:`gemhub.services.common.params`.
API request bodies are read as they arrive and capped (``GemService.max_body_bytes``): a
bigger body is drained without being kept and answered 413.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import text
from tornado import web

from . import params
from .auth import HubIdentityMixin
from .errors import BadRequest, NotFound, PayloadTooLarge, ServiceError

T = TypeVar("T")
MAX_LIMIT = params.MAX_LIMIT


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
    async def run_db(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``fn(session, *args, **kw)`` in the database's worker threads (a session of its own,
        closed before this returns)."""
        return await self.settings["database"].run(fn, *args, **kw)

    def id_arg(self, value: str, what: str) -> int:
        """An id from the path (``workspaces/<id>``): 1..2**63-1, ASCII digits, else 400."""
        return params.id_arg(value, what)

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


@web.stream_request_body
class APIHandler(BaseHandler):
    """JSON in, JSON out; every error is ``{"status": N, "message": "..."}``."""

    _body_size = 0
    _body_chunks: list[bytes] | None = None

    def data_received(self, chunk: bytes) -> None:
        # kept up to the cap; past it only counted (the client still gets its 413 answer)
        if self._body_chunks is None:
            self._body_chunks = []
        self._body_size += len(chunk)
        if self._body_size <= self.settings["max_body_bytes"]:
            self._body_chunks.append(chunk)

    def body(self) -> bytes:
        """The request body (413 when it is larger than the service accepts)."""
        cap = self.settings["max_body_bytes"]
        if self._body_size > cap:
            raise PayloadTooLarge(f"the request body is too large ({self._body_size} bytes; at most {cap})")
        return b"".join(self._body_chunks or ())

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

    def json_body(self, default: dict | None = None) -> dict:
        """The request body as a JSON object; anything else is a 400 (an empty body is
        ``default`` when one is given)."""
        raw = self.body()
        if not raw.strip():
            if default is not None:
                return default
            raise BadRequest("a JSON object body is required")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"the body is not valid JSON: {params.echo(str(e), 200)}") from None
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        return data

    def page_args(self) -> tuple[int, int]:
        """(offset, limit) from the query, validated the JupyterHub way."""
        return params.page(self.get_query_argument("offset", None), self.get_query_argument("limit", None))

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
    async def get(self):
        await self.settings["database"].run(lambda session: session.execute(text("SELECT 1")))
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
