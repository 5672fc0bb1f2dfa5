"""The console's Devices tab: nodes and devices of the local runtime's accelerator inventory
(model, memory, status, simulated label, holders) with maintenance, the same
:class:`~gemhub.spawner.local.devices.LocalDevices` as the spawners and /hub/gemhub/devices."""

from __future__ import annotations

from typing import Any, Mapping

from gemhub.hub_config.console.tabs import ConsoleContext, ConsoleError, ConsoleTab, Form
from gemhub.spawner.local.devices import AcceleratorConfigError


class DevicesTab(ConsoleTab):
    name = "devices"
    title = "Devices"
    order = 30
    searchable = False
    template = "devices.html"

    async def view(self, ctx: ConsoleContext) -> Mapping[str, Any]:
        if ctx.devices is None:
            return {"view": None}
        try:
            return {"view": await ctx.devices.inventory_view()}
        except AcceleratorConfigError as e:
            raise ConsoleError(503, f"the accelerator inventory is unavailable: {e}") from None

    async def act(self, ctx: ConsoleContext, form: Form) -> str:
        if form.get("action") != "maintenance":
            return await super().act(ctx, form)
        if ctx.devices is None:
            raise ConsoleError(400, "this hub has no local device inventory")
        device, node, on = form.get("device"), form.get("node"), form.get("on")
        if (device is None) == (node is None) or on not in ("yes", "no"):
            raise ConsoleError(400, "name one device or node, and on=yes or on=no")
        try:
            ctx.devices.set_maintenance(device=device, node=node, on=on == "yes")
        except KeyError as e:
            raise ConsoleError(404, str(e.args[0])) from None
        except AcceleratorConfigError as e:
            raise ConsoleError(503, f"the accelerator inventory is unavailable: {e}") from None
        what = f"device {device}" if device is not None else f"node {node}"
        return f"{what} is {'in maintenance' if on == 'yes' else 'back in service'}"
