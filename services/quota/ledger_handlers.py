"""HTTP adapters of the resource ledger (thin: rules live in ledger.py, quotas.py, asks.py).

Database work never runs on the event loop and no session outlives an ``await``: reads
open a session inside a worker thread (:meth:`LedgerAPI.read`), changes run as one locked
ledger transaction on the writer thread (:meth:`LedgerAPI.change`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

from sqlalchemy import select

from gemhub.services.common.errors import BadRequest, Forbidden, NotFound
from gemhub.services.common.handlers import APIHandler, PageHandler

from . import hooks, ledger_views, quotas
from .asks import bounded_int, parse_ask, parse_priority
from .ledger import Ledger
from .models import Admission, Membership, StopHook
from .workspaces import iso

T = TypeVar("T")
MANAGERS = ("owner", "admin")


class LedgerMixin:
    """Who is calling, and the two ways to reach the database."""

    @property
    def config(self):
        return self.settings["ledger_config"]

    async def read(self, fn: Callable[[Any], T]) -> T:
        sessionmaker = self.settings["sessionmaker"]

        def work():
            with sessionmaker() as s:
                return fn(s)

        return await asyncio.get_running_loop().run_in_executor(None, work)

    async def change(self, fn: Callable[[Ledger], T], actor: str) -> T:
        return await self.settings["ledger"].run(fn, actor)

    def internal(self) -> bool:
        return self.is_internal(self.require_user())

    async def is_hub_admin(self, actor: str) -> bool:
        """The quota service's own token (the hub's spawner, GemHub's services) counts as an
        administrator; anyone else is asked of the hub, never taken from the caller."""
        if self.internal():
            return True
        return await self.settings["hub_api"].is_admin(actor)

    async def require_hub_admin(self, actor: str, what: str) -> None:
        if not await self.is_hub_admin(actor):
            raise Forbidden(f"only hub administrators may {what}")

    async def workspace_role(self, ws_id: int, actor: str) -> str | None:
        """The actor's role (404 when the workspace does not exist or, for non-members who
        are not hub admins, 403)."""
        def look(s):
            ledger_views.workspace_or_404(s, ws_id)
            return ledger_views.role_of(s, ws_id, actor)

        role = await self.read(look)
        if role is None and not await self.is_hub_admin(actor):
            raise Forbidden(f"you are not a member of workspace {ws_id}")
        return role

    def ws_id(self, raw: str) -> int:
        return bounded_int(raw, "workspace id", 1)


class LedgerAPI(LedgerMixin, APIHandler):
    pass


# -- admissions ---------------------------------------------------------------------------------
class AdmissionsAPI(LedgerAPI):
    async def post(self):
        actor = self.acting_user()
        if not self.internal():
            raise Forbidden("admissions are asked for by GemHub's spawner and services, not directly")
        body = self.json_body()
        config = self.config
        pause = self.settings.get("test_pause_file")

        def admit(ledger: Ledger):
            ask = parse_ask(body, config.catalog, config.registry, config.priority_levels, config.parse_spec)
            before = ledger.s.scalar(select(Admission.id).where(Admission.idempotency_key == ask.idempotency_key))
            adm = ledger.admit(ask, actor)
            ledger.s.flush()
            if pause:
                _pause_for_tests(pause)
            return ledger_views.admission_view(ledger.s, adm, config), before is None

        view, created = await self.change(admit, actor)
        self.write_json(view, 201 if created else 200)

    async def get(self):
        actor = self.acting_user()
        offset, limit = self.page_args()
        state = self.get_query_argument("state", "open")
        if state not in ("open", "queued", "admitted", "ended", "all"):
            raise BadRequest("state must be one of open, queued, admitted, ended, all")
        ws_raw = self.get_query_argument("workspace_id", None)
        ws_id = self.ws_id(ws_raw) if ws_raw else None
        admin = await self.is_hub_admin(actor)
        config = self.config

        def listing(s):
            mine = None
            if not admin:
                mine = [w for (w,) in s.execute(select(Membership.workspace_id).where(Membership.username == actor))]
                if ws_id is not None and ws_id not in mine:
                    raise Forbidden(f"you are not a member of workspace {ws_id}")
            return ledger_views.list_admissions(
                s, config, workspaces=mine, state=state, workspace_id=ws_id,
                user=self.get_query_argument("for_user", None), holder=self.get_query_argument("holder", None),
                offset=offset, limit=limit)

        items, total = await self.read(listing)
        self.write_json(self.paginated(items, offset, limit, total))


def _pause_for_tests(path: str) -> None:
    """Wait inside the transaction while ``path`` exists (``path``.reached says we are there)."""
    import os
    import time

    if os.path.exists(path):
        open(path + ".reached", "w").close()
        while os.path.exists(path):
            time.sleep(0.05)


class AdmissionAPI(LedgerAPI):
    async def _visible(self, adm_id: int, actor: str) -> dict:
        config = self.config

        def look(s):
            adm = s.get(Admission, adm_id)
            if adm is None:
                raise NotFound(f"admission {adm_id} does not exist")
            return ledger_views.admission_view(s, adm, config), ledger_views.role_of(s, adm.workspace_id, actor)

        view, role = await self.read(look)
        if role is None and not await self.is_hub_admin(actor):
            raise NotFound(f"admission {adm_id} does not exist")
        return view

    async def get(self, adm_id):
        actor = self.acting_user()
        self.write_json(await self._visible(bounded_int(adm_id, "admission id", 1), actor))

    async def delete(self, adm_id):
        """Release (or leave the queue). Idempotent; the answer is the entry as it ends.

        Hub admins, GemHub's own callers, and the service that registered the stop hook of
        the entry's kind (the owner of that workload) may release."""
        ident = bounded_int(adm_id, "admission id", 1)
        model = self.require_user()
        if model.get("kind") == "service" and not self.is_internal(model):
            actor = f"service:{model.get('name')}"

            def owner(s):
                adm = s.get(Admission, ident)
                hook = s.get(StopHook, adm.kind) if adm is not None else None
                return adm is not None and hook is not None and hook.registered_by == actor

            if not await self.read(owner):
                raise Forbidden(f"{actor} does not own admission {ident}")
        else:
            actor = self.acting_user()
            if not self.internal():  # GemHub's own callers release without a look first
                await self._visible(ident, actor)
                await self.require_hub_admin(actor, "release admissions")
        reason = "released"
        if self.request.body:
            body = self.json_body()
            reason = body.get("reason", reason)
            if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
                raise BadRequest("reason must be text of at most 500 characters")
        config = self.config

        def release(ledger: Ledger):
            adm = ledger.release(ident, reason.strip())
            return ledger_views.admission_view(ledger.s, adm, config)

        self.write_json(await self.change(release, actor))


class AdmissionEventsAPI(LedgerAPI):
    async def get(self, adm_id):
        actor = self.acting_user()
        ident = bounded_int(adm_id, "admission id", 1)
        await AdmissionAPI._visible(self, ident, actor)  # type: ignore[arg-type]
        items = await self.read(lambda s: ledger_views.events_json(s, ident))
        self.write_json(self.paginated(items, 0, len(items) or 1, len(items)))


# -- quotas -------------------------------------------------------------------------------------
class QuotaAPI(LedgerAPI):
    async def get(self, ws_raw):
        actor = self.acting_user()
        ws_id = self.ws_id(ws_raw)
        await self.workspace_role(ws_id, actor)
        config = self.config
        self.write_json(await self.read(lambda s: ledger_views.quota_json(s, ledger_views.workspace_or_404(s, ws_id),
                                                                          config)))

    async def put(self, ws_raw):
        actor = self.acting_user()
        ws_id = self.ws_id(ws_raw)
        body = self.json_body()
        await self.require_hub_admin(actor, "set a workspace's quota")
        unknown = sorted(set(body) - {"quota", "borrowing", "cohort", "max_priority"})
        if unknown:
            raise BadRequest(f"unknown field(s) {', '.join(map(repr, unknown))} "
                             "(known: quota, borrowing, cohort, max_priority)")
        if not body:
            raise BadRequest("nothing to change: send quota, borrowing, cohort or max_priority")
        registry = self.config.registry
        limits = quotas.parse_limits(body["quota"], registry) if "quota" in body else None
        borrowing = quotas.parse_limits(body["borrowing"], registry, what="borrowing limit") \
            if "borrowing" in body else None
        cohort: Any = ...
        if "cohort" in body:
            cohort = body["cohort"]
            if cohort is not None:
                if not isinstance(cohort, str) or not cohort.strip() or len(cohort.strip()) > 63 \
                        or not all(c.isalnum() or c in "-_." for c in cohort.strip()):
                    raise BadRequest("cohort must be null or a name of 1-63 letters, digits, '-', '_' or '.'")
                cohort = cohort.strip()
        max_priority: Any = ...
        if "max_priority" in body:
            max_priority = None if body["max_priority"] is None else \
                parse_priority(body["max_priority"], self.config.priority_levels)
        config = self.config

        def apply(ledger: Ledger):
            ledger.set_quota(ws_id, limits, borrowing, cohort, max_priority)
            return ledger_views.quota_json(ledger.s, ledger.workspace(ws_id), config)

        self.write_json(await self.change(apply, actor))
        self.settings["quotas_changed"]()


class PersonalQuotaAPI(LedgerAPI):
    async def _manage(self, ws_id: int, username: str, actor: str) -> None:
        role = await self.workspace_role(ws_id, actor)
        if role not in MANAGERS and not await self.is_hub_admin(actor):
            raise Forbidden("only the workspace's owners and admins may set personal limits")
        member = await self.read(lambda s: ledger_views.role_of(s, ws_id, username))
        if member is None:
            raise NotFound(f"{username!r} is not a member of workspace {ws_id}")

    async def get(self, ws_raw, username):
        actor = self.acting_user()
        ws_id = self.ws_id(ws_raw)
        await self.workspace_role(ws_id, actor)
        if await self.read(lambda s: ledger_views.role_of(s, ws_id, username)) is None:
            raise NotFound(f"{username!r} is not a member of workspace {ws_id}")
        self.write_json(await self.read(lambda s: ledger_views.personal_json(s, ws_id, username)))

    async def put(self, ws_raw, username):
        actor = self.acting_user()
        ws_id = self.ws_id(ws_raw)
        body = self.json_body()
        await self._manage(ws_id, username, actor)
        registry = self.config.registry
        limits = quotas.parse_limits(body, registry, what="personal limit")

        def apply(ledger: Ledger):
            quotas.check_personal(limits, ledger.book(ws_id).nominal)
            ledger.set_personal(ws_id, username, limits)
            return ledger_views.personal_json(ledger.s, ws_id, username)

        self.write_json(await self.change(apply, actor))

    async def delete(self, ws_raw, username):
        actor = self.acting_user()
        ws_id = self.ws_id(ws_raw)
        await self._manage(ws_id, username, actor)
        await self.change(lambda ledger: ledger.set_personal(ws_id, username, None), actor)
        self.set_status(204)
        self.finish()


class UsageAPI(LedgerAPI):
    async def get(self, ws_raw):
        actor = self.acting_user()
        ws_id = self.ws_id(ws_raw)
        await self.workspace_role(ws_id, actor)
        config = self.config
        self.write_json(await self.read(lambda s: ledger_views.usage_view(s, ws_id, config)))


class QuotasOverviewAPI(LedgerAPI):
    async def get(self):
        actor = self.acting_user()
        await self.require_hub_admin(actor, "see every workspace's quota")
        config = self.config
        items = await self.read(lambda s: ledger_views.overview(s, config))
        self.write_json(self.paginated(items, 0, len(items) or 1, len(items)))


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
            from gemhub.services.common.audit import audit_event, utcnow

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
            from gemhub.services.common.audit import audit_event

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


# -- pages -------------------------------------------------------------------------------------
class QuotasPage(LedgerMixin, PageHandler):
    """Every workspace's quota and usage, for hub administrators."""

    async def get(self):
        if await self.login_or_user() is None:
            return
        actor = self.acting_user()
        await self.require_hub_admin(actor, "see every workspace's quota")
        config = self.config
        items = await self.read(lambda s: ledger_views.overview(s, config))
        self.finish(self.render_page("quotas.html", items=items, actor=actor,
                                     levels=dict(config.priority_levels)))

