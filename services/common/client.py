"""Typed HTTP client base: what every service's ``client.py`` shares (the token header,
the ``/api/v1`` prefix, error mapping, paging, closing). A service's client subclasses it
with its own error class and one method per API call it offers."""

from __future__ import annotations

import functools
import ssl
from typing import Any, ClassVar, Self

import httpx


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context for every HTTP client of the process. httpx otherwise builds one per
    client, loading the CA bundle (about 1 MiB each): a burst of requests that each open a
    client left a service bigger by that much per request in flight, for good."""
    return httpx.create_ssl_context()


class ServiceError(Exception):
    """A refusal (or failure) of a service: HTTP ``status`` and its ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ServiceClient:
    """``Client(base_url, token)``: base_url ends with the service prefix (…/services/<name>/).

    With the service's own token, calls act for the ``user`` they name.
    """

    #: the service's name, as said in "cannot reach the <service> service"
    service: ClassVar[str] = ""
    #: raised for every refusal, and with status 503 when the service cannot be reached
    error: ClassVar[type[ServiceError]] = ServiceError

    def __init__(self, base_url: str, token: str, timeout: float = 15,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/") + "/api/v1"
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport, verify=ssl_context(),
                                         headers={"Authorization": f"token {token}"})

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, params: dict | None = None, json: Any = None) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = await self._client.request(method, f"{self.base_url}/{path}", params=params, json=json)
        except httpx.HTTPError as e:
            raise self.error(503, f"cannot reach the {self.service} service: {e}") from None
        if r.status_code >= 400:
            try:
                message = r.json().get("message") or r.text
            except ValueError:
                message = r.text or r.reason_phrase
            raise self.error(r.status_code, message)
        return r.json() if r.content else None

    async def _all_pages(self, path: str, params: dict) -> list[dict]:
        """Every item of a paginated list, following ``_pagination.next`` to the end."""
        out: list[dict] = []
        offset = 0
        while True:
            page = await self._call("GET", path, {**params, "offset": offset})
            out.extend(page["items"])
            nxt = page.get("_pagination", {}).get("next")
            if not nxt:
                return out
            offset = nxt["offset"]
