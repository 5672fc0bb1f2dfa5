"""Preemption: whom a waiting entry may stop, and how the request to stop reaches them.

A higher-priority entry waiting on quota preempts lower-priority preemptible entries of its
workspace (of its user, for a personal limit); one waiting for devices preempts those of
its cohort holding devices it could use (the fewest that make it fit); a lender reclaiming
its quota preempts what was borrowed from it, whatever the priority. Victims keep their
resources until their owner stops them and releases the entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from gemhub.services.common.audit import audit_event, utcnow
from gemhub.spawner.accelerators import Allocation, NoCapacityError

from . import quotas, scheduling
from .asks import Ask
from .entries import ADMITTED, QUOTA_QUEUE, RESOURCE_QUEUE, admission_json, aware
from .models import Admission
from .scheduling import Running

if TYPE_CHECKING:
    from .ledger import Outcome


class PreemptionMixin:
    """Part of :class:`~gemhub.services.quota.ledger.Ledger` (its session, caches and events)."""

    def _running(self, where) -> list[tuple[Admission, Running]]:
        out = []
        for row in self.s.scalars(select(Admission).where(Admission.state == ADMITTED, *where)):
            borrowed = row.borrowed or {}
            out.append((row, Running(
                id=row.id, workspace_id=row.workspace_id, username=row.username, kind=row.kind,
                priority=row.priority, admitted_at=aware(row.admitted_at), demand=quotas.amounts_from_json(row.demand),
                borrowed_from=int(borrowed["from"]) if borrowed else None,
                borrowed=quotas.amounts_from_json(borrowed.get("amounts")) if borrowed else {},
                device_ids=tuple((row.placement or {}).get("device_ids") or ()))))
        return out

    def _maybe_preempt(self, adm: Admission, ask: Ask, outcome: Outcome) -> None:
        pending = self.s.scalar(select(Admission.id).where(Admission.state == ADMITTED,
                                                           Admission.preempted_by == adm.id).limit(1))
        if pending is not None:
            adm.reason = f"{outcome.message} (waiting for preempted work to stop)"
            return
        kinds = tuple(self.config.preemptible_kinds)
        if not kinds:
            return
        base = (Admission.kind.in_(kinds), Admission.preempted_by.is_(None), Admission.id != adm.id)
        victims: list[Running] | None = None
        action = "quota.preempt"
        if outcome.kind == QUOTA_QUEUE and outcome.verdict is not None:
            verdict = outcome.verdict
            if verdict.reclaim:
                cohort = self.cohort_of(adm.workspace_id)
                rows = [r for _, r in self._running((*base, Admission.borrowed.is_not(None),
                                                     Admission.workspace_id.in_(cohort)))
                        if r.borrowed_from == adm.workspace_id]
                victims = scheduling.free_until(scheduling.victim_order(rows), verdict.reclaim, lambda r: r.borrowed)
                action = "quota.reclaim"
            else:
                where = (*base, Admission.workspace_id == adm.workspace_id, Admission.priority < adm.priority)
                if verdict.personal:
                    where = (*where, Admission.username == adm.username)
                rows = [r for _, r in self._running(where)]
                victims = scheduling.free_until(scheduling.victim_order(rows), scheduling.shortfall(verdict.excess))
        elif outcome.kind == RESOURCE_QUEUE and self.config.runtime == "local" and not ask.request.none:
            cohort = self.cohort_of(adm.workspace_id)
            rows = [r for _, r in self._running((*base, Admission.has_devices.is_(True),
                                                 Admission.workspace_id.in_(cohort),
                                                 Admission.priority < adm.priority))]
            victims = self._device_victims(ask, adm.holder, scheduling.victim_order(rows))
        if not victims:
            return
        for v in victims:
            row = self.s.get(Admission, v.id)
            row.preempted_by = adm.id
            row.preempt_requested = utcnow()
            why = ("reclaimed by its lender, workspace %d" % adm.workspace_id if action == "quota.reclaim"
                   else f"preempted by admission {adm.id} (priority {adm.priority} > {row.priority})")
            self._event(row, "preempt", by=adm.id, reason=why)
            audit_event(self.s, self.actor or "quota", action, f"workspace:{row.workspace_id}",
                        admission=row.id, by=adm.id, for_workspace=adm.workspace_id)
            self.stops.append(self.stop_request(row.kind, admission_json(row), why))
        adm.reason = f"{outcome.message} (waiting for {len(victims)} preempted job(s) to stop)"
        self._event(adm, "preempting", victims=[v.id for v in victims])

    def _device_victims(self, ask: Ask, holder: str, order: list[Running]) -> list[Running] | None:
        cap = self.capacity()
        rows = {r.id: Allocation.from_json(self.s.get(Admission, r.id).placement) for r in order}

        def fits_without(chosen: list[Running]) -> bool:
            for r in chosen:
                cap.remove(rows[r.id])
            try:
                probe = cap.place(ask.request, holder, self.config.policy)
                cap.remove(probe)
                return True
            except NoCapacityError:
                return False
            finally:
                for r in chosen:
                    cap.add(rows[r.id])

        chosen: list[Running] = []
        for r in order:
            chosen.append(r)
            if fits_without(chosen):
                break
        else:
            return None
        for r in list(chosen):  # drop victims whose devices did not matter
            rest = [c for c in chosen if c.id != r.id]
            if fits_without(rest):
                chosen = rest
        return chosen

