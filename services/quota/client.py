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

    async def resolve(self, user: str, workspace_id: int | None = None, project_id: int | None = None,
                      workspace: str | None = None, project: str | None = None) -> dict:
        """{"workspace": {id, name, personal}, "project": {id, name}} for the user's request:
        ids are looked up as ids, names only among the user's own workspaces (ids win)."""
        return await self._call("GET", "resolve", {"user": user, "workspace_id": workspace_id,
                                                   "project_id": project_id, "workspace": workspace,
                                                   "project": project})

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

    # -- hub admins (the hub's admin console acts for the admin with the service's token) --
    async def every_workspace(self, user: str | None = None, search: str = "", members: list[str] | None = None,
                              offset: int = 0, limit: int = 20) -> dict:
        """A page of every workspace with its members: {"items": [...], "_pagination": {...}}."""
        return await self._call("GET", "admin/workspaces", {
            "user": user, "search": search or None, "member": list(members or []) or None,
            "offset": offset, "limit": limit})

    async def workspace_for_admin(self, ws_id: int, user: str | None = None) -> dict:
        """One workspace with its members and projects, whoever's it is."""
        return await self._call("GET", f"admin/workspaces/{int(ws_id)}", {"user": user})

    async def update_workspace(self, ws_id: int, changes: dict, user: str | None = None) -> dict:
        """PATCH a workspace (name; hub admins: allowed_presets, custom_spec, max_runtime_minutes)."""
        return await self._call("PATCH", f"workspaces/{int(ws_id)}", {"user": user}, changes)

    # -- quotas (hub admins; the console acts for the admin) ------------------------------
    async def quotas_overview(self, user: str | None = None) -> list[dict]:
        """Every workspace's quota, usage, cohort and counts of running and waiting entries."""
        return (await self._call("GET", "quotas", {"user": user}))["items"]

    async def usage(self, ws_id: int, user: str | None = None) -> dict:
        """A workspace's quota, used, free, and who runs and who waits."""
        return await self._call("GET", f"workspaces/{int(ws_id)}/usage", {"user": user})

    async def set_quota(self, ws_id: int, body: dict, user: str | None = None) -> dict:
        """PUT a workspace's quota, borrowing limits, cohort or maximum priority."""
        return await self._call("PUT", f"workspaces/{int(ws_id)}/quota", {"user": user}, body)

    async def priorities(self, user: str | None = None) -> dict:
        """The priority levels and every user an admin gave a priority."""
        return await self._call("GET", "priorities", {"user": user})

    async def set_priority(self, username: str, priority, user: str | None = None) -> dict:
        from urllib.parse import quote

        return await self._call("PUT", f"priorities/{quote(username, safe='')}", {"user": user},
                                {"priority": priority})
