"""The strategy interface: event callbacks that emit orders or target positions.

A strategy sees the world only through a `StrategyContext`, which the backtest engine and the
live bot both implement. That is what lets the very same strategy object run in research,
paper and live: it never knows which one it is in.

Bars carry floats (research data); orders and positions are exact (`Decimal`).
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple, Protocol

from tessera.execution.orders import Fill, Order, OrderSide, OrderType, TimeInForce


class Bar(NamedTuple):
    """A closed bar. ``open_time``/``close_time`` are ns since the epoch, UTC.

    A NamedTuple, not a dataclass: one is built per bar per symbol, and construction cost is
    the backtest's floor.
    """

    symbol: str
    open_time: int
    close_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float  # base units
    quote_volume: float = 0.0
    taker_buy_volume: float = 0.0


@dataclass(frozen=True, slots=True)
class TradeTick:
    symbol: str
    ts: int
    price: float
    qty: float
    is_buyer_maker: bool


@dataclass(frozen=True, slots=True)
class BookTop:
    symbol: str
    ts: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float


class StrategyContext(Protocol):
    """What a strategy may ask and do. Implemented by the backtest and by the live bot."""

    @property
    def now(self) -> int:
        """Current time, ns (bar close time in a backtest, wall clock live)."""
        ...

    def position(self, symbol: str) -> Decimal:
        """This strategy's signed position in base units."""
        ...

    def equity(self) -> Decimal:
        """Account equity in the quote currency."""
        ...

    def cash(self) -> Decimal:
        """Free quote-currency cash of the account."""
        ...

    def last_price(self, symbol: str) -> float | None: ...

    def features(self, symbol: str) -> Mapping[str, float]:
        """Latest feature values of ``symbol`` (empty if no feature set is attached)."""
        ...

    def prediction(self, symbol: str) -> float | None:
        """Latest model score of ``symbol`` (None if no model is attached)."""
        ...

    def submit_order(
        self,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        order_type: OrderType = OrderType.MARKET,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> Order | None:
        """Submit an order; returns None if risk or exchange filters denied it."""
        ...

    def cancel_order(self, client_order_id: str) -> None: ...

    def cancel_all(self, symbol: str | None = None) -> None: ...

    def open_orders(self, symbol: str | None = None) -> list[Order]: ...

    def target_position(self, symbol: str, qty: Decimal) -> Order | None:
        """Trade (market) towards a signed target position; no order if already there."""
        ...


class Strategy(ABC):  # noqa: B024 - every callback is optional, so none is abstract
    """Base class: override the callbacks you need. ``params`` come from config."""

    name: ClassVar[str] = "strategy"
    # Parameter names the strategy reads; None accepts anything. A typo in a config or a sweep
    # grid must fail loudly, not run the defaults under a wrong label.
    known_params: ClassVar[frozenset[str] | None] = None

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        known = type(self).known_params
        if known is not None and set(params) - known:
            unknown = ", ".join(sorted(set(params) - known))
            raise ValueError(
                f"unknown parameter(s) {unknown} for {type(self).name} "
                f"(known: {', '.join(sorted(known))})"
            )
        self.symbols = list(symbols)
        # Orders, fills and positions are attributed to this id; two instances of one class
        # (say two SmaCross parameter sets) need distinct ids.
        self.strategy_id = strategy_id or type(self).name
        self.params = params

    def on_start(self, ctx: StrategyContext) -> None:
        return None

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        return None

    def on_trade(self, trade: TradeTick, ctx: StrategyContext) -> None:
        return None

    def on_book(self, book: BookTop, ctx: StrategyContext) -> None:
        return None

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        return None

    def on_stop(self, ctx: StrategyContext) -> None:
        return None

    @property
    def warmup_bars(self) -> int:
        """Bars the strategy needs before its first decision (for walk-forward slicing)."""
        return 0


_REGISTRY: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"strategy name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def strategy_class(name: str) -> type[Strategy]:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise KeyError(f"unknown strategy {name!r}; registered: {known}") from None


def registered_strategies() -> dict[str, type[Strategy]]:
    return dict(_REGISTRY)
