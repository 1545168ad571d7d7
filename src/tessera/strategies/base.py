"""The strategy interface: event callbacks that emit orders or target positions.

A strategy sees the world only through a `StrategyContext`, which the backtest engine and the
live bot both implement. That is what lets the very same strategy object run in research,
paper and live: it never knows which one it is in.

Bars carry floats (research data); orders and positions are exact (`Decimal`).
"""

from __future__ import annotations

import math
from abc import ABC
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple, Protocol, get_args

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo

from tessera.execution.orders import (
    ExitReason,
    Fill,
    Order,
    OrderList,
    OrderSide,
    OrderType,
    TimeInForce,
)


class Bar(NamedTuple):
    """A closed bar. ``open_time``/``close_time`` are ns since the epoch, UTC; ``close_time`` is
    the bar's last nanosecond (``open_time + interval - 1``) everywhere — backtest, paper, live
    (Binance's ``T`` is the bar's last millisecond: ``T`` ms + 999,999 ns) — so a strategy's
    arithmetic on it gives the same answer in research and in production.

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

    #: the strategy's own state, kept across restarts of the bot: JSON values and Decimal
    #: (see `tessera.strategies.state`); an in-memory dict in a backtest
    state: dict[str, Any]

    @property
    def warming(self) -> bool:
        """True while the bot runs past bars through the strategy to warm it up (at start, and
        after a restart: bars it may have seen before): orders are not sent then. Always False
        in a backtest. A strategy that keeps ``state`` updates its indicators and returns."""
        ...

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

    def set_leverage(self, symbol: str, leverage: int) -> None:
        """The leverage of the perpetual ``symbol``'s next exposure. The backtest sets it
        (refused above the leverage bracket's maximum for the position's notional, and on a
        spot symbol: ValueError); the live context raises NotImplementedError until live
        perpetuals land, so a strategy never believes a leverage was set that was not."""
        ...

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
        *,
        reason: ExitReason | None = None,
        reduce_only: bool = False,
    ) -> Order | None:
        """Submit an order of any type (see `OrderType`). Returns the order — its
        ``client_order_id`` is what `cancel_order` takes — or None when the risk checks or
        the exchange filters refused it before it was sent. ``reason`` is the exit reason
        recorded when it closes a position (default: by type, see `ExitReason.for_type`);
        ``reduce_only`` caps it at the position it reduces."""
        ...

    def submit_oco(
        self,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        *,
        take_profit: Decimal,
        stop_loss: Decimal,
        stop_limit: Decimal | None = None,
        reason: ExitReason | None = None,
        take_profit_reason: ExitReason | None = None,
        stop_loss_reason: ExitReason | None = None,
    ) -> OrderList | None:
        """An OCO on the exchange (Binance order list): a LIMIT_MAKER at ``take_profit`` and a
        STOP_LOSS at ``stop_loss`` (STOP_LOSS_LIMIT at ``stop_limit`` when given); when one
        fills or triggers the other expires. ``side`` SELL protects a long, BUY a short. The
        legs' exit reasons: ``take_profit_reason`` / ``stop_loss_reason``, else ``reason``,
        else ``oco``."""
        ...

    def submit_bracket(
        self,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        *,
        stop_loss: Decimal,
        take_profit: Decimal,
        entry_price: Decimal | None = None,
    ) -> Order | None:
        """Entry (MARKET, or LIMIT at ``entry_price``) and, once it fills, an OCO that exits
        the filled quantity at ``take_profit`` or ``stop_loss``. Returns the entry order."""
        ...

    def trail_stop(
        self,
        symbol: str,
        qty: Decimal,
        *,
        trail_pct: Decimal,
    ) -> Order | None:
        """A trailing stop for a long of ``qty`` (emulated: Binance spot has none we use).
        An exchange-side STOP_LOSS sits ``trail_pct`` percent below the highest high since it
        was placed; after each closed bar with a new high it is cancelled and placed higher,
        so a stop is on the exchange while the bot is down. Exit reason ``trailing_stop``."""
        ...

    def cancel_order(self, client_order_id: str) -> None: ...

    def cancel_all(self, symbol: str | None = None) -> None: ...

    def open_orders(self, symbol: str | None = None) -> list[Order]: ...

    def target_position(self, symbol: str, qty: Decimal) -> Order | None:
        """Trade (market) towards a signed target position; no order if already there."""
        ...


class StrategyParams(BaseModel):
    """Base of every strategy's declared parameters.

    A strategy declares its parameters as a nested ``Params`` model (typed fields with
    constraints, defaults and one-line descriptions); the constructor validates what the
    config, the CLI or a sweep grid passed. Why it matters: a parameter is money — a negative
    ``qty`` flips a long-only strategy short, ``nan`` crashes every signal, ``0`` or ``inf``
    never trades — so a bad value must stop the run at start with a sentence, never run.

    Unknown names are errors (a typo must not run the defaults under a wrong label), infinities
    and NaN are rejected unless a field opts in, and ``true``/``false`` never passes for a number
    (pydantic would read ``fast=true`` as 1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if bool not in (annotation, *get_args(annotation)):
                raise ValueError("a number is expected, not true/false")
        return value


class StrategyParamError(ValueError):
    """Parameters a strategy cannot run with; the message is one paragraph for a person.

    A ``ValueError`` so that every caller that already refuses a bad strategy (the backtest and
    sweep commands, the bot) refuses this one too.
    """


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One declared parameter, as `strategy_params` lists it (for help texts and errors)."""

    name: str
    type: str
    default: Any
    accepted: str
    description: str

    def __str__(self) -> str:
        default = "none" if self.default is None else _show(self.default)
        return f"{self.name} ({self.accepted}; default {default})"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return str(value)


def _type_name(annotation: Any) -> str:
    args = [a for a in get_args(annotation) if a is not type(None)]
    if args and annotation is not Decimal:
        return " or ".join(_type_name(a) for a in args)
    names = {int: "integer", float: "number", Decimal: "decimal", bool: "true/false", str: "text"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _accepted(info: FieldInfo) -> str:
    """What a field accepts, from its type and constraints: "decimal > 0, finite"."""
    kind = _type_name(info.annotation)
    terms = []
    for meta in info.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            bound = getattr(meta, attr, None)
            if bound is not None:
                terms.append(f"{sign} {_show(bound)}")
    if kind in ("number", "decimal"):
        infinite = any(getattr(m, "allow_inf_nan", None) for m in info.metadata)
        terms.append("not nan" if infinite else "finite")
    if terms and terms[0][0] not in "<>":
        terms[0] = ", " + terms[0]
    elif terms:
        terms[0] = " " + terms[0]
    text = kind + terms[0] + "".join(", " + t for t in terms[1:]) if terms else kind
    return text + (" or none" if not info.is_required() and info.default is None else "")


def param_specs(params: type[StrategyParams]) -> list[ParamSpec]:
    """The declared parameters of a ``Params`` model, in declaration order."""
    return [
        ParamSpec(
            name=name,
            type=_type_name(info.annotation),
            default=None if info.is_required() else info.get_default(call_default_factory=True),
            accepted=_accepted(info),
            description=info.description or "",
        )
        for name, info in params.model_fields.items()
    ]


def describe_param_error(
    strategy: str, params: type[StrategyParams], given: Mapping[str, Any], exc: ValidationError
) -> str:
    """One paragraph: the strategy, each bad parameter with its value and what it accepts, and
    the strategy's whole parameter list."""
    specs = {p.name: p for p in param_specs(params)}
    problems: list[str] = []
    unknown = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden"]
    if unknown:
        problems.append(f"unknown parameter(s) {', '.join(unknown)}")
    for err in exc.errors(include_url=False):
        if err["type"] == "extra_forbidden":
            continue
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["loc"]:
            name = str(err["loc"][0])
            value = _show(given.get(name, err.get("input")))
            spec = specs.get(name)
            accepts = f"; {name} accepts {spec.accepted}" if spec else ""
            problems.append(f"{name}={value} is not accepted ({msg}){accepts}")
        else:  # a rule across parameters (fast < slow)
            shown = ", ".join(f"{k}={_show(v)}" for k, v in given.items()) or "the defaults"
            problems.append(f"{shown} do not fit together: {msg}")
    listing = ", ".join(str(s) for s in specs.values()) or "no parameters"
    return f"strategy {strategy}: {'; '.join(problems)}. {strategy} takes: {listing}."


class Strategy(ABC):  # noqa: B024 - every callback is optional, so none is abstract
    """Base class: override the callbacks you need.

    Parameters are declared by a nested ``Params`` model (a `StrategyParams` subclass) and
    validated on construction; the validated, typed values are ``self.params``. A strategy
    without parameters keeps the empty default and refuses any parameter it is given.
    """

    name: ClassVar[str] = "strategy"
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        self.params: StrategyParams = type(self).validate_params(params)
        self.symbols = list(symbols)
        # Orders, fills and positions are attributed to this id; two instances of one class
        # (say two SmaCross parameter sets) need distinct ids.
        self.strategy_id = strategy_id or type(self).name

    @classmethod
    def validate_params(cls, params: Mapping[str, Any]) -> StrategyParams:
        """``params`` as the typed ``Params`` model; `StrategyParamError` (one paragraph for a
        person) when a value is out of range, of the wrong type, or the name is unknown."""
        try:
            return cls.Params.model_validate(dict(params))
        except ValidationError as exc:
            raise StrategyParamError(
                describe_param_error(cls.name, cls.Params, params, exc)
            ) from None

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

    def on_order(self, order: Order, ctx: StrategyContext) -> None:
        """An order of this strategy changed state: accepted, (partly) filled, cancelled,
        expired (IOC/FOK remainder, the other leg of an OCO) or rejected (``reject_reason``).
        Called after ``on_fill`` for a fill."""
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


def strategy_params(name: str) -> list[ParamSpec]:
    """The declared parameters of the registered strategy ``name``: type, default, what is
    accepted and what it means (``KeyError`` naming the registered ones if unknown)."""
    return param_specs(strategy_class(name).Params)


def validate_strategy_params(name: str, params: Mapping[str, Any]) -> StrategyParams:
    """Check a strategy name and its parameters without building the strategy: what the CLI
    commands call at start, before they load data or connect anywhere."""
    return strategy_class(name).validate_params(params)
