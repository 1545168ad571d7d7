"""Binance USDⓈ-M futures' entry in the venue contract (`tessera.venues.contract`)."""

from __future__ import annotations

from tessera.venues.binance.market_data import (
    MalformedMessageError,
    agg_trade_row,
    book_ticker_row,
    depth_follows,
    depth_levels,
    kline_row,
    trade_row,
)
from tessera.venues.binance_usdm.errors import classify, error_for
from tessera.venues.binance_usdm.market_data import force_order_row, mark_price_row
from tessera.venues.binance_usdm.status import USDM_STATUS
from tessera.venues.binance_usdm.user_data import (
    FuturesAccountUpdate,
    MalformedEventError,
    parse_user_event,
)
from tessera.venues.contract import MarketDataParsers, MarketDataRest, Venue


def stream_names(symbol: str, interval: str) -> dict[str, str]:
    """USDⓈ-M's stream of each market-data kind for ``symbol``: spot's kinds, and the mark
    price (every second) and liquidation orders."""
    low = symbol.lower()
    return {
        "trade": f"{low}@trade",
        "aggTrade": f"{low}@aggTrade",
        "kline": f"{low}@kline_{interval}",
        "depth": f"{low}@depth@100ms",
        "bookTicker": f"{low}@bookTicker",
        "markPrice": f"{low}@markPrice@1s",
        "forceOrder": f"{low}@forceOrder",
    }


VENUE = Venue(
    name="binance-usdm",
    description="Binance USDⓈ-M futures (fapi.binance.com, fstream.binance.com)",
    stream_names=stream_names,
    market_data=MarketDataParsers(
        trade=trade_row,
        agg_trade=agg_trade_row,
        kline=kline_row,
        depth=depth_levels,
        book_ticker=book_ticker_row,
        depth_follows=depth_follows,
        error=MalformedMessageError,
        extra={"markPrice": mark_price_row, "forceOrder": force_order_row},
    ),
    parse_user_event=parse_user_event,
    user_event_error=MalformedEventError,
    account_events=(FuturesAccountUpdate,),
    classify_error=classify,
    error_for=error_for,
    order_status=USDM_STATUS,
    rest_url="https://fapi.binance.com",
    ws_url="wss://fstream.binance.com",
    rest_paths=MarketDataRest(
        depth="/fapi/v1/depth",
        trades="/fapi/v1/trades",
        historical_trades="/fapi/v1/historicalTrades",
        klines="/fapi/v1/klines",
    ),
)
