"""The USDⓈ-M simulator with signed trading and a ccxt ``binanceusdm`` client pointed at it.

Shared by the USDⓈ-M simulator tests so each file states only what differs (the market, the
keys, how far the replay is released before a test trades, ccxt's options) instead of copying
the same venue and client setup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import ccxt.async_support as ccxt_async
from test_usdm_public import point_usdm_at

from tessera.sim.usdm import UsdmVenue, usdm_trading_config, usdm_venue


@asynccontextmanager
async def started_usdm_venue(
    market: Any, key: str, secret: str, start: int
) -> AsyncIterator[UsdmVenue]:
    """A stepped-by-hand USDⓈ-M venue trading with ``key``/``secret``, ``start`` frames released."""
    v = usdm_venue(
        market,
        speed=None,
        autostart=False,
        trading=usdm_trading_config(api_key=key, api_secret=secret),
    )
    async with v.sim:
        v.sim.release(start)
        yield v


@asynccontextmanager
async def usdm_ccxt_client(
    venue: UsdmVenue, key: str, secret: str, options: Mapping[str, Any]
) -> AsyncIterator[Any]:
    """ccxt ``binanceusdm`` on ``venue``'s REST URL, markets loaded; closed on exit."""
    client = ccxt_async.binanceusdm({"apiKey": key, "secret": secret, "options": dict(options)})
    point_usdm_at(client, venue.sim)
    await client.load_markets()
    yield client
    await client.close()
