"""A strategy's state across restarts: ``strategy_state``.

One row per strategy id with its ``ctx.state`` and its order helpers' brackets and trailing
stops as JSON (see `tessera.strategies.state`); a restarted bot gives it back before
``on_start``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "strategy_state",
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("strategy", name=op.f("pk_strategy_state")),
    )


def downgrade() -> None:
    op.drop_table("strategy_state")
