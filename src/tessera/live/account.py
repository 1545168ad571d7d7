"""`AccountBook`: the account's balances, kept current by our fills, marked to market.

Pure: fed with balances (from the exchange or the paper account) and fills, asked for equity at
a set of last prices. Equity is quote cash plus every base asset valued at its symbol's last
price, the same definition the backtest's portfolio uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from tessera.execution.filters import SymbolFilters
from tessera.execution.orders import Fill, OrderSide

ZERO = Decimal(0)


@dataclass
class AccountBook:
    filters: Mapping[str, SymbolFilters]
    quote_asset: str
    balances: dict[str, Decimal] = field(default_factory=dict)  # free + locked

    def reset(self, balances: Mapping[str, Decimal]) -> None:
        self.balances = dict(balances)

    def apply_fill(self, fill: Fill) -> None:
        f = self.filters[fill.symbol]
        sign = 1 if fill.side is OrderSide.BUY else -1
        self.balances[f.base_asset] = self.balances.get(f.base_asset, ZERO) + sign * fill.qty
        self.balances[f.quote_asset] = (
            self.balances.get(f.quote_asset, ZERO) - sign * fill.qty * fill.price
        )
        if fill.fee:
            self.balances[fill.fee_asset] = self.balances.get(fill.fee_asset, ZERO) - fill.fee

    def cash(self) -> Decimal:
        return self.balances.get(self.quote_asset, ZERO)

    def equity(self, last_prices: Mapping[str, Decimal]) -> Decimal:
        total = self.cash()
        for symbol, f in self.filters.items():
            if f.quote_asset != self.quote_asset or symbol not in last_prices:
                continue
            qty = self.balances.get(f.base_asset, ZERO)
            if qty:
                total += qty * last_prices[symbol]
        return total
