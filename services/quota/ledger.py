"""The resource ledger: admissions, queues, placement, borrowing and preemption, each change
in one database transaction.

Every method of :class:`Ledger` runs inside a transaction opened by :meth:`Ledger.lock`,
which locks the single ``ledger_clock`` row (SQLite: the transaction itself began with
``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT ... FOR UPDATE``), so ledger transactions run one
at a time whatever the number of quota processes, and a placement can never be given
twice. The devices are placed by the pure allocator
(:mod:`gemhub.spawner.accelerators.allocator`) on the inventory with the admins'
maintenance marks; quota arithmetic is :mod:`.quotas` and :mod:`.scheduling`.

A :class:`LedgerCache` keeps the device capacity and the workspaces' quota books between
transactions of one process; it is valid only while the clock has not moved, so another
process's change makes it reload from the database.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from gemhub.services.common.audit import audit_event, utcnow
from gemhub.services.common.errors import BadRequest, Conflict, Forbidden, NotFound
from gemhub.spawner.accelerators import Allocation, Capacity, Device, DeviceStatus, NoCapacityError

from . import asks, quotas, scheduling
from .asks import Ask
from .entries import ADMITTED, CANCELLED, OPEN, QUEUED, QUOTA_QUEUE, RELEASED, RESOURCE_QUEUE, jsonable
from .ledger_config import LedgerConfig
from .ledger_settings import SettingsMixin
from .models import Admission, DeviceMark, LedgerClock, LedgerEvent, Membership, Project, QuotaLimit, \
    UserPriority, Workspace
from .preemption import PreemptionMixin
from .quotas import Amounts
from .scheduling import Book, Verdict

log = logging.getLogger("gemhub.quota.ledger")


class LedgerCache:
    """Per-process copies of what ledger transactions read again and again."""

    def __init__(self) -> None:
        self.reset(None)

    def reset(self, version: int | None) -> None:
        self.version = version
        self.capacity: Capacity | None = None
        self.devices_key: tuple | None = None
        self.devices: dict[str, Device] = {}
        self.books: dict[int, Book] = {}
        self.user_used: dict[tuple[int, str], Amounts] = {}
        self.personal: dict[tuple[int, str], Amounts] = {}
        self.lent: dict[int, Amounts] = {}
        self.lent_loaded = False
        self.never: dict[tuple, str | None] = {}
        self.marks: set[tuple[str, str]] | None = None
        self.queued: int | None = None
        self.priorities: dict[str, int | None] = {}


@dataclass(frozen=True)
class Outcome:
    kind: str                       # admitted | quota | resource
    need: Amounts
    placement: Allocation | None = None
    verdict: Verdict | None = None
    message: str = ""


@dataclass(frozen=True)
class StopRequest:
    """A preemption to deliver after the transaction commits."""

    kind: str
    admission: dict
    reason: str


class Ledger(PreemptionMixin, SettingsMixin):
    def __init__(self, session: Session, config: LedgerConfig, cache: LedgerCache, actor: str = ""):
        self.s = session
        self.config = config
        self.cache = cache
        self.actor = actor
        self.stops: list[StopRequest] = []
        self.events: list[dict] = []
        self._version: int | None = None

    # -- transaction ---------------------------------------------------------------------
    def lock(self) -> None:
        version = self.s.execute(
            select(LedgerClock.version).where(LedgerClock.id == 1).with_for_update()).scalar_one()
        if self.cache.version != version:
            self.cache.reset(version)
        self._version = version

    def commit(self) -> None:
        if self.events:
            self.s.execute(insert(LedgerEvent), self.events)
            self.events = []
        self.s.execute(update(LedgerClock).where(LedgerClock.id == 1).values(version=self._version + 1))
        self.s.commit()
        self.cache.version = self._version + 1

    # -- reading -------------------------------------------------------------------------
    def workspace(self, ws_id: int) -> Workspace:
        ws = self.s.get(Workspace, ws_id)
        if ws is None:
            raise NotFound(f"workspace {ws_id} does not exist")
        return ws

    def cohort_of(self, ws_id: int) -> list[int]:
        ws = self.workspace(ws_id)
        if not ws.cohort:
            return [ws_id]
        return list(self.s.scalars(select(Workspace.id).where(Workspace.cohort == ws.cohort).order_by(Workspace.id)))

    def book(self, ws_id: int) -> Book:
        """The workspace's limits and usage (cached; loaded before any change is flushed)."""
        book = self.cache.books.get(ws_id)
        if book is None:
            self._load_lent()
            row = self.s.scalar(select(QuotaLimit).where(QuotaLimit.workspace_id == ws_id, QuotaLimit.username == ""))
            book = Book(nominal=quotas.limits_from_json(row.limits) if row else {},
                        borrowing=quotas.limits_from_json(row.borrowing) if row else {})
            for demand, borrowed in self.s.execute(
                    select(Admission.demand, Admission.borrowed).where(
                        Admission.state == ADMITTED, Admission.workspace_id == ws_id)):
                book.used = quotas.add(book.used, quotas.amounts_from_json(demand))
                if borrowed:
                    book.borrowed = quotas.add(book.borrowed, quotas.amounts_from_json(borrowed["amounts"]))
            book.lent = self._lent.get(ws_id, {})
            self.cache.books[ws_id] = book
        return book

    def _load_lent(self) -> None:
        if self.cache.lent_loaded:
            self._lent = self.cache.lent
            return
        lent: dict[int, Amounts] = {}
        for (borrowed,) in self.s.execute(select(Admission.borrowed).where(
                Admission.state == ADMITTED, Admission.borrowed.is_not(None))):
            if borrowed:
                lender = int(borrowed["from"])
                lent[lender] = quotas.add(lent.get(lender, {}), quotas.amounts_from_json(borrowed["amounts"]))
        self.cache.lent = lent
        self.cache.lent_loaded = True
        self._lent = lent

    def personal(self, ws_id: int, username: str) -> tuple[Amounts, Amounts]:
        """(personal limits, what the user's admitted entries use) in the workspace."""
        key = (ws_id, username)
        if key not in self.cache.personal:
            row = self.s.scalar(select(QuotaLimit).where(QuotaLimit.workspace_id == ws_id,
                                                         QuotaLimit.username == username))
            self.cache.personal[key] = quotas.limits_from_json(row.limits) if row else {}
            used: Amounts = {}
            for (demand,) in self.s.execute(select(Admission.demand).where(
                    Admission.state == ADMITTED, Admission.workspace_id == ws_id, Admission.username == username)):
                used = quotas.add(used, quotas.amounts_from_json(demand))
            self.cache.user_used[key] = used
        return self.cache.personal[key], self.cache.user_used[key]

    def marked_devices(self) -> list[Device]:
        """The inventory with the admins' maintenance marks applied."""
        devices = self.config.devices()
        if not devices:
            return []
        if self.cache.marks is None:
            self.cache.marks = {(t, n) for t, n in self.s.execute(select(DeviceMark.target, DeviceMark.name))}
        marks = self.cache.marks
        out = []
        for d in devices:
            if d.status == DeviceStatus.ONLINE and (("device", d.id) in marks or ("node", d.node) in marks):
                d = dataclasses.replace(d, status=DeviceStatus.MAINTENANCE)
            out.append(d)
        return out

    def capacity(self) -> Capacity:
        key = self.config.devices_stamp()  # marks changes reset the cache (they move the clock)
        if self.cache.capacity is None or self.cache.devices_key != key:
            devices = self.marked_devices()
            allocations = [Allocation.from_json(p) for (p,) in self.s.execute(
                select(Admission.placement).where(Admission.state == ADMITTED, Admission.has_devices.is_(True)))]
            self.cache.capacity = Capacity(devices, allocations, self.config.registry)
            self.cache.devices_key = key
            self.cache.devices = {d.id: d for d in devices}
        return self.cache.capacity

    def queued_count(self) -> int:
        """How many entries wait (kept in the cache: most admissions find none)."""
        if self.cache.queued is None:
            self.cache.queued = self.s.scalar(
                select(func.count()).select_from(Admission).where(Admission.state == QUEUED)) or 0
        return self.cache.queued

    # -- priorities ----------------------------------------------------------------------
    def priority_bounds(self, ws: Workspace, username: str) -> tuple[int, int]:
        """(default, highest) priority of ``username``'s requests in ``ws``."""
        top = ws.max_priority if ws.max_priority is not None else self.config.max_priority
        if username not in self.cache.priorities:  # changed only by ledger transactions
            self.cache.priorities[username] = self.s.scalar(
                select(UserPriority.priority).where(UserPriority.username == username))
        mine = self.cache.priorities[username]
        if mine is None:
            return min(self.config.default_priority, top), top
        return min(mine, top), min(mine, top)

    # -- admissions ----------------------------------------------------------------------
    def admit(self, ask: Ask, username: str) -> Admission:
        """Record ``ask`` and admit or queue it. Every refusal is raised before anything is
        written (the writer relies on it: a refused change needs no rollback)."""
        self.queued_count()  # read before this entry exists (the count is kept up to date from here)
        fingerprint = ask.fingerprint(username)
        same: list[Admission] = []
        for row in self.s.scalars(select(Admission).where(or_(
                Admission.idempotency_key == ask.idempotency_key,
                and_(Admission.holder == ask.holder, Admission.state.in_(OPEN))))):
            if row.idempotency_key == ask.idempotency_key:
                if row.fingerprint != fingerprint:
                    raise Conflict(f"idempotency key {ask.idempotency_key!r} was already used for a different request")
                return row
            same.append(row)
        ws = self.workspace(ask.workspace_id)
        project_ws, role = self.s.execute(select(
            select(Project.workspace_id).where(Project.id == ask.project_id).scalar_subquery(),
            select(Membership.role).where(Membership.workspace_id == ws.id,
                                          Membership.username == username).scalar_subquery())).one()
        if project_ws != ws.id:
            raise NotFound(f"project {ask.project_id} does not exist in workspace {ws.name!r}")
        if role is None:
            raise Forbidden(f"{username!r} is not a member of workspace {ws.name!r}")
        if ask.preset is not None and ws.allowed_presets is not None and ask.preset not in ws.allowed_presets:
            raise Forbidden(f"workspace {ws.name!r} may not use preset {ask.preset!r}")
        default, top = self.priority_bounds(ws, username)
        priority = default if ask.priority is None else ask.priority
        if priority > top:
            raise Forbidden(f"priority {priority} is above the highest {username!r} may ask for in "
                            f"workspace {ws.name!r} ({top})")
        self._refuse_never_fits(ws, username, ask)
        if same and not ask.replace:
            raise Conflict(f"{ask.holder} already holds admission {same[0].id}; release it first")
        for old in same:
            self._end(old, f"replaced by a new admission for {ask.holder}")
        replaced = bool(same)
        need = asks.demand(ask, self.config.registry)
        adm = Admission(
            idempotency_key=ask.idempotency_key, fingerprint=fingerprint, holder=ask.holder, kind=ask.kind,
            runtime=self.config.runtime, workspace_id=ws.id, project_id=ask.project_id, username=username,
            preset=ask.preset, spec=ask.spec, demand=quotas.amounts_json(need), priority=priority,
            state=QUEUED, created=utcnow(),
        )
        self.s.add(adm)
        self.s.flush()
        adm._fresh = {"priority": priority, "spec": ask.spec, "preset": ask.preset}  # not yet in the count
        blocker = self._blocked_by_earlier(adm, ask.request)
        if blocker is not None:
            self._queue(adm, blocker)
        else:
            self._settle(adm, ask)
        if replaced:
            self.dispatch()  # the entry it replaced may have freed room for others
        return adm

    def _refuse_never_fits(self, ws: Workspace, username: str, ask: Ask) -> None:
        """Requests that could never be admitted are refused now, not queued forever."""
        if self.config.runtime == "local" and not ask.request.none:
            self.capacity()  # the inventory's signature: the answer holds until it changes
            key = (ask.spec, self.cache.devices_key)
            if key not in self.cache.never:
                self.cache.never[key] = asks.never_fits_devices(
                    ask.request, list(self.cache.devices.values()), self.config.policy, self.config.registry)
            reason = self.cache.never[key]
            if reason is not None:
                raise BadRequest(f"this request can never run on this platform: {reason}")
        need = asks.demand(ask, self.config.registry)
        personal, _ = self.personal(ws.id, username)
        for e in quotas.never_fits(personal, need):
            raise BadRequest(f"this request can never fit: {e.describe('your personal limits')}")
        book = self.book(ws.id)
        borrowable = bool(ws.cohort) and ask.kind in self.config.preemptible_kinds
        for e in quotas.never_fits(book.nominal, need):
            if borrowable and e.key not in quotas.COUNTERS.values():
                limit = book.borrowing.get(e.key)
                if limit is None or e.need <= e.limit + limit:
                    continue
            raise BadRequest(f"this request can never fit: {e.describe(f'workspace {ws.name!r}')}")

    def _blocked_by_earlier(self, adm: Admission, request) -> Outcome | None:
        """A queued entry ahead of ``adm`` that it may not overtake (priority, then arrival)."""
        if self.queued_count() == 0:
            return None
        ahead = (Admission.state == QUEUED, Admission.id != adm.id, Admission.priority >= adm.priority)
        other = self.s.scalar(select(Admission.id).where(*ahead, Admission.queue == QUOTA_QUEUE,
                                                         Admission.workspace_id == adm.workspace_id).limit(1))
        if other is not None:
            return Outcome(QUOTA_QUEUE, {}, message=f"waiting behind admission {other} of this workspace")
        if request.none:
            return None
        scope = asks.scope_keys(request, self.config.registry)
        for other_id, spec in self.s.execute(select(Admission.id, Admission.spec).where(
                *ahead, Admission.queue == RESOURCE_QUEUE)):
            if asks.compete(scope, self.config.scope(spec)):
                return Outcome(RESOURCE_QUEUE, {}, message=f"waiting behind admission {other_id} for the same devices")
        return None

    def _ask_of(self, adm: Admission) -> Ask:
        demand = quotas.amounts_from_json(adm.demand)
        return Ask(adm.workspace_id, adm.project_id, adm.kind, adm.preset,
                   self.config.canonical(adm.spec), demand.get(quotas.CPU, Decimal(0)),
                   int(demand.get(quotas.MEMORY, 0)), adm.priority, adm.idempotency_key, adm.holder, False)

    def _try(self, adm: Admission, ask: Ask) -> Outcome:
        """Whether ``adm`` can run now (placing its devices), without changing anything."""
        ws = self.workspace(adm.workspace_id)
        placement = None
        resource_problem = ""
        cap = None
        if self.config.runtime == "local" and not ask.request.none:
            cap = self.capacity()
            try:
                placement = cap.place(ask.request, adm.holder, self.config.policy)
            except NoCapacityError as e:
                resource_problem = e.no_capacity.message
        need = asks.demand(ask, self.config.registry, placement, self.cache.devices)
        cohort = self.cohort_of(ws.id)
        books = {w: self.book(w) for w in cohort}
        personal, personal_used = self.personal(ws.id, adm.username)
        verdict = scheduling.decide(ws.id, books, cohort, need, personal, personal_used,
                                    can_borrow=bool(ws.cohort) and adm.kind in self.config.preemptible_kinds,
                                    threshold=self.config.borrow_threshold)
        if placement is not None:
            cap.remove(placement)  # only tried: _admit records it for good
        if not verdict.ok:
            return Outcome(QUOTA_QUEUE, need, verdict=verdict, message=self._quota_message(ws, verdict))
        if resource_problem:
            return Outcome(RESOURCE_QUEUE, need, message=resource_problem)
        return Outcome(ADMITTED, need, placement=placement, verdict=verdict)

    def _quota_message(self, ws: Workspace, verdict: Verdict) -> str:
        whose = "your personal limits" if verdict.personal else f"workspace {ws.name!r}"
        if verdict.reclaim:
            return f"{whose}: reclaiming quota lent to its cohort"
        return "; ".join(e.describe(whose) for e in verdict.excess)

    def _settle(self, adm: Admission, ask: Ask) -> None:
        outcome = self._try(adm, ask)
        if outcome.kind == ADMITTED:
            self._admit(adm, outcome)
        else:
            self._queue(adm, outcome)
            self._maybe_preempt(adm, ask, outcome)

    def _admit(self, adm: Admission, outcome: Outcome) -> None:
        borrow = outcome.verdict.borrow if outcome.verdict else None
        # load every cache this changes before the row changes (so nothing counts twice)
        book = self.book(adm.workspace_id)
        lender = self.book(borrow.lender) if borrow else None
        self.personal(adm.workspace_id, adm.username)
        cap = self.capacity() if outcome.placement is not None else None
        fresh = getattr(adm, "_fresh", None)
        if fresh is None and self.cache.queued is not None:
            self.cache.queued -= 1  # it waited
        adm._fresh = None
        adm.state, adm.queue, adm.reason = ADMITTED, None, None
        adm.admitted_at = utcnow()
        adm.demand = quotas.amounts_json(outcome.need)
        adm.placement = outcome.placement.to_json() if outcome.placement else None
        adm.has_devices = outcome.placement is not None
        if borrow:
            adm.borrowed = {"from": borrow.lender, "amounts": quotas.amounts_json(borrow.amounts)}
        self._count(adm, outcome.need, borrow, +1, book, lender)
        if cap is not None:
            cap.add(outcome.placement)
        self._event(adm, "admitted", placement=adm.placement, borrowed=adm.borrowed, **(fresh or {}))
        if borrow:
            audit_event(self.s, self.actor or adm.username, "quota.borrow", f"workspace:{adm.workspace_id}",
                        admission=adm.id, lender=borrow.lender, amounts=quotas.amounts_json(borrow.amounts))
        log.info("admission %d (%s) admitted%s", adm.id, adm.holder,
                 f" on {', '.join(outcome.placement.device_ids)}" if outcome.placement else "")

    def _count(self, adm: Admission, need: Amounts, borrow, sign: int, book: Book, lender: Book | None) -> None:
        book.used = quotas.add(book.used, need, sign)
        key = (adm.workspace_id, adm.username)
        self.cache.user_used[key] = quotas.add(self.cache.user_used.get(key, {}), need, sign)
        if borrow is not None:
            amounts = borrow.amounts
            book.borrowed = quotas.add(book.borrowed, amounts, sign)
            lent = self.cache.lent
            lent[borrow.lender] = quotas.add(lent.get(borrow.lender, {}), amounts, sign)
            if lender is not None:
                lender.lent = lent[borrow.lender]

    def _queue(self, adm: Admission, outcome: Outcome) -> None:
        fresh = getattr(adm, "_fresh", None)
        if fresh is not None:
            self._event(adm, "requested", **fresh)
            if self.cache.queued is not None:
                self.cache.queued += 1
            adm._fresh = None
        changed = adm.queue != outcome.kind or adm.reason != outcome.message
        adm.state, adm.queue, adm.reason = QUEUED, outcome.kind, outcome.message
        if changed:
            self._event(adm, "queued", queue=outcome.kind, reason=outcome.message)

    def release(self, adm_id: int, reason: str) -> Admission:
        """End an entry (idempotent); refused only before anything is written."""
        self.queued_count()
        adm = self.s.get(Admission, adm_id)
        if adm is None:
            raise NotFound(f"admission {adm_id} does not exist")
        if adm.state in OPEN:
            self._end(adm, reason)
            self.dispatch()
        return adm

    def _end(self, adm: Admission, reason: str) -> None:
        if adm.state == ADMITTED:
            book = self.book(adm.workspace_id)
            borrow = None
            lender = None
            if adm.borrowed:
                borrow = scheduling.Borrow(int(adm.borrowed["from"]), quotas.amounts_from_json(adm.borrowed["amounts"]))
                lender = self.book(borrow.lender)
            self.personal(adm.workspace_id, adm.username)
            cap = self.capacity() if adm.has_devices else None
            self._count(adm, quotas.amounts_from_json(adm.demand), borrow, -1, book, lender)
            if cap is not None:
                cap.remove(Allocation.from_json(adm.placement))
            adm.state = RELEASED
        else:
            if getattr(adm, "_fresh", None) is None and self.cache.queued is not None:
                self.cache.queued -= 1
            adm.state = CANCELLED
        adm.queue = None
        adm.ended_at = utcnow()
        adm.end_reason = reason[:2000]
        self._event(adm, adm.state, reason=adm.end_reason)
        log.info("admission %d (%s) %s: %s", adm.id, adm.holder, adm.state, reason)

    def dispatch(self) -> None:
        """Admit queued entries that fit now: priority, then arrival; an entry that cannot
        run keeps the later ones of its workspace (quota) or devices (resource) waiting."""
        if self.queued_count() == 0:
            return
        blocked_ws: set[int] = set()
        blocked_scopes: list[tuple[str, frozenset[str]]] = []
        line = list(self.s.execute(select(Admission.id, Admission.workspace_id, Admission.spec)
                                   .where(Admission.state == QUEUED)
                                   .order_by(Admission.priority.desc(), Admission.id)))
        for ident, ws_id, spec in line:
            scope = self.config.scope(spec)
            if ws_id in blocked_ws or any(asks.compete(scope, b) for b in blocked_scopes):
                continue
            adm = self.s.get(Admission, ident)
            if self.s.get(Workspace, ws_id) is None:
                self._end(adm, "its workspace was deleted")
                continue
            ask = self._ask_of(adm)
            outcome = self._try(adm, ask)
            if outcome.kind == ADMITTED:
                self._admit(adm, outcome)
                continue
            self._queue(adm, outcome)
            if outcome.kind == QUOTA_QUEUE:
                blocked_ws.add(adm.workspace_id)
            elif scope is not None:
                blocked_scopes.append(scope)
            self._maybe_preempt(adm, ask, outcome)

    def stop_request(self, kind: str, admission: dict, reason: str) -> "StopRequest":
        return StopRequest(kind, admission, reason)

    # -- history -------------------------------------------------------------------------
    def _event(self, adm: Admission, event: str, **detail: Any) -> None:
        """Recorded with the transaction (one multi-row insert when it commits)."""
        self.events.append({"admission_id": adm.id, "at": utcnow(), "event": event, "actor": self.actor or "",
                            "detail": jsonable(detail)})
