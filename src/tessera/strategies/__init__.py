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
from tessera.strategies.builtin import BollingerMeanReversion, ModelSignalStrategy, SmaCross

__all__ = [
    "Bar",
    "BollingerMeanReversion",
    "BookTop",
    "ModelSignalStrategy",
    "SmaCross",
    "Strategy",
    "StrategyContext",
    "TradeTick",
    "register_strategy",
    "registered_strategies",
    "strategy_class",
]
