"""The bot's account book on a perpetual, and the filters of USDⓈ-M's exchangeInfo.

Why the spot `AccountBook` still works for a linear perpetual: its equity is quote cash plus
each base quantity at its last price, and a fill moves cash by -qty x price and the base by
+qty. For a USDⓈ-M position that is wallet + unrealized PnL exactly, provided the book starts
with cash = wallet - sum(qty x entry) and base = the signed position: then cash + qty x price
= wallet + qty x (price - entry). A close moves cash by the notional, which is the realized
PnL plus the entry notional the book had taken out; fees come off the quote asset as on spot.
Funding is not in the book (not this slice: it moves the wallet with no fill).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from tessera.execution.filters import SymbolFilters
from tessera.execution.perp_reconcile import PerpBalance, VenuePosition
from tessera.venues.binance_usdm.instruments import parse_exchange_info

ZERO = Decimal(0)


def perp_filters(exchange_info: dict[str, Any]) -> dict[str, SymbolFilters]:
    """Each perpetual's order filters from a ``/fapi/v1/exchangeInfo`` answer."""
    return {s: inst.filters() for s, inst in parse_exchange_info(exchange_info).instruments.items()}


def perp_book_balances(
    wallets: Mapping[str, PerpBalance],
    positions: Sequence[VenuePosition],
    filters: Mapping[str, SymbolFilters],
) -> dict[str, Decimal]:
    """`AccountBook` balances equal to the futures account (see the module docstring): each
    margin asset's wallet less the entry notional of the positions quoted in it, and each
    position's base asset at its signed quantity."""
    out = {asset: b.wallet for asset, b in wallets.items()}
    for p in positions:
        if not p.qty:
            continue
        f = filters[p.symbol]
        out[f.quote_asset] = out.get(f.quote_asset, ZERO) - p.qty * p.entry_price
        out[f.base_asset] = out.get(f.base_asset, ZERO) + p.qty
    return out
