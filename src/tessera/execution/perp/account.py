"""The USDⓈ-M perpetual account: wallet, one-way positions, margin, funding, liquidation —
pure and exact (Decimal), no I/O. The backtest books into it, and so does the paper exchange on
a perpetual market (`tessera.execution.paper`), so a backtest and a paper run keep the same
books by the same rules.

Why a second account next to the spot `Portfolio`: a perpetual is not owned, it is a signed
contract on margin. Buying does not spend the notional, it locks ``notional / leverage`` of
margin; a short needs no borrow; the wallet moves only by realized PnL, fees and funding; and
the exchange closes the position itself when the mark price reaches the liquidation price.
The engine drives both accounts through the same few methods (`strategy_position`,
`equity`, `net_positions`, `mark`, `apply_fill`, ...), so there is one engine.

Book-keeping (Binance's one-way mode, the margin arithmetic of `tessera.execution.perp`):

* ``wallet`` is the total wallet balance: initial cash + realized PnL − fees + funding. An
  isolated position also keeps its own ``isolated_margin`` (posted initial margin, then its
  share of realized PnL and its funding), which is part of the wallet; the **cross wallet** is
  the wallet minus every isolated margin.
* ``available()`` = cross wallet + cross unrealized PnL − cross initial margin: what a new
  position may post. An order that needs more initial margin than that is denied
  (``insufficient_margin``) — checked when the order is sent and again at its fill.
* equity = wallet + unrealized PnL of every position at its mark.
* a fill reducing a position realizes ``closed × (price − entry) × side``; an isolated
  position's margin shrinks in proportion to the part closed; a flip closes, then opens the
  rest at the fill price. Fees (maker/taker of the `FeeSchedule`, on notional) leave the wallet.
* funding (`settle_funding` of `perp.funding`) is booked as `FundingEntry`s of their own, to
  the wallet and, for an isolated position, to its isolated margin.
* liquidation: when the mark crosses the position's liquidation price (`liquidation_price`,
  with the bracket at that price), the position is closed **at the liquidation price** and a
  liquidation fee (``liquidation_fee_rate`` × notional at that price) is charged. An isolated
  position never loses more than its isolated margin, a cross one more than the cross wallet
  (the rest is the insurance fund's, which is not modelled): the fee is cut to what is left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import astuple, dataclass, field, replace
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

from tessera.execution.fees import FeeSchedule
from tessera.execution.orders import Fill, Liquidity
from tessera.execution.perp.funding import FundingEntry, FundingRate, settle_funding
from tessera.execution.perp.margin import (
    LeverageBrackets,
    MarginMode,
    MarkedPosition,
    PerpPosition,
    liquidation_price,
)

if TYPE_CHECKING:
    from tessera.risk.leverage import PerpAccountSnapshot

ZERO = Decimal(0)
INSUFFICIENT_MARGIN = "insufficient_margin"
LEVERAGE_ABOVE_BRACKET = "leverage_above_bracket"


@dataclass(slots=True)
class StrategyQty:
    """A strategy's share of a symbol's position (the engine reads ``.qty``)."""

    qty: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Liquidation:
    """One liquidation: the position closed by the exchange at ``price``."""

    ts: int
    symbol: str
    qty: Decimal  # signed position closed (long > 0)
    entry_price: Decimal
    price: Decimal  # the liquidation price
    mark_extreme: Decimal  # the bar's mark low (long) or high (short) that crossed it
    realized_pnl: Decimal  # qty x (price - entry)
    fee: Decimal  # liquidation fee charged
    loss: Decimal  # -(wallet change): what the account lost to it, fee included
    mode: str


@dataclass
class PerpAccount:
    """One USDⓈ-M account: a USDT wallet and one signed position per symbol."""

    quote_asset: str
    initial_wallet: Decimal
    brackets: Mapping[str, LeverageBrackets]
    fees: FeeSchedule
    mode: MarginMode = MarginMode.ISOLATED
    default_leverage: int = 1
    liquidation_fee_rate: Decimal = Decimal("0.005")
    wallet: Decimal = field(init=False)
    positions: dict[str, PerpPosition] = field(init=False, default_factory=dict)
    leverage: dict[str, int] = field(init=False, default_factory=dict)
    marks: dict[str, Decimal] = field(init=False, default_factory=dict)
    by_strategy: dict[tuple[str, str], StrategyQty] = field(init=False, default_factory=dict)
    funding: list[FundingEntry] = field(init=False, default_factory=list)
    liquidations: list[Liquidation] = field(init=False, default_factory=list)
    realized: Decimal = field(init=False, default=ZERO)
    fees_paid: Decimal = field(init=False, default=ZERO)

    def __post_init__(self) -> None:
        self.wallet = self.initial_wallet
        for symbol in self.brackets:
            why = self.check_leverage(symbol, self.default_leverage)
            if why is not None:
                raise ValueError(f"backtest.perp.leverage: {why}")

    # --- what the engine reads, as it reads the spot Portfolio ---------------------------------

    @property
    def cash(self) -> dict[str, Decimal]:
        """The wallet balance under the quote asset (the spot portfolio's ``cash`` shape)."""
        return {self.quote_asset: self.wallet}

    def strategy_position(self, symbol: str, strategy: str) -> StrategyQty:
        return self.by_strategy.get((symbol, strategy)) or StrategyQty()

    def net_positions(self) -> dict[str, Decimal]:
        return {s: p.qty for s, p in self.positions.items()}

    def mark(self, symbol: str, price: Decimal) -> None:
        self.marks[symbol] = price

    def leverage_of(self, symbol: str) -> int:
        return self.leverage.get(symbol, self.default_leverage)

    def unrealized(self) -> Decimal:
        return sum(
            (p.unrealized_pnl(self.marks.get(s, p.entry_price)) for s, p in self.positions.items()),
            ZERO,
        )

    def equity(self) -> Decimal:
        """Wallet + unrealized PnL of every position at its mark."""
        return self.wallet + self.unrealized()

    def cross_wallet(self) -> Decimal:
        """The wallet minus what isolated positions hold."""
        return self.wallet - sum((p.isolated_margin or ZERO for p in self.positions.values()), ZERO)

    def available(self) -> Decimal:
        """Cross wallet + cross unrealized PnL − cross initial margin."""
        cross = [(s, p) for s, p in self.positions.items() if p.mode is MarginMode.CROSS]
        upnl = sum((p.unrealized_pnl(self.marks.get(s, p.entry_price)) for s, p in cross), ZERO)
        im = sum((p.initial_margin() for _, p in cross), ZERO)
        return self.cross_wallet() + upnl - im

    # --- leverage and margin checks -------------------------------------------------------------

    def check_leverage(self, symbol: str, leverage: int, notional: Decimal = ZERO) -> str | None:
        """None when ``leverage`` is allowed for a position of ``notional``, else a reason."""
        brackets = self.brackets.get(symbol)
        if brackets is None:
            return f"{symbol}: no leverage brackets"
        if leverage < 1:
            return f"{symbol}: leverage must be >= 1, got {leverage}"
        try:
            cap = brackets.max_leverage(notional)
        except ValueError as exc:
            return str(exc)
        if leverage > cap:
            return (
                f"{symbol}: leverage {leverage}x is above the {cap}x Binance allows for a "
                f"notional of {notional:f}"
            )
        return None

    def set_leverage(self, symbol: str, leverage: int) -> None:
        """The leverage of ``symbol``'s next exposure; refused above the bracket's maximum
        for the current notional (ValueError naming symbol, leverage and cap)."""
        pos = self.positions.get(symbol)
        notional = pos.notional(self.marks.get(symbol, pos.entry_price)) if pos else ZERO
        why = self.check_leverage(symbol, leverage, notional)
        if why is not None:
            raise ValueError(why)
        self.leverage[symbol] = leverage

    def order_denial(self, symbol: str, signed_qty: Decimal, price: Decimal) -> str | None:
        """Why an order of ``signed_qty`` at about ``price`` may not go (None: it may).

        Only the part that opens or increases exposure needs margin: ``|new| × price /
        leverage`` (plus its taker fee), against `available`. Leverage above what the bracket
        of the resulting notional allows is refused too."""
        pos = self.positions.get(symbol)
        held = pos.qty if pos else ZERO
        after = held + signed_qty
        flips = held != 0 and after != 0 and (held > 0) != (after > 0)
        if flips:
            opening = abs(after)  # the close frees margin, the rest opens
        elif after == 0:
            opening = ZERO
        else:
            opening = abs(after) - abs(held)
        if opening <= 0:
            return None
        lev = self.leverage_of(symbol)
        if self.check_leverage(symbol, lev, abs(after) * price) is not None:
            return LEVERAGE_ABOVE_BRACKET
        need = opening * price / lev + self.fees.fee(opening * price, Liquidity.TAKER)
        freed = ZERO
        if flips and pos is not None:
            if pos.isolated_margin is not None:
                freed = pos.isolated_margin + pos.unrealized_pnl(price)
            else:
                freed = pos.initial_margin()
        if need > self.available() + freed:
            return INSUFFICIENT_MARGIN
        return None

    # --- fills, funding, liquidation ------------------------------------------------------------

    def apply_fill(self, fill: Fill) -> Decimal:
        """Book a fill; returns the realized PnL (before fees) of the part it closed."""
        signed = fill.qty * fill.side.sign
        realized = self._trade(fill.symbol, signed, fill.price)
        self.wallet += realized - fill.fee
        self.fees_paid += fill.fee
        key = (fill.symbol, fill.strategy)
        self.by_strategy.setdefault(key, StrategyQty()).qty += signed
        return realized

    def _trade(self, symbol: str, signed: Decimal, price: Decimal) -> Decimal:
        pos = self.positions.get(symbol)
        lev = self.leverage_of(symbol)
        iso = self.mode is MarginMode.ISOLATED
        if pos is None:
            self._open(symbol, signed, price, lev)
            return ZERO
        if (pos.qty > 0) == (signed > 0):  # increase: average the entry, post more margin
            qty = pos.qty + signed
            entry = (pos.qty * pos.entry_price + signed * price) / qty
            margin = (
                (pos.isolated_margin or ZERO) + abs(signed) * price / pos.leverage if iso else None
            )
            self.positions[symbol] = replace(
                pos, qty=qty, entry_price=entry, isolated_margin=margin
            )
            return ZERO
        closing = min(abs(signed), pos.size)
        realized = closing * (price - pos.entry_price) * pos.side
        self.realized += realized
        rest = pos.qty + signed
        if rest == 0 or (rest > 0) != (pos.qty > 0):
            del self.positions[symbol]
            if rest != 0:
                self._open(symbol, rest, price, lev)
        else:
            margin = None
            if pos.isolated_margin is not None:
                # the part closed takes its share of the margin and its realized PnL with it
                margin = pos.isolated_margin * abs(rest) / pos.size
            self.positions[symbol] = replace(pos, qty=rest, isolated_margin=margin)
        return realized

    def _open(self, symbol: str, qty: Decimal, price: Decimal, lev: int) -> None:
        iso = self.mode is MarginMode.ISOLATED
        self.positions[symbol] = PerpPosition(
            symbol, qty, price, lev, self.mode, abs(qty) * price / lev if iso else None
        )

    def settle_funding(
        self, rates: Mapping[str, FundingRate], marks: Mapping[str, Decimal] | None = None
    ) -> list[FundingEntry]:
        """Book one funding time's payments (their own entries) to the wallet and, for an
        isolated position, to its margin."""
        entries = settle_funding(self.net_positions(), rates, marks)
        for e in entries:
            self.wallet += e.amount
            pos = self.positions[e.symbol]
            if pos.isolated_margin is not None:
                margin = max(pos.isolated_margin + e.amount, ZERO)
                self.positions[e.symbol] = replace(pos, isolated_margin=margin)
        self.funding.extend(entries)
        return entries

    def liquidation_price(self, symbol: str) -> Decimal | None:
        """The mark at which ``symbol``'s position is liquidated now (None: flat, or none)."""
        pos = self.positions.get(symbol)
        if pos is None:
            return None
        brackets = self.brackets[symbol]
        if pos.mode is MarginMode.ISOLATED:
            return liquidation_price(pos, brackets)
        others = [
            MarkedPosition(p, self.brackets[s], self.marks.get(s, p.entry_price))
            for s, p in self.positions.items()
            if s != symbol and p.mode is MarginMode.CROSS
        ]
        return liquidation_price(
            pos, brackets, cross_wallet_balance=self.cross_wallet(), others=others
        )

    def crossed(self, symbol: str, mark_low: Decimal, mark_high: Decimal) -> Decimal | None:
        """The liquidation price if the bar's mark range reaches it, else None."""
        pos = self.positions.get(symbol)
        if pos is None:
            return None
        lp = self.liquidation_price(symbol)
        if lp is None:
            return None
        if pos.qty > 0 and mark_low <= lp:
            return lp
        if pos.qty < 0 and mark_high >= lp:
            return lp
        return None

    def liquidate(self, symbol: str, price: Decimal, ts: int, mark_extreme: Decimal) -> Liquidation:
        """Close ``symbol``'s position at ``price`` with the liquidation fee; the strategies'
        shares go to zero. Returns the record (the engine books the fills)."""
        pos = self.positions[symbol]
        # what the position can lose: its isolated margin, or the cross wallet (beyond that the
        # insurance fund pays, which is not modelled: the wallet never goes below zero)
        at_stake = pos.isolated_margin if pos.isolated_margin is not None else self.cross_wallet()
        del self.positions[symbol]
        realized = pos.qty * (price - pos.entry_price)
        fee = pos.size * price * self.liquidation_fee_rate
        at_stake = max(at_stake, ZERO)
        fee = min(fee, max(at_stake + realized, ZERO))
        realized = max(realized, -at_stake)
        self.wallet += realized - fee
        self.realized += realized
        self.fees_paid += fee
        for key, share in self.by_strategy.items():
            if key[0] == symbol:
                share.qty = ZERO
        rec = Liquidation(
            ts, symbol, pos.qty, pos.entry_price, price, mark_extreme, realized, fee,
            -(realized - fee), pos.mode.value.lower(),
        )  # fmt: skip
        self.liquidations.append(rec)
        return rec

    def snapshot(
        self,
        fallback_marks: Mapping[str, Decimal] | None = None,
        qty_steps: Mapping[str, Decimal] | None = None,
    ) -> PerpAccountSnapshot:
        """The account as the leverage risk of `tessera.risk.leverage` sees it: the wallet,
        each symbol's mark, brackets, leverage (a held position's own, else the setting), the
        margin mode and the position. A symbol with no mark yet takes ``fallback_marks``' price
        (the engine's last trade price), else its entry price; a flat symbol with neither is
        left out (nothing can be checked or cut on it)."""
        from tessera.risk.leverage import PerpAccountSnapshot, PerpSymbol

        symbols: dict[str, PerpSymbol] = {}
        for sym, brackets in self.brackets.items():
            pos = self.positions.get(sym)
            mark = self.marks.get(sym)
            if mark is None and fallback_marks is not None:
                mark = fallback_marks.get(sym)
            if mark is None and pos is not None:
                mark = pos.entry_price
            if mark is None or mark <= 0:
                continue
            symbols[sym] = PerpSymbol(
                sym,
                mark,
                brackets,
                pos.leverage if pos is not None else self.leverage_of(sym),
                pos.mode if pos is not None else self.mode,
                pos,
                qty_step=(qty_steps or {}).get(sym) or None,
            )
        return PerpAccountSnapshot(self.wallet, symbols)

    # --- the account as a document (the paper exchange stores it to restart with it) ----------

    def to_state(self) -> dict[str, Any]:
        """Everything the account booked, as JSON-ready values (Decimals as strings): wallet,
        margin mode, leverage per symbol, each position (signed qty, entry, leverage, mode,
        isolated margin), each strategy's share, funding entries, liquidations, realized PnL and
        fees. Not the marks (market data) nor the brackets and fees (configuration):
        `load_state` on an account built with the same configuration gives this one back."""
        return {
            "initial_wallet": str(self.initial_wallet),
            "wallet": str(self.wallet),
            "mode": self.mode.value,
            "leverage": dict(sorted(self.leverage.items())),
            "positions": [_row(astuple(p)) for p in self.positions.values()],
            "by_strategy": [[s, k, str(v.qty)] for (s, k), v in self.by_strategy.items()],
            "funding": [_row(astuple(e)) for e in self.funding],
            "liquidations": [_row(astuple(x)) for x in self.liquidations],
            "realized": str(self.realized),
            "fees_paid": str(self.fees_paid),
        }

    def load_state(self, doc: Mapping[str, Any]) -> None:
        """Take the books of `to_state`'s ``doc`` (KeyError/ValueError on a malformed one)."""
        self.initial_wallet = Decimal(doc["initial_wallet"])
        self.wallet = Decimal(doc["wallet"])
        self.mode = MarginMode(doc["mode"])
        self.leverage = {str(s): int(v) for s, v in doc["leverage"].items()}
        self.positions = {
            sym: PerpPosition(sym, Decimal(q), Decimal(e), int(lev), MarginMode(m),
                              None if iso is None else Decimal(iso))
            for sym, q, e, lev, m, iso in doc["positions"]
        }  # fmt: skip
        self.by_strategy = {(s, k): StrategyQty(Decimal(q)) for s, k, q in doc["by_strategy"]}
        self.funding = [
            FundingEntry(int(t), sym, Decimal(q), Decimal(m), Decimal(r), Decimal(a))
            for t, sym, q, m, r, a in doc["funding"]
        ]
        self.liquidations = [
            Liquidation(
                int(ts),
                sym,
                Decimal(q),
                Decimal(e),
                Decimal(p),
                Decimal(m),
                Decimal(r),
                Decimal(f),
                Decimal(loss),
                mode,
            )
            for ts, sym, q, e, p, m, r, f, loss, mode in doc["liquidations"]
        ]
        self.realized = Decimal(doc["realized"])
        self.fees_paid = Decimal(doc["fees_paid"])

    def strategy_shares(self, symbol: str) -> list[tuple[str, Decimal]]:
        """(strategy, signed qty) of every strategy holding ``symbol``."""
        return [(k[1], v.qty) for k, v in self.by_strategy.items() if k[0] == symbol and v.qty]

    def funding_by_symbol(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for e in self.funding:
            out[e.symbol] = out.get(e.symbol, ZERO) + e.amount
        return dict(sorted(out.items()))


def _row(values: tuple[Any, ...]) -> list[Any]:
    """A record as JSON-ready values: Decimals as strings (exact), enums by value."""
    return [str(v) if isinstance(v, Decimal) else v.value if isinstance(v, Enum) else v
            for v in values]  # fmt: skip
