"""The operator's side of a running bot (`tessera.control`): ``control_actions``,
``equity_samples`` and ``strategy_pauses``.

* ``control_actions``: every action taken through the control API, the console or the CLI —
  who, with which role, how, from where, what, on what, why, and whether it was done, refused
  or failed. Append-only, indexed by time (the API pages it newest first).
* ``equity_samples``: the account's equity and drawdown every few seconds of a run, for the
  equity curve (the risk engine keeps only the current values).
* ``strategy_pauses``: the strategies an operator paused, one row each while paused, so that a
  restart keeps them paused.

New tables only: nothing existing changes, and the way back drops them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 23:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tessera.execution.schema

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "control_actions",
        _id(),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_control_actions")),
    )
    op.create_index("ix_control_actions_ts", "control_actions", ["ts"], unique=False)
    op.create_table(
        "equity_samples",
        _id(),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column(
            "equity",
            sa.Numeric(precision=38, scale=18).with_variant(
                tessera.execution.schema.DecimalText(length=64), "sqlite"
            ),
            nullable=False,
        ),
        sa.Column(
            "drawdown_pct", sa.Numeric(precision=12, scale=6, asdecimal=False), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equity_samples")),
    )
    op.create_index("ix_equity_samples_ts", "equity_samples", ["ts"], unique=False)
    op.create_table(
        "strategy_pauses",
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("strategy", name=op.f("pk_strategy_pauses")),
    )


def downgrade() -> None:
    op.drop_table("strategy_pauses")
    op.drop_index("ix_equity_samples_ts", table_name="equity_samples")
    op.drop_table("equity_samples")
    op.drop_index("ix_control_actions_ts", table_name="control_actions")
    op.drop_table("control_actions")
