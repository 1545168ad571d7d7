"""Config layer: `TesseraSettings`, typed YAML configs, `load_yaml`, `seed_everything`.

The names below load on first use (PEP 562): ``from tessera.config import ConfigError`` loads
the error type alone, not the settings, every config model and the logging they pull in, so a
command module can name its errors and config types without slowing the CLI's start (its
``--help`` runs no bootstrap). Using a name loads its module, exactly as an eager import did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.lazy import lazy_getattr

if TYPE_CHECKING:
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

_WHERE = {
    "ConfigError": "tessera.config.errors",
    "dump_yaml": "tessera.config.loader",
    "load_yaml": "tessera.config.loader",
    **dict.fromkeys(
        (
            "SECTION_MODELS",
            "BacktestConfig",
            "DataConfig",
            "FeatureConfig",
            "FeatureSpec",
            "LiveConfig",
            "ModelConfig",
            "RiskConfig",
            "StrategyRef",
        ),
        "tessera.config.models",
    ),
    "seed_everything": "tessera.config.seeding",
    "seed_torch_if_pending": "tessera.config.seeding",
    **dict.fromkeys(
        ("ExchangeSettings", "Mode", "TesseraSettings", "load_settings"), "tessera.config.settings"
    ),
}
assert sorted(_WHERE) == sorted(__all__)

__getattr__ = lazy_getattr(__name__, _WHERE)
