"""Tables owned by the image service: images, their versions (one build each), tags and
audit events."""

from __future__ import annotations

import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from gemhub.services.common.audit import AuditEventColumns, utcnow


class Base(DeclarativeBase):
    pass


class Image(Base):
    """An official image (from the images/ catalog, no workspace) or a workspace's custom image."""

    __tablename__ = "images"
    # ids name storage references and folders on disk: never reused
    __table_args__ = (UniqueConstraint("workspace_id", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)  # official | custom
    name: Mapped[str] = mapped_column(String(64))
    official_key: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    workspace_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    workspace_name: Mapped[str] = mapped_column(String(63), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[str] = mapped_column(String(16))
    accelerators: Mapped[list] = mapped_column(JSON, default=list)
    cluster_only: Mapped[int] = mapped_column(Integer, default=0)  # official images built on clusters only
    created_by: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[ImageVersion]] = relationship(
        back_populates="image", cascade="all, delete-orphan", passive_deletes=True,
        order_by="ImageVersion.number", foreign_keys="ImageVersion.image_id")
    tags: Mapped[list[Tag]] = relationship(back_populates="image", cascade="all, delete-orphan",
                                           passive_deletes=True, order_by="Tag.name")


class ImageVersion(Base):
    """One build of an image: queued → building → succeeded | failed | cancelled."""

    __tablename__ = "image_versions"
    __table_args__ = (UniqueConstraint("image_id", "number"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    dockerfile: Mapped[str] = mapped_column(Text, default="")  # the user's part (custom images)
    base_version_id: Mapped[int | None] = mapped_column(ForeignKey("image_versions.id"), nullable=True)
    context_project_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    recipe: Mapped[str] = mapped_column(String(64), default="")  # content hash of an official recipe
    hints: Mapped[list] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    digest: Mapped[str] = mapped_column(String(128), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    env: Mapped[list] = mapped_column(JSON, default=list)  # the image's ENV ("K=V"), applied in environments
    rootfs: Mapped[int] = mapped_column(Integer, default=0)  # exported as a read-only root filesystem
    pushed: Mapped[str] = mapped_column(String(512), default="")  # registry reference once pushed
    push_error: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    image: Mapped[Image] = relationship(back_populates="versions", foreign_keys=[image_id])
    base: Mapped[ImageVersion | None] = relationship(remote_side=[id], foreign_keys=[base_version_id])


class Tag(Base):
    """A name for one version of an image (``stable``, ``paper-2026``); ``latest`` is implicit."""

    __tablename__ = "image_tags"
    __table_args__ = (UniqueConstraint("image_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    version_id: Mapped[int] = mapped_column(ForeignKey("image_versions.id", ondelete="CASCADE"), index=True)

    image: Mapped[Image] = relationship(back_populates="tags")
    version: Mapped[ImageVersion] = relationship()


class AuditEvent(AuditEventColumns, Base):
    pass
