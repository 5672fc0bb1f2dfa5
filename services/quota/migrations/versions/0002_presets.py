"""workspace preset limits: allowed_presets (null = all) and custom_spec

Revision ID: 0002_presets
Revises: 0001
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0002_presets"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("allowed_presets", sa.JSON, nullable=True))
        batch.add_column(sa.Column("custom_spec", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("custom_spec")
        batch.drop_column("allowed_presets")
