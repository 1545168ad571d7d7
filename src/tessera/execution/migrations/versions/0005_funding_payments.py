"""A perpetual's funding payments in the ledger: ``funding_payments``.

Until now the bot only counted them in the metrics and the log; a payment is money that moved
(the wallet changed), so the ledger keeps one row per payment, unique per account, symbol,
asset and funding time (to the minute) so that the user-data event and a later
``/fapi/v1/income`` import of the same payment are stored once.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tessera.execution.schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "funding_payments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("asset", sa.String(length=16), nullable=False),
        sa.Column("funding_slot", sa.BigInteger(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column(
            "amount",
            sa.Numeric(precision=38, scale=18).with_variant(
                tessera.execution.schema.DecimalText(length=64), "sqlite"
            ),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("venue_id", sa.String(length=64), nullable=True),
        sa.Column("ts_recorded", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_funding_payments")),
        sa.UniqueConstraint(
            "account",
            "symbol",
            "asset",
            "funding_slot",
            name="uq_funding_payments_payment",
        ),
    )
    op.create_index(
        "ix_funding_payments_account_ts", "funding_payments", ["account", "ts_ms"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_funding_payments_account_ts", table_name="funding_payments")
    op.drop_table("funding_payments")
