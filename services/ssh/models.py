"""Tables owned by the ssh service: registered public keys, SSH accounts (password and
lockout counter), audit events."""

from __future__ import annotations

import datetime

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gemhub.services.common.audit import AuditEventColumns, utcnow


class Base(DeclarativeBase):
    pass


class PublicKey(Base):
    __tablename__ = "public_keys"
    # A key identifies one hub user: the same key cannot be registered twice.
    __table_args__ = (UniqueConstraint("fingerprint"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(128))
    algorithm: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Account(Base):
    """One row per hub user who has touched SSH: the password hash and the lockout state.

    ``failures`` counts password checks claimed since the last success (a check is counted
    *before* the password is compared, so concurrent clients can never get more than the
    allowed number of guesses); ``locked_until`` is set when the count is reached.
    """

    __tablename__ = "accounts"

    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    password_set: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_failure: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_failure_from: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditEvent(AuditEventColumns, Base):
    pass
