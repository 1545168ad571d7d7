"""Leverage risk for USDⓈ-M perpetuals — pure checks that return their verdicts as data.

Why a module of its own: a spot account can lose at most what it holds, a perpetual account
can lose its whole margin to a move of a few percent. The spot checks of `RiskEngine` (order,
position and gross notional) do not see that distance; these do, from one snapshot of the
account at the **mark price** (Binance marks positions, margin and liquidation at the mark, not
at the last trade). They compute margin, leverage and liquidation prices with the pure perp
domain (`tessera.execution.perp.margin`), so the risk engine, the backtest and the simulator
agree on when a position dies.

What is measured (one-way position mode, USDⓈ-M, contract size 1):

- **Equity** = total wallet balance + every position's unrealized PnL at its mark (Binance's
  total margin balance). The drawdown kill-switch is fed this (`RiskEngine.mark_perp`).
- **Position leverage** = the position's notional at the mark / the margin balance behind it:
  an isolated position's own (isolated margin + its unrealized PnL), a cross position's the
  cross margin balance (cross wallet + every cross position's unrealized PnL). At entry an
  isolated position's leverage is its leverage setting; losses raise it.
- **Gross / net leverage** = Σ|notional| / equity and |Σ signed notional| / equity.
- **Liquidation distance** = how far the mark may move against the position before it is
  liquidated, in percent of the mark: ``(mark - LP) / mark * 100`` for a long,
  ``(LP - mark) / mark * 100`` for a short. None when no positive price liquidates it.
- **Margin ratio** = maintenance margin / margin balance, Binance's definition ("Margin Ratio =
  Maintenance Margin / Margin Balance"; a position is liquidated when it reaches 100 %, see
  https://www.binance.com/en/support/faq/360033162192 and docs/futures.md): per position in
  isolated mode, for the whole cross wallet in cross mode (every cross symbol shows the
  account's cross ratio). It is 1 exactly at the liquidation price of `liquidation_price`.

Pre-trade (`check_order`): the order is applied to the snapshot (`PerpAccountSnapshot.after`:
fees ignored, a limit order at its limit price, a market order at the mark) and the result is
denied when a position's leverage exceeds ``max_leverage``, gross or net leverage exceed
``max_gross_leverage`` / ``max_net_leverage``, or a liquidation distance it changes falls under
``min_liquidation_distance_pct``. An order that reduces a position always passes (the rule of
`tessera.risk.engine`: refusing an exit would hold the risk the limit is about).

Monitor (`monitor`): for the snapshot as it is, a `ReduceOrder` (reduce-only, reason
``liquidation_distance``) for each position closer to liquidation than the minimum, sized as
the smallest cut that restores the distance, and a `MarginRatioAlert` where the margin ratio
is at or above ``margin_ratio_alert``. The caller sends the orders (through the engine) and
raises the alerts; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, Decimal

from tessera.config.models import RiskConfig
from tessera.execution.orders import OrderSide
from tessera.execution.perp.margin import (
    LeverageBrackets,
    MarginMode,
    MarkedPosition,
    PerpPosition,
    liquidation_price,
)
from tessera.risk.engine import DenialReason, OrderIntent, RiskDecision

ZERO = Decimal(0)
HUNDRED = Decimal(100)
INFINITY = Decimal("Infinity")
# the cut of a reduce order is rounded UP to this when the symbol gives no step size
DEFAULT_QTY_QUANTUM = Decimal("1e-8")
LIQUIDATION_DISTANCE = "liquidation_distance"


@dataclass(frozen=True, slots=True)
class PerpSymbol:
    """One perpetual of the account: its mark, brackets, leverage setting, margin mode and
    position (None when flat).

    ``leverage`` is the symbol's leverage setting on the venue (the initial margin of a new
    isolated position is ``notional / leverage``); a held position must carry the same.
    ``liquidation_price`` is the venue's figure when it reports one (``positionRisk``); None:
    computed here from the brackets. ``qty_step`` is the symbol's lot step (a reduce order is
    rounded up to it); None: 1e-8.
    """

    symbol: str
    mark: Decimal
    brackets: LeverageBrackets
    leverage: int
    mode: MarginMode
    position: PerpPosition | None = None
    liquidation_price: Decimal | None = None
    qty_step: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.mark.is_finite() or self.mark <= 0:
            raise ValueError(f"{self.symbol}: mark must be > 0, got {self.mark}")
        if self.leverage < 1:
            raise ValueError(f"{self.symbol}: leverage must be >= 1, got {self.leverage}")
        if self.qty_step is not None and self.qty_step <= 0:
            raise ValueError(f"{self.symbol}: qty_step must be > 0, got {self.qty_step}")
        p = self.position
        if p is not None:
            if p.symbol != self.symbol:
                raise ValueError(f"{self.symbol}: holds a position of {p.symbol}")
            if p.mode is not self.mode or p.leverage != self.leverage:
                raise ValueError(
                    f"{self.symbol}: the position is {p.mode.value} at {p.leverage}x but the "
                    f"symbol is set to {self.mode.value} at {self.leverage}x"
                )

    @property
    def qty(self) -> Decimal:
        """Signed position, 0 when flat."""
        return self.position.qty if self.position is not None else ZERO

    @property
    def notional(self) -> Decimal:
        """|qty| at the mark."""
        return abs(self.qty) * self.mark

    @property
    def unrealized_pnl(self) -> Decimal:
        return self.position.unrealized_pnl(self.mark) if self.position is not None else ZERO

    @property
    def maintenance_margin(self) -> Decimal:
        return self.brackets.maintenance_margin(self.notional) if self.position else ZERO


@dataclass(frozen=True, slots=True)
class PerpAccountSnapshot:
    """A USDⓈ-M account at one instant, marked at the mark prices.

    ``wallet_balance`` is Binance's total wallet balance in the margin asset: the cross wallet
    plus every isolated position's isolated wallet (deposits, realized PnL, fees and funding;
    no unrealized PnL). ``symbols`` maps each symbol to its `PerpSymbol`.
    """

    wallet_balance: Decimal
    symbols: Mapping[str, PerpSymbol]

    def __post_init__(self) -> None:
        for key, sym in self.symbols.items():
            if key != sym.symbol:
                raise ValueError(f"snapshot key {key} holds the symbol {sym.symbol}")

    def get(self, symbol: str) -> PerpSymbol:
        try:
            return self.symbols[symbol]
        except KeyError:
            raise ValueError(f"{symbol}: not in the perpetual account snapshot") from None

    @property
    def positions(self) -> dict[str, Decimal]:
        """Signed quantity of every held symbol."""
        return {k: s.qty for k, s in self.symbols.items() if s.position is not None}

    @property
    def equity(self) -> Decimal:
        """Total margin balance: wallet + every position's unrealized PnL at its mark."""
        return self.wallet_balance + sum((s.unrealized_pnl for s in self.symbols.values()), ZERO)

    @property
    def cross_wallet_balance(self) -> Decimal:
        """The wallet without the isolated positions' wallets."""
        isolated = sum(
            (
                s.position.isolated_margin
                for s in self.symbols.values()
                if s.position is not None and s.position.isolated_margin is not None
            ),
            ZERO,
        )
        return self.wallet_balance - isolated

    def _cross(self) -> list[PerpSymbol]:
        return [
            s
            for s in self.symbols.values()
            if s.position is not None and s.position.mode is MarginMode.CROSS
        ]

    @property
    def cross_margin_balance(self) -> Decimal:
        """Cross wallet + every cross position's unrealized PnL."""
        return self.cross_wallet_balance + sum((s.unrealized_pnl for s in self._cross()), ZERO)

    def margin_balance(self, symbol: str) -> Decimal:
        """The margin balance behind ``symbol``'s position: its own when isolated, the cross
        margin balance when cross."""
        s = self.get(symbol)
        if s.position is not None and s.position.mode is MarginMode.ISOLATED:
            return s.position.margin_balance(s.mark)
        return self.cross_margin_balance

    def margin_ratio(self, symbol: str) -> Decimal | None:
        """Maintenance margin / margin balance (Binance): the position's in isolated mode, the
        cross wallet's (all cross positions) in cross mode; None when flat; +Infinity when the
        margin balance is gone (<= 0)."""
        s = self.get(symbol)
        if s.position is None:
            return None
        if s.position.mode is MarginMode.ISOLATED:
            maintenance = s.maintenance_margin
        else:
            maintenance = sum((c.maintenance_margin for c in self._cross()), ZERO)
        balance = self.margin_balance(symbol)
        return maintenance / balance if balance > 0 else INFINITY

    def position_leverage(self, symbol: str) -> Decimal:
        """Notional at the mark / the margin balance behind it (0 when flat, +Infinity when
        that balance is <= 0)."""
        s = self.get(symbol)
        if s.position is None:
            return ZERO
        balance = self.margin_balance(symbol)
        return s.notional / balance if balance > 0 else INFINITY

    @property
    def gross_notional(self) -> Decimal:
        return sum((s.notional for s in self.symbols.values()), ZERO)

    @property
    def net_notional(self) -> Decimal:
        return sum((s.qty * s.mark for s in self.symbols.values()), ZERO)

    def _of_equity(self, notional: Decimal) -> Decimal:
        equity = self.equity
        if notional == 0:
            return ZERO
        return notional / equity if equity > 0 else INFINITY

    @property
    def gross_leverage(self) -> Decimal:
        """Σ|notional| / equity."""
        return self._of_equity(self.gross_notional)

    @property
    def net_leverage(self) -> Decimal:
        """|Σ signed notional| / equity."""
        return self._of_equity(abs(self.net_notional))

    def liquidation_price(self, symbol: str) -> Decimal | None:
        """The venue's liquidation price when the snapshot has one, else Binance's formula
        (`tessera.execution.perp.margin.liquidation_price`); None when flat or when no positive
        price liquidates the position."""
        s = self.get(symbol)
        if s.position is None:
            return None
        if s.liquidation_price is not None:
            return s.liquidation_price
        if s.position.mode is MarginMode.ISOLATED:
            return liquidation_price(s.position, s.brackets)
        others = [
            MarkedPosition(c.position, c.brackets, c.mark)
            for c in self._cross()
            if c.position is not None and c.symbol != symbol
        ]
        return liquidation_price(
            s.position,
            s.brackets,
            cross_wallet_balance=self.cross_wallet_balance,
            others=others,
        )

    def liquidation_distance_pct(self, symbol: str) -> Decimal | None:
        """How far (percent of the mark) the mark may move against the position before it is
        liquidated; <= 0 when it is past; None when flat or never liquidated."""
        s = self.get(symbol)
        lp = self.liquidation_price(symbol)
        if s.position is None or lp is None:
            return None
        return (s.mark - lp) / s.mark * HUNDRED * s.position.side

    def after(self, symbol: str, signed_qty: Decimal, price: Decimal) -> PerpAccountSnapshot:
        """The account once ``signed_qty`` of ``symbol`` has filled at ``price`` (fees
        ignored). The venue's liquidation prices are dropped where the fill moves them (the
        symbol; every cross symbol when it is cross) so that they are computed.

        Model: adding keeps the position's mode and leverage setting, averages the entry price
        and (isolated) posts ``|added| * price / leverage`` of margin from the cross wallet; a
        close realizes ``closed * (price - entry) * side`` into the wallet and (isolated)
        releases the position's margin in proportion to the part closed; a flip closes the old
        position and opens the rest at ``price``.
        """
        s = self.get(symbol)
        if price <= 0:
            raise ValueError(f"{symbol}: fill price must be > 0, got {price}")
        old = s.position
        old_qty = s.qty
        new_qty = old_qty + signed_qty
        wallet = self.wallet_balance
        position: PerpPosition | None
        if old is not None and (old_qty > 0) != (signed_qty > 0):
            closed = min(abs(signed_qty), abs(old_qty))
            wallet += closed * (price - old.entry_price) * old.side
        if new_qty == 0:
            position = None
        elif old is None or (old_qty > 0) != (new_qty > 0):  # opened, or flipped
            margin = abs(new_qty) * price / s.leverage
            position = PerpPosition(
                symbol,
                new_qty,
                price,
                s.leverage,
                s.mode,
                margin if s.mode is MarginMode.ISOLATED else None,
            )
        elif abs(new_qty) > abs(old_qty):  # added
            added = abs(signed_qty)
            entry = (abs(old_qty) * old.entry_price + added * price) / abs(new_qty)
            margin_iso = (
                old.isolated_margin + added * price / s.leverage
                if old.isolated_margin is not None
                else None
            )
            position = replace(old, qty=new_qty, entry_price=entry, isolated_margin=margin_iso)
        else:  # partly closed
            margin_iso = (
                old.isolated_margin * abs(new_qty) / abs(old_qty)
                if old.isolated_margin is not None
                else None
            )
            position = replace(old, qty=new_qty, isolated_margin=margin_iso)
        symbols = dict(self.symbols)
        symbols[symbol] = replace(s, position=position, liquidation_price=None)
        if s.mode is MarginMode.CROSS:
            for key, other in symbols.items():
                if other.mode is MarginMode.CROSS and other.liquidation_price is not None:
                    symbols[key] = replace(other, liquidation_price=None)
        return PerpAccountSnapshot(wallet, symbols)


# --- pre-trade --------------------------------------------------------------------------------


def reduces(position: Decimal, signed_qty: Decimal) -> bool:
    """The engine's rule: the order is on the other side of the position and no larger."""
    return position != 0 and (position > 0) != (signed_qty > 0) and abs(signed_qty) <= abs(position)


def _fmt(value: Decimal) -> str:
    return "inf" if value.is_infinite() else f"{value:.4f}"


def check_order(
    config: RiskConfig, snapshot: PerpAccountSnapshot, intent: OrderIntent
) -> RiskDecision:
    """Allow or deny one order on a perpetual account by the leverage settings of ``config``
    (each None turns its check off). See the module docstring for the measures."""
    s = snapshot.get(intent.symbol)
    signed = intent.qty * intent.side.sign
    if intent.qty <= 0 or reduces(s.qty, signed):
        return RiskDecision.ok()
    price = intent.price if intent.price is not None else s.mark
    post = snapshot.after(intent.symbol, signed, price)
    traded = post.get(intent.symbol)
    if traded.notional > traded.brackets.max_notional:
        return RiskDecision.deny(
            DenialReason.MAX_LEVERAGE,
            f"{intent.symbol}: position notional {traded.notional:.2f} above the last bracket's "
            f"cap {traded.brackets.max_notional}",
        )
    allowed = traded.brackets.max_leverage(traded.notional)
    if traded.leverage > allowed:
        return RiskDecision.deny(
            DenialReason.MAX_LEVERAGE,
            f"{intent.symbol}: leverage setting {traded.leverage}x above the {allowed}x the "
            f"brackets allow for a notional of {traded.notional:.2f}",
        )
    if config.max_leverage is not None:
        lev = post.position_leverage(intent.symbol)
        if lev > config.max_leverage:
            return RiskDecision.deny(
                DenialReason.MAX_LEVERAGE,
                f"{intent.symbol}: position leverage {_fmt(lev)}x > max_leverage "
                f"{config.max_leverage}x",
            )
    if config.max_gross_leverage is not None:
        lev = post.gross_leverage
        if lev > config.max_gross_leverage:
            return RiskDecision.deny(
                DenialReason.MAX_GROSS_LEVERAGE,
                f"gross exposure {post.gross_notional:.2f} is {_fmt(lev)}x equity > "
                f"max_gross_leverage {config.max_gross_leverage}x",
            )
    if config.max_net_leverage is not None:
        lev = post.net_leverage
        if lev > config.max_net_leverage:
            return RiskDecision.deny(
                DenialReason.MAX_NET_LEVERAGE,
                f"net exposure {post.net_notional:.2f} is {_fmt(lev)}x equity > "
                f"max_net_leverage {config.max_net_leverage}x",
            )
    minimum = config.min_liquidation_distance_pct
    if minimum is not None:
        affected = (
            [k for k, o in post.symbols.items() if o.mode is MarginMode.CROSS]
            if traded.mode is MarginMode.CROSS
            else [intent.symbol]
        )
        for key in sorted(affected):
            distance = post.liquidation_distance_pct(key)
            if distance is not None and distance < Decimal(repr(minimum)):
                return RiskDecision.deny(
                    DenialReason.LIQUIDATION_DISTANCE,
                    f"{key}: liquidation {distance:.3f}% from the mark after the order < "
                    f"min_liquidation_distance_pct {minimum}%",
                )
    return RiskDecision.ok()


# --- the monitor ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReduceOrder:
    """Cut ``qty`` of ``symbol`` now (reduce-only, at market): the position is closer to its
    liquidation price than ``min_liquidation_distance_pct``."""

    symbol: str
    side: OrderSide
    qty: Decimal
    distance_pct: Decimal
    reduce_only: bool = True
    reason: str = LIQUIDATION_DISTANCE

    def intent(self, strategy: str = "risk") -> OrderIntent:
        """The order, for `RiskEngine.check` and the executor."""
        return OrderIntent(self.symbol, self.side, self.qty, strategy=strategy, reduce_only=True)


@dataclass(frozen=True, slots=True)
class MarginRatioAlert:
    """The margin ratio behind ``symbols`` (one isolated position, or every cross position:
    they share one ratio) is at or above ``threshold``."""

    symbols: tuple[str, ...]
    margin_ratio: Decimal
    threshold: Decimal
    mode: MarginMode


LeverageAction = ReduceOrder | MarginRatioAlert


def _cut_to_restore(snapshot: PerpAccountSnapshot, s: PerpSymbol, minimum: Decimal) -> Decimal:
    """The smallest cut (a multiple of the symbol's step, rounded up) after which, filled at
    the mark, the position is at least ``minimum`` percent from its liquidation price; the
    whole position when no smaller cut does it.

    Bisection on the number of steps: a cut at the mark leaves the margin balance as it was and
    lowers the maintenance margin, so the distance does not shrink as the cut grows. A cut of
    an isolated position releases its margin in proportion (see `PerpAccountSnapshot.after`),
    which leaves its liquidation price where it was but for a lower bracket: there the whole
    position is usually what it takes.
    """
    assert s.position is not None
    size, side = s.position.size, s.position.side
    step = s.qty_step or DEFAULT_QTY_QUANTUM
    steps = int((size / step).to_integral_value(rounding=ROUND_CEILING))

    def enough(n: int) -> bool:
        cut = min(step * n, size)
        after = snapshot.after(s.symbol, -side * cut, s.mark)
        distance = after.liquidation_distance_pct(s.symbol)
        return distance is None or distance >= minimum

    lo, hi = 0, steps  # enough(lo) is False (the monitor found it too close), enough(hi) True
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid
    return min(step * hi, size)


def monitor(config: RiskConfig, snapshot: PerpAccountSnapshot) -> list[LeverageAction]:
    """What the account needs now: a `ReduceOrder` per position closer to liquidation than
    ``min_liquidation_distance_pct`` (each sized on its own, the others as they are) and a
    `MarginRatioAlert` per margin ratio at or above ``margin_ratio_alert``. Sorted by symbol;
    empty when all is well or both settings are off."""
    actions: list[LeverageAction] = []
    held = sorted(k for k, s in snapshot.symbols.items() if s.position is not None)
    minimum = config.min_liquidation_distance_pct
    if minimum is not None:
        floor = Decimal(repr(minimum))
        for key in held:
            distance = snapshot.liquidation_distance_pct(key)
            if distance is None or distance >= floor:
                continue
            s = snapshot.get(key)
            assert s.position is not None
            side = OrderSide.SELL if s.position.side > 0 else OrderSide.BUY
            actions.append(ReduceOrder(key, side, _cut_to_restore(snapshot, s, floor), distance))
    alert = config.margin_ratio_alert
    if alert is not None:
        threshold = Decimal(repr(alert))
        cross = [k for k in held if snapshot.get(k).mode is MarginMode.CROSS]
        if cross:
            ratio = snapshot.margin_ratio(cross[0])
            if ratio is not None and ratio >= threshold:
                actions.append(MarginRatioAlert(tuple(cross), ratio, threshold, MarginMode.CROSS))
        for key in held:
            if snapshot.get(key).mode is MarginMode.ISOLATED:
                ratio = snapshot.margin_ratio(key)
                if ratio is not None and ratio >= threshold:
                    actions.append(MarginRatioAlert((key,), ratio, threshold, MarginMode.ISOLATED))
    return actions
