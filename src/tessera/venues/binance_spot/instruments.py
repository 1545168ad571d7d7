"""Parse Binance spot ``GET /api/v3/exchangeInfo`` into the domain's `SymbolFilters`.

Spot's wire format lives with its venue: the domain's filters (`tessera.execution.filters`)
check orders and know no payload. The USDⓈ-M layout differs in small ways a shared parser
would get wrong (``notional`` instead of ``minNotional``, ``limit`` instead of
``maxNumOrders``), so it has its own parser (`tessera.venues.binance_usdm.instruments`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tessera.execution.filters import SymbolFilters

ENDPOINT = "/api/v3/exchangeInfo"


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def symbol_filters(entry: Mapping[str, Any]) -> SymbolFilters:
    """One element of ``exchangeInfo["symbols"]`` as `SymbolFilters` (a filter type not read
    here is not enforced, as a value of 0 is not on Binance)."""
    kw: dict[str, Any] = {
        "symbol": entry["symbol"],
        "base_asset": entry.get("baseAsset", ""),
        "quote_asset": entry.get("quoteAsset", ""),
        "order_types": frozenset(entry.get("orderTypes", [])),
        "status": entry.get("status", "TRADING"),
    }
    for f in entry.get("filters", []):
        kind = f.get("filterType")
        if kind == "PRICE_FILTER":
            kw |= {
                "tick_size": _dec(f["tickSize"]),
                "min_price": _dec(f["minPrice"]),
                "max_price": _dec(f["maxPrice"]),
            }
        elif kind == "LOT_SIZE":
            kw |= {
                "step_size": _dec(f["stepSize"]),
                "min_qty": _dec(f["minQty"]),
                "max_qty": _dec(f["maxQty"]),
            }
        elif kind == "MARKET_LOT_SIZE":
            kw |= {
                "market_step_size": _dec(f["stepSize"]),
                "market_min_qty": _dec(f["minQty"]),
                "market_max_qty": _dec(f["maxQty"]),
            }
        elif kind == "MIN_NOTIONAL":
            kw |= {
                "min_notional": _dec(f["minNotional"]),
                "min_notional_applies_to_market": bool(f.get("applyToMarket", True)),
                "notional_filter_name": "MIN_NOTIONAL",
            }
        elif kind == "NOTIONAL":
            kw |= {
                "min_notional": _dec(f.get("minNotional", 0)),
                "min_notional_applies_to_market": bool(f.get("applyMinToMarket", True)),
                "max_notional": _dec(f.get("maxNotional", 0)),
                "max_notional_applies_to_market": bool(f.get("applyMaxToMarket", False)),
                "notional_filter_name": "NOTIONAL",
            }
        elif kind == "PERCENT_PRICE":
            kw |= {
                "percent_up": _dec(f["multiplierUp"]),
                "percent_down": _dec(f["multiplierDown"]),
            }
        elif kind == "MAX_NUM_ORDERS":
            kw["max_num_orders"] = int(f["maxNumOrders"])
    return SymbolFilters(**kw)


def filters_by_symbol(exchange_info: Mapping[str, Any]) -> dict[str, SymbolFilters]:
    """Every symbol's filters of one ``exchangeInfo`` answer."""
    return {s["symbol"]: symbol_filters(s) for s in exchange_info["symbols"]}
