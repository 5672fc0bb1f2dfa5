"""HTTP adapters of the resource ledger (thin: rules live in ledger.py, quotas.py, asks.py).

Database work never runs on the event loop and no session outlives an ``await``: reads
open a session inside a worker thread (:meth:`LedgerAPI.read`), changes run as one locked
ledger transaction on the writer thread (:meth:`LedgerAPI.change`).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from sqlalchemy import select

from gemhub.services.common.errors import BadRequest, Forbidden, NotFound
from gemhub.services.common.handlers import APIHandler, PageHandler

from . import ledger_views, quotas
from .asks import bounded_int, parse_ask, parse_priority
from .ledger import Ledger
from .models import Admission, Membership, StopHook

T = TypeVar("T")
MANAGERS = ("owner", "admin")


class LedgerMixin:
    """Who is calling, and the two ways to reach the database."""

    @property
    def config(self):
        return self.settings["ledger_config"]

    async def read(self, fn: Callable[[Any], T]) -> T:
        """``fn(session)`` in the database's worker threads (services.common.db)."""
        return await self.settings["database"].run(fn)

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
        body = self.json_body(default={})
        reason = body.get("reason", "released")
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

