"""HTTP adapters of the ledger's administration: user priorities, stop hooks, devices and
their maintenance marks (thin; the same database rules as :mod:`.ledger_handlers`)."""

from __future__ import annotations

from sqlalchemy import select

from gemhub.services.common.audit import audit_event, utcnow
from gemhub.services.common.errors import BadRequest, Forbidden, NotFound
from gemhub.services.common.handlers import APIHandler

from . import hooks, ledger_views
from .asks import parse_priority
from .ledger import Ledger
from .ledger_handlers import LedgerAPI, LedgerMixin
from .models import StopHook
from .workspaces import iso


# -- priorities --------------------------------------------------------------------------------
class PrioritiesAPI(LedgerAPI):
    async def get(self):
        actor = self.acting_user()
        await self.require_hub_admin(actor, "see user priorities")
        items = await self.read(ledger_views.priorities_json)
        self.write_json({"levels": dict(self.config.priority_levels), "default": self.config.default_priority,
                         "max": self.config.max_priority, "items": items})


class PriorityAPI(LedgerAPI):
    async def put(self, username):
        actor = self.acting_user()
        await self.require_hub_admin(actor, "set user priorities")
        body = self.json_body()
        if set(body) != {"priority"}:
            raise BadRequest('send {"priority": N or a level name, or null to clear}')
        priority = parse_priority(body["priority"], self.config.priority_levels)
        if not await self.settings["hub_api"].user_exists(username):
            raise NotFound(f"there is no user named {username!r}")
        await self.change(lambda ledger: ledger.set_priority(username, priority), actor)
        self.write_json({"user": username, "priority": priority})


# -- stop hooks --------------------------------------------------------------------------------
class HooksMixin(LedgerMixin):
    def caller_model(self) -> dict:
        return self.require_user()

    async def may_register(self) -> str:
        """Hub services (with their own token) and hub admins register hooks."""
        model = self.caller_model()
        if model.get("kind") == "service":
            return f"service:{model.get('name')}"
        name = model.get("name", "")
        if await self.settings["hub_api"].is_admin(name):
            return f"user:{name}"
        raise Forbidden("stop hooks are registered by hub services (with their own token) or hub administrators")


class HooksAPI(HooksMixin, APIHandler):
    async def get(self):
        await self.may_register()

        def listing(s):
            return [{"kind": h.kind, "url": hooks.describe_url(h.url), "registered_by": h.registered_by,
                     "updated": iso(h.updated)} for h in s.scalars(select(StopHook).order_by(StopHook.kind))]

        items = await self.read(listing)
        self.write_json(self.paginated(items, 0, len(items) or 1, len(items)))


class HookAPI(HooksMixin, APIHandler):
    async def put(self, kind):
        who = await self.may_register()
        url, token = hooks.validate_hook(kind, self.json_body())
        if kind == "notebook":
            raise BadRequest("notebooks are stopped by the hub; register hooks for job or inference")

        def register(ledger: Ledger):
            row = ledger.s.get(StopHook, kind)
            if row is not None and row.registered_by != who and not who.startswith("user:"):
                raise Forbidden(f"the {kind} hook belongs to {row.registered_by}")
            if row is None:
                row = StopHook(kind=kind, url=url, token=token, registered_by=who, updated=utcnow())
                ledger.s.add(row)
            else:
                row.url, row.token, row.registered_by, row.updated = url, token, who, utcnow()
            audit_event(ledger.s, who, "hook.register", f"hook:{kind}", url=hooks.describe_url(url))
            return {"kind": kind, "url": hooks.describe_url(url), "registered_by": who}

        self.write_json(await self.change(register, who))

    async def delete(self, kind):
        who = await self.may_register()

        def drop(ledger: Ledger):
            row = ledger.s.get(StopHook, kind)
            if row is None:
                raise NotFound(f"no stop hook is registered for {kind!r}")
            if row.registered_by != who and not who.startswith("user:"):
                raise Forbidden(f"the {kind} hook belongs to {row.registered_by}")
            ledger.s.delete(row)
            audit_event(ledger.s, who, "hook.remove", f"hook:{kind}")

        await self.change(drop, who)
        self.set_status(204)
        self.finish()


# -- devices (local runtime) -------------------------------------------------------------------
class DevicesAPI(LedgerAPI):
    async def get(self):
        actor = self.acting_user()
        await self.require_hub_admin(actor, "see the devices")
        config = self.config
        self.write_json(await self.read(lambda s: ledger_views.devices_view(s, config)))

    async def post(self):
        """``{"device"|"node": NAME, "maintenance": true|false}``."""
        actor = self.acting_user()
        await self.require_hub_admin(actor, "change the devices")
        body = self.json_body()
        unknown = sorted(set(body) - {"device", "node", "maintenance"})
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
        device, node, on = body.get("device"), body.get("node"), body.get("maintenance")
        if (device is None) == (node is None):
            raise BadRequest("name exactly one of device or node")
        target, name = ("device", device) if device is not None else ("node", node)
        if not isinstance(name, str) or not name or len(name) > 255:
            raise BadRequest("device and node are names (text)")
        if not isinstance(on, bool):
            raise BadRequest("maintenance must be true or false")
        config = self.config

        def mark(ledger: Ledger):
            devices = config.devices()
            known = {d.id for d in devices} if target == "device" else {d.node for d in devices}
            if name not in known:
                raise NotFound(f"there is no {target} {name!r}")
            ledger.set_mark(target, name, on)
            return ledger_views.devices_view(ledger.s, config)

        self.write_json(await self.change(mark, actor))


