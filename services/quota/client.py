"""Typed async client of the quota service (used by the spawner and the CLI)."""

from __future__ import annotations

from gemhub.services.common.client import ServiceClient, ServiceError


class QuotaError(ServiceError):
    """A refusal (or failure) of the quota service: HTTP ``status`` and its ``message``."""


class QuotaClient(ServiceClient):
    """``QuotaClient(base_url, token)``: base_url ends with the service prefix (…/services/quota/).

    With the quota service's own token, calls act for the ``user`` they name.
    """

    service = "quota"
    error = QuotaError

    async def resolve(self, user: str, workspace: str | int | None = None, project: str | int | None = None) -> dict:
        """{"workspace": {id, name, personal}, "project": {id, name}} for the user's request."""
        return await self._call("GET", "resolve", {"user": user, "workspace": workspace, "project": project})

    async def list_workspaces(self, user: str | None = None) -> list[dict]:
        """The user's workspaces, each with its "projects"."""
        return await self._all_pages("workspaces", {"user": user, "include_projects": "1"})

    async def create_workspace(self, name: str, user: str | None = None) -> dict:
        return await self._call("POST", "workspaces", {"user": user}, {"name": name})

    async def create_project(self, ws_id: int, name: str, user: str | None = None) -> dict:
        return await self._call("POST", f"workspaces/{ws_id}/projects", {"user": user}, {"name": name})

    # -- the ledger ----------------------------------------------------------------------
    async def admit(self, user: str, body: dict) -> dict:
        """Ask for an admission for ``user``: the entry, admitted (with its placement) or
        queued (with its position and message). Same idempotency key, same entry."""
        return await self._call("POST", "admissions", {"user": user}, body)

    async def admission(self, ident: int, user: str) -> dict:
        return await self._call("GET", f"admissions/{int(ident)}", {"user": user})

    async def release(self, ident: int, user: str, reason: str = "released") -> dict:
        """Release an entry or leave the queue (idempotent)."""
        return await self._call("DELETE", f"admissions/{int(ident)}", {"user": user}, {"reason": reason[:500]})

    async def devices(self, user: str) -> dict:
        """Nodes, devices, maintenance marks and holders (``user`` must be a hub admin)."""
        return await self._call("GET", "devices", {"user": user})

    async def set_maintenance(self, user: str, on: bool, device: str | None = None,
                              node: str | None = None) -> dict:
        body: dict = {"maintenance": on}
        body.update({"device": device} if device is not None else {"node": node})
        return await self._call("POST", "devices", {"user": user}, body)
