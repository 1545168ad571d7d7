"""Shared set-up of the USDⓈ-M bot tests: the bundled real BTCUSDT perpetual recording served by
a USDⓈ-M simulator that trades with the test keys.

The bot tests on USDⓈ-M (dev, paper, live, risk, mark, funding, liquidation, margin call) all
start the same kind of venue and build nearly the same `BotOptions`; both are built here once so
that each test file states only what differs and what it checks.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from live_bot_helpers import KEY, SECRET

from tessera.config.models import RiskConfig, StrategyRef
from tessera.live.bot import BotOptions
from tessera.sim.usdm import UsdmVenue, usdm_market, usdm_trading_config, usdm_venue

USDM_BTC = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/usdm/btcusdt_20240808.gz"


def btc_usdm_venue() -> UsdmVenue:
    """The BTCUSDT perpetual recording replayed once at 10x, trading with KEY/SECRET."""
    return usdm_venue(
        usdm_market([USDM_BTC]),
        speed=10.0,
        loop_replay=False,
        trading=usdm_trading_config(api_key=KEY, api_secret=SECRET),
    )


def usdm_bot_options(
    venue: UsdmVenue, strategy: str, database_url: str, **overrides: Any
) -> BotOptions:
    """`BotOptions` for one strategy on ``venue``: dev mode on ``binance-usdm``, BTCUSDT at 1s,
    the test keys, isolated 5x, a fresh ``usdm-…`` run id; ``overrides`` replace any field."""
    values: dict[str, Any] = dict(
        mode="dev",
        strategies=[StrategyRef(name=strategy, params={})],
        symbols=["BTCUSDT"],
        interval="1s",
        rest_url=venue.sim.rest_url,
        ws_url=venue.sim.ws_url,
        database_url=database_url,
        run_id=f"usdm-{secrets.token_hex(4)}",
        risk=RiskConfig(),
        api_key=KEY,
        api_secret=SECRET,
        reconcile_interval_s=3600.0,
        exchange_id="binance-usdm",
        perp_leverage=5,
        perp_margin_mode="ISOLATED",
    )
    values.update(overrides)
    return BotOptions(**values)
