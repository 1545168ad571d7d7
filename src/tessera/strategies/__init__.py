"""Strategies: the `Model -> Signal` stage, shared by backtest, paper and live."""

from tessera.strategies.base import (
    Bar,
    BookTop,
    ParamSpec,
    Strategy,
    StrategyContext,
    StrategyParamError,
    StrategyParams,
    TradeTick,
    register_strategy,
    registered_strategies,
    strategy_class,
    strategy_params,
    validate_strategy_params,
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
    "ParamSpec",
    "SmaCross",
    "Strategy",
    "StrategyContext",
    "StrategyParamError",
    "StrategyParams",
    "TradeTick",
    "register_strategy",
    "registered_strategies",
    "strategy_class",
    "strategy_params",
    "validate_strategy_params",
]
