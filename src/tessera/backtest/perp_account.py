"""The perpetual account's old home: `PerpAccount` is now pure domain, shared by the backtest
and the paper exchange (`tessera.execution.perp.account`). Kept as a re-export because tests
and notebooks written against the backtest import it from here."""

from __future__ import annotations

from tessera.execution.perp.account import (
    INSUFFICIENT_MARGIN,
    LEVERAGE_ABOVE_BRACKET,
    Liquidation,
    PerpAccount,
    StrategyQty,
)

__all__ = [
    "INSUFFICIENT_MARGIN",
    "LEVERAGE_ABOVE_BRACKET",
    "Liquidation",
    "PerpAccount",
    "StrategyQty",
]
