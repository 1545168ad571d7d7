"""Reconciling a USDⓈ-M account at start: the exchange's positions, leverage and margin mode
against our ledger and the configured leverage and margin mode.

Why a separate, pure step: on a perpetual the account has state spot has not — each symbol's
leverage and margin mode, and a signed position that does not show in a balance. A bot that
starts with a leverage or margin mode other than the one its risk limits were set for trades a
different risk than the one approved, and a position the ledger does not know (opened by hand
in the app, or left over from another program) is risk nobody is watching. So before the first
order:

* a symbol that is **flat** on the exchange gets the configured leverage and margin mode (the
  adapter sets them; Binance allows both changes only then for the margin mode);
* a symbol with a **position** keeps what it has — changing either is refused by Binance
  (-4048 for the margin mode) or changes the risk of a position already taken — so a leverage
  or margin mode other than the configured one halts trading, naming both;
* a position whose signed quantity differs from the ledger's (``ledger_qty``, what our fills
  explain) halts trading: opened or changed by hand, as a balance we did not make does on spot.

`plan` decides (no I/O); `tessera.venues.binance_usdm.exchange.UsdmCcxtExchange` reads the account
and applies the changes, and `tessera.execution.reconcile.PerpReconciler` runs both and halts
through the same persisted halt as spot's reconciliation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, runtime_checkable

from tessera.execution.perp.margin import MarginMode

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class VenuePosition:
    """One symbol's one-way position and settings as the exchange reports them; ``qty`` is
    signed (> 0 long, < 0 short) and 0 when flat (leverage and margin mode still apply)."""

    symbol: str
    qty: Decimal
    entry_price: Decimal
    leverage: int
    mode: MarginMode
    liquidation_price: Decimal | None  # None when flat (Binance sends 0)
    unrealized_pnl: Decimal = ZERO
    isolated_wallet: Decimal = ZERO  # 0 in cross mode


@dataclass(frozen=True, slots=True)
class PerpBalance:
    """A margin asset of the futures wallet: ``wallet`` (deposits + realized PnL - fees +
    funding), ``unrealized`` (of the open positions, at the mark), ``available`` (what new
    orders may use)."""

    asset: str
    wallet: Decimal
    unrealized: Decimal
    available: Decimal

    @property
    def equity(self) -> Decimal:
        """Wallet + unrealized: Binance's margin balance."""
        return self.wallet + self.unrealized


@runtime_checkable
class PerpExchange(Protocol):
    """What a perpetuals adapter answers besides `tessera.execution.exchange.Exchange`
    (`tessera.venues.binance_usdm.exchange.UsdmCcxtExchange`)."""

    async def positions(self, symbols: list[str]) -> list[VenuePosition]: ...

    async def hedge_mode(self) -> bool: ...

    async def set_leverage(self, symbol: str, leverage: int) -> int: ...

    async def set_margin_mode(self, symbol: str, mode: MarginMode) -> bool: ...

    async def perp_balances(self) -> dict[str, PerpBalance]: ...


@dataclass(frozen=True, slots=True)
class PerpSettings:
    """The configured leverage and margin mode of the symbols the bot trades."""

    leverage: int
    mode: MarginMode

    def __post_init__(self) -> None:
        if self.leverage < 1:
            raise ValueError(f"leverage must be >= 1, got {self.leverage}")


@dataclass
class PerpPlan:
    """What reconciliation found: the settings to apply (flat symbols only) and the problems
    that halt trading."""

    set_leverage: dict[str, int] = field(default_factory=dict)
    set_mode: dict[str, MarginMode] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # symbols whose exchange position differs from the ledger's
    unexplained: list[str] = field(default_factory=list)


def plan(
    positions: Sequence[VenuePosition],
    ledger_qty: Mapping[str, Decimal],
    settings: PerpSettings,
    symbols: Sequence[str],
) -> PerpPlan:
    """Compare the exchange's ``positions`` of ``symbols`` with ``ledger_qty`` (signed, per
    symbol; missing = flat) and ``settings``; see the module docstring. A traded symbol the
    exchange did not report is a problem (it would be traded blind)."""
    out = PerpPlan()
    by_symbol = {p.symbol: p for p in positions}
    for symbol in symbols:
        pos = by_symbol.get(symbol)
        if pos is None:
            out.problems.append(f"{symbol}: the exchange reported no position or settings")
            continue
        ours = ledger_qty.get(symbol, ZERO)
        if pos.qty != ours:
            out.unexplained.append(symbol)
            out.problems.append(
                f"{symbol}: position {pos.qty} on the exchange, {ours} in our ledger "
                "(opened or changed by hand?)"
            )
        if pos.qty == 0:
            if pos.leverage != settings.leverage:
                out.set_leverage[symbol] = settings.leverage
            if pos.mode is not settings.mode:
                out.set_mode[symbol] = settings.mode
            continue
        if pos.leverage != settings.leverage:
            out.problems.append(
                f"{symbol}: leverage {pos.leverage}x on the exchange, {settings.leverage}x "
                "configured, and it cannot be changed safely while a position is open"
            )
        if pos.mode is not settings.mode:
            out.problems.append(
                f"{symbol}: margin mode {pos.mode.value} on the exchange, "
                f"{settings.mode.value} configured; Binance refuses the change while a "
                "position is open"
            )
    return out
