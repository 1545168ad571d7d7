"""Risk: pre-trade checks, trading states and the drawdown kill-switch."""

from tessera.risk.engine import (
    AccountView,
    DenialReason,
    HaltRecord,
    OrderIntent,
    RiskAction,
    RiskDecision,
    RiskEngine,
    RiskListener,
    TradingState,
)

__all__ = [
    "AccountView",
    "DenialReason",
    "HaltRecord",
    "OrderIntent",
    "RiskAction",
    "RiskDecision",
    "RiskEngine",
    "RiskListener",
    "TradingState",
]
