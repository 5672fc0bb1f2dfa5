"""The console's Devices tab: nodes and devices of the local runtime's accelerator inventory
(model, memory, status, simulated label, holders) with maintenance. Holders and marks are
the quota service's ledger, asked with its token for the admin who is looking (the same
answer as /hub/gemhub/devices)."""

from __future__ import annotations

from typing import Any, Mapping

from gemhub.hub_config.console.tabs import ConsoleContext, ConsoleError, ConsoleTab, Form
from gemhub.services.quota.client import QuotaClient, QuotaError


class DevicesTab(ConsoleTab):
    name = "devices"
    title = "Devices"
    order = 30
    searchable = False
    template = "devices.html"

    async def _ledger(self, ctx: ConsoleContext, call):
        quota = ctx.service("quota")
        async with QuotaClient(quota.base_url, quota.token) as q:
            try:
                return await call(q)
            except QuotaError as e:
                raise ConsoleError(e.status if 400 <= e.status < 600 else 503, e.message) from None

    async def view(self, ctx: ConsoleContext) -> Mapping[str, Any]:
        if ctx.devices is None:
            return {"view": None}
        return {"view": await self._ledger(ctx, lambda q: q.devices(ctx.admin))}

    async def act(self, ctx: ConsoleContext, form: Form) -> str:
        if form.get("action") != "maintenance":
            return await super().act(ctx, form)
        if ctx.devices is None:
            raise ConsoleError(400, "this hub has no local device inventory")
        device, node, on = form.get("device"), form.get("node"), form.get("on")
        if (device is None) == (node is None) or on not in ("yes", "no"):
            raise ConsoleError(400, "name one device or node, and on=yes or on=no")
        await self._ledger(ctx, lambda q: q.set_maintenance(ctx.admin, on == "yes", device, node))
        what = f"device {device}" if device is not None else f"node {node}"
        return f"{what} is {'in maintenance' if on == 'yes' else 'back in service'}"
