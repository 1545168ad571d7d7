"""A risk config that never binds, for backtest tests about something other than risk."""

from __future__ import annotations

from tessera.config.models import RiskConfig

LOOSE_RISK = RiskConfig(
    max_order_notional=10**9,
    max_position_notional=10**9,
    max_gross_exposure=10**9,
    max_orders_per_second=1000,
    max_open_orders=1000,
    price_band_pct=100,
    max_drawdown_pct=100,
)
