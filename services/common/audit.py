"""Audit events: who did what to which target, when (UTC, timezone-aware).

Each service owns an ``audit_events`` table; its model class mixes in
:class:`AuditEventColumns` and is handed to the session factory
(:func:`gemhub.services.common.db.make_sessionmaker`).
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import Mapped, Session, mapped_column


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class AuditEventColumns:
    """Columns of an audit event (mixed into each service's declarative model)."""

    __tablename__ = "audit_events"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(255), index=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


def audit_event(session: Session, actor: str, action: str, target: str, **detail: Any):
    """Add an audit event to ``session`` (committed with the change it records)."""
    model = session.info.get("audit_model")
    if model is None:
        raise RuntimeError("the session factory was made without an audit_model")
    event = model(actor=actor, action=action, target=target, detail=detail, created=utcnow())
    session.add(event)
    return event
