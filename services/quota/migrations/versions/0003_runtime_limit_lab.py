"""workspaces.max_runtime_minutes: how long an environment may run (seed 001)

Revision ID: 0003_lab
Revises: 0002_presets
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_lab"
down_revision = "0002_presets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("max_runtime_minutes", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("max_runtime_minutes")
