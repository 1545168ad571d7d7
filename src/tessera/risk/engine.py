"""Pre-trade risk checks, trading states and the drawdown kill-switch — pure, no I/O.

The same `RiskEngine` object runs inside the backtest and in front of the live executor, so a
limit or a kill-switch behaves identically in both. Whatever must leave the process (metrics,
the persisted halt, cancel-all) is returned as data or reported to a `RiskListener`; the caller
carries it out.

States:
- ACTIVE: every check applies.
- REDUCING: only orders that shrink an existing position pass (optional, entered when the
  drawdown passes ``reduce_only_drawdown_pct``; back to ACTIVE when it recovers below it).
- HALTED: no order that adds risk passes. Entered by the kill-switch (drawdown >=
  ``max_drawdown_pct``; ``None`` turns it off) or by hand, and left only by an explicit `reset`
  from a person — never automatically.

Reducing orders (the rule every check follows). An order *reduces* when it is on the other side
of the account's net position on its symbol and no larger than it (it shrinks the position
without flipping it), whether or not it is flagged ``reduce_only``. Refusing such an order would
hold the very risk a limit is about, so:

- the entry limits never deny it: ``max_order_notional``, ``max_position_notional``,
  ``max_gross_exposure``, the REDUCING zone, and the kill-switch's halt (a strategy's own
  stop-loss still leaves after the drawdown halt);
- a halt by hand or by reconciliation lets through only reducing orders flagged ``reduce_only``
  (a flatten): a person stopped the bot, and an unflagged order is the strategy trading on;
- a reducing ``reduce_only`` order passes a halt (either kind) without any other check (the
  flatten must go out whatever the caps, band or rate say); any other reducing order still
  meets the operational checks: ``price_band``, ``max_open_orders``, ``order_rate``.

Perpetual accounts (``AccountView.perp``) also meet the leverage checks of
`tessera.risk.leverage` (position, gross and net leverage, distance to liquidation) after the
spot ones, and `mark_perp` feeds the drawdown the equity at the mark and runs the leverage
monitor; a spot account (``perp`` None) is checked exactly as before.

Notional caps are a quote amount or a fraction of equity (`EquityFraction`, ``"50%"``),
resolved against ``AccountView.equity`` when the caller gives it, else the equity of the last
`update_equity`; with neither known, a fractional cap denies the orders it applies to.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from tessera.config.models import EquityFraction, RiskConfig
from tessera.execution.fastinit import slot_init
from tessera.execution.orders import OrderSide, OrderType

if TYPE_CHECKING:
    from tessera.risk.leverage import LeverageAction, PerpAccountSnapshot

ZERO = Decimal(0)
HUNDRED = Decimal(100)
NS = 1_000_000_000


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class DenialReason(StrEnum):
    """Why an order was denied; the values are the metric label vocabulary."""

    MAX_ORDER_NOTIONAL = "max_order_notional"
    MAX_POSITION = "max_position"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"
    PRICE_BAND = "price_band"
    MAX_OPEN_ORDERS = "max_open_orders"
    ORDER_RATE = "order_rate"
    HALTED = "halted"
    REDUCING_ONLY = "reducing_only"
    KILL_SWITCH = "kill_switch"
    # perpetual accounts (tessera.risk.leverage)
    MAX_LEVERAGE = "max_leverage"
    MAX_GROSS_LEVERAGE = "max_gross_leverage"
    MAX_NET_LEVERAGE = "max_net_leverage"
    LIQUIDATION_DISTANCE = "liquidation_distance"


# the RiskConfig field behind each notional denial
_LIMIT_FIELD = {
    DenialReason.MAX_ORDER_NOTIONAL: "max_order_notional",
    DenialReason.MAX_POSITION: "max_position_notional",
    DenialReason.MAX_GROSS_EXPOSURE: "max_gross_exposure",
}


class RiskAction(StrEnum):
    CANCEL_ALL = "cancel_all"
    FLATTEN = "flatten"


@slot_init
@dataclass(frozen=True, slots=True)
class OrderIntent:
    symbol: str
    side: OrderSide
    qty: Decimal
    order_type: OrderType = OrderType.MARKET
    price: Decimal | None = None  # limit price; market orders use the last price
    strategy: str = ""
    # may only shrink the position (flatten, exits): let through a halt when it does reduce,
    # and exempt from the exposure caps (it lowers exposure)
    reduce_only: bool = False


@slot_init
@dataclass(frozen=True, slots=True)
class AccountView:
    """What the checks need to know about the account right now."""

    positions: Mapping[str, Decimal]  # signed base quantity per symbol
    last_prices: Mapping[str, Decimal]
    open_orders: int = 0
    # marked-to-market equity now, for caps written as a fraction of equity ("50%"); None: the
    # engine uses the equity of its last update_equity
    equity: Decimal | None = None
    # a perpetual (USDⓈ-M) account at its marks: the leverage checks of tessera.risk.leverage
    # run on it after the spot checks; None (spot) skips them
    perp: PerpAccountSnapshot | None = None


@dataclass(frozen=True, slots=True)
class RiskDecision:
    allowed: bool
    reason: DenialReason | None = None
    detail: str = ""

    @classmethod
    def ok(cls) -> RiskDecision:
        # one shared instance: a decision is frozen, and most orders are allowed
        return _ALLOWED if cls is RiskDecision else cls(True)

    @classmethod
    def deny(cls, reason: DenialReason, detail: str) -> RiskDecision:
        return cls(False, reason, detail)


_ALLOWED = RiskDecision(True)


@dataclass(frozen=True, slots=True)
class HaltRecord:
    reason: str  # "kill_switch" or a person's words
    ts: int
    drawdown_pct: float


class RiskListener(Protocol):
    """Receives what happened; the live app maps it to metrics, logs and the database."""

    def on_denial(self, intent: OrderIntent, decision: RiskDecision) -> None: ...

    def on_state(self, state: TradingState, halt: HaltRecord | None) -> None: ...

    def on_drawdown(self, equity: float, peak: float, drawdown_pct: float) -> None: ...


class NullListener:
    def on_denial(self, intent: OrderIntent, decision: RiskDecision) -> None:
        return None

    def on_state(self, state: TradingState, halt: HaltRecord | None) -> None:
        return None

    def on_drawdown(self, equity: float, peak: float, drawdown_pct: float) -> None:
        return None


def _exact(value: Decimal | float) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(repr(value))


@dataclass
class RiskEngine:
    config: RiskConfig
    listener: RiskListener = field(default_factory=NullListener)
    state: TradingState = TradingState.ACTIVE
    halt: HaltRecord | None = None
    drawdown_pct: float = 0.0
    _sent: deque[int] = field(default_factory=deque)
    _peak_f: float = 0.0
    # The equity of the last update_equity and its peak, kept as given (a backtest passes a
    # float every bar) and made exact Decimals only when read: converting on every bar was most
    # of the risk engine's cost in a backtest (issue 20), and the values read are the same.
    _equity_raw: Decimal | float | None = field(default=None, repr=False)
    _equity_dec: Decimal | None = field(default=None, repr=False)
    _peak_raw: Decimal | float = field(default=ZERO, repr=False)
    _peak_dec: Decimal | None = field(default=ZERO, repr=False)

    @property
    def equity(self) -> Decimal | None:
        """The equity of the last `update_equity`, exact (None before the first)."""
        if self._equity_dec is None and self._equity_raw is not None:
            self._equity_dec = _exact(self._equity_raw)
        return self._equity_dec

    @property
    def equity_peak(self) -> Decimal:
        """The highest equity seen (or restored, or reset to), exact."""
        if self._peak_dec is None:
            self._peak_dec = _exact(self._peak_raw)
        return self._peak_dec

    def _set_peak(self, value: Decimal | float) -> None:
        self._peak_raw = value
        self._peak_dec = value if isinstance(value, Decimal) else None

    # --- pre-trade ------------------------------------------------------------------------------

    def check(self, intent: OrderIntent, account: AccountView, now_ns: int) -> RiskDecision:
        """Decide on one order. Denials are reported to the listener with their reason."""
        decision = self._decide(intent, account, now_ns)
        if not decision.allowed:
            self.listener.on_denial(intent, decision)
        return decision

    def _decide(self, intent: OrderIntent, account: AccountView, now_ns: int) -> RiskDecision:
        cfg = self.config
        position = account.positions.get(intent.symbol, ZERO)
        signed = intent.qty * intent.side.sign
        reduces = position != 0 and (position > 0) != (signed > 0) and abs(signed) <= abs(position)
        if self.state is TradingState.HALTED and intent.reduce_only and reduces:
            # the flatten of a halt: no cap, band or rate may keep the risk on
            return RiskDecision.ok()
        if self.state is TradingState.HALTED:
            kill_switch = self.halt is not None and self.halt.reason == "kill_switch"
            # the drawdown halt is a limit on entries: an exit (the strategy's stop) goes on to
            # the operational checks; a halt by a person stops the strategy's own orders too
            if not (kill_switch and reduces):
                reason = DenialReason.KILL_SWITCH if kill_switch else DenialReason.HALTED
                return RiskDecision.deny(
                    reason, f"trading halted: {self.halt.reason if self.halt else ''}"
                )
        if self.state is TradingState.REDUCING and not reduces:
            return RiskDecision.deny(DenialReason.REDUCING_ONLY, "only reducing orders allowed")

        last = account.last_prices.get(intent.symbol)
        price = intent.price if intent.price is not None else last
        if price is None:
            return RiskDecision.deny(DenialReason.PRICE_BAND, f"no price known for {intent.symbol}")
        notional = intent.qty * price
        # a reducing order is never capped: refusing an exit would hold the risk it removes
        if not reduces:
            cap = self._cap(cfg.max_order_notional, account)
            if cap is None or notional > cap:
                return self._over(DenialReason.MAX_ORDER_NOTIONAL, "order notional", notional, cap)
        if intent.price is not None and last is not None:
            band = abs(intent.price / last - 1) * HUNDRED
            if band > Decimal(str(cfg.price_band_pct)):
                return RiskDecision.deny(
                    DenialReason.PRICE_BAND, f"price {intent.price} is {band:.3f}% from last {last}"
                )
        if not reduces:
            new_position = abs(position + signed) * price
            cap = self._cap(cfg.max_position_notional, account)
            if cap is None or new_position > cap:
                return self._over(DenialReason.MAX_POSITION, "position notional", new_position, cap)
            gross = ZERO
            for sym, qty in account.positions.items():
                if sym != intent.symbol:
                    gross += abs(qty) * account.last_prices.get(sym, ZERO)
            gross += new_position
            cap = self._cap(cfg.max_gross_exposure, account)
            if cap is None or gross > cap:
                return self._over(DenialReason.MAX_GROSS_EXPOSURE, "gross exposure", gross, cap)
            if account.perp is not None:
                from tessera.risk.leverage import check_order

                decision = check_order(cfg, account.perp, intent)
                if not decision.allowed:
                    return decision
        if account.open_orders >= cfg.max_open_orders:
            return RiskDecision.deny(
                DenialReason.MAX_OPEN_ORDERS, f"{account.open_orders} open orders"
            )
        while self._sent and self._sent[0] <= now_ns - NS:
            self._sent.popleft()
        if len(self._sent) >= cfg.max_orders_per_second:
            return RiskDecision.deny(
                DenialReason.ORDER_RATE, f"{len(self._sent)} orders in the last second"
            )
        return RiskDecision.ok()

    def _cap(self, limit: Decimal | EquityFraction, account: AccountView) -> Decimal | None:
        """A notional cap in quote currency now; None when it is a fraction of an equity that
        nobody has told the engine yet."""
        if isinstance(limit, Decimal):
            return limit
        equity = account.equity if account.equity is not None else self.equity
        return limit.limit(equity) if equity is not None else None

    def _over(
        self, reason: DenialReason, what: str, value: Decimal, cap: Decimal | None
    ) -> RiskDecision:
        if cap is None:
            return RiskDecision.deny(
                reason, f"{reason.value} is a fraction of equity and no equity is known yet"
            )
        limit = getattr(self.config, _LIMIT_FIELD[reason])
        shown = f"{cap:.2f} ({limit} of equity)" if isinstance(limit, EquityFraction) else cap
        return RiskDecision.deny(reason, f"{what} {value} > {shown}")

    def record_sent(self, now_ns: int) -> None:
        """Count an order that passed and was sent (for the orders-per-second limit)."""
        self._sent.append(now_ns)

    # --- drawdown and the kill-switch ----------------------------------------------------------

    def update_equity(self, equity: Decimal | float, ts: int) -> list[RiskAction]:
        """Mark-to-market update. Returns the actions the caller must carry out now.

        Drawdown is a float percentage (it is a gauge, not money); the peak is kept exactly.
        """
        # a backtest calls this on every bar a position is held: written for few operations
        if type(equity) is float:
            eq = equity
            self._equity_dec = None
        else:
            eq = float(equity)
            self._equity_dec = equity if isinstance(equity, Decimal) else None
        self._equity_raw = equity
        peak = self._peak_f
        if eq > peak:
            self._peak_f = peak = eq
            self._set_peak(equity)
        drawdown = 0.0
        if peak > 0:
            drawdown = (peak - eq) / peak * 100.0
            if drawdown < 0.0:  # max(drawdown, 0.0), as written before
                drawdown = 0.0
        self.drawdown_pct = drawdown
        self.listener.on_drawdown(eq, peak, drawdown)
        cfg = self.config
        limit = cfg.max_drawdown_pct  # None: the kill-switch is off
        state = self.state
        if limit is not None and state is not TradingState.HALTED and drawdown >= limit:
            self._set_halt(HaltRecord("kill_switch", ts, drawdown))
            return [RiskAction.CANCEL_ALL, *([RiskAction.FLATTEN] if cfg.flatten_on_halt else [])]
        threshold = cfg.reduce_only_drawdown_pct
        if threshold is not None and state is not TradingState.HALTED:
            target = TradingState.REDUCING if drawdown >= threshold else TradingState.ACTIVE
            if target is not self.state:
                self.state = target
                self.listener.on_state(target, None)
        return []

    def mark_perp(
        self, snapshot: PerpAccountSnapshot, ts: int
    ) -> tuple[list[RiskAction], list[LeverageAction]]:
        """Mark-to-market of a perpetual account: the drawdown (and its kill-switch) on the
        equity at the mark — wallet plus every position's unrealized PnL at its mark — and the
        leverage monitor (reduce orders when a position is too close to liquidation, margin
        ratio alerts). Returns both lists of actions for the caller to carry out."""
        from tessera.risk.leverage import monitor

        return self.update_equity(snapshot.equity, ts), monitor(self.config, snapshot)

    def manual_halt(self, reason: str, ts: int) -> list[RiskAction]:
        if not reason.strip():
            raise ValueError("a manual halt needs a reason")
        self._set_halt(HaltRecord(reason, ts, self.drawdown_pct))
        return [RiskAction.CANCEL_ALL]

    def restore(self, halt: HaltRecord | None, equity_peak: Decimal) -> None:
        """Restore persisted state at start-up: a halt survives restarts."""
        self._set_peak(max(self.equity_peak, equity_peak))
        self._peak_f = float(self.equity_peak)
        if halt is not None:
            self.state = TradingState.HALTED
            self.halt = halt
            self.listener.on_state(self.state, halt)

    def reset(self, equity: Decimal | None = None) -> None:
        """A person re-enables trading. The equity peak restarts from ``equity`` if given."""
        self.state = TradingState.ACTIVE
        self.halt = None
        if equity is not None:
            self._set_peak(equity)
            self._peak_f = float(equity)
            self.drawdown_pct = 0.0
        self.listener.on_state(self.state, None)

    def _set_halt(self, record: HaltRecord) -> None:
        self.state = TradingState.HALTED
        self.halt = record
        self.listener.on_state(self.state, record)
