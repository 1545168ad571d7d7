"""The bot's view of its USDⓈ-M account for the leverage risk (`tessera.risk.leverage`).

Why a book of its own beside the `AccountBook`: the account book values the account (wallet +
unrealized PnL) but does not know the wallet, each position's entry price, margin mode or
isolated wallet apart, and the leverage checks need all of them. The venue says them: at
start-up (and after each reconciliation) ``/fapi/v2/positionRisk`` and the futures balances
(`reset`), then every ``ACCOUNT_UPDATE`` of the user-data stream — Binance sends one for each
fill (reason ORDER) and each funding payment (FUNDING_FEE) with the wallet and the positions it
changed (`on_account_update`). The leverage of a position is the symbol's setting, which the
start-up reconciliation has set to ``live.perp_leverage`` (ACCOUNT_UPDATE does not carry it).

Marks: the venue's mark price, as its ``<symbol>@markPrice@1s`` stream says it (`on_mark`, fed
by the bot's `MarketFeed`): Binance liquidates on the mark, not on the last trade. Until a
symbol's first mark arrives its mark is the bot's last trade price (logged once per symbol;
``tessera_perp_mark_source{symbol,source}`` says which is in use), else a held position's
entry price. Brackets: the venue's ``/fapi/v1/leverageBracket`` answer at start-up (the bot
falls back to the bundled ``samples/binance-usdm/leverage_brackets.json`` only when the venue
does not answer that endpoint).

A snapshot may lag a fill by the time its ACCOUNT_UPDATE takes to arrive (milliseconds on the
simulator); the pre-trade check then sees the account before that fill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from prometheus_client import Gauge

from tessera.execution.perp.margin import LeverageBrackets, MarginMode, PerpPosition
from tessera.execution.perp_reconcile import PerpBalance, VenuePosition
from tessera.logging import get_logger
from tessera.risk.leverage import PerpAccountSnapshot, PerpSymbol
from tessera.venues.binance_usdm.user_data import FuturesAccountUpdate

log = get_logger(__name__)

ZERO = Decimal(0)
FUNDING_FEE = "FUNDING_FEE"
# a cross FUNDING_FEE update names no position: its payment is counted under this label when
# more than one symbol is held (with one held, under that symbol)
CROSS_FUNDING = "CROSS"
# where a symbol's mark comes from: the venue's mark price stream, or the fallback
MARK_SOURCES = ("mark_price", "last_trade")
PERP_MARK_SOURCE = Gauge(
    "tessera_perp_mark_source",
    "1 for the source of the mark the leverage risk uses for a symbol: the venue's mark price "
    "(mark_price) or, until its first mark arrives, the bot's last trade price (last_trade)",
    ["symbol", "source"],
)


@dataclass(frozen=True, slots=True)
class VenueMark:
    """The venue's last mark price of a symbol and its event time (ms)."""

    price: Decimal
    event_ms: int


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """One ``ACCOUNT_UPDATE`` with reason FUNDING_FEE: the signed amount (negative: paid)."""

    ts_ms: int
    symbol: str
    amount: Decimal


class PerpRiskBook:
    """Wallet and positions of the bot's USDⓈ-M account as the venue reports them (see the
    module docstring); `snapshot` builds the `PerpAccountSnapshot` the risk engine checks."""

    def __init__(
        self,
        brackets: Mapping[str, LeverageBrackets],
        leverage: int,
        mode: MarginMode,
        qty_steps: Mapping[str, Decimal] | None = None,
        margin_asset: str = "USDT",
    ) -> None:
        self.brackets = dict(brackets)
        self.leverage = leverage
        self.mode = mode
        self.qty_steps = dict(qty_steps or {})
        self.margin_asset = margin_asset
        self.wallet = ZERO
        self.positions: dict[str, PerpPosition] = {}
        self.updates = 0
        self.marks: dict[str, VenueMark] = {}
        self._sources: dict[str, str] = {}

    def on_mark(self, symbol: str, price: Decimal, event_ms: int) -> None:
        """The venue's mark price of ``symbol`` (a ``markPriceUpdate``); an older one than the
        last is ignored (frames may be replayed after a reconnect)."""
        last = self.marks.get(symbol)
        if last is not None and event_ms < last.event_ms:
            return
        self.marks[symbol] = VenueMark(price, event_ms)

    def mark_source(self, symbol: str) -> str:
        """``mark_price`` once the venue's mark of ``symbol`` arrived, else ``last_trade``."""
        return "mark_price" if symbol in self.marks else "last_trade"

    def _note_source(self, symbol: str) -> None:
        source = self.mark_source(symbol)
        if self._sources.get(symbol) == source:
            return
        if source == "last_trade":
            log.warning(
                "no mark price from the venue yet: the leverage risk marks at the last trade",
                symbol=symbol,
            )
        elif symbol in self._sources:
            log.info("the leverage risk marks at the venue's mark price", symbol=symbol)
        self._sources[symbol] = source
        for s in MARK_SOURCES:
            PERP_MARK_SOURCE.labels(symbol=symbol, source=s).set(1 if s == source else 0)

    def reset(self, wallets: Mapping[str, PerpBalance], positions: Sequence[VenuePosition]) -> None:
        """The account as the venue's REST answers give it (start-up, reconciliation)."""
        bal = wallets.get(self.margin_asset)
        self.wallet = bal.wallet if bal is not None else ZERO
        self.positions = {}
        for p in positions:
            if p.qty:
                self._hold(p.symbol, p.qty, p.entry_price, p.mode, p.isolated_wallet)

    def _hold(
        self, symbol: str, qty: Decimal, entry: Decimal, mode: MarginMode, isolated: Decimal
    ) -> None:
        if not qty:
            self.positions.pop(symbol, None)
            return
        self.positions[symbol] = PerpPosition(
            symbol,
            qty,
            entry,
            self.leverage,
            mode,
            isolated if mode is MarginMode.ISOLATED else None,
        )

    def on_account_update(self, update: FuturesAccountUpdate) -> FundingPayment | None:
        """Apply an ``ACCOUNT_UPDATE``; the funding payment when its reason is FUNDING_FEE."""
        self.updates += 1
        bal = update.balances.get(self.margin_asset)
        if bal is not None:
            self.wallet = bal.wallet
        for p in update.positions:
            if p.position_side == "BOTH":
                self._hold(p.symbol, p.qty, p.entry_price, p.margin_mode, p.isolated_wallet)
        if update.reason != FUNDING_FEE or bal is None:
            return None
        if update.positions:
            symbol = update.positions[0].symbol
        elif len(self.positions) == 1:
            symbol = next(iter(self.positions))
        else:
            symbol = CROSS_FUNDING
        return FundingPayment(update.transaction_ms, symbol, bal.change)

    def snapshot(
        self, marks: Mapping[str, Decimal], symbols: Sequence[str] = ()
    ) -> PerpAccountSnapshot:
        """The account at the venue's marks (`on_mark`), ``marks`` (the bot's last prices)
        standing in for a symbol whose first mark has not arrived: every held symbol and every
        one of ``symbols`` with brackets and a mark (a held one without any at its entry
        price)."""
        out: dict[str, PerpSymbol] = {}
        for sym in [*self.positions, *(s for s in symbols if s not in self.positions)]:
            brackets = self.brackets.get(sym)
            pos = self.positions.get(sym)
            self._note_source(sym)
            venue = self.marks.get(sym)
            mark = (
                venue.price
                if venue is not None
                else marks.get(sym) or (pos.entry_price if pos is not None else None)
            )
            if brackets is None or mark is None or mark <= 0:
                continue
            out[sym] = PerpSymbol(
                sym,
                mark,
                brackets,
                self.leverage,
                pos.mode if pos is not None else self.mode,
                pos,
                qty_step=self.qty_steps.get(sym),
            )
        return PerpAccountSnapshot(self.wallet, out)
