"""`PerpetualInstrument`: what the domain needs to know about a USDⓈ-M perpetual contract.

Pure domain: built by the venue parser (`tessera.venues.binance_usdm.instruments`) from
``/fapi/v1/exchangeInfo``, read by filters, sizing and margin code that never see the wire.

Only the fields the order filters and the margin arithmetic need are kept: identity (symbol,
base, quote, margin asset, contract type and size), the PRICE_FILTER / LOT_SIZE /
MARKET_LOT_SIZE / MIN_NOTIONAL / PERCENT_PRICE / MAX_NUM_ORDERS values, the order types and
times in force the symbol accepts, ``triggerProtect`` (how far a stop's trigger may stray from
the mark) and ``liquidationFee`` (charged on a liquidation). Display precisions, onboard and
delivery dates, ``underlyingType`` and the deprecated ``maintMarginPercent`` /
``requiredMarginPercent`` are left out: margin comes from the leverage brackets, not from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tessera.execution.filters import SymbolFilters

ZERO = Decimal(0)
PERPETUAL = "PERPETUAL"


@dataclass(frozen=True, slots=True)
class PerpetualInstrument:
    """A perpetual futures contract. USDⓈ-M contracts are linear with a contract size of 1:
    a quantity is in base units and its notional is ``qty * price`` in the margin asset.

    A filter value of 0 means "not enforced", as in `SymbolFilters`.
    """

    symbol: str
    base_asset: str
    quote_asset: str
    margin_asset: str
    contract_type: str = PERPETUAL
    contract_size: Decimal = Decimal(1)
    status: str = "TRADING"
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
    percent_up: Decimal = ZERO  # PERCENT_PRICE multiplierUp (0 = off)
    percent_down: Decimal = ZERO
    max_num_orders: int = 0
    order_types: frozenset[str] = frozenset()
    time_in_force: frozenset[str] = frozenset()
    trigger_protect: Decimal = ZERO  # max |trigger - mark| / mark for stop orders
    liquidation_fee: Decimal = ZERO  # fraction of the liquidated notional

    def __post_init__(self) -> None:
        if self.contract_type != PERPETUAL:
            raise ValueError(
                f"{self.symbol}: contract type {self.contract_type!r} is not a perpetual"
            )
        if self.contract_size != 1:
            raise ValueError(
                f"{self.symbol}: contract size {self.contract_size}: only linear contracts of "
                "size 1 (USDⓈ-M) are modelled"
            )

    @property
    def tradable(self) -> bool:
        """Binance accepts orders only in status TRADING (not PENDING_TRADING, SETTLING...)."""
        return self.status == "TRADING"

    def filters(self) -> SymbolFilters:
        """The same checks and rounding spot orders get (`SymbolFilters`), with this contract's
        values. Futures MIN_NOTIONAL applies to market orders too (at the reference price)."""
        return SymbolFilters(
            symbol=self.symbol,
            base_asset=self.base_asset,
            quote_asset=self.quote_asset,
            tick_size=self.tick_size,
            min_price=self.min_price,
            max_price=self.max_price,
            step_size=self.step_size,
            min_qty=self.min_qty,
            max_qty=self.max_qty,
            market_step_size=self.market_step_size,
            market_min_qty=self.market_min_qty,
            market_max_qty=self.market_max_qty,
            min_notional=self.min_notional,
            min_notional_applies_to_market=True,
            percent_up=self.percent_up,
            percent_down=self.percent_down,
            max_num_orders=self.max_num_orders,
            order_types=self.order_types,
            status=self.status,
            notional_filter_name="MIN_NOTIONAL",
        )
