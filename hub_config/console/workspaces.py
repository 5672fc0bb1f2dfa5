"""The console's Workspaces tab: every workspace (the quota service's admin listing) with
its members, running servers and usage (servers, CPUs, memory and devices held now; the
data service's latest storage sample); ``workspaces/<id>`` opens one, where its limits
(presets, custom specs, run-time limit) are changed and its servers stopped."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Mapping

from gemhub.hub_config.console.tabs import ConsoleContext, ConsoleError, ConsoleTab, Form
from gemhub.spawner.summary import ServerSummary, Usage
from gemhub.services.data.client import DataClient, DataError
from gemhub.services.quota.client import QuotaClient, QuotaError

STORAGE_WINDOW = dt.timedelta(hours=2)  # samples are hourly: the last two hours hold the newest


def service_error(e: QuotaError | DataError) -> ConsoleError:
    """A service's refusal as the console shows it (its 4xx as is, anything else a 503)."""
    return ConsoleError(e.status if 400 <= e.status < 500 else 503, e.message)


def by_workspace(servers: list[ServerSummary]) -> dict[int, list[ServerSummary]]:
    out: dict[int, list[ServerSummary]] = {}
    for s in servers:
        if s.workspace_id is not None:
            out.setdefault(s.workspace_id, []).append(s)
    return out


def limits_change(form: Form) -> dict:
    """The quota PATCH body from the limits form (the quota service validates the values:
    a wrong one comes back as its 400)."""
    if form.get("all_presets"):
        allowed = None
    else:
        allowed = [n for n in form.all("presets") if n]
    raw = form.get("minutes", "").strip()
    if raw == "":
        minutes: Any = None
    elif raw.lstrip("-").isascii() and raw.lstrip("-").isdigit():
        minutes = int(raw)
    else:
        minutes = raw  # refused by the service with its message, in words
    return {"allowed_presets": allowed, "custom_spec": bool(form.get("custom_spec")),
            "max_runtime_minutes": minutes}


class WorkspacesTab(ConsoleTab):
    name = "workspaces"
    title = "Workspaces"
    order = 10
    template = "workspaces.html"

    def quota(self, ctx: ConsoleContext) -> QuotaClient:
        endpoint = ctx.service("quota")
        return QuotaClient(endpoint.base_url, endpoint.token)

    async def view(self, ctx: ConsoleContext) -> Mapping[str, Any]:
        if ctx.path:
            return await self.detail(ctx, self.workspace_id(ctx.path))
        try:
            async with self.quota(ctx) as quota:
                page = await quota.every_workspace(ctx.admin, ctx.query.search, offset=ctx.query.offset,
                                                   limit=ctx.query.limit)
        except QuotaError as e:
            raise service_error(e) from None
        running = by_workspace(ctx.hub.servers())
        items = page["items"]
        storage = await self.storage(ctx, [w["id"] for w in items])
        rows = [{"ws": w, "servers": running.get(w["id"], []), "usage": Usage.of(running.get(w["id"], [])),
                 "storage": storage.get(w["id"])} for w in items]
        return {"mode": "list", "rows": rows, "total": page["_pagination"]["total"]}

    async def detail(self, ctx: ConsoleContext, ws_id: int) -> Mapping[str, Any]:
        try:
            async with self.quota(ctx) as quota:
                ws = await quota.workspace_for_admin(ws_id, ctx.admin)
        except QuotaError as e:
            raise service_error(e) from None
        servers = by_workspace(ctx.hub.servers()).get(ws_id, [])
        storage = (await self.storage(ctx, [ws_id])).get(ws_id)
        return {"mode": "detail", "ws": ws, "servers": servers, "usage": Usage.of(servers), "storage": storage,
                "preset_names": ctx.labels.catalog.names()}

    async def storage(self, ctx: ConsoleContext, ids: list[int]) -> dict[int, Any]:
        """Bytes each workspace stores (newest hourly sample); a missing sample or an
        unreachable data service leaves the figure out, never the page."""
        if "data" not in ctx.services or not ids:
            return {}
        endpoint = ctx.service("data")
        since = (ctx.now - STORAGE_WINDOW).isoformat()
        async with DataClient(endpoint.base_url, endpoint.token) as data:
            results = await asyncio.gather(*(data.latest_storage(i, since) for i in ids), return_exceptions=True)
        return {i: r["total"] for i, r in zip(ids, results) if isinstance(r, dict)}

    async def act(self, ctx: ConsoleContext, form: Form) -> str:
        if form.get("action") != "limits":
            return await super().act(ctx, form)
        ws_id = self.workspace_id(ctx.path)
        change = limits_change(form)
        try:
            async with self.quota(ctx) as quota:
                ws = await quota.update_workspace(ws_id, change, ctx.admin)
        except QuotaError as e:
            raise service_error(e) from None
        presets = "all presets" if ws["allowed_presets"] is None else ", ".join(ws["allowed_presets"]) or "no preset"
        runtime = (f"{ws['max_runtime_minutes']} minutes" if ws["max_runtime_minutes"] else "no run-time limit")
        return (f"Saved the limits of {ws['name']}: {presets}, custom specs "
                f"{'allowed' if ws['custom_spec'] else 'not allowed'}, {runtime}")

    @staticmethod
    def workspace_id(path: str) -> int:
        if not path.isascii() or not path.isdigit() or len(path) > 12:
            raise ConsoleError(404, f"no workspace {path[:40]!r}: workspaces are opened by their id")
        return int(path)
