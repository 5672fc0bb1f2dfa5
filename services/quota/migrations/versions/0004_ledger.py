"""The resource ledger: quotas, user priorities, admissions and their history, the ledger
clock, stop hooks, device maintenance marks; a workspace's cohort and maximum priority.

Revision ID: 0004_ledger
Revises: 0003_lab
Create Date: 2026-11-30
"""
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0004_ledger"
down_revision = "0003_lab"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("cohort", sa.String(63), nullable=True))
        batch.add_column(sa.Column("max_priority", sa.Integer, nullable=True))
    op.create_table(
        "quota_limits",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("workspace_id", sa.Integer, sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("limits", sa.JSON, nullable=False),
        sa.Column("borrowing", sa.JSON, nullable=False),
        sa.Column("updated", TZ, nullable=False),
        sa.UniqueConstraint("workspace_id", "username"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "user_priorities",
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("updated", TZ, nullable=False),
    )
    op.create_table(
        "admissions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("runtime", sa.String(16), nullable=False),
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("username", sa.String(255), nullable=False, index=True),
        sa.Column("preset", sa.String(63), nullable=True),
        sa.Column("spec", sa.String(255), nullable=False),
        sa.Column("demand", sa.JSON, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created", TZ, nullable=False),
        sa.Column("admitted_at", TZ, nullable=True),
        sa.Column("ended_at", TZ, nullable=True),
        sa.Column("end_reason", sa.Text, nullable=True),
        sa.Column("placement", sa.JSON, nullable=True),
        sa.Column("has_devices", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("borrowed", sa.JSON, nullable=True),
        sa.Column("preempted_by", sa.Integer, nullable=True),
        sa.Column("preempt_requested", TZ, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_admissions_state_ws", "admissions", ["state", "workspace_id"])
    op.create_index("ix_admissions_state_devices", "admissions", ["state", "has_devices"])
    op.create_index("ix_admissions_queue", "admissions", ["state", "priority", "id"])
    op.create_index("ix_admissions_holder_state", "admissions", ["holder", "state"])
    op.create_table(
        "ledger_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("admission_id", sa.Integer, nullable=False, index=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sqlite_autoincrement=True,
    )
    clock = op.create_table(
        "ledger_clock",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("ledger_id", sa.String(32), nullable=False),
    )
    op.bulk_insert(clock, [{"id": 1, "version": 0, "ledger_id": uuid.uuid4().hex[:12]}])
    op.create_table(
        "stop_hooks",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("token", sa.String(1024), nullable=False),
        sa.Column("registered_by", sa.String(255), nullable=False),
        sa.Column("updated", TZ, nullable=False),
    )
    op.create_table(
        "device_marks",
        sa.Column("target", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("by", sa.String(255), nullable=False),
        sa.Column("since", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in ("device_marks", "stop_hooks", "ledger_clock", "ledger_events", "admissions",
                  "user_priorities", "quota_limits"):
        op.drop_table(table)
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("max_priority")
        batch.drop_column("cohort")
