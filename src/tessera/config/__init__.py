"""Config layer: `TesseraSettings`, typed YAML configs, `load_yaml`, `seed_everything`."""

from tessera.config.errors import ConfigError
from tessera.config.loader import dump_yaml, load_yaml
from tessera.config.models import (
    SECTION_MODELS,
    BacktestConfig,
    DataConfig,
    FeatureConfig,
    FeatureSpec,
    LiveConfig,
    ModelConfig,
    RiskConfig,
    StrategyRef,
)
from tessera.config.seeding import seed_everything, seed_torch_if_pending
from tessera.config.settings import ExchangeSettings, Mode, TesseraSettings, load_settings

__all__ = [
    "SECTION_MODELS",
    "BacktestConfig",
    "ConfigError",
    "DataConfig",
    "ExchangeSettings",
    "FeatureConfig",
    "FeatureSpec",
    "LiveConfig",
    "Mode",
    "ModelConfig",
    "RiskConfig",
    "StrategyRef",
    "TesseraSettings",
    "dump_yaml",
    "load_settings",
    "load_yaml",
    "seed_everything",
    "seed_torch_if_pending",
]
