"""Tables owned by the data service: assets (datasets and models), their versions,
resumable uploads, measured storage and hourly storage samples, audit events."""

from __future__ import annotations

import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from gemhub.services.common.audit import AuditEventColumns, utcnow


class Base(DeclarativeBase):
    pass


class Asset(Base):
    """A dataset or a model (``kind``): one code path serves both."""

    __tablename__ = "assets"
    # ids name directories on disk and must never be reused
    __table_args__ = (UniqueConstraint("workspace_id", "kind", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[int] = mapped_column(Integer, index=True)
    workspace_name: Mapped[str] = mapped_column(String(63))  # for display; the quota service owns it
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list] = mapped_column(JSON, default=list)
    visibility: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[Version]] = relationship(
        back_populates="asset", cascade="all, delete-orphan", passive_deletes=True, order_by="Version.number")


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("asset_id", "number"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # draft | published
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    asset: Mapped[Asset] = relationship(back_populates="versions")


class Upload(Base):
    """A resumable upload of one file into a draft; the received offset lives next to the
    data on disk (see uploads.py), fsync'd with it."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    batch: Mapped[str] = mapped_column(String(32), index=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | complete
    created_by: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MeasuredUsage(Base):
    """Bytes of a workspace's directories measured by the periodic scan (code, output, images)."""

    __tablename__ = "measured_usage"
    __table_args__ = (UniqueConstraint("workspace_id", "category"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(Integer, index=True)
    category: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    measured: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StorageSample(Base):
    """A workspace's storage at the start of an hour (billing reads these)."""

    __tablename__ = "storage_samples"
    __table_args__ = (UniqueConstraint("workspace_id", "hour"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(Integer, index=True)
    hour: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), index=True)
    usage: Mapped[dict] = mapped_column(JSON)  # {category: bytes}
    total: Mapped[int] = mapped_column(BigInteger)


class AuditEvent(AuditEventColumns, Base):
    pass
