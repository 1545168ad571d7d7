"""`UsdmCcxtExchange` on the in-process USDⓈ-M simulator, for the execution tests.

The USDⓈ-M exchange tests share one setup (the bundled real BTCUSDT perpetual recording, a
stepped-by-hand venue with signed trading, the exchange opened on its REST URL); it lives here
once instead of in each file. The test folders do not import each other (no packages, pytest's
default import mode), so this is the execution side of tests/sim/usdm_client.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tessera.execution.ccxt_exchange import open_exchange
from tessera.sim import SimMarket
from tessera.sim.usdm import UsdmVenue, usdm_market, usdm_trading_config, usdm_venue
from tessera.venues.binance_usdm.exchange import UsdmCcxtExchange

ROOT = Path(__file__).resolve().parents[2]
USDM_BTC = ROOT / "samples/binance-raw-ws/usdm/btcusdt_20240808.gz"
KEY, SECRET = "usdm-key", "usdm-secret"
START = 15_000  # frames released before a test trades (about 50 s into the recording)


def btc_usdm_market() -> SimMarket:
    """The bundled real BTCUSDT perpetual recording as a simulator market."""
    return usdm_market([USDM_BTC])


@asynccontextmanager
async def started_usdm_venue(market: SimMarket) -> AsyncIterator[UsdmVenue]:
    """A stepped-by-hand venue trading with KEY/SECRET, ``START`` frames released."""
    v = usdm_venue(
        market,
        speed=None,
        autostart=False,
        trading=usdm_trading_config(api_key=KEY, api_secret=SECRET),
    )
    async with v.sim:
        v.sim.release(START)
        yield v


@asynccontextmanager
async def usdm_exchange(venue: UsdmVenue) -> AsyncIterator[UsdmCcxtExchange]:
    """`open_exchange` for ``binance-usdm`` on ``venue``'s REST URL; closed on exit."""
    client = open_exchange(venue.sim.rest_url, KEY, SECRET, exchange_id="binance-usdm")
    assert isinstance(client, UsdmCcxtExchange)
    yield client
    await client.close()
