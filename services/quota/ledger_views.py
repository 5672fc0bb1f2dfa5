"""Read-only views of the ledger (plain functions of a session, run off the event loop)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gemhub.services.common.errors import NotFound

from . import quotas
from .entries import ADMITTED, OPEN, QUEUED, admission_json, iso, queue_position, queue_positions, waiting_message
from .ledger_config import LedgerConfig
from .models import Admission, DeviceMark, LedgerClock, LedgerEvent, Membership, QuotaLimit, UserPriority, Workspace


def admission_view(s: Session, adm: Admission, config: LedgerConfig,
                   positions: dict[int, tuple[int, int]] | None = None) -> dict:
    """An entry as the API shows it (with its place in line while it waits, and the id of
    this ledger, which labels its workload). ``positions``: the queue read once for many."""
    if adm.state == QUEUED:
        pos = positions.get(adm.id) if positions is not None else None
        pos = pos or queue_position(s, adm, config)
        out = admission_json(adm, pos, waiting_message(adm, pos, config))
    else:
        message = {"admitted": "admitted", "released": "released", "cancelled": "left the queue"}.get(adm.state)
        if adm.state == ADMITTED and adm.preempted_by:
            message = f"preempted by admission {adm.preempted_by}: stopping"
        out = admission_json(adm, message=message)
    out["ledger"] = ledger_id(s)
    if config.kueue_enabled:
        from .kueue import pod_labels

        out["labels"] = pod_labels(adm.workspace_id, adm.priority, config.priority_levels)
    return out


_LEDGER_IDS: dict[str, str] = {}


def ledger_id(s: Session) -> str:
    """This database's ledger id (it never changes: read once per database)."""
    key = str(s.get_bind().url)
    if key not in _LEDGER_IDS:
        _LEDGER_IDS[key] = s.scalar(select(LedgerClock.ledger_id))
    return _LEDGER_IDS[key]


def role_of(s: Session, ws_id: int, username: str) -> str | None:
    return s.scalar(select(Membership.role).where(Membership.workspace_id == ws_id, Membership.username == username))


def workspace_or_404(s: Session, ws_id: int) -> Workspace:
    ws = s.get(Workspace, ws_id)
    if ws is None:
        raise NotFound(f"workspace {ws_id} does not exist")
    return ws


def quota_json(s: Session, ws: Workspace, config: LedgerConfig) -> dict:
    row = s.scalar(select(QuotaLimit).where(QuotaLimit.workspace_id == ws.id, QuotaLimit.username == ""))
    return {
        "workspace_id": ws.id, "workspace": ws.name,
        "quota": quotas.limits_json(quotas.limits_from_json(row.limits)) if row else {},
        "borrowing": quotas.limits_json(quotas.limits_from_json(row.borrowing)) if row else {},
        "cohort": ws.cohort,
        "max_priority": ws.max_priority if ws.max_priority is not None else config.max_priority,
        "max_priority_set": ws.max_priority is not None,
        "updated": iso(row.updated) if row else None,
    }


def personal_json(s: Session, ws_id: int, username: str) -> dict:
    row = s.scalar(select(QuotaLimit).where(QuotaLimit.workspace_id == ws_id, QuotaLimit.username == username))
    return {"workspace_id": ws_id, "user": username,
            "limits": quotas.limits_json(quotas.limits_from_json(row.limits)) if row else {}}


def usage_view(s: Session, ws_id: int, config: LedgerConfig) -> dict:
    """Quota, used, free and who uses what in one workspace (members see it all)."""
    ws = workspace_or_404(s, ws_id)
    out = quota_json(s, ws, config)
    limits = quotas.limits_from_json(
        (s.scalar(select(QuotaLimit.limits).where(QuotaLimit.workspace_id == ws.id, QuotaLimit.username == "")))
        or {})
    rows = list(s.scalars(select(Admission).where(Admission.workspace_id == ws.id, Admission.state.in_(OPEN))
                          .order_by(Admission.id)))
    used: quotas.Amounts = {}
    by_user: dict[str, quotas.Amounts] = {}
    for r in rows:
        if r.state == ADMITTED:
            d = quotas.amounts_from_json(r.demand)
            used = quotas.add(used, d)
            by_user[r.username] = quotas.add(by_user.get(r.username, {}), d)
    personal = {row.username: quotas.limits_from_json(row.limits) for row in s.scalars(
        select(QuotaLimit).where(QuotaLimit.workspace_id == ws.id, QuotaLimit.username != ""))}
    members = [m for (m,) in s.execute(select(Membership.username).where(Membership.workspace_id == ws.id)
                                       .order_by(Membership.id))]
    out["used"] = usage_json(used, limits, config)
    out["free"] = quotas.limits_json({k: max(v - used.get(k, Decimal(0)), Decimal(0)) for k, v in limits.items()})
    out["members"] = [{"user": m, "used": usage_json(by_user.get(m, {}), limits, config),
                       "limits": quotas.limits_json(personal.get(m, {}))} for m in members]
    positions = queue_positions(s, config) if any(r.state == QUEUED for r in rows) else None
    out["running"] = [admission_view(s, r, config) for r in rows if r.state == ADMITTED]
    out["queued"] = [admission_view(s, r, config, positions) for r in rows if r.state == QUEUED]
    return out


def usage_json(used: quotas.Amounts, limits: quotas.Amounts, config: LedgerConfig) -> dict[str, Any]:
    """Used amounts with the quota's keys, plus every device model in use (a demand also
    counts against its family and vendor, shown only where a quota names them)."""
    keys = set(limits) | {k for k in (quotas.CPU, quotas.MEMORY, *quotas.COUNTERS.values()) if used.get(k)}
    for k, v in used.items():
        if v and k.startswith(quotas.ACCEL):
            found = config.registry.find_model(k[len(quotas.ACCEL):])
            if found is not None and not found[1].is_family:
                keys.add(k)
    return quotas.limits_json({k: used.get(k, Decimal(0)) for k in keys})


def overview(s: Session, config: LedgerConfig) -> list[dict]:
    """Every workspace's quota and usage (hub admins)."""
    used_by: dict[int, quotas.Amounts] = {}
    counts: dict[int, tuple[int, int]] = {}
    for ws_id, state, demand in s.execute(select(Admission.workspace_id, Admission.state, Admission.demand)
                                          .where(Admission.state.in_(OPEN))):
        running, queued = counts.get(ws_id, (0, 0))
        if state == ADMITTED:
            used_by[ws_id] = quotas.add(used_by.get(ws_id, {}), quotas.amounts_from_json(demand))
            running += 1
        else:
            queued += 1
        counts[ws_id] = (running, queued)
    out = []
    for ws in s.scalars(select(Workspace).order_by(Workspace.id)):
        q = quota_json(s, ws, config)
        limits = quotas.limits_from_json(
            s.scalar(select(QuotaLimit.limits).where(QuotaLimit.workspace_id == ws.id, QuotaLimit.username == ""))
            or {})
        q["used"] = usage_json(used_by.get(ws.id, {}), limits, config)
        q["running"], q["queued"] = counts.get(ws.id, (0, 0))
        out.append(q)
    return out


def list_admissions(s: Session, config: LedgerConfig, *, workspaces: list[int] | None, state: str,
                    workspace_id: int | None, user: str | None, holder: str | None, offset: int,
                    limit: int) -> tuple[list[dict], int]:
    where = []
    if workspaces is not None:
        where.append(Admission.workspace_id.in_(workspaces))
    if workspace_id is not None:
        where.append(Admission.workspace_id == workspace_id)
    if user:
        where.append(Admission.username == user)
    if holder:
        where.append(Admission.holder == holder)
    states = {"open": OPEN, "queued": (QUEUED,), "admitted": (ADMITTED,),
              "ended": ("released", "cancelled"), "all": None}[state]
    if states is not None:
        where.append(Admission.state.in_(states))
    total = s.scalar(select(func.count()).select_from(Admission).where(*where)) or 0
    rows = list(s.scalars(select(Admission).where(*where).order_by(Admission.id).offset(offset).limit(limit)))
    positions = queue_positions(s, config) if any(r.state == QUEUED for r in rows) else None
    return [admission_view(s, r, config, positions) for r in rows], total


def events_json(s: Session, adm_id: int) -> list[dict]:
    return [{"id": e.id, "at": iso(e.at), "event": e.event, "actor": e.actor, "detail": e.detail}
            for e in s.scalars(select(LedgerEvent).where(LedgerEvent.admission_id == adm_id).order_by(LedgerEvent.id))]


def priorities_json(s: Session) -> list[dict]:
    return [{"user": p.username, "priority": p.priority, "updated": iso(p.updated)}
            for p in s.scalars(select(UserPriority).order_by(UserPriority.username))]


def devices_view(s: Session, config: LedgerConfig) -> dict:
    """Nodes and devices, their status, the admins' marks and who holds them (from the ledger)."""
    devices = config.devices()
    marks = {(m.target, m.name): m for m in s.scalars(select(DeviceMark))}
    held: dict[str, list[dict]] = {}
    for adm in s.scalars(select(Admission).where(Admission.state == ADMITTED, Admission.has_devices.is_(True))):
        p = adm.placement or {}
        kind, _, rest = adm.holder.partition(":")
        user, _, server = rest.partition("/")
        who = {"admission": adm.id, "holder": adm.holder, "kind": adm.kind, "user": adm.username,
               "server": server if kind == "server" else "", "workspace_id": adm.workspace_id,
               "memory_mib": p.get("memory_mib"), "compute_percent": p.get("compute_percent"),
               "exclusive": p.get("exclusive", True), "mig_profile": p.get("mig_profile"),
               "since": iso(adm.admitted_at)}
        for dev in p.get("device_ids") or ():
            held.setdefault(dev, []).append(who)
    nodes: dict[str, dict] = {}
    for d in devices:
        node = nodes.setdefault(d.node, {"name": d.node, "maintenance": ("node", d.node) in marks, "devices": []})
        marked = ("device", d.id) in marks or node["maintenance"]
        status = "maintenance" if marked and d.status.value == "online" else d.status.value
        node["devices"].append({
            "id": d.id, "index": d.index, "uuid": d.uuid, "vendor": d.vendor, "model": d.model,
            "memory_mib": d.memory_mib, "mig_capable": d.mig_capable, "status": status,
            "simulated": d.simulated, "maintenance": ("device", d.id) in marks,
            "holders": held.get(d.id, []),
        })
    source = config.local_devices.source if config.runtime == "local" and config.accelerators else "none"
    return {"source": source or "none", "policy": config.policy, "nodes": list(nodes.values())}
