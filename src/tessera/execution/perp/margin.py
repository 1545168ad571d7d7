"""Margin for USDⓈ-M perpetuals: leverage brackets, positions, maintenance margin, liquidation.

Pure domain (no I/O, no venue): the venue parser (`tessera.venues.binance_usdm.brackets`) turns
Binance's ``/fapi/v1/leverageBracket`` payload into `LeverageBrackets`; the backtest, the
simulator and the risk engine all compute margin and liquidation prices from the same code, so
they cannot disagree about when a position dies.

Only Binance's **one-way position mode** is modelled (one signed position per symbol: ``+``
long, ``-`` short). Hedge mode (a long and a short on the same symbol at once) is left out.

Binance's maintenance margin is piecewise linear in the position's notional ``N``:
``MM(N) = N * mmr - cum`` with the ``mmr`` and ``cum`` ("maintenance amount") of the bracket
holding ``N``. Each ``cum`` is chosen so that ``MM`` is continuous at the bracket edges; this
module refuses brackets that break that, because the liquidation price below is unique only
when ``MM`` is continuous.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from enum import Enum

ZERO = Decimal(0)
ONE = Decimal(1)

# Digits for the liquidation-price arithmetic: the inputs are short decimals (prices, sizes,
# rates of a few digits), so products are exact and only the final division rounds.
_PRECISION = 40


@dataclass(frozen=True, slots=True)
class MarginTier:
    """One maintenance-margin bracket: positions with notional in (floor, cap] (the first tier
    also holds 0) need ``notional * maintenance_margin_rate - cum`` of maintenance margin and may
    use at most ``max_leverage``.

    The cap is inclusive because Binance calls it the *cap* of the bracket: a 50,000 USDT
    BTCUSDT position may still use the first bracket's 125x. (freqtrade picks the upper tier at
    an exact edge; the maintenance margin is the same either way, only the leverage cap differs.)
    """

    notional_floor: Decimal
    notional_cap: Decimal
    maintenance_margin_rate: Decimal
    cum: Decimal
    max_leverage: int

    def __post_init__(self) -> None:
        if self.notional_floor < 0 or self.notional_cap <= self.notional_floor:
            raise ValueError(
                f"margin tier needs 0 <= notional_floor < notional_cap, got "
                f"{self.notional_floor}..{self.notional_cap}"
            )
        if not ZERO <= self.maintenance_margin_rate < ONE:
            raise ValueError(
                f"maintenance_margin_rate must be in [0, 1), got {self.maintenance_margin_rate}"
            )
        if self.cum < 0:
            raise ValueError(f"cum (maintenance amount) must be >= 0, got {self.cum}")
        if self.max_leverage < 1:
            raise ValueError(f"max_leverage must be >= 1, got {self.max_leverage}")

    def maintenance_margin(self, notional: Decimal) -> Decimal:
        """``notional * mmr - cum`` with this tier's numbers (whatever tier ``notional`` is in)."""
        return notional * self.maintenance_margin_rate - self.cum


@dataclass(frozen=True, slots=True)
class LeverageBrackets:
    """A symbol's maintenance-margin tiers, lowest notional first.

    Refused at construction: no tiers; a first tier not starting at 0; tiers out of order,
    overlapping or with a gap between them (a notional would have no bracket or two); a ``cum``
    that makes the maintenance margin jump at an edge (see the module docstring). Every symbol
    in Binance's published brackets passes these checks.
    """

    symbol: str
    tiers: tuple[MarginTier, ...]

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError(f"{self.symbol}: leverage brackets need at least one tier")
        if self.tiers[0].notional_floor != 0:
            raise ValueError(
                f"{self.symbol}: the first tier must start at notional 0, "
                f"got {self.tiers[0].notional_floor}"
            )
        for k, (low, high) in enumerate(zip(self.tiers, self.tiers[1:], strict=False), start=2):
            if high.notional_floor < low.notional_cap:
                raise ValueError(
                    f"{self.symbol}: tier {k} (floor {high.notional_floor}) overlaps or comes "
                    f"before tier {k - 1} (cap {low.notional_cap})"
                )
            if high.notional_floor > low.notional_cap:
                raise ValueError(
                    f"{self.symbol}: gap between tier {k - 1} (cap {low.notional_cap}) and "
                    f"tier {k} (floor {high.notional_floor}), or tiers out of order"
                )
            edge = high.notional_floor
            if low.maintenance_margin(edge) != high.maintenance_margin(edge):
                raise ValueError(
                    f"{self.symbol}: maintenance margin jumps at notional {edge} between tier "
                    f"{k - 1} ({low.maintenance_margin(edge)}) and tier {k} "
                    f"({high.maintenance_margin(edge)}): cum {high.cum} is inconsistent"
                )

    @property
    def max_notional(self) -> Decimal:
        """The largest notional any tier allows (the last tier's cap)."""
        return self.tiers[-1].notional_cap

    def tier_for(self, notional: Decimal) -> MarginTier:
        """The tier whose (floor, cap] holds ``notional`` (0 is in the first tier).

        Raises ValueError for a negative notional and for one above the last cap: Binance
        refuses such a position, so there is no bracket to answer with.
        """
        if notional < 0:
            raise ValueError(f"{self.symbol}: notional must be >= 0, got {notional}")
        for tier in self.tiers:
            if notional <= tier.notional_cap:
                return tier
        raise ValueError(
            f"{self.symbol}: notional {notional} is above the last bracket's cap "
            f"{self.max_notional}"
        )

    def maintenance_margin(self, notional: Decimal) -> Decimal:
        """Binance's maintenance margin for a position of this notional: ``N * mmr - cum``."""
        return self.tier_for(notional).maintenance_margin(notional)

    def max_leverage(self, notional: Decimal) -> int:
        """The highest leverage Binance allows for a position of this notional."""
        return self.tier_for(notional).max_leverage


class MarginMode(Enum):
    """Isolated: each position has its own margin and only that can be lost. Cross: all cross
    positions share the wallet balance, so one position's loss eats the others' margin."""

    ISOLATED = "ISOLATED"
    CROSS = "CROSS"


@dataclass(frozen=True, slots=True)
class PerpPosition:
    """An open one-way-mode position: ``qty`` > 0 long, < 0 short (never 0: a flat symbol has
    no position), in base units (USDⓈ-M contract size is 1).

    ``isolated_margin`` is the position's isolated wallet balance (the margin posted plus any
    added, minus any removed; realized PnL and funding change it too); it is required in
    isolated mode and must be None in cross mode, where the wallet is shared and passed to
    `liquidation_price` instead.
    """

    symbol: str
    qty: Decimal
    entry_price: Decimal
    leverage: int
    mode: MarginMode
    isolated_margin: Decimal | None = None

    def __post_init__(self) -> None:
        if self.qty == 0:
            raise ValueError(f"{self.symbol}: a position has a non-zero qty")
        if self.entry_price <= 0:
            raise ValueError(f"{self.symbol}: entry_price must be > 0, got {self.entry_price}")
        if self.leverage < 1:
            raise ValueError(f"{self.symbol}: leverage must be >= 1, got {self.leverage}")
        if self.mode is MarginMode.ISOLATED:
            if self.isolated_margin is None or self.isolated_margin < 0:
                raise ValueError(
                    f"{self.symbol}: an isolated position needs isolated_margin >= 0, "
                    f"got {self.isolated_margin}"
                )
        elif self.isolated_margin is not None:
            raise ValueError(
                f"{self.symbol}: a cross position has no isolated_margin (the wallet is shared)"
            )

    @property
    def side(self) -> int:
        """+1 long, -1 short: the sign in Binance's formulas."""
        return 1 if self.qty > 0 else -1

    @property
    def size(self) -> Decimal:
        """``|qty|``."""
        return abs(self.qty)

    def notional(self, mark: Decimal) -> Decimal:
        """``|qty| * mark``: what brackets, maintenance margin and leverage are measured on."""
        return self.size * mark

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        """``qty * (mark - entry)``: positive for a long when the mark rises, for a short when
        it falls. Binance marks at the mark price, not the last trade, to resist manipulation."""
        return self.qty * (mark - self.entry_price)

    def initial_margin(self) -> Decimal:
        """``|qty| * entry / leverage``: the margin posted when the position was opened."""
        return self.size * self.entry_price / self.leverage

    def maintenance_margin(self, mark: Decimal, brackets: LeverageBrackets) -> Decimal:
        """The maintenance margin at this mark, from the bracket of the notional at the mark."""
        return brackets.maintenance_margin(self.notional(mark))

    def margin_balance(self, mark: Decimal) -> Decimal:
        """Isolated only: ``isolated_margin + unrealized PnL``. Binance liquidates the position
        when this falls to its maintenance margin. (Cross positions share one balance: see
        `cross_margin_balance`.)"""
        if self.isolated_margin is None:
            raise ValueError(
                f"{self.symbol}: a cross position has no margin balance of its own; "
                "use cross_margin_balance"
            )
        return self.isolated_margin + self.unrealized_pnl(mark)


@dataclass(frozen=True, slots=True)
class MarkedPosition:
    """Another cross position with its brackets and current mark, for the cross-mode formula."""

    position: PerpPosition
    brackets: LeverageBrackets
    mark: Decimal


def cross_margin_balance(wallet_balance: Decimal, positions: Iterable[MarkedPosition]) -> Decimal:
    """Cross wallet balance plus every cross position's unrealized PnL at its mark."""
    return wallet_balance + sum((m.position.unrealized_pnl(m.mark) for m in positions), ZERO)


def liquidation_price_from_terms(
    *,
    qty: Decimal,
    entry_price: Decimal,
    wallet_balance: Decimal,
    brackets: LeverageBrackets,
    other_maintenance_margin: Decimal = ZERO,
    other_unrealized_pnl: Decimal = ZERO,
) -> Decimal | None:
    """Binance's one-way-mode liquidation price from its formula's terms:

    ``LP = (WB - TMM + UPNL + cum - side*|Q|*EP) / (|Q|*MMR - side*|Q|)``

    where WB is the isolated margin (with TMM = UPNL = 0) in isolated mode, or the cross wallet
    balance with TMM / UPNL the OTHER cross positions' maintenance margin and unrealized PnL.
    ``MMR`` and ``cum`` are those of the bracket that holds the position's notional *at the
    liquidation price*, which is not known beforehand: Binance's calculator (and freqtrade's
    dry-run) try the brackets. Here the bracket is found exactly instead of by trial division:
    the position's margin balance minus its maintenance margin, as a function of the notional,
    is strictly monotone (rising for a long, falling for a short, as mmr < 1) and continuous
    (the brackets' ``cum`` make it so), so it changes sign in exactly one bracket, found by its
    sign at each bracket's cap — an exact Decimal evaluation, no rounding at the edges. A
    liquidation notional above the last cap uses the last bracket (Binance would not let the
    position grow there, but a cross short with a large wallet can have its liquidation price
    that high).

    Returns None for a long that no positive price liquidates (fully collateralised), and 0 for
    a short already below its maintenance margin at every price (possible only in cross mode
    with losses elsewhere): a short is liquidated when the mark is at or above the result, so 0
    says "now".
    """
    if qty == 0:
        raise ValueError("liquidation price of a zero position")
    side = 1 if qty > 0 else -1
    size = abs(qty)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        # Everything of the margin balance that does not move with this position's price.
        fixed = wallet_balance - other_maintenance_margin + other_unrealized_pnl

        def surplus(notional: Decimal, tier: MarginTier) -> Decimal:
            # (margin balance - maintenance margin) when the notional is `notional`: exact,
            # since side*|Q|*(P - EP) = side*(notional - |Q|*EP).
            return (
                fixed + side * (notional - size * entry_price) - tier.maintenance_margin(notional)
            )

        chosen = brackets.tiers[-1]
        for tier in brackets.tiers[:-1]:
            at_cap = surplus(tier.notional_cap, tier)
            # long: surplus rises with price, the root is at or below this cap once >= 0;
            # short: surplus falls, the root is at or below this cap once <= 0.
            if (side > 0 and at_cap >= 0) or (side < 0 and at_cap <= 0):
                chosen = tier
                break
        numerator = fixed + chosen.cum - side * size * entry_price
        denominator = size * chosen.maintenance_margin_rate - side * size
        price = numerator / denominator
    if price <= 0:
        return None if side > 0 else ZERO
    return price


def liquidation_price(
    position: PerpPosition,
    brackets: LeverageBrackets,
    *,
    cross_wallet_balance: Decimal | None = None,
    others: Sequence[MarkedPosition] = (),
) -> Decimal | None:
    """The mark price at which Binance liquidates ``position`` (see
    `liquidation_price_from_terms`; None when no positive price does).

    Isolated: from the position's own ``isolated_margin``; ``cross_wallet_balance`` and
    ``others`` must not be given. Cross: ``cross_wallet_balance`` (the cross wallet, without
    isolated margins or unrealized PnL) and ``others``, the account's OTHER cross positions at
    their current marks, whose maintenance margin and unrealized PnL move the price. One-way
    mode: ``others`` may not hold a second position on the same symbol.
    """
    if position.mode is MarginMode.ISOLATED:
        if cross_wallet_balance is not None or others:
            raise ValueError(
                f"{position.symbol}: isolated liquidation uses the isolated margin only; "
                "cross_wallet_balance and others are for cross positions"
            )
        assert position.isolated_margin is not None  # checked by PerpPosition
        return liquidation_price_from_terms(
            qty=position.qty,
            entry_price=position.entry_price,
            wallet_balance=position.isolated_margin,
            brackets=brackets,
        )
    if cross_wallet_balance is None:
        raise ValueError(f"{position.symbol}: a cross position needs cross_wallet_balance")
    seen = {position.symbol}
    for other in others:
        if other.position.mode is not MarginMode.CROSS:
            raise ValueError(
                f"{other.position.symbol}: an isolated position does not share the cross wallet"
            )
        if other.position.symbol in seen:
            raise ValueError(
                f"{other.position.symbol}: two positions on one symbol (one-way mode only)"
            )
        seen.add(other.position.symbol)
    return liquidation_price_from_terms(
        qty=position.qty,
        entry_price=position.entry_price,
        wallet_balance=cross_wallet_balance,
        brackets=brackets,
        other_maintenance_margin=sum(
            (o.position.maintenance_margin(o.mark, o.brackets) for o in others), ZERO
        ),
        other_unrealized_pnl=sum((o.position.unrealized_pnl(o.mark) for o in others), ZERO),
    )
