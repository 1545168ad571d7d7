"""Websocket ingest of Binance market data (spot, USDⓈ-M perpetuals) into the Parquet store."""

from tessera.data.ingest.book import OrderBook
from tessera.data.ingest.service import (
    IngestHealth,
    IngestService,
    UnknownStreamKindError,
    stream_names,
)

__all__ = [
    "IngestHealth",
    "IngestService",
    "OrderBook",
    "UnknownStreamKindError",
    "stream_names",
]
