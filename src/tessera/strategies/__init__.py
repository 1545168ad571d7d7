"""Strategies: the `Model -> Signal` stage, shared by backtest, paper and live."""

from tessera.strategies.base import (
    Bar,
    BookTop,
    Strategy,
    StrategyContext,
    TradeTick,
    register_strategy,
    registered_strategies,
    strategy_class,
)
from tessera.strategies.builtin import (
    BollingerMeanReversion,
    BuyAndHold,
    ModelSignalStrategy,
    SmaCross,
)

__all__ = [
    "Bar",
    "BollingerMeanReversion",
    "BookTop",
    "BuyAndHold",
    "ModelSignalStrategy",
    "SmaCross",
    "Strategy",
    "StrategyContext",
    "TradeTick",
    "register_strategy",
    "registered_strategies",
    "strategy_class",
]
