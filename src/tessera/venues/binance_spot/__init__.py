"""Binance spot (``api.binance.com``, ``stream.binance.com``): its wire format in one folder.

Market-data rows, klines, stream names, order statuses and the common error codes are shared
with USDⓈ-M (`tessera.venues.binance`); here is what is spot's own: the user-data stream
(``executionReport``, ``listStatus``, ``outboundAccountPosition``), the spot error codes (order
lists), the batch decoding of the high-rate streams for ingest (`fastpath`), the venue's entry
in the contract (`venue.VENUE`) and the order adapter that reads the REST answers
(`exchange.CcxtExchange`, through ccxt; USDⓈ-M's adapter extends it).
"""
