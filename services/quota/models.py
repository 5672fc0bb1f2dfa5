"""Tables owned by the quota service: workspaces, memberships, projects, audit events, and
the resource ledger (quotas, admissions and their history, stop hooks, device marks)."""

from __future__ import annotations

import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from gemhub.services.common.audit import AuditEventColumns, utcnow


class Base(DeclarativeBase):
    pass


class Workspace(Base):
    __tablename__ = "workspaces"
    # AUTOINCREMENT: ids name directories on disk and must never be reused.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    # set for a user's personal workspace: one per user, enforced by the unique constraint
    personal_owner: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # How long an environment of this workspace may run (seed 001 资源时效); None: no limit.
    max_runtime_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)
    # Set by hub admins only: the presets this workspace may use (None = every preset) and
    # whether its members may type a custom accelerator spec.
    allowed_presets: Mapped[list[str] | None] = mapped_column(JSON, nullable=True, default=None)
    custom_spec: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Set by hub admins: the cohort the workspace lends and borrows quota in (None: alone),
    # and the highest priority its requests may ask for (None: the platform's default).
    cohort: Mapped[str | None] = mapped_column(String(63), nullable=True, default=None)
    max_priority: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="workspace", cascade="all, delete-orphan", passive_deletes=True
    )
    projects: Mapped[list[Project]] = relationship(
        back_populates="workspace", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Project.id",
    )

    @property
    def personal(self) -> bool:
        return self.personal_owner is not None


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("workspace_id", "username"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(255), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    workspace: Mapped[Workspace] = relationship(back_populates="memberships")


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("workspace_id", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    workspace: Mapped[Workspace] = relationship(back_populates="projects")


class AuditEvent(AuditEventColumns, Base):
    pass


# -- the resource ledger --------------------------------------------------------------------
class QuotaLimit(Base):
    """A workspace's quota (``username`` "") or a member's personal limits inside it.

    ``limits`` is the canonical JSON of :class:`gemhub.services.quota.quotas.Limits`
    (absent key: no limit); ``borrowing`` bounds what the workspace may borrow in its
    cohort (workspace rows only; absent key: up to what the cohort has idle).
    """

    __tablename__ = "quota_limits"
    __table_args__ = (UniqueConstraint("workspace_id", "username"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(255), default="")
    limits: Mapped[dict] = mapped_column(JSON, default=dict)
    borrowing: Mapped[dict] = mapped_column(JSON, default=dict)
    updated: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UserPriority(Base):
    """A hub admin's priority for a user (seed 001 用户优先级): the default and the highest
    priority of that user's requests (never above the workspace's maximum)."""

    __tablename__ = "user_priorities"

    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    priority: Mapped[int] = mapped_column(Integer)
    updated: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Admission(Base):
    """One ledger entry: who holds (or waits for) what, since when, until when and why.

    Never deleted: an entry moves queued -> admitted -> released (or queued -> cancelled),
    and every move is also an :class:`LedgerEvent`. Workspace and project are plain ids
    (no foreign key): the history outlives them.
    """

    __tablename__ = "admissions"
    __table_args__ = (
        Index("ix_admissions_state_ws", "state", "workspace_id"),
        Index("ix_admissions_state_devices", "state", "has_devices"),
        Index("ix_admissions_queue", "state", "priority", "id"),
        Index("ix_admissions_holder_state", "holder", "state"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    holder: Mapped[str] = mapped_column(String(512))
    kind: Mapped[str] = mapped_column(String(16))
    runtime: Mapped[str] = mapped_column(String(16))
    workspace_id: Mapped[int] = mapped_column(Integer)
    project_id: Mapped[int] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(255), index=True)
    preset: Mapped[str | None] = mapped_column(String(63), nullable=True)
    spec: Mapped[str] = mapped_column(String(255), default="0")
    demand: Mapped[dict] = mapped_column(JSON, default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    admitted_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    placement: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    has_devices: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # what it borrows in its cohort: {"from": lender workspace id, "amounts": {resource: "n"}}
    borrowed: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    preempted_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    preempt_requested: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class LedgerEvent(Base):
    """Append-only history of the ledger: every state change of every admission."""

    __tablename__ = "ledger_events"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    admission_id: Mapped[int] = mapped_column(Integer, index=True)
    at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class LedgerClock(Base):
    """One row: locked by every ledger transaction (so they run one at a time, whatever the
    number of quota processes) and counted up by each, so a cache can tell it is current."""

    __tablename__ = "ledger_clock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    # names this ledger in what it labels (environment variables, pods), so two GemHubs on
    # one machine or cluster never take each other's workloads for their own
    ledger_id: Mapped[str] = mapped_column(String(32))


class StopHook(Base):
    """Where the owner of a kind of workload (``job``, ``inference``) is told to stop one."""

    __tablename__ = "stop_hooks"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    token: Mapped[str] = mapped_column(String(1024))
    registered_by: Mapped[str] = mapped_column(String(255))
    updated: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeviceMark(Base):
    """A device or node an admin took out of service (local runtime)."""

    __tablename__ = "device_marks"

    target: Mapped[str] = mapped_column(String(8), primary_key=True)  # "device" | "node"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    by: Mapped[str] = mapped_column(String(255))
    since: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
