"""Exit reasons and order lists on orders; the paper exchange's book.

* ``orders.reason`` (NOT NULL, server default ``signal``): why the order was sent — the exit
  reason of the position its fills close. Rows written before it existed were the strategies'
  own orders, so the server default gives them ``signal`` as the column is added.
* ``orders.list_id`` (nullable) and ``orders.reduce_only`` (NOT NULL, default false): the order
  list (OCO) a leg belongs to, and whether the order may only reduce a position.
* ``paper_orders``: the paper exchange's resting orders as the exchange holds them (they were
  in memory only, and a restarted paper bot lost its resting stops and limits).
* ``paper_accounts``: which paper exchange owns a paper account's book (the newest to start),
  so that two paper exchanges on one database never fill one order twice.

On SQLite, adding a column with a constant default is an ``ALTER TABLE ... ADD COLUMN`` (batch
mode does not need to copy the table); PostgreSQL fills the default into existing rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from alembic import op

import tessera.execution.schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _money() -> sa.Numeric[Decimal]:
    return sa.Numeric(precision=38, scale=18).with_variant(
        tessera.execution.schema.DecimalText(length=64), "sqlite"
    )


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reason", sa.String(length=16), server_default="signal", nullable=False)
        )
        batch_op.add_column(sa.Column("list_id", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column("reduce_only", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_index("ix_orders_list_id", ["list_id"], unique=False)
    op.create_table(
        "paper_orders",
        sa.Column("client_order_id", sa.String(length=36), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("exchange_order_id", sa.String(length=40), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("time_in_force", sa.String(length=3), nullable=False),
        sa.Column("qty", _money(), nullable=False),
        sa.Column("price", _money(), nullable=True),
        sa.Column("stop_price", _money(), nullable=True),
        sa.Column("list_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("held", _money(), nullable=False),
        sa.Column("filled_qty", _money(), nullable=False),
        sa.Column("filled_notional", _money(), nullable=False),
        sa.Column("triggered", sa.Boolean(), nullable=False),
        sa.Column("fills", sa.Text(), nullable=False),
        sa.Column("ts_created", sa.BigInteger(), nullable=False),
        sa.Column("ts_update", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client_order_id", name=op.f("pk_paper_orders")),
    )
    with op.batch_alter_table("paper_orders", schema=None) as batch_op:
        batch_op.create_index("ix_paper_orders_account", ["account", "status"], unique=False)
    op.create_table(
        "paper_accounts",
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("session", sa.BigInteger(), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_paper_accounts")),
    )


def downgrade() -> None:
    op.drop_table("paper_accounts")
    with op.batch_alter_table("paper_orders", schema=None) as batch_op:
        batch_op.drop_index("ix_paper_orders_account")
    op.drop_table("paper_orders")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_list_id")
        batch_op.drop_column("reduce_only")
        batch_op.drop_column("list_id")
        batch_op.drop_column("reason")
