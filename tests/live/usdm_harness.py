"""Shared set-up of the USDⓈ-M bot tests: the bundled real BTCUSDT perpetual recording served by
a USDⓈ-M simulator that trades with the test keys.

The bot tests on USDⓈ-M (dev, paper, live, risk, mark) all start the same venue; it is built
here once so that each test file states only what it checks.
"""

from __future__ import annotations

from pathlib import Path

from live_bot_helpers import KEY, SECRET

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
