"""Typed async client of the data service (used by the spawner: the spawn form's choices
and the resolution of dataset/model mounts for a user; the SSH gateway: SFTP into drafts)."""

from __future__ import annotations

from typing import Any

import httpx


class DataError(Exception):
    """A refusal (or failure) of the data service: HTTP ``status`` and its ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class DataClient:
    """``DataClient(base_url, token)``: base_url ends with the service prefix (…/services/data/).

    With the data service's own token, calls act for the ``user`` they name; the SSH
    gateway's token may ask only the ``sftp_*`` questions.
    """

    def __init__(self, base_url: str, token: str, timeout: float = 15,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/") + "/api/v1"
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport,
                                         headers={"Authorization": f"token {token}"})

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> DataClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, params: dict | None = None, json: Any = None) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = await self._client.request(method, f"{self.base_url}/{path}", params=params, json=json)
        except httpx.HTTPError as e:
            raise DataError(503, f"cannot reach the data service: {e}") from None
        if r.status_code >= 400:
            try:
                message = r.json().get("message") or r.text
            except ValueError:
                message = r.text or r.reason_phrase
            raise DataError(r.status_code, message)
        return r.json() if r.content else None

    async def mountable(self, user: str) -> list[dict]:
        """Datasets and models the user can see that have a published version (with versions)."""
        out: list[dict] = []
        offset = 0
        while True:
            page = await self._call("GET", "assets", {"user": user, "mountable": "1", "offset": offset})
            out.extend(page["items"])
            nxt = page.get("_pagination", {}).get("next")
            if not nxt:
                return out
            offset = nxt["offset"]

    async def resolve_mounts(self, user: str, datasets: list[dict], models: list[dict],
                             workspace_id: int | None = None) -> list[dict]:
        """[{kind, id, name, version, path}] in the order chosen; a 4xx if any is not allowed."""
        body = {"datasets": list(datasets), "models": list(models), "workspace_id": workspace_id}
        return (await self._call("POST", "mounts/resolve", {"user": user}, body))["mounts"]

    async def sftp_target(self, user: str, kind: str, asset_id: int, version: int) -> dict:
        """The SSH gateway's question: may ``user`` write this draft? {path, lock, name, ...}
        or a DataError saying why not."""
        return await self._call("GET", f"assets/{asset_id}/versions/{version}/sftp-target",
                                {"user": user, "kind": kind})

    async def sftp_closed(self, user: str, kind: str, asset_id: int, version: int) -> dict:
        """A session into the draft ended: the service re-measures it."""
        return await self._call("POST", f"assets/{asset_id}/versions/{version}/sftp-target",
                                {"user": user, "kind": kind})
