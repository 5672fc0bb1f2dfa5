"""The hub's device pages (registered through ``JupyterHub.extra_handlers`` by the configurer):

- ``/hub/gemhub/devices``: nodes and devices with model, memory, status, simulated label and
  holders; hub admins put a device or a node into maintenance and back (HTML form POST);
- ``/hub/api/gemhub/devices``: the same as JSON (GET; POST ``{"device"|"node": ..., "maintenance": bool}``);
- ``/hub/api/gemhub/metrics``: DCGM-named GPU metrics of the inventory for Prometheus
  (needs the ``read:metrics`` scope, like the hub's own /hub/metrics).

Thin: holders and maintenance marks come from the quota service's ledger (asked with the
quota service's token, for the admin who is looking); the metrics come from this hub's
:class:`gemhub.spawner.local.devices.LocalDevices`, shared with its spawners.
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from prometheus_client import CONTENT_TYPE_LATEST
from tornado import web

from gemhub.services.quota.client import QuotaClient, QuotaError
from gemhub.spawner.local.devices import AcceleratorConfigError, hub_devices

ADMIN_ONLY = "only hub administrators may see or change the devices"


def ledger_client(services) -> QuotaClient | None:
    """The quota service as this hub reaches it (its own token: calls act for the admin)."""
    quota = services.get("quota")
    if quota is None or not quota.url or not quota.api_token:
        return None
    return QuotaClient(quota.url.rstrip("/") + quota.prefix, quota.api_token)


class _Devices:
    def initialize(self, state_dir: str, accelerators: dict):
        self.devices = hub_devices(state_dir, accelerators, self.log)

    async def _ledger(self, call):
        client = ledger_client(self.services)
        if client is None:
            raise web.HTTPError(503, "the device list comes from the quota service, which is not configured")
        async with client as q:
            try:
                return await call(q)
            except QuotaError as e:
                raise web.HTTPError(e.status if 400 <= e.status < 600 else 503, "%s", e.message,
                                    reason=None) from None

    async def view(self) -> dict:
        return await self._ledger(lambda q: q.devices(self.current_user.name))

    def require_admin(self) -> None:
        user = self.current_user
        if user is None or not getattr(user, "admin", False):
            raise web.HTTPError(403, ADMIN_ONLY)

    async def change(self, device: object, node: object, on: object) -> dict:
        """Apply one maintenance change; bad input is a 400, an unknown target a 404."""
        if (device is None) == (node is None):
            raise web.HTTPError(400, "name exactly one of device or node")
        target = device if device is not None else node
        if not isinstance(target, str) or not target:
            raise web.HTTPError(400, "device and node are names (text)")
        if not isinstance(on, bool):
            raise web.HTTPError(400, "maintenance must be true or false")
        view = await self._ledger(lambda q: q.set_maintenance(self.current_user.name, on, device, node))
        self.log.info("%s put %s %s %s maintenance", self.current_user.name,
                      "device" if device is not None else "node", target, "into" if on else "out of")
        return view


class DevicesPage(_Devices, BaseHandler):
    @web.authenticated
    async def get(self):
        self.require_admin()
        view = await self.view()
        self.finish(await self.render_template("gemhub-devices.html", view=view))

    @web.authenticated
    async def post(self):
        self.require_admin()
        device = self.get_body_argument("device", None)
        node = self.get_body_argument("node", None)
        action = self.get_body_argument("maintenance", "")
        if action not in ("on", "off"):
            raise web.HTTPError(400, "maintenance must be on or off")
        await self.change(device, node, action == "on")
        self.redirect(f"{self.hub.base_url}gemhub/devices", status=303)


class DevicesAPI(_Devices, APIHandler):
    async def get(self):
        self.require_admin()
        self.finish(json.dumps(await self.view()))

    async def post(self):
        self.require_admin()
        body = self.get_json_body()
        if not isinstance(body, dict):
            raise web.HTTPError(400, "send a JSON object: {\"device\" or \"node\": ..., \"maintenance\": true|false}")
        unknown = sorted(set(body) - {"device", "node", "maintenance"})
        if unknown:
            raise web.HTTPError(400, f"unknown field(s): {', '.join(unknown)}")
        self.finish(json.dumps(await self.change(body.get("device"), body.get("node"), body.get("maintenance"))))


class DeviceMetricsAPI(_Devices, APIHandler):
    async def get(self):
        if "read:metrics" not in self.parsed_scopes:
            raise web.HTTPError(403, "GPU metrics require the read:metrics scope")
        try:
            text = await self.devices.metrics_text()
        except AcceleratorConfigError as e:
            raise web.HTTPError(503, f"the accelerator inventory is unavailable: {e}") from None
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(text)
