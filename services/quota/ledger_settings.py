"""Ledger changes that alter who may run: quotas, personal limits, priorities, maintenance
marks. Each is audited and followed by a dispatch (a raised quota admits what waits)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gemhub.services.common.audit import audit_event, utcnow

from . import quotas
from .models import DeviceMark, QuotaLimit, UserPriority
from .quotas import Amounts


class SettingsMixin:
    """Part of :class:`~gemhub.services.quota.ledger.Ledger` (its session, caches and events)."""

    def set_quota(self, ws_id: int, limits: Amounts | None = None, borrowing: Amounts | None = None,
                  cohort: Any = ..., max_priority: Any = ...) -> None:
        """Change a workspace's quota, borrowing limits, cohort or maximum priority (``None``
        limits: unchanged; ``...``: unchanged), then admit what now fits."""
        ws = self.workspace(ws_id)
        row = self._limit_row(ws_id, "")
        old = {"quota": row.limits, "borrowing": row.borrowing, "cohort": ws.cohort, "max_priority": ws.max_priority}
        if limits is not None:
            row.limits = quotas.limits_json(limits)
        if borrowing is not None:
            row.borrowing = quotas.limits_json(borrowing)
        if cohort is not ...:
            ws.cohort = cohort
        if max_priority is not ...:
            ws.max_priority = max_priority
        row.updated = utcnow()
        new = {"quota": row.limits, "borrowing": row.borrowing, "cohort": ws.cohort, "max_priority": ws.max_priority}
        if new != old:
            audit_event(self.s, self.actor, "quota.set", f"workspace:{ws_id}", old=old, new=new)
        self._changed()

    def set_personal(self, ws_id: int, username: str, limits: Amounts | None) -> None:
        """A member's personal limits (``None``: none)."""
        self.workspace(ws_id)
        if limits is None:
            row = self.s.scalar(select(QuotaLimit).where(QuotaLimit.workspace_id == ws_id,
                                                         QuotaLimit.username == username))
            if row is not None:
                audit_event(self.s, self.actor, "quota.personal", f"workspace:{ws_id}", user=username,
                            old=row.limits, new=None)
                self.s.delete(row)
        else:
            row = self._limit_row(ws_id, username)
            old = row.limits
            row.limits = quotas.limits_json(limits)
            row.updated = utcnow()
            audit_event(self.s, self.actor, "quota.personal", f"workspace:{ws_id}", user=username,
                        old=old, new=row.limits)
        self._changed()

    def set_priority(self, username: str, priority: int | None) -> None:
        row = self.s.get(UserPriority, username)
        old = row.priority if row else None
        if priority is None:
            if row is not None:
                self.s.delete(row)
        elif row is None:
            self.s.add(UserPriority(username=username, priority=priority, updated=utcnow()))
        else:
            row.priority, row.updated = priority, utcnow()
        if old != priority:
            audit_event(self.s, self.actor, "priority.set", f"user:{username}", old=old, new=priority)
        self.cache.priorities.pop(username, None)

    def set_mark(self, target: str, name: str, on: bool) -> None:
        """Take a device or node out of service (its holders keep it until they stop) or back."""
        row = self.s.get(DeviceMark, (target, name))
        if on and row is None:
            self.s.add(DeviceMark(target=target, name=name, by=self.actor, since=utcnow()))
        elif not on and row is not None:
            self.s.delete(row)
        else:
            return
        audit_event(self.s, self.actor, "device.maintenance", f"{target}:{name}", on=on)
        self._changed()

    def _limit_row(self, ws_id: int, username: str) -> QuotaLimit:
        row = self.s.scalar(select(QuotaLimit).where(QuotaLimit.workspace_id == ws_id, QuotaLimit.username == username))
        if row is None:
            row = QuotaLimit(workspace_id=ws_id, username=username, limits={}, borrowing={}, updated=utcnow())
            self.s.add(row)
        return row

    def _changed(self) -> None:
        self.s.flush()
        self.cache.reset(self._version)
        self.dispatch()

