"""`Position`: signed quantity, cost basis and realized PnL, exact in Decimal.

Lots are kept FIFO: reducing a position closes its oldest lots first and realizes
``(exit - lot price) * qty`` per lot. Only multiplication and subtraction touch the books, so
realized + unrealized PnL equals the cash flows plus the marked inventory *exactly* (an average-
price method would divide and round). ``avg_price`` is derived, for display and risk.
Fees are tracked apart from price PnL so both stay visible.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal, getcontext

from tessera.execution.orders import Fill

ZERO = Decimal(0)


def _exact(x: Decimal) -> bool:
    """Whether ``x`` is short of the context's precision: a result that is not was possibly
    rounded (an exact result with that many digits is taken for one too: it only costs a sum)."""
    return len(x.as_tuple().digits) < getcontext().prec


@dataclass(slots=True)
class Position:
    symbol: str
    strategy: str = ""
    realized_pnl: Decimal = ZERO  # quote currency, before fees
    fees_quote: Decimal = ZERO  # fees paid in the quote currency
    turnover: Decimal = ZERO  # sum of |fill notional|
    ts_last: int = 0
    # Open lots, oldest first: (signed qty, price). All lots share the position's sign.
    lots: deque[tuple[Decimal, Decimal]] = field(default_factory=deque)
    # The sums over the lots (qty, cost) and how many lots they cover, kept across fills:
    # summing again made a position that only grows (a strategy adding to it, fill after fill,
    # each buy's base-asset fee cutting the oldest lot) cost O(lots) per fill, O(fills^2) in
    # all. They stay what summing the lots gives, to the last digit and exponent:
    # * a lot appended extends them by the very addition the sum does last;
    # * the oldest lot cut by ``d`` (a quantity, exact) takes ``d`` (and ``d * price``) off
    #   them: exact, and with the exponent the sum would have, min(0, the lots' exponents) —
    #   the cut lot's exponent is min(its own, d's), and so is the difference's;
    # * a lot closed whole drops them (the exponent it brought may go with it): summed again
    #   when next read; so does any value at the context's precision (it may have been
    #   rounded, and a rounded sum need not be what summing again gives).
    # Any other change of the lots' number is seen by the count.
    _sums: tuple[Decimal, Decimal, int] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def _summed(self) -> tuple[Decimal, Decimal, int]:
        sums = self._sums
        lots = self.lots
        if sums is None or sums[2] != len(lots):
            sums = (
                sum((q for q, _ in lots), ZERO),
                sum((q * p for q, p in lots), ZERO),
                len(lots),
            )
            self._sums = sums if _exact(sums[0]) and _exact(sums[1]) else None
        return sums

    def _keep(self, qty: Decimal, cost: Decimal, n: int) -> None:
        self._sums = (qty, cost, n) if _exact(qty) and _exact(cost) else None

    @property
    def qty(self) -> Decimal:
        lots = self.lots
        if not lots:
            return ZERO
        if len(lots) == 1:  # the common case, without a generator: ZERO + q is what sum gives
            return ZERO + lots[0][0]
        return self._summed()[0]

    @property
    def cost(self) -> Decimal:
        """Signed cost basis of the open quantity: sum of qty * entry price."""
        return self._summed()[1]

    @property
    def avg_price(self) -> Decimal:
        qty = self.qty
        return self.cost / qty if qty else ZERO

    @property
    def is_flat(self) -> bool:
        return not self.lots

    def notional(self, mark: Decimal) -> Decimal:
        return self.qty * mark

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        return self.qty * mark - self.cost

    def apply_fill(
        self, fill: Fill, quote_asset: str | None = None, base_asset: str | None = None
    ) -> Decimal:
        """Apply a fill; returns the PnL it realized (quote currency, before fees).

        A fee in the quote asset is a cost beside the position. A fee in the base asset (what
        Binance takes on a buy without BNB) leaves the account holding that much less: those
        units leave the position at the fill price (their value counted as a fee), so that
        the position is what the exchange holds.
        """
        fee = fill.fee if fill.fee_asset == quote_asset else ZERO
        realized = self.apply(fill.qty * fill.side.sign, fill.price, fill.ts_event, fee_quote=fee)
        if fill.fee and fill.fee_asset == base_asset:
            realized += self.apply(
                -fill.fee, fill.price, fill.ts_event, fee_quote=fill.fee * fill.price
            )
            self.turnover -= fill.fee * fill.price  # a fee, not a trade
        return realized

    def apply(
        self, signed_qty: Decimal, price: Decimal, ts: int = 0, fee_quote: Decimal = ZERO
    ) -> Decimal:
        # comparisons against the Decimal ZERO, not the int 0: the same answers without
        # converting 0 on every one (a backtest books two positions per fill)
        if signed_qty == ZERO:
            raise ValueError("a fill of zero quantity")
        if price <= ZERO:
            raise ValueError(f"price must be > 0, got {price}")
        self.turnover += abs(signed_qty) * price
        self.fees_quote += fee_quote
        if ts > self.ts_last:  # max(ts_last, ts)
            self.ts_last = ts
        realized = ZERO
        remaining = signed_qty
        lots = self.lots
        # Close opposite-signed lots first, oldest first.
        while remaining and lots and (lots[0][0] > ZERO) != (remaining > ZERO):
            lot_qty, lot_price = lots[0]
            closing = min(abs(remaining), abs(lot_qty))
            direction = 1 if lot_qty > ZERO else -1
            realized += (price - lot_price) * closing * direction
            if closing == abs(lot_qty):
                lots.popleft()
                self._sums = None
            else:
                cut = closing * direction
                lots[0] = (lot_qty - cut, lot_price)
                sums = self._sums
                if sums is not None and sums[2] == len(lots):
                    self._keep(sums[0] - cut, sums[1] - cut * lot_price, sums[2])
            remaining += closing * direction
        if remaining:
            sums = self._sums
            if sums is not None and sums[2] == len(lots):
                self._keep(sums[0] + remaining, sums[1] + remaining * price, sums[2] + 1)
            lots.append((remaining, price))
        self.realized_pnl += realized
        return realized
