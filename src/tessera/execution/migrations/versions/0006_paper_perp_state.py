"""What a paper USDⓈ-M account needs to restart with an open position and open orders.

* ``paper_orders.reduce_only`` (NOT NULL, server default false): whether the paper exchange's
  order may only reduce a position. Rows written before it were spot paper orders or perpetual
  orders of a paper account that refused to restart while they were open, so false is right
  for every row that exists.
* ``paper_accounts.state`` (nullable text, JSON): the paper account's own books that no other
  table holds — for a perpetual account the `PerpAccount` (wallet, each position's signed
  quantity, entry, leverage, margin mode and isolated margin, the leverage per symbol, funding
  booked, realized PnL, fees, liquidations, each strategy's share) and the next funding time.
  NULL for spot paper accounts (their balances are in ``balances``).

Both are added with ``ALTER TABLE ... ADD COLUMN`` (a constant default or none: batch mode does
not copy the table on SQLite; PostgreSQL fills the default into existing rows).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 19:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("paper_orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reduce_only", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("paper_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("paper_accounts", schema=None) as batch_op:
        batch_op.drop_column("state")
    with op.batch_alter_table("paper_orders", schema=None) as batch_op:
        batch_op.drop_column("reduce_only")
