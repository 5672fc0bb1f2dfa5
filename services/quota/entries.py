"""Ledger entries as the API shows them, and where a waiting entry stands in its line."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from . import asks
from .ledger_config import LedgerConfig
from .models import Admission

QUEUED, ADMITTED, RELEASED, CANCELLED = "queued", "admitted", "released", "cancelled"
OPEN = (QUEUED, ADMITTED)
QUOTA_QUEUE, RESOURCE_QUEUE = "quota", "resource"


def aware(dt: datetime.datetime | None) -> datetime.datetime:
    if dt is None:
        return datetime.datetime.fromtimestamp(0, datetime.timezone.utc)
    return dt if dt.tzinfo else dt.replace(tzinfo=datetime.timezone.utc)


def iso(dt: datetime.datetime | None) -> str | None:
    if dt is None:
        return None
    return aware(dt).isoformat().replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def admission_json(adm: Admission, position: tuple[int, int] | None = None, message: str | None = None) -> dict:
    out = {
        "id": adm.id, "state": adm.state, "queue": adm.queue, "reason": adm.reason,
        "workspace_id": adm.workspace_id, "project_id": adm.project_id, "user": adm.username,
        "kind": adm.kind, "holder": adm.holder, "preset": adm.preset, "spec": adm.spec,
        "priority": adm.priority, "runtime": adm.runtime, "idempotency_key": adm.idempotency_key,
        "created": iso(adm.created), "admitted_at": iso(adm.admitted_at), "ended_at": iso(adm.ended_at),
        "end_reason": adm.end_reason, "placement": adm.placement, "demand": adm.demand,
        "borrowed": adm.borrowed, "preempted_by": adm.preempted_by,
        "preempt_requested": iso(adm.preempt_requested),
    }
    if position is not None:
        out["position"], out["queue_length"] = position
    if message is not None:
        out["message"] = message
    return out


def queue_positions(session: Session, config: LedgerConfig) -> dict[int, tuple[int, int]]:
    """Every queued entry's (position, line length), from one read of the queue."""
    rows = list(session.execute(select(Admission.id, Admission.workspace_id, Admission.queue, Admission.spec)
                                .where(Admission.state == QUEUED)
                                .order_by(Admission.priority.desc(), Admission.id)))
    out: dict[int, tuple[int, int]] = {}
    quota_lines: dict[int, list[int]] = {}
    resource = []
    for ident, ws_id, queue, spec in rows:
        if queue == QUOTA_QUEUE:
            quota_lines.setdefault(ws_id, []).append(ident)
        else:
            resource.append((ident, config.scope(spec)))
    for line in quota_lines.values():
        for i, ident in enumerate(line):
            out[ident] = (i + 1, len(line))
    for ident, scope in resource:
        line = [other for other, s in resource if other == ident or asks.compete(scope, s)]
        out[ident] = (line.index(ident) + 1, len(line))
    return out


def queue_position(session: Session, adm: Admission, config: LedgerConfig) -> tuple[int, int]:
    """(1-based position, entries in its line) of a queued entry: its workspace's quota
    line, or the line of requests competing for the same devices."""
    line = (Admission.state == QUEUED, Admission.queue == adm.queue)
    ahead = or_(Admission.priority > adm.priority, and_(Admission.priority == adm.priority, Admission.id < adm.id))
    if adm.queue == QUOTA_QUEUE:
        mine = (*line, Admission.workspace_id == adm.workspace_id)
        before = session.scalar(select(func.count()).select_from(Admission).where(*mine, ahead)) or 0
        total = session.scalar(select(func.count()).select_from(Admission).where(*mine)) or 0
        return before + 1, max(total, before + 1)
    scope = config.scope(adm.spec)
    before = total = 0
    for ident, priority, spec in session.execute(select(Admission.id, Admission.priority, Admission.spec)
                                                 .where(*line)):
        if ident != adm.id and not asks.compete(scope, config.scope(spec)):
            continue
        total += 1
        if priority > adm.priority or (priority == adm.priority and ident < adm.id):
            before += 1
    return before + 1, max(total, before + 1)


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def waiting_message(adm: Admission, position: tuple[int, int], config: LedgerConfig) -> str:
    """What the spawn page says while an entry waits."""
    pos, total = position
    where = f"{ordinal(pos)} of {total}"
    if adm.queue == QUOTA_QUEUE:
        return f"waiting for quota: {where}"
    request = config.canonical(adm.spec)
    what = request.model or (config.registry.vendors[request.vendor].display if request.vendor else "accelerator")
    if request.kind == "whole" and request.count > 1:
        return f"waiting for {request.count} free {what}: {where}"
    return f"waiting for a free {what}: {where}"
