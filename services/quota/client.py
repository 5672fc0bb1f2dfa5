"""Typed async client of the quota service (used by the spawner and the CLI)."""

from __future__ import annotations

from typing import Any

import httpx


class QuotaError(Exception):
    """A refusal (or failure) of the quota service: HTTP ``status`` and its ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class QuotaClient:
    """``QuotaClient(base_url, token)``: base_url ends with the service prefix (…/services/quota/).

    With the quota service's own token, calls act for the ``user`` they name.
    """

    def __init__(self, base_url: str, token: str, timeout: float = 15,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/") + "/api/v1"
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport,
                                         headers={"Authorization": f"token {token}"})

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> QuotaClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, params: dict | None = None, json: Any = None) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = await self._client.request(method, f"{self.base_url}/{path}", params=params, json=json)
        except httpx.HTTPError as e:
            raise QuotaError(503, f"cannot reach the quota service: {e}") from None
        if r.status_code >= 400:
            try:
                message = r.json().get("message") or r.text
            except ValueError:
                message = r.text or r.reason_phrase
            raise QuotaError(r.status_code, message)
        return r.json() if r.content else None

    async def resolve(self, user: str, workspace: str | int | None = None, project: str | int | None = None) -> dict:
        """{"workspace": {id, name, personal}, "project": {id, name}} for the user's request."""
        return await self._call("GET", "resolve", {"user": user, "workspace": workspace, "project": project})

    async def list_workspaces(self, user: str | None = None) -> list[dict]:
        """The user's workspaces, each with its "projects"."""
        out: list[dict] = []
        offset = 0
        while True:
            page = await self._call("GET", "workspaces", {"user": user, "include_projects": "1",
                                                           "offset": offset})
            out.extend(page["items"])
            nxt = page.get("_pagination", {}).get("next")
            if not nxt:
                return out
            offset = nxt["offset"]

    async def create_workspace(self, name: str, user: str | None = None) -> dict:
        return await self._call("POST", "workspaces", {"user": user}, {"name": name})

    async def create_project(self, ws_id: int, name: str, user: str | None = None) -> dict:
        return await self._call("POST", f"workspaces/{ws_id}/projects", {"user": user}, {"name": name})
