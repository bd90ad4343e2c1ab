"""The host registry: one row per agent of the fleet (issue 19).

Revision ID: 0001_novatune_hosts
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_novatune_hosts"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "novatune_hosts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("facts", sa.JSON, nullable=False),
        sa.Column("registered_at", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("study", sa.String(512), nullable=True),
        sa.Column("trial", sa.Integer, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("novatune_hosts")
