"""Typed async client of the data service (used by the spawner: the spawn form's choices
and the resolution of dataset/model mounts for a user; the SSH gateway: SFTP into drafts)."""

from __future__ import annotations

from gemhub.services.common.client import ServiceClient, ServiceError


class DataError(ServiceError):
    """A refusal (or failure) of the data service: HTTP ``status`` and its ``message``."""


class DataClient(ServiceClient):
    """``DataClient(base_url, token)``: base_url ends with the service prefix (…/services/data/).

    With the data service's own token, calls act for the ``user`` they name; the SSH
    gateway's token may ask only the ``sftp_*`` questions.
    """

    service = "data"
    error = DataError

    async def mountable(self, user: str) -> list[dict]:
        """Datasets and models the user can see that have a published version (with versions)."""
        return await self._all_pages("assets", {"user": user, "mountable": "1"})

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

    async def latest_storage(self, workspace_id: int, since: str) -> dict | None:
        """The newest hourly storage sample of a workspace since ``since`` (ISO time), or None;
        with the service's own token (hub admins' console), no user is named."""
        page = await self._call("GET", "storage/samples", {"workspace": int(workspace_id), "since": since})
        return page["items"][-1] if page["items"] else None
