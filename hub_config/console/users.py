"""The console's Users tab: every hub user with their workspaces (the quota service), their
running servers (preset, device, since when) and lock state: the hub login's lockout and
pending approval, and the SSH gateway's lockout (the ssh service)."""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

from gemhub.hub_config.console.tabs import ConsoleContext, ConsoleTab
from gemhub.hub_config.console.workspaces import service_error
from gemhub.services.quota.client import QuotaClient, QuotaError
from gemhub.services.ssh.client import SSHClient

QUOTA_PAGE = 200  # the quota service's largest page


class UsersTab(ConsoleTab):
    name = "users"
    title = "Users"
    order = 20
    template = "users.html"

    async def view(self, ctx: ConsoleContext) -> Mapping[str, Any]:
        rows, total = ctx.hub.users(ctx.query.search, ctx.query.offset, ctx.query.limit)
        names = [r.name for r in rows]
        servers: dict[str, list] = {}
        for s in ctx.hub.servers(users=names):
            servers.setdefault(s.user, []).append(s)
        workspaces, ssh = await asyncio.gather(self.workspaces(ctx, names), self.ssh_locks(ctx, names))
        return {"rows": [{"user": r, "servers": servers.get(r.name, []), "workspaces": workspaces.get(r.name, []),
                          "ssh": ssh.get(r.name)} for r in rows],
                "total": total}

    async def workspaces(self, ctx: ConsoleContext, names: list[str]) -> dict[str, list[dict]]:
        """user -> [(workspace, role)] for the users on this page, in as few calls as it takes."""
        out: dict[str, list[dict]] = {}
        if not names:
            return out
        endpoint = ctx.service("quota")
        offset = 0
        try:
            async with QuotaClient(endpoint.base_url, endpoint.token) as quota:
                while True:
                    page = await quota.every_workspace(ctx.admin, members=names, offset=offset, limit=QUOTA_PAGE)
                    for ws in page["items"]:
                        for m in ws["members"]:
                            if m["username"] in names:
                                out.setdefault(m["username"], []).append({"ws": ws, "role": m["role"]})
                    nxt = page["_pagination"].get("next")
                    if not nxt:
                        return out
                    offset = nxt["offset"]
        except QuotaError as e:
            raise service_error(e) from None

    async def ssh_locks(self, ctx: ConsoleContext, names: list[str]) -> dict[str, dict]:
        """user -> the ssh service's status (locked, locked_until, failures); a user the
        service cannot answer for is shown without it."""
        if "ssh" not in ctx.services or not names:
            return {}
        endpoint = ctx.service("ssh")
        async with SSHClient(endpoint.base_url, endpoint.token) as ssh:
            results = await asyncio.gather(*(ssh.status(n) for n in names), return_exceptions=True)
        return {n: r for n, r in zip(names, results) if isinstance(r, dict)}
