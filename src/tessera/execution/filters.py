"""Exchange symbol filters (tick size, lot size, notional) and the checks an order must pass.

Pure domain: each venue reads its own ``exchangeInfo`` into `SymbolFilters`
(`tessera.venues.binance_spot.instruments` for spot, `tessera.venues.binance_usdm.instruments`
for USDⓈ-M perpetuals). One implementation serves three callers: the backtest rejects what the
exchange would reject, the risk engine rounds before it checks, and the simulator answers with
the exchange's own error (``-1013 Filter failure: <FILTER>``). A filter value of 0 means "not
enforced", as on Binance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_HALF_UP, Decimal

from tessera.execution.orders import OrderSide, OrderType

ZERO = Decimal(0)


class FilterViolationError(Exception):
    """An order the exchange would reject with -1013 ``Filter failure: <filter>``."""

    code = -1013

    def __init__(self, filter_type: str, detail: str) -> None:
        self.filter_type = filter_type
        self.detail = detail
        super().__init__(f"Filter failure: {filter_type}")


@dataclass(frozen=True, slots=True)
class SymbolFilters:
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal = ZERO
    min_price: Decimal = ZERO
    max_price: Decimal = ZERO
    step_size: Decimal = ZERO
    min_qty: Decimal = ZERO
    max_qty: Decimal = ZERO
    market_step_size: Decimal = ZERO
    market_min_qty: Decimal = ZERO
    market_max_qty: Decimal = ZERO
    min_notional: Decimal = ZERO
    min_notional_applies_to_market: bool = True
    max_notional: Decimal = ZERO
    max_notional_applies_to_market: bool = False
    percent_up: Decimal = ZERO  # PERCENT_PRICE multiplierUp (0 = off)
    percent_down: Decimal = ZERO
    max_num_orders: int = 0
    order_types: frozenset[str] = frozenset()
    status: str = "TRADING"
    notional_filter_name: str = "MIN_NOTIONAL"  # newer symbols use NOTIONAL

    # --- rounding helpers (what a client does before sending) -------------------------------

    def round_price(self, price: Decimal, side: OrderSide | None = None) -> Decimal:
        """Round to the tick: down for buys, up for sells (never crosses further), else nearest."""
        if not self.tick_size:
            return price
        ticks = price / self.tick_size
        if side is OrderSide.BUY:
            n = ticks.to_integral_value(rounding=ROUND_DOWN)
        elif side is OrderSide.SELL:
            n = ticks.to_integral_value(rounding=ROUND_CEILING)
        else:
            n = ticks.to_integral_value(rounding=ROUND_HALF_UP)
        return (n * self.tick_size).normalize() if n else self.tick_size

    def round_qty(self, qty: Decimal, market: bool = False) -> Decimal:
        """Round down to the lot step (never more than asked)."""
        step = self.market_step_size if market and self.market_step_size else self.step_size
        if not step:
            return qty
        return ((qty / step).to_integral_value(rounding=ROUND_DOWN) * step).normalize()

    # --- validation (what the exchange does on receipt) --------------------------------------

    def check(
        self,
        order_type: OrderType,
        qty: Decimal,
        price: Decimal | None,
        reference_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> None:
        """Raise `FilterViolationError` exactly where Binance would answer -1013 — or -2010 for
        an order type the symbol's ``orderTypes`` does not list (``ORDER_TYPES``: Binance spot
        BTCUSDT, for one, takes STOP_LOSS_LIMIT but not STOP_LOSS).

        ``reference_price`` (last/average price) is used for market-order notional and for
        PERCENT_PRICE; without it those checks are skipped.
        """
        if self.order_types and order_type.value not in self.order_types:
            raise FilterViolationError(
                "ORDER_TYPES", f"{order_type.value} is not among {sorted(self.order_types)}"
            )
        for p in (price, stop_price):
            if p is not None:
                self._check_price(p, reference_price)
        market = order_type in (OrderType.MARKET, OrderType.STOP_LOSS)
        self._check_lot(qty, market)
        notional_price = price if price is not None and not market else reference_price
        if notional_price is None:
            return
        notional = qty * notional_price
        apply_min = not market or self.min_notional_applies_to_market
        if apply_min and self.min_notional and notional < self.min_notional:
            raise FilterViolationError(
                self.notional_filter_name, f"notional {notional} < {self.min_notional}"
            )
        apply_max = not market or self.max_notional_applies_to_market
        if apply_max and self.max_notional and notional > self.max_notional:
            raise FilterViolationError("NOTIONAL", f"notional {notional} > {self.max_notional}")

    def _check_price(self, price: Decimal, reference: Decimal | None) -> None:
        if self.min_price and price < self.min_price:
            raise FilterViolationError("PRICE_FILTER", f"price {price} < minPrice {self.min_price}")
        if self.max_price and price > self.max_price:
            raise FilterViolationError("PRICE_FILTER", f"price {price} > maxPrice {self.max_price}")
        if self.tick_size and (price - self.min_price) % self.tick_size != 0:
            raise FilterViolationError(
                "PRICE_FILTER", f"price {price} not a multiple of tick {self.tick_size}"
            )
        band = self.percent_up and self.percent_down and reference is not None
        if (
            band
            and reference is not None
            and not (reference * self.percent_down <= price <= reference * self.percent_up)
        ):
            raise FilterViolationError("PERCENT_PRICE", f"price {price} too far from {reference}")

    def _check_lot(self, qty: Decimal, market: bool) -> None:
        layers: Sequence[tuple[str, Decimal, Decimal, Decimal]] = [
            ("LOT_SIZE", self.min_qty, self.max_qty, self.step_size)
        ]
        if market and (self.market_min_qty or self.market_max_qty or self.market_step_size):
            layers = [
                *layers,
                (
                    "MARKET_LOT_SIZE",
                    self.market_min_qty,
                    self.market_max_qty,
                    self.market_step_size,
                ),
            ]
        for name, lo, hi, step in layers:
            if lo and qty < lo:
                raise FilterViolationError(name, f"qty {qty} < minQty {lo}")
            if hi and qty > hi:
                raise FilterViolationError(name, f"qty {qty} > maxQty {hi}")
            if step and (qty - lo) % step != 0:
                raise FilterViolationError(name, f"qty {qty} not a multiple of step {step}")
