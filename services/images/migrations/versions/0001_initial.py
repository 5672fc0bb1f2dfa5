"""images, image versions (builds), tags, audit events

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False, index=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("official_key", sa.String(64), nullable=True, unique=True),
        sa.Column("workspace_id", sa.Integer, nullable=True, index=True),
        sa.Column("workspace_name", sa.String(63), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("accelerators", sa.JSON, nullable=False),
        sa.Column("cluster_only", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("workspace_id", "name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "image_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("dockerfile", sa.Text, nullable=False),
        sa.Column("base_version_id", sa.Integer, sa.ForeignKey("image_versions.id"), nullable=True),
        sa.Column("context_project_id", sa.Integer, nullable=True),
        sa.Column("recipe", sa.String(64), nullable=False),
        sa.Column("hints", sa.JSON, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("env", sa.JSON, nullable=False),
        sa.Column("rootfs", sa.Integer, nullable=False),
        sa.Column("pushed", sa.String(512), nullable=False),
        sa.Column("push_error", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("image_id", "number"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "image_tags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("image_versions.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.UniqueConstraint("image_id", "name"),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False, index=True),
        sa.Column("target", sa.String(255), nullable=False, index=True),
        sa.Column("detail", sa.JSON, nullable=False),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    for table in ("audit_events", "image_tags", "image_versions", "images"):
        op.drop_table(table)
