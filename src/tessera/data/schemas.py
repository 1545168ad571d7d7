"""Arrow schemas of the raw market-data store, shared by ingest, import, store and simulator.

Raw data is stored exactly: prices and quantities as ``decimal128(38, 8)`` (Binance quotes at
most 8 decimals; a value with more fails the cast loudly instead of rounding), times as
``timestamp[ns, UTC]``. Exchange event time and local receive time are separate columns;
``recv_time`` is null for rows that came from REST backfill or bulk import.

Files are hive-partitioned ``exchange=<x>/dataset=<d>/symbol=<s>/date=<YYYY-MM-DD>/part-*.parquet``;
``exchange``, ``symbol`` and ``date`` live in the path only. ``DEDUP_KEYS`` are the columns that
identify a row: a row whose key is already stored is never written again.

The ``exchange`` partition is the venue: ``binance`` for spot, ``binance-usdm`` for USDⓈ-M
perpetuals, whose klines and trades are other prices than spot's and must never mix with them.
``funding_rates``, ``mark_klines``, ``mark_prices`` and ``liquidations`` exist for perpetuals
only (`PERP_DATASETS`).
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

PRICE: Final = pa.decimal128(38, 8)
QTY: Final = pa.decimal128(38, 8)
TS: Final = pa.timestamp("ns", tz="UTC")

TRADES: Final = pa.schema(
    [
        ("trade_id", pa.int64()),
        ("price", PRICE),
        ("qty", QTY),
        ("is_buyer_maker", pa.bool_()),
        ("trade_time", TS),  # exchange trade time (T)
        ("event_time", TS),  # exchange event time (E); = trade_time for REST/bulk rows
        ("recv_time", TS),  # local receive time; null for REST/bulk rows
    ]
)

AGG_TRADES: Final = pa.schema(
    [
        ("agg_id", pa.int64()),
        ("price", PRICE),
        ("qty", QTY),
        ("first_trade_id", pa.int64()),
        ("last_trade_id", pa.int64()),
        ("is_buyer_maker", pa.bool_()),
        ("trade_time", TS),
        ("event_time", TS),
        ("recv_time", TS),
    ]
)

KLINES: Final = pa.schema(
    [
        ("interval", pa.string()),
        ("open_time", TS),
        ("close_time", TS),
        ("open", PRICE),
        ("high", PRICE),
        ("low", PRICE),
        ("close", PRICE),
        ("volume", QTY),  # base asset volume
        ("quote_volume", QTY),
        ("trades", pa.int64()),
        ("taker_buy_base", QTY),
        ("taker_buy_quote", QTY),
        ("event_time", TS),
        ("recv_time", TS),
    ]
)

# One row per changed price level of a depth diff (qty 0 = level removed).
BOOK_UPDATES: Final = pa.schema(
    [
        ("first_update_id", pa.int64()),  # U
        ("last_update_id", pa.int64()),  # u
        ("prev_update_id", pa.int64()),  # pu (futures only; null on spot)
        ("side", pa.string()),  # "bid" | "ask"
        ("price", PRICE),
        ("qty", QTY),
        ("event_time", TS),
        ("recv_time", TS),
    ]
)

# One row per level of a REST /depth snapshot.
BOOK_SNAPSHOTS: Final = pa.schema(
    [
        ("last_update_id", pa.int64()),
        ("side", pa.string()),
        ("level", pa.int32()),  # 0 = best
        ("price", PRICE),
        ("qty", QTY),
        ("recv_time", TS),
    ]
)

BOOK_TICKER: Final = pa.schema(
    [
        ("update_id", pa.int64()),
        ("bid_price", PRICE),
        ("bid_qty", QTY),
        ("ask_price", PRICE),
        ("ask_qty", QTY),
        ("event_time", TS),  # null on spot (no E field)
        ("recv_time", TS),
    ]
)

# --- USDⓈ-M perpetuals (exchange ``binance-usdm``) ---------------------------------------------

# One row per funding time. ``funding_time`` is the nominal time (floored to the hour, as
# `tessera.execution.perp.funding.nominal_funding_time` does): Binance's REST ``fundingTime`` is
# stamped a few ms after the hour and its archives' ``calc_time`` on it, so keying on the raw
# stamp would store one funding event twice when both sources are imported.
FUNDING_RATES: Final = pa.schema(
    [
        ("funding_time", TS),  # nominal funding time (on the hour)
        ("reported_time", TS),  # fundingTime / calc_time exactly as the source gave it
        ("funding_rate", PRICE),  # Binance quotes 8 decimals ("0.00010000")
        ("mark_price", PRICE),  # REST markPrice where given; null in archives and old rows
        ("interval_hours", pa.int32()),  # archives' funding_interval_hours; null from REST
    ]
)

# Mark-price candles (``/fapi/v1/markPriceKlines``, archives' ``markPriceKlines``): the kline
# layout; a mark price has no traded volume, so the volume columns are stored null.
MARK_KLINES: Final = KLINES

# ``<symbol>@markPrice[@1s]`` (``markPriceUpdate``), one row per update: the mark, the index, the
# estimated settle price, the funding rate in force and the next funding time (rows of
# `tessera.venues.binance_usdm.market_data.mark_price_row`).
MARK_PRICES: Final = pa.schema(
    [
        ("mark_price", PRICE),
        ("index_price", PRICE),
        ("estimated_settle_price", PRICE),
        ("funding_rate", PRICE),  # signed, 8 decimals
        ("next_funding_time", TS),
        ("event_time", TS),
        ("recv_time", TS),
    ]
)

# ``<symbol>@forceOrder`` / ``!forceOrder@arr``: liquidation orders the exchange placed (rows of
# `force_order_row`; the symbol is the partition). Binance gives them no id: a row is the order
# at its trade time, side, price and quantity.
LIQUIDATIONS: Final = pa.schema(
    [
        ("side", pa.string()),  # BUY | SELL
        ("order_type", pa.string()),
        ("time_in_force", pa.string()),
        ("qty", QTY),
        ("price", PRICE),
        ("avg_price", PRICE),
        ("status", pa.string()),
        ("last_filled_qty", QTY),
        ("filled_qty", QTY),
        ("trade_time", TS),
        ("event_time", TS),
        ("recv_time", TS),
    ]
)

SCHEMAS: Final[dict[str, pa.Schema]] = {
    "trades": TRADES,
    "agg_trades": AGG_TRADES,
    "klines": KLINES,
    "book_updates": BOOK_UPDATES,
    "book_snapshots": BOOK_SNAPSHOTS,
    "book_ticker": BOOK_TICKER,
    "funding_rates": FUNDING_RATES,
    "mark_klines": MARK_KLINES,
    "mark_prices": MARK_PRICES,
    "liquidations": LIQUIDATIONS,
}

# Datasets that exist only for perpetual futures: refused on the spot venue (``binance``).
PERP_DATASETS: Final = frozenset({"funding_rates", "mark_klines", "mark_prices", "liquidations"})
SPOT_VENUE: Final = "binance"
USDM_VENUE: Final = "binance-usdm"

DEDUP_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "trades": ("trade_id",),
    "agg_trades": ("agg_id",),
    "klines": ("interval", "open_time"),
    "book_updates": ("last_update_id", "side", "price"),
    "book_snapshots": ("last_update_id", "side", "price"),
    "book_ticker": ("update_id",),
    "funding_rates": ("funding_time",),
    "mark_klines": ("interval", "open_time"),
    "mark_prices": ("event_time",),
    "liquidations": ("trade_time", "side", "price", "qty"),
}

# The column whose UTC date picks the date= partition.
PARTITION_TIME: Final[dict[str, str]] = {
    "trades": "trade_time",
    "agg_trades": "trade_time",
    "klines": "open_time",
    "book_updates": "event_time",
    "book_snapshots": "recv_time",
    "book_ticker": "recv_time",
    "funding_rates": "funding_time",
    "mark_klines": "open_time",
    "mark_prices": "event_time",
    "liquidations": "trade_time",
}
