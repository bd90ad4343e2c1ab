"""The fleet's copy of each host's state, and the commands routed to a host's agent (issue 19).

``novatune_host_state``: one row per (host, kind, key), the JSON a host's agent published of its service
registry, applications, recommendations, right-sizing proposals, profiles and continuous tuners.
``novatune_commands``: apply and rollback requests for one host, taken and answered by that host's agent.

Revision ID: 0002_novatune_fleet_state
Revises: 0001_novatune_hosts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_novatune_fleet_state"
down_revision = "0001_novatune_hosts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "novatune_host_state",
        sa.Column("host_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )
    op.create_table(
        "novatune_commands",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("host_id", sa.String(64), nullable=False, index=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("args", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
        sa.Column("started", sa.Float, nullable=True),
        sa.Column("finished", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("novatune_commands")
    op.drop_table("novatune_host_state")
