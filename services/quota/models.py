"""Tables owned by the quota service: workspaces, memberships, projects, audit events."""

from __future__ import annotations

import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, UniqueConstraint, false
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
