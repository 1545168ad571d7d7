"""Binance USDⓈ-M futures (``fapi``): parsing of its payloads into the perpetual domain.

So far: ``/fapi/v1/leverageBracket`` (`brackets.parse_leverage_brackets`) and
``/fapi/v1/exchangeInfo`` (`instruments.parse_exchange_info`). No network code lives here yet.
"""
