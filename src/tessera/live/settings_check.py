"""The settings a trading bot cannot run with, checked before anything starts.

Its own small module, so that `tessera run` refuses them at once: importing the bot's assembly
costs a second or two of imports, and dev mode would first start its simulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.config.errors import ConfigError
from tessera.config.settings import require_supported_exchange

if TYPE_CHECKING:
    from tessera.config.settings import TesseraSettings

# the perpetual-only limits of `RiskConfig` (tessera.risk.leverage)
LEVERAGE_SETTINGS = (
    "max_leverage",
    "max_gross_leverage",
    "max_net_leverage",
    "min_liquidation_distance_pct",
    "margin_ratio_alert",
)


def check_trading_settings(settings: TesseraSettings) -> None:
    """The settings a bot cannot run with, as a `ConfigError` (exit 2): an exchange Tessera
    cannot trade on, a leverage limit on spot. `tessera run` calls it before anything starts
    (the dev simulator loads ~180,000 recorded frames first), `bot_options` again."""
    require_supported_exchange(settings.exchange.name, "trading")
    _refuse_unapplied_leverage_limits(settings)


def _refuse_unapplied_leverage_limits(settings: TesseraSettings) -> None:
    """A leverage setting on a spot venue is a `ConfigError`, never silently ignored: the
    limits are perpetual-only (the bot applies them on binance-usdm, `tessera.live.perp_risk`)."""
    if settings.exchange.name == "binance-usdm":
        return
    given = {n: getattr(settings.risk, n) for n in LEVERAGE_SETTINGS}
    given = {n: v for n, v in given.items() if v is not None}
    if not given:
        return
    named = ", ".join(f"risk.{n} ({v})" for n, v in given.items())
    env = ", ".join(f"TESSERA_RISK__{n.upper()}" for n in given)
    raise ConfigError(
        f"{named}: the leverage limits apply to perpetuals only (exchange.name binance-usdm), "
        f"and exchange.name is {settings.exchange.name!r}, so running with them set would "
        f"ignore them. Remove them from risk.yaml (or unset {env}) to run the bot on spot."
    )
