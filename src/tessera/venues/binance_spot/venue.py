"""Binance spot's entry in the venue contract (`tessera.venues.contract`)."""

from __future__ import annotations

from tessera.execution.reports import AccountPosition
from tessera.venues.binance.market_data import (
    MalformedMessageError,
    agg_trade_row,
    book_ticker_row,
    depth_follows,
    depth_levels,
    kline_row,
    trade_row,
)
from tessera.venues.binance_spot.errors import classify, error_for
from tessera.venues.binance_spot.status import SPOT_STATUS
from tessera.venues.binance_spot.user_data import MalformedEventError, parse_user_event
from tessera.venues.contract import MarketDataParsers, MarketDataRest, Venue


def stream_names(symbol: str, interval: str) -> dict[str, str]:
    """Spot's stream of each market-data kind for ``symbol`` (diffs every 100 ms)."""
    low = symbol.lower()
    return {
        "trade": f"{low}@trade",
        "aggTrade": f"{low}@aggTrade",
        "kline": f"{low}@kline_{interval}",
        "depth": f"{low}@depth@100ms",
        "bookTicker": f"{low}@bookTicker",
    }


VENUE = Venue(
    name="binance-spot",
    description="Binance spot (api.binance.com, stream.binance.com)",
    stream_names=stream_names,
    market_data=MarketDataParsers(
        trade=trade_row,
        agg_trade=agg_trade_row,
        kline=kline_row,
        depth=depth_levels,
        book_ticker=book_ticker_row,
        depth_follows=depth_follows,
        error=MalformedMessageError,
    ),
    parse_user_event=parse_user_event,
    user_event_error=MalformedEventError,
    account_events=(AccountPosition,),
    classify_error=classify,
    error_for=error_for,
    order_status=SPOT_STATUS,
    rest_url="https://api.binance.com",
    ws_url="wss://stream.binance.com:9443",
    rest_paths=MarketDataRest(
        depth="/api/v3/depth",
        trades="/api/v3/trades",
        historical_trades="/api/v3/historicalTrades",
        klines="/api/v3/klines",
    ),
)
