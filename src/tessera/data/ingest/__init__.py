"""Websocket ingest of Binance spot market data into the Parquet store."""

from tessera.data.ingest.book import OrderBook
from tessera.data.ingest.service import IngestHealth, IngestService, stream_names

__all__ = ["IngestHealth", "IngestService", "OrderBook", "stream_names"]
