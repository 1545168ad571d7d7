"""Binance USDⓈ-M futures (``fapi``): parsing of its payloads into the perpetual domain.

``/fapi/v1/leverageBracket`` (`brackets.parse_leverage_brackets`), ``/fapi/v1/exchangeInfo``
(`instruments.parse_exchange_info`), the futures-only streams (`market_data`: mark price and
funding, liquidation orders; the streams spot also has are read by `tessera.venues.binance`),
the user-data events (`user_data`), the futures error codes (`errors`), the order status names
(`status`), the venue's entry in the contract (`venue.VENUE`) and the order adapter that reads
the REST answers (`exchange.UsdmCcxtExchange`: orders, algo orders, ``positionRisk``, account,
income, through ccxt ``binanceusdm``; it extends spot's adapter).
"""
