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
from tessera.strategies.cross_sectional import CrossSectional
from tessera.strategies.loader import (
    ENTRY_POINT_GROUP,
    LoadedStrategy,
    StrategyInfo,
    StrategyLoadError,
    ensure_strategies_loaded,
    load_strategies,
    strategy_infos,
    strategy_sources,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Bar",
    "BollingerMeanReversion",
    "BookTop",
    "BuyAndHold",
    "CrossSectional",
    "LoadedStrategy",
    "ModelSignalStrategy",
    "ParamSpec",
    "SmaCross",
    "Strategy",
    "StrategyContext",
    "StrategyInfo",
    "StrategyLoadError",
    "StrategyParamError",
    "StrategyParams",
    "TradeTick",
    "ensure_strategies_loaded",
    "load_strategies",
    "register_strategy",
    "registered_strategies",
    "strategy_class",
    "strategy_infos",
    "strategy_params",
    "strategy_sources",
    "validate_strategy_params",
]
