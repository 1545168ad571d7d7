"""`Portfolio`: cash per asset and positions per (symbol, strategy), exact in Decimal.

Shared by the backtest and the live bot. Several strategies can share one account: each fill is
booked both to the account (cash, net position per symbol — what the exchange sees) and to the
strategy that caused it (attribution). Equity is cash in the quote currency plus every position
marked at its last price.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from tessera.execution.orders import Fill
from tessera.execution.position import Position

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    base_asset: str
    quote_asset: str


@dataclass
class Portfolio:
    quote_asset: str
    instruments: Mapping[str, Instrument]
    cash: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)  # net, per symbol
    by_strategy: dict[tuple[str, str], Position] = field(default_factory=dict)
    marks: dict[str, Decimal] = field(default_factory=dict)
    fees_paid: Decimal = ZERO  # in quote currency (fees charged in other assets converted at fill)
    fill_count: int = 0

    @classmethod
    def with_cash(
        cls, quote_asset: str, amount: Decimal, instruments: Iterable[Instrument]
    ) -> Portfolio:
        return cls(
            quote_asset=quote_asset,
            instruments={i.symbol: i for i in instruments},
            cash={quote_asset: amount},
        )

    def position(self, symbol: str) -> Position:
        # get first: setdefault would build a Position on every call only to drop it
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position(symbol)
        return pos

    def strategy_position(self, symbol: str, strategy: str) -> Position:
        pos = self.by_strategy.get((symbol, strategy))
        if pos is None:
            pos = self.by_strategy[(symbol, strategy)] = Position(symbol, strategy)
        return pos

    def apply_fill(self, fill: Fill) -> Decimal:
        """Book a fill: cash, fees, net and per-strategy positions. Returns realized PnL."""
        inst = self.instruments[fill.symbol]
        signed = fill.qty * fill.side.sign
        self.cash[inst.quote_asset] = self.cash.get(inst.quote_asset, ZERO) - signed * fill.price
        # The fee leaves the account in whatever asset the exchange charged it.
        self.cash[fill.fee_asset] = self.cash.get(fill.fee_asset, ZERO) - fill.fee
        fee_quote = self._to_quote(fill.fee, fill.fee_asset, fill.price, inst)
        self.fees_paid += fee_quote
        self.fill_count += 1
        self.marks.setdefault(fill.symbol, fill.price)
        realized = self.position(fill.symbol).apply(signed, fill.price, fill.ts_event, fee_quote)
        self.strategy_position(fill.symbol, fill.strategy).apply(
            signed, fill.price, fill.ts_event, fee_quote
        )
        return realized

    def _to_quote(self, amount: Decimal, asset: str, price: Decimal, inst: Instrument) -> Decimal:
        if asset == inst.quote_asset:
            return amount
        if asset == inst.base_asset:
            return amount * price
        mark = self.marks.get(f"{asset}{self.quote_asset}")
        return amount * mark if mark is not None else ZERO

    def mark(self, symbol: str, price: Decimal) -> None:
        self.marks[symbol] = price

    def base_holdings(self, symbol: str) -> Decimal:
        """Net base quantity held through fills (what cash[base] would show without fees)."""
        pos = self.positions.get(symbol)
        return pos.qty if pos else ZERO

    def equity(self) -> Decimal:
        """Quote cash + positions at their marks (base-asset fee cash valued at the mark)."""
        total = self.cash.get(self.quote_asset, ZERO)
        for symbol, pos in self.positions.items():
            mark = self.marks.get(symbol)
            if mark is not None:
                total += pos.qty * mark
        for asset, amount in self.cash.items():
            if asset == self.quote_asset or not amount:
                continue
            mark = self.marks.get(f"{asset}{self.quote_asset}")
            if mark is not None:
                total += amount * mark
        return total

    def gross_exposure(self) -> Decimal:
        return sum((abs(p.qty) * self.marks.get(s, ZERO) for s, p in self.positions.items()), ZERO)

    def net_positions(self) -> dict[str, Decimal]:
        return {s: p.qty for s, p in self.positions.items() if p.qty}
