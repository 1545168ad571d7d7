"""Identifiers that fit; paper id sessions; the trading lock's holder.

* ``orders.signal_id`` 64 -> 255: the bot's signal ids (run id, strategy id, symbol, bar time,
  sequence) reach 167 characters, and PostgreSQL refused them (SQLite ignored the limit).
* ``runs.version`` 32 -> 64 (development versions), ``balances.source`` 16 -> 96 (the
  reconciler's ``baseline:<account>`` with an account name of up to 64 characters).
* ``paper_sessions``: a number per `PaperExchange`, so that paper trade and order ids never
  repeat across restarts or processes (they restarted at 1 and collided with stored fills).
* ``trading_locks``: who holds an account's trading lock, so that a refused second process can
  name it.

On SQLite a column type change rebuilds the table (batch mode); `migrate` runs the migrations
with foreign keys off so that the rebuilt ``orders`` keeps the rows ``fills`` refer to. Existing
rows are copied unchanged: every stored value fits the wider columns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WIDENED = [
    ("orders", "signal_id", 64, 255, True),
    ("runs", "version", 32, 64, False),
    ("balances", "source", 16, 96, False),
]


def upgrade() -> None:
    for table, column, old, new, nullable in WIDENED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column,
                existing_type=sa.String(length=old),
                type_=sa.String(length=new),
                existing_nullable=nullable,
            )
    op.create_table(
        "paper_sessions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_sessions")),
    )
    op.create_table(
        "trading_locks",
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
        sa.Column("backend_pid", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_trading_locks")),
    )


def downgrade() -> None:
    op.drop_table("trading_locks")
    op.drop_table("paper_sessions")
    for table, column, old, new, nullable in reversed(WIDENED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column,
                existing_type=sa.String(length=new),
                type_=sa.String(length=old),
                existing_nullable=nullable,
            )
